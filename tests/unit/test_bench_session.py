"""bench/session.py's encoder stand-in: the layers LiveKit publishes a frame size with, and real encoders behind it."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_session", ROOT / "bench" / "session.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    # The bench puts bench/ on sys.path to import its helpers; left there, bench/triton.py would shadow the `triton`
    # package for every later test (torch's ONNX export probes `import triton` and then fails).
    saved = list(sys.path)
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path[:] = saved
    return module


def test_layers_follow_livekits_default_presets(bench: ModuleType) -> None:
    layer = bench.Layer
    # 512x640 is nearer 4:3; its long side 640 picks the 720x540 preset, simulcast adds the 480x360 one scaled down.
    assert bench.livekit_layers(512, 640, 25) == [layer(512, 640, 450_000, 25), layer(360, 450, 225_000, 20)]
    # 512x512: the 640x480 preset, whose 20 fps caps the full layer too.
    assert bench.livekit_layers(512, 512, 25)[0] == layer(512, 512, 300_000, 20)
    assert bench.livekit_layers(512, 640, 25, simulcast=False) == [layer(512, 640, 450_000, 25)]
    # 16:9 at 1280 long side: three layers (960 or more), from the 16:9 table.
    assert [x.bitrate for x in bench.livekit_layers(1280, 720, 30)] == [3_000_000, 450_000, 160_000]
    assert bench.livekit_layers(320, 240, 25) == [layer(320, 240, 225_000, 20)]  # under 480: no extra layer


@pytest.mark.parametrize("codec", ["vp8", "h264"])
def test_encoder_turns_rendered_frames_into_a_stream(bench: ModuleType, codec: str) -> None:
    avatar = bench.AVATAR
    encoder = bench.Encoder(codec, avatar.width, avatar.height, 25)
    rgb = np.ascontiguousarray(avatar.base)
    i420 = bench.rgb_to_i420(rgb)
    assert i420.shape == (avatar.height * 3 // 2, avatar.width)
    for i in range(10):
        frame = rgb.copy()
        frame[200 + i : 260 + i, 200:300] = 255 - frame[200 + i : 260 + i, 200:300]  # something moves
        encoder.encode(frame)
    assert encoder.frames == 10 and encoder.bytes > 0
    assert "512x640@25 450 kbps + 360x450@20 225 kbps" in encoder.describe()
