"""Blinks: the upper eyelid slides down over the eye, column by column, in a small region around each eye.

For each column the region from a fixed line above the eye (the brow side of the lid) down to the upper lid is
stretched down to the lid's new position, so the lid's own skin covers the eye; the lower lid rises a little to meet
it. The eye below the moving lid stays where it is (the eyeball does not move with the lid). Columns beyond the eye's
corners have no gap to close and stay untouched, so there are no seams. A faint lash shadow follows the lid edge.

Gaze: the iris and pupil shift inside the eye opening (between the lid contours), the lids and skin stay. The eye
is remapped (backward, bilinear) by a displacement that is the gaze offset in the middle of the eye and falls to zero
at the corners (a half sine across the eye) and at the lids (within about a pixel), so the sclera on the side the
iris leaves stretches and the other side compresses: the uncovered side is filled with the eye's own sclera. The
vertical shift also falls off towards the lids (a half sine across the opening) and is capped at a quarter of the
opening's height, so a narrow eye looks up or down only a little rather than folding. Both are small enough that
the map never folds (slopes below 1). A blink is drawn over the shifted eye (the lid warp reads the gazed eye).
Video avatars have no eye rigs and get no gaze.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from avaluma.renderer.avatar import EyeRig

F32 = npt.NDArray[np.float32]

#: Where the lids meet, as a fraction of the way from the upper to the lower lid.
MEET = 0.8
#: Largest gaze offset, as a fraction of the eye width (a cap on whatever the expression asks for). The horizontal
#: displacement's slope across the eye is at most pi * MAX_GAZE (< 1: the remap never folds).
MAX_GAZE = 0.15
#: Largest vertical iris shift, as a fraction of the opening's height in that column (slope at most pi * this).
MAX_GAZE_Y_OPENING = 0.25
#: Gaze offsets below this (fractions of the eye width) are treated as zero: the eye renders as built.
GAZE_EPS = 1e-4


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
        self.eye_width = float(ew)
        # Gaze: the rows of the opening (the band the remap touches) and per pixel of the band its weights.
        band0 = int(max(y0, np.floor(self._up.min()) - 1))
        band1 = int(min(y1, np.ceil(self._low.max()) + 2))
        self._band = (band0 - y0, band1 - y0)
        yb = np.arange(band0, band1, dtype=np.float32)[:, None]
        up, low = self._up[None, :], self._low[None, :]
        t = np.clip((xs - float(ux[0])) / max(float(ux[-1] - ux[0]), 1.0), 0.0, 1.0)[None, :]
        across = np.sin(np.pi * t)  # 0 at the corners, 1 mid-eye
        # Inside the opening, fading over a pixel at each lid (pixel centres on the lid line get half).
        inside = np.clip(yb - up + 0.5, 0.0, 1.0) * np.clip(low - yb + 0.5, 0.0, 1.0)
        opening = np.maximum(low - up, 1e-3)
        s = np.clip((yb - up) / opening, 0.0, 1.0)
        self._gx = (across * inside).astype(np.float32)
        self._gy = (across * inside * np.sin(np.pi * s)).astype(np.float32)
        self._gy_cap = (MAX_GAZE_Y_OPENING * (low - up)).astype(np.float32)  # [1, w]: pixels
        self._bx = (xs - x0)[None, :].astype(np.float32)
        self._by = (yb - y0).astype(np.float32)

    def gaze_field(self, gaze: tuple[float, float]) -> tuple[F32, F32]:
        """The gaze displacement (u, v) in pixels over the opening's band of rows (``band`` rows of the ROI): the
        pixel at p shows the eye at p - (u, v). Zero outside the opening and at the corners; ``gaze`` (dx, dy) in
        fractions of the eye width, capped at :data:`MAX_GAZE`."""
        dx = float(np.clip(gaze[0], -MAX_GAZE, MAX_GAZE)) * self.eye_width
        dy = float(np.clip(gaze[1], -MAX_GAZE, MAX_GAZE)) * self.eye_width
        u: F32 = self._gx * np.float32(dx)
        v: F32 = self._gy * np.clip(np.float32(dy), -self._gy_cap, self._gy_cap)
        return u, v

    @property
    def band(self) -> tuple[int, int]:
        """Rows (r0, r1) of the ROI that a gaze can change."""
        return self._band

    def _gazed(self, gaze: tuple[float, float]) -> F32:
        """The ROI (float32) with the iris shifted by ``gaze``."""
        u, v = self.gaze_field(gaze)
        r0, r1 = self._band
        base = self._base
        hh, ww = base.shape[:2]
        sx = np.clip(self._bx - u, 0.0, ww - 1.001)
        sy = np.clip(self._by - v, 0.0, hh - 1.001)
        ix, iy = sx.astype(np.int32), sy.astype(np.int32)
        fx, fy = (sx - ix)[..., None], (sy - iy)[..., None]
        top = base[iy, ix] * (1.0 - fx) + base[iy, ix + 1] * fx
        bottom = base[iy + 1, ix] * (1.0 - fx) + base[iy + 1, ix + 1] * fx
        out = base.copy()
        out[r0:r1] = top * (1.0 - fy) + bottom * fy
        return out

    def render_roi(self, blink: float, *, gaze: tuple[float, float] = (0.0, 0.0)) -> npt.NDArray[np.uint8]:
        """The ROI with the eye ``blink`` closed (0 open .. 1 shut) and looking ``gaze`` (dx, dy) off centre, in
        fractions of the eye width (x right, y down; zero: the eye as built, byte-identical)."""
        looks = abs(gaze[0]) >= GAZE_EPS or abs(gaze[1]) >= GAZE_EPS
        src = self._gazed(gaze) if looks else self._base
        if blink <= 1e-3:
            open_eye: npt.NDArray[np.uint8] = np.clip(src + 0.5, 0, 255).astype(np.uint8)
            return open_eye
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
        cols = np.arange(src.shape[1])[None, :]
        # The lid warp reads the (gazed) eye: the lid slides over the iris wherever it looks.
        out = src[iy, cols] * (1.0 - ay) + src[iy + 1, cols] * ay
        # Lashes darken the lid's edge; more as the lid comes down (a closed eye is a dark line).
        lash = np.exp(-(((Y - up_out) / self._lash_width) ** 2)) * (0.25 + 0.35 * blink) * (low - up > 0.5)
        out = out * (1.0 - lash[..., None] * min(1.0, 4.0 * blink))
        pixels: npt.NDArray[np.uint8] = np.clip(out + 0.5, 0, 255).astype(np.uint8)
        return pixels
