"""Test signals shared by the benchmarks (importable as ``signals`` from any bench script: bench/ is on sys.path)."""

from __future__ import annotations

import numpy as np

SR = 16_000


def speech_like(seconds: float, seed: int) -> np.ndarray:
    """A voiced 120 Hz buzz with syllable-rate (3 Hz) bursts and a little noise: speech-shaped load, 16 kHz mono."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SR)
    t = np.arange(n) / SR
    voiced = sum(np.sin(2 * np.pi * 120 * k * t) / k for k in range(1, 10))
    envelope = np.clip(np.sin(2 * np.pi * 3 * t), 0, None) ** 2
    return (0.3 * envelope * (voiced / 3 + rng.standard_normal(n) * 0.05)).astype(np.float32)
