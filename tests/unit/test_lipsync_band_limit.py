"""The telephone band simulated on log-mel features during training (``train._band_limit``) looks like real 8 kHz
audio: what a 16 -> 8 -> 16 kHz round trip does to the same sound."""

from __future__ import annotations

import numpy as np
import pytest

from avaluma.renderer.lipsync.features import logmel

torch = pytest.importorskip("torch", reason="torch is not installed: pip install 'avaluma[train]'")
soxr = pytest.importorskip("soxr")

from avaluma.renderer.lipsync.training.train import _band_limit  # noqa: E402


def test_the_simulated_band_matches_a_real_8k_round_trip() -> None:
    rng = np.random.default_rng(0)
    sound = (0.1 * rng.standard_normal(16_000)).astype(np.float32)
    phone = np.asarray(soxr.resample(soxr.resample(sound, 16_000, 8_000), 8_000, 16_000), np.float32)[:16_000]
    full = torch.from_numpy(logmel(sound))[None]
    real = torch.from_numpy(logmel(phone))[None]
    simulated = _band_limit(full, np.array([4000.0]))
    inner, high = slice(3, -3), slice(60, None)  # frames clear of the resampler's edges; mel bands above ~4 kHz
    assert (full - real)[0, inner, high].abs().mean() > 10.0  # the round trip empties them (natural log of power)
    assert (simulated - real)[0, inner, high].abs().mean() < 1.0  # measured 0.74 (the filters near 4 kHz differ)
    assert (simulated - real)[0, inner, :50].abs().mean() < 0.05  # and leaves the bands below ~2.8 kHz alone


def test_a_cutoff_at_nyquist_changes_nothing() -> None:
    x = torch.from_numpy(logmel((0.1 * np.random.default_rng(1).standard_normal(4_000)).astype(np.float32)))[None]
    np.testing.assert_allclose(_band_limit(x, np.array([8000.0])).numpy(), x.numpy(), atol=1e-4)
