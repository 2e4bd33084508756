"""Mapping between the model's 100 Hz feature frames and video frames at any rate up to 100 fps.

Video frame ``i`` covers ``[i / fps, (i + 1) / fps)`` seconds (the contract in :mod:`.base`); it pools the feature
frames whose centres, ``(m + 0.5) / 100`` s, fall inside it. At 25 fps that is exactly 4 frames each; at 30 fps 3 or 4.
"""

from __future__ import annotations

import math

from avaluma.renderer.lipsync.base import LIPSYNC_SAMPLE_RATE
from avaluma.renderer.lipsync.features import FEATURE_RATE

#: Above this each video frame would no longer own at least one feature frame.
MAX_FPS = FEATURE_RATE

# Frame boundaries for non-integer rates (29.97) land within float noise of a feature centre; round them consistently.
_EPS = 1e-9


def feature_range(i: int, fps: float) -> tuple[int, int]:
    """Feature frames ``[lo, hi)`` pooled into video frame ``i``."""
    lo = math.ceil(FEATURE_RATE * i / fps - 0.5 - _EPS)
    hi = math.ceil(FEATURE_RATE * (i + 1) / fps - 0.5 - _EPS)
    return max(lo, 0), hi


def n_video_frames(n_samples: int, fps: float) -> int:
    """Frames a segment of ``n_samples`` at 16 kHz yields: ``ceil(n * fps / 16000)``."""
    return math.ceil(n_samples * fps / LIPSYNC_SAMPLE_RATE - _EPS)
