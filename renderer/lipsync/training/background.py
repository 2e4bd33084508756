"""Recorded sound where nobody speaks (music, sound effects), for training: the mouth stays shut under music alone,
and speech over music still moves it.

The generated non-speech of :func:`augment.nonspeech` (sine-note music, breaths, hum) does not cover real music:
version 2 kept the lips shut on only 74 % of the frames of real instrumental music it never heard (4-53 % of each
track's frames open). The recordings come from a folder (``--background DIR``, ``$AVALUMA_BACKGROUND_AUDIO``, or
``build/background`` filled by ``scripts/fetch-background-audio``); they are never committed, and the model card names
the shipped model's. Two uses, both labelled as what they are:

* :func:`silence_clips`: excerpts of the recordings alone, degraded like deployment audio, labelled silence;
* :func:`mix_under`: during training, a recording mixed under a share of the speech windows (``TrainConfig``), in the
  mel-power domain (the features are log mel power, so a sum of sounds is a sum of powers up to the cross terms,
  which average out), labels unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from avaluma.renderer.lipsync.base import LIPSYNC_SAMPLE_RATE
from avaluma.renderer.lipsync.features import LOG_FLOOR, logmel

if TYPE_CHECKING:
    import torch

Audio = npt.NDArray[np.float32]

AUDIO_SUFFIXES = (".ogg", ".oga", ".mp3", ".wav", ".flac", ".opus", ".m4a")
#: Recordings are brought to this RMS before use (the mixes and levels are relative to it).
REFERENCE_RMS = 0.1


def decode(path: Path, container_format: str | None = None) -> Audio:
    """A recording as 16 kHz mono float32 (PyAV: anything FFmpeg reads; ``container_format`` for raw streams such
    as ``g722`` that carry no header)."""
    import av

    chunks: list[npt.NDArray[Any]] = []
    with av.open(str(path), format=container_format) as container:
        resampler = av.AudioResampler(format="flt", layout="mono", rate=LIPSYNC_SAMPLE_RATE)
        for frame in container.decode(audio=0):
            chunks += [f.to_ndarray().reshape(-1) for f in resampler.resample(frame)]
        chunks += [f.to_ndarray().reshape(-1) for f in resampler.resample(None)]
    return np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, np.float32)


def load_recordings(folder: Path, progress: Callable[[str], None] = print) -> list[Audio]:
    """Every audio file under ``folder`` once (sorted, so the same folder gives the same list), at
    :data:`REFERENCE_RMS`. Files that do not decode or hold under half a second of sound are skipped and counted."""
    files, seen = [], set()
    for path in sorted(folder.rglob("*")):  # a file linked from several places (Debian does that) is read once
        if path.suffix.lower() in AUDIO_SUFFIXES and path.is_file() and (real := path.resolve()) not in seen:
            seen.add(real)
            files.append(path)
    out: list[Audio] = []
    skipped = 0
    for path in files:
        try:
            x = decode(path)
        except Exception:  # any file that does not decode is skipped, and counted below
            skipped += 1
            continue
        rms = float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) if len(x) else 0.0
        if len(x) < LIPSYNC_SAMPLE_RATE // 2 or rms < 1e-4:
            skipped += 1
            continue
        out.append((x * (REFERENCE_RMS / rms)).astype(np.float32))
    seconds = sum(len(x) for x in out) / LIPSYNC_SAMPLE_RATE
    progress(f"background audio: {len(out)} recordings, {seconds / 60:.1f} min from {folder} ({skipped} skipped)")
    return out


def excerpt(recordings: list[Audio], rng: np.random.Generator, seconds: float) -> Audio:
    """A random stretch of a random recording (the whole recording when it is shorter)."""
    x = recordings[int(rng.integers(len(recordings)))]
    n = int(seconds * LIPSYNC_SAMPLE_RATE)
    start = int(rng.integers(0, max(1, len(x) - n)))
    return x[start : start + n]


def silence_clips(recordings: list[Audio], n: int, seed: int) -> list[Audio]:
    """``n`` excerpts of 0.5-4 s, each through a random part of the deployment chain (room, band, codec) and at a
    random level (:func:`augment.level`): sound that a closed mouth answers."""
    from avaluma.renderer.lipsync.training import augment

    rng = np.random.default_rng([seed, 13])
    clips = []
    for _ in range(n):
        x = excerpt(recordings, rng, float(rng.uniform(0.5, 4.0)))
        if rng.random() < 0.35:
            x = augment.reverb(x, rng)
        if rng.random() < 0.3:
            x = augment.band_limit(x, rng)
        if rng.random() < 0.3:
            x = augment.random_codec(x, rng)
        clips.append(augment.level(x, rng))
    return clips


def power_bank(recordings: list[Audio]) -> npt.NDArray[np.float32]:
    """Mel power frames ``[n, N_MELS]`` of all recordings, one after another (for :func:`mix_under`)."""
    feats = np.concatenate([logmel(x) for x in recordings])
    power: npt.NDArray[np.float32] = np.maximum(np.exp(feats) - LOG_FLOOR, 0.0).astype(np.float32)
    return power


def mix_under(
    x: torch.Tensor, bank: npt.NDArray[np.float32], rng: np.random.Generator, share: float, snr_db: tuple[float, float]
) -> torch.Tensor:
    """Mix a random stretch of ``bank`` under a random ``share`` of the windows ``x`` (``[batch, time, N_MELS]`` log
    mel), each at an SNR drawn from ``snr_db`` against the window's own mean power. Other windows are returned as
    they are."""
    import torch

    batch, length, _ = x.shape
    chosen = np.flatnonzero(rng.random(batch) < share)
    if len(chosen) == 0 or len(bank) <= length:
        return x
    out = x.clone()
    for i in chosen:
        start = int(rng.integers(0, len(bank) - length))
        music = torch.from_numpy(bank[start : start + length])
        speech = (out[i].exp() - LOG_FLOOR).clamp(min=0.0)
        gain = speech.sum(-1).mean() / (music.sum(-1).mean() + 1e-12) / 10 ** (rng.uniform(*snr_db) / 10)
        out[i] = torch.log(speech + gain * music + LOG_FLOOR)
    return out
