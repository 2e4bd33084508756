"""The ``energy`` lip-sync baseline: frame timing contract, streaming == offline, and mouth behaviour."""

from __future__ import annotations

import math

import numpy as np
import pytest
from pydantic import ValidationError

from avaluma.renderer.lipsync.base import (
    JAW_OPEN,
    LIPS_CLOSED,
    LIPSYNC_SAMPLE_RATE,
    MOUTH_PARAMS,
    REST_POSE,
    MouthFrames,
)
from avaluma.renderer.lipsync.energy import EnergyBackend, EnergyOptions

SR = LIPSYNC_SAMPLE_RATE


def vowel(seconds: float, *, f0: float = 140.0, amplitude: float = 0.3, sr: int = SR) -> np.ndarray:
    """A vowel-like tone: harmonics of f0 with a formant-ish envelope around 700 Hz."""
    t = np.arange(round(seconds * sr)) / sr
    out = np.zeros_like(t)
    if not t.size:
        return out.astype(np.float32)
    for k in range(1, 25):
        f = k * f0
        out += np.exp(-(((f - 700.0) / 500.0) ** 2)) * np.sin(2 * np.pi * f * t) / k**0.3
    return (amplitude * out / max(float(np.max(np.abs(out))), 1e-9)).astype(np.float32)


def speech_like(sr: int = SR) -> np.ndarray:
    """Silence, vowel, silence, vowel, silence (0.5 s each)."""
    gap = np.zeros(sr // 2, dtype=np.float32)
    return np.concatenate([gap, vowel(0.5, sr=sr), gap, vowel(0.5, f0=190, sr=sr), gap])


def stream_in_chunks(audio: np.ndarray, sizes: list[int], fps: float = 25) -> MouthFrames:
    stream = EnergyBackend().open_stream(fps=fps)
    parts, pos, i = [], 0, 0
    while pos < len(audio):
        n = sizes[i % len(sizes)]
        parts.append(stream.push(audio[pos : pos + n]))
        pos += n
        i += 1
    parts.append(stream.flush())
    return MouthFrames.concat(parts)


@pytest.mark.parametrize("sizes", [[1], [7, 0, 333], [640], [641, 1, 5000], [100_000]])
def test_streaming_any_chunking_equals_offline(sizes: list[int]) -> None:
    audio = speech_like()[: SR + 1234]  # not a whole number of frames
    offline = EnergyBackend().analyze(audio, fps=25)
    streamed = stream_in_chunks(audio, sizes)
    np.testing.assert_array_equal(streamed.params, offline.params)


@pytest.mark.parametrize(("n", "fps"), [(0, 25), (1, 25), (639, 25), (640, 25), (641, 25), (16_000, 30), (12_345, 24)])
def test_total_frames_is_ceil_of_duration(n: int, fps: int) -> None:
    frames = EnergyBackend().analyze(vowel(n / SR), fps=fps)
    assert len(frames) == math.ceil(n * fps / SR)
    assert frames.params.shape == (len(frames), len(MOUTH_PARAMS))
    assert frames.params.dtype == np.float32


def test_push_returns_only_complete_frames_and_flush_pads_the_rest() -> None:
    stream = EnergyBackend().open_stream(fps=25)
    assert len(stream.push(vowel(0.03))) == 0  # 480 samples: no frame complete yet
    assert len(stream.push(vowel(0.02))) == 1  # 800 samples: frame 0 complete
    assert len(stream.flush()) == 1  # 160 leftover samples become a padded frame


def test_silence_gives_rest_pose() -> None:
    frames = EnergyBackend().analyze(np.zeros(SR, dtype=np.float32), fps=25)
    np.testing.assert_array_equal(frames.params, np.tile(REST_POSE, (25, 1)))


def test_speech_opens_the_mouth_and_silence_closes_it() -> None:
    frames = EnergyBackend().analyze(speech_like(), fps=25).params
    jaw = frames[:, JAW_OPEN]
    # 25 fps: silence frames 0-12, vowel 12-25, silence 25-37, vowel 37-50, silence 50-62.
    first_vowel, second_gap_end = jaw[14:25], jaw[33:37]
    assert jaw[:12].max() == 0.0  # leading silence: closed
    assert first_vowel.min() > 0.5  # a loud vowel: clearly open
    assert second_gap_end.max() == 0.0  # the release has closed it again before the next vowel
    np.testing.assert_allclose(frames[:, LIPS_CLOSED], 1.0 - jaw, atol=1e-6)
    assert ((frames >= 0) & (frames <= 1)).all()


def test_louder_opens_wider() -> None:
    backend = EnergyBackend()
    quiet = backend.analyze(vowel(0.4, amplitude=0.05), fps=25).params[5:, JAW_OPEN].mean()
    loud = backend.analyze(vowel(0.4, amplitude=0.3), fps=25).params[5:, JAW_OPEN].mean()
    assert 0 < quiet < loud


def test_dc_offset_is_removed() -> None:
    dc_only = np.full(SR // 2, 0.5, dtype=np.float32)
    assert EnergyBackend().analyze(dc_only, fps=25).params[:, JAW_OPEN].max() == 0.0
    tone = vowel(0.5, amplitude=0.2)
    plain = EnergyBackend().analyze(tone, fps=25).params
    shifted = EnergyBackend().analyze(tone + 0.4, fps=25).params
    np.testing.assert_allclose(shifted, plain, atol=1e-4)


def test_clipping_nan_and_empty_pushes_do_not_raise() -> None:
    stream = EnergyBackend().open_stream(fps=25)
    assert len(stream.push(np.zeros(0, dtype=np.float32))) == 0
    clipped = np.clip(vowel(0.2, amplitude=5.0), -1, 1)
    out = stream.push(clipped)
    assert len(out) == 5 and np.isfinite(out.params).all()
    bad = np.array([np.nan, np.inf, -np.inf] * 300, dtype=np.float32)
    out = MouthFrames.concat([stream.push(bad), stream.flush()])
    assert np.isfinite(out.params).all()


def test_reset_starts_a_new_segment() -> None:
    audio = speech_like()
    stream = EnergyBackend().open_stream(fps=25)
    stream.push(vowel(0.37))  # half a segment with state and leftover samples
    stream.reset()
    fresh = MouthFrames.concat([stream.push(audio), stream.flush()])
    np.testing.assert_array_equal(fresh.params, EnergyBackend().analyze(audio, fps=25).params)


def test_options_are_closed_and_checked() -> None:
    with pytest.raises(ValidationError):
        EnergyOptions.model_validate({"gate": -40})
    with pytest.raises(ValidationError):
        EnergyOptions(gate_db=-10, full_db=-20)
    sensitive = EnergyBackend(EnergyOptions(gate_db=-70, full_db=-50))
    quiet = vowel(0.4, amplitude=0.003)
    assert EnergyBackend().analyze(quiet, fps=25).params[:, JAW_OPEN].max() == 0.0
    assert sensitive.analyze(quiet, fps=25).params[5:, JAW_OPEN].min() > 0.3


def test_registered_through_the_builtin_plugin() -> None:
    from avaluma.core.config import ProviderRef
    from avaluma.core.plugins import load_registry

    registry = load_registry(entry_points=False)
    assert "energy" in registry.names("lipsync_backend")
    backend = registry.create("lipsync_backend", ProviderRef(name="energy", options={"gate_db": -50}))
    assert isinstance(backend, EnergyBackend)
    assert backend.options.gate_db == -50
