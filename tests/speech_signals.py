"""Synthetic speech-like signals with known prosody, for the prosody and expression tests (16 kHz mono float32).

Importable from any test (``tests/`` is on ``sys.path`` through its conftest): ``from speech_signals import ...``.
A "syllable" is a harmonic buzz (a voice) under a raised-cosine envelope, with its own f0 (optionally gliding) and
level; phrases are syllables with short gaps, separated by pauses.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

SR = 16_000
F32 = npt.NDArray[np.float32]


def syllable(f0: float, *, seconds: float = 0.2, level_db: float = -20.0, glide_st: float = 0.0, seed: int = 0) -> F32:
    """One voiced syllable: f0 gliding by ``glide_st`` semitones over it, RMS near ``level_db`` dBFS at its peak."""
    n = round(seconds * SR)
    t = np.arange(n) / SR
    f = f0 * 2.0 ** (glide_st * t / seconds / 12.0)
    phase = 2 * np.pi * np.cumsum(f) / SR
    voice = sum(np.sin(k * phase) / k for k in range(1, 12))
    rng = np.random.default_rng(seed)
    voice = voice / np.sqrt(np.mean(voice**2)) + 0.03 * rng.standard_normal(n)
    envelope = np.sin(np.pi * np.arange(n) / n) ** 0.7
    return (10 ** (level_db / 20) * envelope * voice).astype(np.float32)


def phrase(
    f0s: Sequence[float],
    *,
    levels_db: Sequence[float] | None = None,
    glides_st: Sequence[float] | None = None,
    seconds: float = 0.2,
    gap_s: float = 0.06,
    seed: int = 0,
) -> F32:
    """Syllables with ``gap_s`` of silence between them."""
    levels = levels_db if levels_db is not None else [-20.0] * len(f0s)
    glides = glides_st if glides_st is not None else [0.0] * len(f0s)
    gap = np.zeros(round(gap_s * SR), np.float32)
    parts: list[F32] = []
    for k, (f0, level, glide) in enumerate(zip(f0s, levels, glides, strict=True)):
        parts += [syllable(f0, seconds=seconds, level_db=level, glide_st=glide, seed=seed + k), gap]
    return np.concatenate(parts[:-1])


def speech(phrases: Sequence[F32], pause_s: float = 0.5) -> F32:
    """Phrases separated by pauses, with a pause before the first and after the last."""
    pause = np.zeros(round(pause_s * SR), np.float32)
    parts: list[F32] = [pause]
    for p in phrases:
        parts += [p, pause]
    return np.concatenate(parts)


def monotone(seconds: float, f0: float = 120.0, seed: int = 0) -> F32:
    """Equal syllables on one pitch, in phrases of eight: speech with no prosody at all."""
    n = max(1, round(seconds / 2.6))
    return speech([phrase([f0] * 8, seed=seed + 10 * k) for k in range(n)])


def lively(seed: int = 0, f0: float = 120.0) -> tuple[F32, list[float]]:
    """Phrases of seven syllables around ``f0`` in which one syllable is louder and higher with a rising pitch (a
    pitch accent); returns the audio and the times (s) of the accented syllables' centres."""
    rng = np.random.default_rng(seed)
    phrases, centres = [], []
    t = 0.5
    for k in range(4):
        accented = int(rng.integers(2, 6))
        f0s = [f0 * 2 ** (float(rng.uniform(-0.7, 0.7)) / 12) for _ in range(7)]
        levels = [-20.0 + float(rng.uniform(-1, 1)) for _ in range(7)]
        glides = [0.0] * 7
        f0s[accented] = f0 * 2 ** (4 / 12)
        levels[accented] = -14.0
        glides[accented] = 3.0
        phrases.append(phrase(f0s, levels_db=levels, glides_st=glides, seed=seed + 10 * k))
        centres.append(t + accented * 0.26 + 0.1)
        t += len(phrases[-1]) / SR + 0.5
    return speech(phrases), centres


def whisper(seconds: float, seed: int = 0) -> F32:
    """Syllable-shaped bursts of noise (no f0), like whispered speech."""
    rng = np.random.default_rng(seed)
    n = round(seconds * SR)
    t = np.arange(n) / SR
    envelope = np.clip(np.sin(2 * np.pi * 3.5 * t), 0, None) * (np.sin(2 * np.pi * 0.4 * t) > -0.3)
    noise = np.convolve(rng.standard_normal(n), np.ones(4) / 4, mode="same")
    return (0.15 * envelope * noise).astype(np.float32)


def white_noise(seconds: float, level: float = 0.1, seed: int = 0) -> F32:
    return (level * np.random.default_rng(seed).standard_normal(round(seconds * SR))).astype(np.float32)


def clicks(seconds: float, every_s: float = 0.37) -> F32:
    """Silence with a loud 2 ms click every ``every_s`` (a keyboard, a tapping finger)."""
    x = np.zeros(round(seconds * SR), np.float32)
    for start in range(0, len(x) - 32, round(every_s * SR)):
        x[start : start + 32] = np.hanning(32) * 0.9
    return x


def noisy(audio: F32, snr_db: float = 10.0, seed: int = 0) -> F32:
    """``audio`` with white noise ``snr_db`` below its speech level (the RMS of its non-silent samples)."""
    level = float(np.sqrt(np.mean(audio[audio != 0] ** 2)))
    return (audio + white_noise(len(audio) / SR, level * 10 ** (-snr_db / 20), seed)).astype(np.float32)


def shouted(audio: F32, gain: float = 30.0) -> F32:
    """Speech far too loud: clipped hard at full scale."""
    return np.clip(audio * gain, -1.0, 1.0).astype(np.float32)
