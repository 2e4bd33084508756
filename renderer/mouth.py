"""The photo mouth: mouth parameters in, the pixels of a region around the mouth and jaw out.

Only a region of interest (ROI) is recomputed. Inside it a backward warp, column by column, moves the lower lip and
chin down (jaw open), the lips towards each other (lips closed: a photo that shows teeth closes its lips when speech
says so), and scales the mouth horizontally (stretch widens, rounding narrows). The gap that opens between the lips
is filled with a synthesised mouth interior: a cavity shaded darkest at its back, upper teeth under the upper lip
(kept from the photo when it shows them), lower teeth riding on the lower lip, and a tongue rising from the floor of
the mouth. Every displacement field is multiplied by a feather window that is exactly zero on the ROI border, so
there are no seams, and a zero parameter vector reproduces the base image exactly.

Everything that does not depend on the parameters (pixel grids, windows, colours) is computed once in the
constructor; :meth:`MouthWarp.render_into` is a few dozen vectorised numpy operations per tile of ROI rows (small
float32 temporaries, colour planes rather than interleaved RGB), and the mouth interior is computed only where the
gap shows. At 512x640 this is ~4x faster than whole-ROI float64 arrays (see bench/render.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from avaluma.renderer.avatar import MouthRig
from avaluma.renderer.lipsync.base import JAW_OPEN, LIPS_CLOSED, ROUNDING, STRETCH

F32 = npt.NDArray[np.float32]

#: Largest lip gap, as a fraction of the mouth width (a wide "ah").
MAX_OPEN = 0.38
#: Horizontal scale of the mouth at full stretch / full rounding.
STRETCH_GAIN = 0.18
ROUNDING_GAIN = 0.25
#: Photos whose lips are closer than this (px) at the centre get synthesised upper teeth.
TEETH_GAP_PX = 2.0
#: Lower teeth height and tooth width, as fractions of the mouth width.
LOWER_TEETH = 0.07
TOOTH_WIDTH = 0.105
#: Pixels per tile of the ROI rendered at once (the head region uses the same tiles): per-pixel temporaries of ~50 kB
#: stay in cache and are reused by malloc. With whole-ROI float64 temporaries at 512x640, fresh memory (page faults)
#: every frame cost as much as the arithmetic. 6k..16k pixels measured best on 512x512 and 512x640.
TILE_PIXELS = 12288

# Mouth interior colours (RGB, 0..255): a dark throat, darker where it is deepest, a reddish tongue near the floor.
_DEEP = np.array([26.0, 7.0, 9.0], dtype=np.float32)
_EDGE = np.array([92.0, 38.0, 42.0], dtype=np.float32)
_TONGUE = np.array([168.0, 78.0, 80.0], dtype=np.float32)
_TONGUE_DARK = np.array([110.0, 42.0, 46.0], dtype=np.float32)
_TEETH = np.array([212.0, 204.0, 188.0], dtype=np.float32)
# ...as colour planes, for broadcasting against per-pixel arrays.
_DEEP, _EDGE, _TONGUE, _TONGUE_DARK, _TEETH = (c[:, None, None] for c in (_DEEP, _EDGE, _TONGUE, _TONGUE_DARK, _TEETH))


def smoothstep(t: F32) -> F32:
    t = np.clip(t, 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


@dataclass(frozen=True, slots=True)
class MouthShape:
    """What a parameter vector means geometrically (all in [0, 1] except ``scale``)."""

    opening: float  #: lip gap, 0 shut .. 1 widest
    close: float  #: how much of a photo's resting lip gap is closed
    scale: float  #: horizontal scale of the mouth

    @property
    def is_rest(self) -> bool:
        return self.opening < 1e-3 and self.close < 1e-3 and abs(self.scale - 1.0) < 1e-4


def mouth_shape(params: npt.NDArray[np.floating], *, press: float = 0.0) -> MouthShape:
    """``jaw_open`` gated by ``lips_closed`` (closed lips keep the mouth shut). ``lips_closed`` also closes a photo's
    resting lip gap, scaled by ``press`` (0..1, how actively the person is speaking): in silence the photo's own
    mouth is the rest pose, while a "p" in the middle of speech shuts the lips."""
    jaw = float(np.clip(params[JAW_OPEN], 0.0, 1.0))
    closed = float(np.clip(params[LIPS_CLOSED], 0.0, 1.0))
    opening = jaw * min(1.0, 2.0 * (1.0 - closed))
    close = closed * (1.0 - opening) * float(np.clip(press, 0.0, 1.0))
    scale = (
        1.0
        + STRETCH_GAIN * float(np.clip(params[STRETCH], 0.0, 1.0))
        - ROUNDING_GAIN * float(np.clip(params[ROUNDING], 0.0, 1.0))
    )
    return MouthShape(opening, close, scale)


class MouthWarp:
    """Precomputed geometry of one mouth rig in one image; :meth:`render_roi` renders the ROI for a shape.

    Read-only after construction, so one instance serves every session of an avatar.
    """

    def __init__(self, base: npt.NDArray[np.uint8], rig: MouthRig) -> None:
        (xl, yl), (xr, yr) = rig.mouth_left, rig.mouth_right
        self._xl, self._yl, self._slope = xl, yl, (yr - yl) / (xr - xl)
        self._cx = (xl + xr) / 2.0
        self._hw = (xr - xl) / 2.0
        mw = 2.0 * self._hw
        self.mouth_width = mw
        self._max_open = MAX_OPEN * mw
        corner_y = self._corner_y(self._cx)
        self._ui_depth = rig.upper_lip_inner[1] - corner_y
        self._li_depth = rig.lower_lip_inner[1] - corner_y
        self._upper_contour = _contour(rig.upper_inner)
        self._lower_contour = _contour(rig.lower_inner)
        self._teeth = (rig.lower_lip_inner[1] - rig.upper_lip_inner[1]) < TEETH_GAP_PX
        self._teeth_px = 0.09 * mw
        jaw_x = [p[0] for p in rig.jaw]
        jaw_y = [p[1] for p in rig.jaw]
        self._jx0, self._jx1 = min(min(jaw_x), xl - 0.2 * mw), max(max(jaw_x), xr + 0.2 * mw)
        self._chin_y = max(rig.chin[1], max(jaw_y))
        self._lip_to_chin = max(self._chin_y - rig.lower_lip_inner[1], 1.0)

        # ROI: the jaw region plus room for the chin to drop over the neck without a visible fold.
        margin = 0.15 * mw + 4.0
        h, w = base.shape[:2]
        x0 = int(max(0, np.floor(self._jx0 - margin)))
        x1 = int(min(w, np.ceil(self._jx1 + margin)))
        y0 = int(max(0, np.floor(rig.upper_lip_top[1] - 0.35 * mw - 4.0)))
        y1 = int(min(h, np.ceil(self._chin_y + 1.8 * self._max_open + margin)))
        self.roi = (y0, y1, x0, x1)
        self._rh, self._rw = y1 - y0, x1 - x0
        #: Top of the band in which the upper lip may be stretched down (fixed, so the nose never moves).
        self._top = float(y0) + 0.5 * (rig.upper_lip_top[1] - y0)

        ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float32)
        self._X, self._Y = xs, ys
        # Feather window: 1 inside, easing to exactly 0 on the ROI border (4 px ramp), so the warp never seams.
        ramp = 4.0
        wx = smoothstep(np.minimum(xs - x0, x1 - 1 - xs) / ramp)
        wy = smoothstep(np.minimum(ys - y0, y1 - 1 - ys) / ramp)
        window = (wx * wy).astype(np.float32)
        self._window = window
        my = (rig.upper_lip_top[1] + rig.lower_lip_bottom[1]) / 2.0
        gauss = np.exp(-(((xs - self._cx) / (0.8 * mw)) ** 2) - ((ys - my) / (0.45 * mw)) ** 2)
        self._hbasis = ((xs - self._cx) * gauss * window).astype(np.float32)
        below = (ys - self._chin_y) / max(y1 - 2.0 - self._chin_y, 1.0)
        self._vfall = ((1.0 - smoothstep(below)) * window).astype(np.float32)
        # The four bilinear neighbours of every pixel ([i, i+1, i+w, i+w+1] x RGB) in one table: one ``np.take`` per
        # tile fetches them all, where four fancy-indexing gathers cost ~20x more (the warp's main cost at 512x640).
        # uint8, pixels x 12: the gather moves 12 bytes per pixel, and turning the result into float colour planes is
        # one transposing cast.
        flat = np.ascontiguousarray(base[y0:y1, x0:x1]).reshape(-1, 3)
        rw = self._rw
        self._quad = np.concatenate([flat[: -rw - 1], flat[1:-rw], flat[rw:-1], flat[rw + 1 :]], axis=1)
        # Tooth separations: faint darker lines every tooth width, strongest at the front teeth.
        tooth = TOOTH_WIDTH * mw
        phase = np.abs(np.sin(np.pi * (xs - self._cx) / tooth + np.pi / 2))
        self._tooth_shade = (0.78 + 0.22 * (1.0 - phase**12)).astype(np.float32)

    # --- geometry ---------------------------------------------------------------------------------------------

    def _corner_y(self, x: F32 | float) -> F32 | float:
        return self._yl + self._slope * (x - self._xl)

    def lip_profile(self, x: F32) -> F32:
        """1 at the mouth centre, 0 at and beyond the corners (a parabola)."""
        u = (x - self._cx) / self._hw
        return np.clip(1.0 - u * u, 0.0, 1.0)

    def _jaw_profile(self, x: F32) -> F32:
        span = self._jx1 - self._jx0
        t = np.minimum(x - self._jx0, self._jx1 - x) / (0.35 * span)
        return smoothstep(t)

    def _upper_line(self, x: F32) -> F32:
        if self._upper_contour is not None:
            return np.interp(x, *self._upper_contour).astype(np.float32)
        return (self._corner_y(x) + self._ui_depth * self.lip_profile(x)).astype(np.float32)

    def _lower_line(self, x: F32) -> F32:
        if self._lower_contour is not None:
            return np.interp(x, *self._lower_contour).astype(np.float32)
        return (self._corner_y(x) + self._li_depth * self.lip_profile(x)).astype(np.float32)

    # --- rendering --------------------------------------------------------------------------------------------

    def render_roi(self, shape: MouthShape) -> npt.NDArray[np.uint8]:
        """The ROI (``roi``: y0, y1, x0, x1) rendered for ``shape``, as a new uint8 array."""
        out = np.empty((self._rh, self._rw, 3), dtype=np.uint8)
        self.render_into(out, shape)
        return out

    def render_into(self, out: npt.NDArray[np.uint8], shape: MouthShape) -> None:
        """Render the ROI for ``shape`` into ``out`` (an ROI-sized uint8 view, e.g. of the frame being composed)."""
        step = max(1, TILE_PIXELS // self._rw)
        for r0 in range(0, self._rh, step):
            self._render_rows(out, shape, r0, min(self._rh, r0 + step))

    def _render_rows(self, out: npt.NDArray[np.uint8], shape: MouthShape, r0: int, r1: int) -> None:
        X, Y = self._X[r0:r1], self._Y[r0:r1]
        window = self._window[r0:r1]
        # Backward map: which base column does each output pixel show?
        sx = X - self._hbasis[r0:r1] * (1.0 - 1.0 / shape.scale)
        up = self._upper_line(sx)
        low = np.maximum(self._lower_line(sx), up)
        side = self.lip_profile(sx)
        rest_gap = low - up
        # Closing the resting gap: the lower lip travels 60 % of the way up, the upper lip 40 % down.
        close_up = 0.4 * shape.close * rest_gap * window
        drop = self._max_open * shape.opening
        lower_shift = drop * side - 0.6 * shape.close * rest_gap
        up_out = up + close_up
        low_out = low + lower_shift * window

        # Below the lower lip: the lip (and, further down, the whole chin) moves by the jaw's displacement.
        t = smoothstep((Y - low) / self._lip_to_chin)
        profile = side * (1.0 - t) + self._jaw_profile(sx) * t
        chin_shift = (drop * profile - 0.6 * shape.close * rest_gap * (1.0 - t)) * self._vfall[r0:r1]
        sy = np.where(low_out <= Y, Y - chin_shift, Y)
        # Above the upper lip's inner edge: stretch the band from the fixed top down to the moved lip line.
        band = np.maximum(up - self._top, 1.0)
        stretched = self._top + (Y - self._top) * band / np.maximum(band + close_up, 1.0)
        sy = np.where((self._top <= Y) & (up_out > Y), stretched, sy)
        # Inside the gap, the photo's own interior (its teeth) stays with the upper jaw...
        sy = np.where((up_out <= Y) & (low_out > Y), Y - close_up, sy)
        warped = self._sample(sx, sy)

        # ...and whatever opens beyond the photo's own gap is synthesised. Pixel coverage anti-aliases both edges.
        new_top = up_out + rest_gap * (1.0 - shape.close)
        synth = np.clip(np.minimum(Y + 0.5, low_out) - np.maximum(Y - 0.5, new_top), 0.0, 1.0)
        box = _nonzero_box(synth) if drop > 0 else None
        if box is not None:
            # The interior is computed only in the box where the gap shows (a small band of the ROI); outside it the
            # coverage is 0 and the warped pixels stand as they are.
            ys, xs = slice(box[0], box[1]), slice(box[2], box[3])
            cut = (a[ys, xs] for a in (Y, sx, side, up_out, low_out, synth, self._tooth_shade[r0:r1]))
            self._paint_interior(warped[:, ys, xs], shape, *cut)
        if shape.close > 0 and self._teeth:
            # Pressed lips: a soft shadow along the line where they meet (exactly 0 a dozen pixels away from it).
            line = np.exp(-(((Y - up_out) / 1.2) ** 2)) * side * shape.close * 0.35
            rows = np.flatnonzero(line.any(axis=1))
            if rows.size:
                lr = slice(int(rows[0]), int(rows[-1]) + 1)
                warped[:, lr] *= 1.0 - line[lr]
        warped += 0.5
        np.clip(warped, 0, 255, out=warped)
        np.copyto(out[r0:r1], np.moveaxis(warped, 0, -1), casting="unsafe")

    def _paint_interior(
        self,
        warped: F32,
        shape: MouthShape,
        Y: F32,
        sx: F32,
        side: F32,
        up_out: F32,
        low_out: F32,
        synth: F32,
        tooth_shade: F32,
    ) -> None:
        # Colour arrays are planar (3 x rows x cols); the rest is per pixel (rows x cols).
        gap = np.maximum(low_out - up_out, 1e-3)
        v = np.clip((Y - up_out) / gap, 0.0, 1.0)
        # Cavity: darkest a third of the way down and at the centre, lighter towards the lips and corners.
        depth = np.clip(1.0 - np.abs(v - 0.35) / 0.65, 0.0, 1.0) * side
        interior = _EDGE + (_DEEP - _EDGE) * depth
        # Tongue: a rounded hump rising from the floor, highest at the centre, lit from the front.
        u = (sx - self._cx) / (0.75 * self._hw)
        hump = 0.55 + 0.25 * np.clip(1.0 - u * u, 0.0, 1.0)
        tongue = smoothstep((v - (1.0 - hump * 0.55)) / 0.12) * 0.9 * side
        tongue_col = _TONGUE_DARK + (_TONGUE - _TONGUE_DARK) * np.clip((v - 0.5) / 0.5, 0.0, 1.0)
        interior = interior + (tongue_col - interior) * tongue
        teeth_col = _TEETH * tooth_shade * (0.72 + 0.28 * side)
        if self._teeth:
            top_band = np.clip(self._teeth_px * side - (Y - up_out) + 0.5, 0.0, 1.0)
            interior = interior + (teeth_col - interior) * (top_band * 0.92)
        # Lower teeth ride on the lower lip, partly hidden behind it; they show more as the jaw drops.
        lower_h = LOWER_TEETH * self.mouth_width * min(1.0, 1.5 * shape.opening) * side
        low_band = np.clip(lower_h - (low_out - Y) + 0.5, 0.0, 1.0)
        interior = interior + (teeth_col * 0.93 - interior) * (low_band * 0.85)
        warped[...] = warped * (1.0 - synth) + interior * synth

    def _sample(self, sx: F32, sy: F32) -> F32:
        """Bilinear sample of the base ROI at absolute coordinates, clamped to the ROI; planar (3 x rows x cols)."""
        y0, _, x0, _ = self.roi
        fx = np.clip(sx - x0, 0.0, self._rw - 1.0)
        fy = np.clip(sy - y0, 0.0, self._rh - 1.0)
        # Integer parts kept as float32: subtracting them is exact, and float32 arithmetic stays float32.
        ix = np.minimum(np.floor(fx), self._rw - 2.0)
        iy = np.minimum(np.floor(fy), self._rh - 2.0)
        ax = fx - ix
        ay = fy - iy
        # Colour planes (12 x rows x cols): numpy broadcasts a per-pixel weight over separate planes ~6x faster than
        # over an interleaved RGB last axis.
        q = np.moveaxis(np.take(self._quad, (iy * self._rw + ix).astype(np.intp), axis=0), -1, 0).astype(
            np.float32, order="C"
        )
        top = q[0:3] * (1.0 - ax) + q[3:6] * ax
        bot = q[6:9] * (1.0 - ax) + q[9:12] * ax
        sampled: F32 = top * (1.0 - ay) + bot * ay
        return sampled


def _nonzero_box(a: F32) -> tuple[int, int, int, int] | None:
    """Bounding box (r0, r1, c0, c1) of the non-zero entries of a 2-D array, or None when all are zero."""
    rows = np.flatnonzero(a.any(axis=1))
    if not rows.size:
        return None
    r0, r1 = int(rows[0]), int(rows[-1]) + 1
    cols = np.flatnonzero(a[r0:r1].any(axis=0))
    return r0, r1, int(cols[0]), int(cols[-1]) + 1


def _contour(points: tuple[tuple[float, float], ...]) -> tuple[F32, F32] | None:
    if len(points) < 3:
        return None
    xs = np.array([p[0] for p in points], dtype=np.float32)
    ys = np.array([p[1] for p in points], dtype=np.float32)
    return xs, ys
