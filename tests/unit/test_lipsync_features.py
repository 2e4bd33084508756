"""Streaming log-mel features: same result in any chunking, blind to DC, silence is a known constant."""

from __future__ import annotations

import numpy as np
import pytest

from avaluma.renderer.lipsync.features import N_MELS, SILENCE_VALUE, StreamingLogMel, logmel, n_feature_frames


def _speechlike(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n) / 16000
    tone = 0.3 * np.sin(2 * np.pi * 180 * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t))
    return (tone + 0.02 * rng.standard_normal(n)).astype(np.float32)


@pytest.mark.parametrize("n", [0, 1, 159, 160, 161, 401, 16000])
def test_one_frame_per_started_10ms(n: int) -> None:
    assert logmel(np.zeros(n, np.float32)).shape == (n_feature_frames(n), N_MELS)


@pytest.mark.parametrize("chunk", [1, 37, 160, 4000])
def test_streaming_equals_offline(chunk: int) -> None:
    x = _speechlike(8123)
    stream = StreamingLogMel()
    parts = [stream.push(x[i : i + chunk]) for i in range(0, len(x), chunk)]
    parts.append(stream.flush())
    np.testing.assert_allclose(np.concatenate(parts), logmel(x), rtol=0, atol=1e-4)


def test_silence_features_are_the_padding_constant() -> None:
    np.testing.assert_allclose(logmel(np.zeros(1600, np.float32)), SILENCE_VALUE, atol=1e-3)


def test_dc_offset_is_removed() -> None:
    x = _speechlike(4800)
    np.testing.assert_allclose(logmel(x + 0.25)[2:-2], logmel(x)[2:-2], atol=1e-2)


def test_flush_resets_the_stream() -> None:
    x = _speechlike(1000)
    stream = StreamingLogMel()
    first = np.concatenate([stream.push(x), stream.flush()])
    second = np.concatenate([stream.push(x), stream.flush()])
    np.testing.assert_array_equal(first, second)
