"""The encoder stand-in (admission's session budget and bench/session.py): the layers LiveKit publishes a frame size
with, and real encoders behind it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from avaluma.core.live.video_encoding import Encoder, Layer, encoder_cores, livekit_layers, rgb_to_i420
from avaluma.renderer.hvia import load_hvia

ROOT = Path(__file__).resolve().parents[2]
AVATAR = load_hvia(ROOT / "assets" / "avatars" / "grace-hopper.hvia")


def test_layers_follow_livekits_default_presets() -> None:
    # 512x640 is nearer 4:3; its long side 640 picks the 720x540 preset, simulcast adds the 480x360 one scaled down.
    assert livekit_layers(512, 640, 25) == [Layer(512, 640, 450_000, 25), Layer(360, 450, 225_000, 20)]
    # 512x512: the 640x480 preset, whose 20 fps caps the full layer too.
    assert livekit_layers(512, 512, 25)[0] == Layer(512, 512, 300_000, 20)
    assert livekit_layers(512, 640, 25, simulcast=False) == [Layer(512, 640, 450_000, 25)]
    # 16:9 at 1280 long side: three layers (960 or more), from the 16:9 table.
    assert [x.bitrate for x in livekit_layers(1280, 720, 30)] == [3_000_000, 450_000, 160_000]
    assert livekit_layers(320, 240, 25) == [Layer(320, 240, 225_000, 20)]  # under 480: no extra layer


@pytest.mark.parametrize("codec", ["vp8", "h264"])
def test_encoder_turns_rendered_frames_into_a_stream(codec: str) -> None:
    encoder = Encoder(codec, AVATAR.width, AVATAR.height, 25)
    rgb = np.ascontiguousarray(AVATAR.base)
    i420 = rgb_to_i420(rgb)
    assert i420.shape == (AVATAR.height * 3 // 2, AVATAR.width)
    for i in range(10):
        frame = rgb.copy()
        frame[200 + i : 260 + i, 200:300] = 255 - frame[200 + i : 260 + i, 200:300]  # something moves
        encoder.encode(frame)
    assert encoder.frames == 10 and encoder.bytes > 0
    assert "512x640@25 450 kbps + 360x450@20 225 kbps" in encoder.describe()


def test_a_sessions_own_bitrate_replaces_the_full_layers() -> None:
    encoder = Encoder("vp8", AVATAR.width, AVATAR.height, 25, max_bitrate=1_200_000)
    assert encoder.describe() == "VP8 512x640@25 1200 kbps + 360x450@20 225 kbps"


@pytest.mark.parametrize("codec", ["vp8", "h264"])
def test_the_encoders_cost_is_measured_on_moving_frames(codec: str) -> None:
    cores = encoder_cores(np.ascontiguousarray(AVATAR.base), codec=codec, fps=25, frames=5)
    assert cores > 0 and np.isfinite(cores)
