"""Helpers shared by the Triton integration tests: a private copy of the model repository, test audio, streaming."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from avaluma.renderer.lipsync.base import LIPSYNC_SAMPLE_RATE, LipSyncBackend, MouthFrames

ROOT = Path(__file__).resolve().parents[2]
REPOSITORY = ROOT / "deploy" / "triton" / "model_repository"
SR = LIPSYNC_SAMPLE_RATE

# A test-only model: the real adapter, made slow while a file named SLOW exists in its version directory.
SLOW_SUFFIX = """

import time as _time

_Adapter = TritonPythonModel


class TritonPythonModel(_Adapter):  # noqa: F811 - wraps the real adapter above
    def initialize(self, args):
        super().initialize(args)
        self._flag = Path(args["model_repository"]) / args["model_version"] / "SLOW"

    def execute(self, requests):
        if self._flag.exists():
            _time.sleep(float(self._flag.read_text() or "2"))
        return super().execute(requests)
"""


def require_triton() -> None:
    """Skip (with the fix) when the tritonserver binary or the client is not installed."""
    pytest.importorskip("tritonclient.grpc.aio", reason="tritonclient is not installed: pip install -e '.[triton]'")
    from avaluma.core.errors import FailedPrecondition
    from avaluma.core.ops.triton.server import find_triton

    try:
        find_triton()
    except FailedPrecondition as exc:
        pytest.skip(str(exc))


def copy_repository(target: Path, *, slow_model: bool = False) -> Path:
    """A private copy of the shipped repository (tests push versions into it), optionally with ``lipsync_slow`` and
    ``lipsync_multi_slow``."""
    repo = target / "model_repository"
    shutil.copytree(REPOSITORY, repo, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("lipsync", "lipsync_multi") if slow_model else ():
        slow = repo / f"{name}_slow"
        shutil.copytree(repo / name, slow)
        config = (slow / "config.pbtxt").read_text().replace(f'name: "{name}"', f'name: "{name}_slow"')
        (slow / "config.pbtxt").write_text(config)
        (slow / "1" / "model.py").write_text((slow / "1" / "model.py").read_text() + SLOW_SUFFIX)
    return repo


def speech_like(seconds: float, seed: int) -> np.ndarray:
    """Deterministic audio with syllable-like bursts and pauses (voiced harmonics + noise), at 16 kHz."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SR)
    t = np.arange(n) / SR
    f0 = 110 + 40 * rng.random()
    voiced = sum(np.sin(2 * np.pi * f0 * k * t + rng.random() * 6) / k for k in range(1, 12))
    envelope = np.clip(np.sin(2 * np.pi * (2.5 + rng.random()) * t), 0, None) ** 2
    envelope *= (np.sin(2 * np.pi * 0.4 * t + rng.random() * 6) > -0.3).astype(np.float64)
    noise = rng.standard_normal(n) * 0.05
    return (0.3 * envelope * (voiced / 3 + noise)).astype(np.float32)


def stream_frames(backend: LipSyncBackend, audio: np.ndarray, chunk: int, fps: float = 25) -> MouthFrames:
    stream = backend.open_stream(fps=fps)
    parts = [stream.push(audio[i : i + chunk]) for i in range(0, len(audio), chunk)]
    parts.append(stream.flush())
    return MouthFrames.concat(parts)


def assert_frames_equal(actual: MouthFrames, expected: MouthFrames) -> None:
    """Equal up to float rounding (Triton's stub runs NumPy 1.x, whose FFT rounds differently from NumPy 2's)."""
    assert len(actual) == len(expected)
    np.testing.assert_allclose(actual.params, expected.params, atol=1e-5)
    assert actual.visemes is not None and expected.visemes is not None
    np.testing.assert_allclose(actual.visemes, expected.visemes, atol=1e-5)
