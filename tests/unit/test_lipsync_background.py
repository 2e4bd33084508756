"""Recorded background sound for lip-sync training (``training/background.py``): reading a folder of recordings,
silence clips cut from them, and the mel-power mix under speech windows."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import pytest

from avaluma.renderer.lipsync.features import logmel
from avaluma.renderer.lipsync.training import background

torch = pytest.importorskip("torch", reason="torch is not installed: pip install 'avaluma[train]'")

SR = 16_000


def _wav(path: Path, audio: np.ndarray, rate: int = SR) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes())


def _folder(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    t = np.arange(3 * 44_100) / 44_100
    _wav(tmp_path / "chord.wav", 0.3 * np.sin(2 * np.pi * 220 * t) + 0.2 * np.sin(2 * np.pi * 330 * t), 44_100)
    sub = tmp_path / "effects"
    sub.mkdir()
    _wav(sub / "noise.wav", 0.05 * rng.standard_normal(2 * SR))
    _wav(sub / "click.wav", 0.5 * rng.standard_normal(SR // 10))  # too short: skipped
    (tmp_path / "broken.ogg").write_bytes(b"OggS not really")  # does not decode: skipped
    (tmp_path / "notes.txt").write_text("not audio")  # not an audio file name: ignored
    (tmp_path / "again.wav").symlink_to(sub / "noise.wav")  # the same file twice: read once
    return tmp_path


def test_recordings_are_read_at_16k_and_the_reference_level(tmp_path: Path) -> None:
    said: list[str] = []
    recs = background.load_recordings(_folder(tmp_path), progress=said.append)
    assert len(recs) == 2
    assert sorted(len(x) for x in recs) == pytest.approx([2 * SR, 3 * SR], abs=SR // 100)
    for x in recs:
        assert x.dtype == np.float32
        assert np.sqrt(np.mean(x.astype(np.float64) ** 2)) == pytest.approx(background.REFERENCE_RMS, rel=1e-3)
    assert "2 recordings" in said[0] and "2 skipped" in said[0]


def test_silence_clips_are_short_finite_and_reproducible(tmp_path: Path) -> None:
    recs = background.load_recordings(_folder(tmp_path), progress=lambda _: None)
    clips = background.silence_clips(recs, 12, seed=1)
    assert len(clips) == 12
    for c in clips:
        assert 0.4 * SR <= len(c) <= 4.5 * SR  # 0.5-4 s, codecs may trim or pad a little
        assert np.isfinite(c).all() and np.abs(c).max() <= 1.0
    again = background.silence_clips(recs, 12, seed=1)
    assert all(np.array_equal(a, b) for a, b in zip(clips, again, strict=True))


def test_mix_under_adds_the_recording_at_the_drawn_snr() -> None:
    rng = np.random.default_rng(0)
    speech = 0.1 * rng.standard_normal(SR).astype(np.float32)
    music = 0.1 * np.sin(2 * np.pi * 440 * np.arange(4 * SR) / SR).astype(np.float32)
    x = torch.from_numpy(np.stack([logmel(speech)] * 4))
    bank = background.power_bank([music])

    assert background.mix_under(x, bank, rng, 0.0, (10.0, 10.0)) is x  # no window drawn: the same tensor
    mixed = background.mix_under(x, bank, rng, 1.0, (10.0, 10.0))
    power = (x.exp() - 1e-8).sum(-1).mean(-1)
    added = (mixed.exp() - x.exp()).sum(-1).mean(-1)
    np.testing.assert_allclose((power / added).numpy(), 10.0, rtol=1e-3)  # 10 dB below each window's speech
    # The tone's band gains power; the features stay finite.
    assert torch.isfinite(mixed).all()
    band = int(np.argmax(bank.mean(0)))
    assert ((mixed[:, :, band] - x[:, :, band]).mean(-1) > 1.0).all()  # e-fold in power on average
