"""Temporal smoothing of mouth parameters without lag: a One Euro filter per parameter.

A fixed low-pass either jitters (high cut-off) or lags (low cut-off). The One Euro filter (Casiez et al., CHI 2012)
raises its cut-off with the signal's speed: small frame-to-frame noise is smoothed, a fast move (a jaw opening, a
bilabial closure) passes almost unchanged. Closures pass through directly: a "p" that is smoothed away is a lip-sync
error. When the input is the rest pose and the output is within ``snap`` of it, the output snaps to the rest pose
exactly, so the mouth really closes in silence.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from avaluma.renderer.lipsync.base import LIPS_CLOSED, REST_POSE

F32 = npt.NDArray[np.float32]


def _alpha(cutoff_hz: float, fps: float) -> float:
    tau = 1.0 / (2.0 * math.pi * cutoff_hz)
    return 1.0 / (1.0 + tau * fps)


class MouthSmoother:
    """Per-session filter; :meth:`__call__` takes the raw parameters of a frame and returns the smoothed ones."""

    def __init__(
        self, *, fps: float, min_cutoff_hz: float = 3.0, beta: float = 2.5, d_cutoff_hz: float = 4.0, snap: float = 0.04
    ) -> None:
        self._fps = fps
        self._min_cutoff = min_cutoff_hz
        self._beta = beta
        self._d_alpha = _alpha(d_cutoff_hz, fps)
        self._snap = snap
        self.reset()

    def reset(self) -> None:
        """Forget the history (after an interruption the mouth starts from rest)."""
        self._x: F32 = REST_POSE.copy()
        self._dx: F32 = np.zeros_like(REST_POSE)

    def __call__(self, params: npt.NDArray[np.floating]) -> F32:
        x = np.clip(np.asarray(params, dtype=np.float32), 0.0, 1.0)
        dx = (x - self._x) * self._fps
        self._dx = self._dx + self._d_alpha * (dx - self._dx)
        cutoff = self._min_cutoff + self._beta * np.abs(self._dx)
        tau = 1.0 / (2.0 * math.pi * cutoff)
        a = (1.0 / (1.0 + tau * self._fps)).astype(np.float32)
        out = self._x + a * (x - self._x)
        # Closing the lips is never delayed.
        if x[LIPS_CLOSED] > out[LIPS_CLOSED]:
            out[LIPS_CLOSED] = x[LIPS_CLOSED]
        if np.array_equal(x, REST_POSE) and float(np.abs(out - REST_POSE).max()) < self._snap:
            out = REST_POSE.copy()
        self._x = out.astype(np.float32)
        return self._x.copy()
