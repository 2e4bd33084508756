"""Blinks: the upper eyelid slides down over the eye, column by column, in a small region around each eye.

For each column the region from a fixed line above the eye (the brow side of the lid) down to the upper lid is
stretched down to the lid's new position, so the lid's own skin covers the eye; the lower lid rises a little to meet
it. The eye below the moving lid stays where it is (the eyeball does not move with the lid). Columns beyond the eye's
corners have no gap to close and stay untouched, so there are no seams. A faint lash shadow follows the lid edge.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from avaluma.renderer.avatar import EyeRig

F32 = npt.NDArray[np.float32]

#: Where the lids meet, as a fraction of the way from the upper to the lower lid.
MEET = 0.8


class EyelidWarp:
    """Precomputed geometry of one eye; read-only after construction (shared by every session of an avatar)."""

    def __init__(self, base: npt.NDArray[np.uint8], eye: EyeRig) -> None:
        h, w = base.shape[:2]
        ew = eye.width
        ux = np.array([p[0] for p in eye.upper], np.float32)
        uy = np.array([p[1] for p in eye.upper], np.float32)
        lx = np.array([p[0] for p in eye.lower], np.float32)
        ly = np.array([p[1] for p in eye.lower], np.float32)
        x0 = int(max(0, np.floor(min(ux[0], lx[0]) - 0.1 * ew)))
        x1 = int(min(w, np.ceil(max(ux[-1], lx[-1]) + 0.1 * ew)))
        y0 = int(max(0, np.floor(uy.min() - 0.45 * ew)))
        y1 = int(min(h, np.ceil(ly.max() + 0.2 * ew)))
        self.roi = (y0, y1, x0, x1)
        xs = np.arange(x0, x1, dtype=np.float32)
        self._up = np.interp(xs, ux, uy).astype(np.float32)
        self._low = np.maximum(np.interp(xs, lx, ly).astype(np.float32), self._up)
        self._top = float(y0) + 1.0
        self._bottom = float(y1) - 1.0
        self._Y = np.arange(y0, y1, dtype=np.float32)[:, None]
        self._base = base[y0:y1, x0:x1].astype(np.float32)
        self._lash_width = max(0.6, 0.03 * ew)

    def render_roi(self, blink: float) -> npt.NDArray[np.uint8]:
        """The ROI with the eye ``blink`` closed (0 open .. 1 shut)."""
        Y, up, low = self._Y, self._up[None, :], self._low[None, :]
        meet = up + MEET * (low - up)
        up_out = up + blink * (meet - up)
        low_out = low + blink * (meet - low)
        top, bottom = self._top, self._bottom
        above = top + (Y - top) * (up - top) / np.maximum(up_out - top, 1e-3)
        below = low + (Y - low_out) * (bottom - low) / np.maximum(bottom - low_out, 1e-3)
        sy = np.where(top > Y, Y, np.where(up_out > Y, above, np.where(low_out > Y, Y, below)))
        sy = np.where(bottom < Y, Y, sy)
        y0 = self.roi[0]
        fy = np.clip(sy - y0, 0.0, self._base.shape[0] - 1.001)
        iy = fy.astype(np.int32)
        ay = (fy - iy)[..., None]
        cols = np.arange(self._base.shape[1])[None, :]
        out = self._base[iy, cols] * (1.0 - ay) + self._base[iy + 1, cols] * ay
        # Lashes darken the lid's edge; more as the lid comes down (a closed eye is a dark line).
        lash = np.exp(-(((Y - up_out) / self._lash_width) ** 2)) * (0.25 + 0.35 * blink) * (low - up > 0.5)
        out = out * (1.0 - lash[..., None] * min(1.0, 4.0 * blink))
        pixels: npt.NDArray[np.uint8] = np.clip(out + 0.5, 0, 255).astype(np.uint8)
        return pixels
