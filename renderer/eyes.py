"""Blinks: the upper eyelid slides down over the eye, column by column, in a small region around each eye.

For each column the region from a fixed line above the eye (the brow side of the lid) down to the upper lid is
stretched down to the lid's new position, so the lid's own skin covers the eye; the lower lid rises a little to meet
it. The eye below the moving lid stays where it is (the eyeball does not move with the lid). Columns beyond the eye's
corners have no gap to close and stay untouched, so there are no seams. A faint lash shadow follows the lid edge.

Gaze: the iris and pupil shift inside the eye opening (between the lid contours), the lids and skin stay. The eye
is remapped (backward, bilinear) by a displacement that is the gaze offset in the middle of the eye and falls to zero
at the corners (a half sine across the eye) and at the lids (within a pixel, more where a lid slopes), so the sclera
on the side the iris leaves stretches and the other side compresses: the uncovered side is filled with the eye's own
sclera. Where a lid slopes the fade is widened so that the shift never grows faster than 0.8 px per px along a row.
The vertical shift falls off towards the lids (sin^2 across the opening) and is capped at a quarter of the
opening's height, so a narrow eye looks up or down only a little rather than folding. The two shifts are applied as
two passes (along the rows, then along the columns), each one-to-one, so the whole map never folds. A blink is drawn
over the shifted eye (the lid warp reads the gazed eye). Video avatars have no eye rigs and get no gaze.
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


def _lipschitz(g: F32, limit: float | F32, *, axis: int) -> F32:
    """The largest field below ``g`` that changes by at most ``limit`` per pixel along ``axis`` (``limit`` a number
    or one per line along the other axis): two sweeps of a running minimum."""
    out = np.moveaxis(g.copy(), axis, 0)
    step = np.broadcast_to(np.asarray(limit, np.float32).reshape(-1), out.shape[1:])
    for i in range(1, out.shape[0]):
        np.minimum(out[i], out[i - 1] + step, out=out[i])
    for i in range(out.shape[0] - 2, -1, -1):
        np.minimum(out[i], out[i + 1] + step, out=out[i])
    return np.ascontiguousarray(np.moveaxis(out, 0, axis))


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
        # Inside the opening, fading to zero at each lid over a pixel.
        inside = np.clip(yb - up, 0.0, 1.0) * np.clip(low - yb, 0.0, 1.0)
        opening = np.maximum(low - up, 1e-3)
        s = np.clip((yb - up) / opening, 0.0, 1.0)
        # Where a lid slopes, its line crosses the rows, and a one-pixel fade would make the shift along a row jump
        # by the whole offset: capped to grow at most 0.8 px per px at the largest gaze, so the sideways pass is
        # one-to-one (the fade simply widens there).
        self._gx = _lipschitz((across * inside).astype(np.float32), 0.8 / (MAX_GAZE * ew), axis=1)
        # Up and down: most in the middle of the opening, flat at the lids (sin^2); at most 0.8 px per px too.
        gy = (across * inside * np.sin(np.pi * s) ** 2).astype(np.float32)
        self._gy = _lipschitz(gy, 0.8 / np.maximum(MAX_GAZE_Y_OPENING * (low - up), 1e-3), axis=0)
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
        """The ROI (float32) with the iris shifted by ``gaze``: sideways along the rows, then up or down along the
        columns (each pass one-to-one, so their composition is)."""
        u, v = self.gaze_field(gaze)
        r0, r1 = self._band
        out = self._base.copy()
        eye = out[r0:r1]
        n, w = eye.shape[:2]
        if u.any():
            sx = np.clip(self._bx - u, 0.0, w - 1.001)
            ix = sx.astype(np.int32)
            fx = (sx - ix)[..., None]
            rows = np.arange(n)[:, None]
            eye[...] = eye[rows, ix] * (1.0 - fx) + eye[rows, ix + 1] * fx
        if v.any():
            # v is zero on the band's first and last rows and grows slower than the rows: reads stay in the band.
            sy = np.clip(self._by - np.float32(r0) - v, 0.0, n - 1.001)
            iy = sy.astype(np.int32)
            fy = (sy - iy)[..., None]
            cols = np.arange(w)[None, :]
            eye[...] = eye[iy, cols] * (1.0 - fy) + eye[iy + 1, cols] * fy
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
