"""Photo-avatar compositor: mouth parameters in, a full RGB frame out.

Only a region of interest (ROI) around the mouth and jaw is recomputed; every other pixel is a copy of the base image.
Inside the ROI a backward warp moves the lower lip and chin down (jaw open) and scales the mouth horizontally
(stretch widens, rounding narrows); the gap that opens between the lips is filled with a synthesised mouth interior
(dark cavity with a depth gradient, a hint of tongue, and upper teeth when the photo shows none). Every displacement
field is multiplied by a feather window that is exactly zero on the ROI border, so there are no seams, and a zero
parameter vector reproduces the base image exactly.

Everything that does not depend on the parameters (pixel grids, windows, the ROI of the base as float) is computed
once in the constructor; :meth:`Compositor.render` is a few dozen vectorised numpy operations on the ROI.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from avaluma.renderer.avatar import Avatar
from avaluma.renderer.lipsync.base import JAW_OPEN, LIPS_CLOSED, MOUTH_PARAMS, ROUNDING, STRETCH

F32 = npt.NDArray[np.float32]

#: Largest lip gap, as a fraction of the mouth width (a wide "ah").
MAX_OPEN = 0.38
#: Horizontal scale of the mouth at full stretch / full rounding.
STRETCH_GAIN = 0.18
ROUNDING_GAIN = 0.25
#: Photos whose lips are closer than this (px) at the centre get synthesised upper teeth.
TEETH_GAP_PX = 2.0

# Mouth interior colours (RGB, 0..255): a dark throat, darker where it is deepest, a reddish tongue near the lower lip.
_DEEP = np.array([28.0, 8.0, 10.0], dtype=np.float32)
_EDGE = np.array([90.0, 38.0, 42.0], dtype=np.float32)
_TONGUE = np.array([150.0, 70.0, 72.0], dtype=np.float32)
_TEETH = np.array([222.0, 216.0, 200.0], dtype=np.float32)


def _smoothstep(t: F32) -> F32:
    t = np.clip(t, 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


class Compositor:
    """Renders frames of one photo avatar. Cheap to construct, deterministic, not thread-safe (one per session).

    ``seed`` is reserved for idle motion (blinks, head sway) so renders stay reproducible once it exists.
    """

    def __init__(self, avatar: Avatar, *, seed: int = 0) -> None:
        self.avatar = avatar
        self.seed = seed
        self._base = avatar.base
        rig = avatar.rig
        (xl, yl), (xr, yr) = rig.mouth_left, rig.mouth_right
        self._xl, self._yl, self._slope = xl, yl, (yr - yl) / (xr - xl)
        self._cx = (xl + xr) / 2.0
        self._hw = (xr - xl) / 2.0
        mw = 2.0 * self._hw
        self._max_open = MAX_OPEN * mw
        # Depth of the lip-line parabolas below the corner line, at the centre.
        corner_y = self._corner_y(self._cx)
        self._ui_depth = rig.upper_lip_inner[1] - corner_y
        self._li_depth = rig.lower_lip_inner[1] - corner_y
        self._teeth = (rig.lower_lip_inner[1] - rig.upper_lip_inner[1]) < TEETH_GAP_PX
        self._teeth_px = 0.12 * mw
        jaw_x = [p[0] for p in rig.jaw]
        jaw_y = [p[1] for p in rig.jaw]
        self._jx0, self._jx1 = min(min(jaw_x), xl - 0.2 * mw), max(max(jaw_x), xr + 0.2 * mw)
        self._chin_y = max(rig.chin[1], max(jaw_y))
        self._lip_to_chin = max(self._chin_y - rig.lower_lip_inner[1], 1.0)

        # ROI: the jaw region plus room for the chin to drop over the neck without a visible fold.
        margin = 0.15 * mw + 4.0
        h, w = avatar.height, avatar.width
        x0 = int(max(0, np.floor(self._jx0 - margin)))
        x1 = int(min(w, np.ceil(self._jx1 + margin)))
        y0 = int(max(0, np.floor(rig.upper_lip_top[1] - 0.35 * mw - 4.0)))
        y1 = int(min(h, np.ceil(self._chin_y + 1.8 * self._max_open + margin)))
        self.roi = (y0, y1, x0, x1)
        self._rh, self._rw = y1 - y0, x1 - x0

        ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float32)
        self._X, self._Y = xs, ys
        # Feather window: 1 inside, easing to exactly 0 on the ROI border (4 px ramp), so the warp never seams.
        ramp = 4.0
        wx = _smoothstep(np.minimum(xs - x0, x1 - 1 - xs) / ramp)
        wy = _smoothstep(np.minimum(ys - y0, y1 - 1 - ys) / ramp)
        window = (wx * wy).astype(np.float32)
        # Horizontal scaling acts on a soft ellipse around the mouth.
        my = (rig.upper_lip_top[1] + rig.lower_lip_bottom[1]) / 2.0
        gauss = np.exp(-(((xs - self._cx) / (0.8 * mw)) ** 2) - ((ys - my) / (0.45 * mw)) ** 2)
        self._hbasis = ((xs - self._cx) * gauss * window).astype(np.float32)
        # Vertical falloff below the chin: the drop fades out over the neck.
        below = (ys - self._chin_y) / max(y1 - 2.0 - self._chin_y, 1.0)
        self._vfall = ((1.0 - _smoothstep(below)) * window).astype(np.float32)
        self._base_roi = avatar.base[y0:y1, x0:x1].astype(np.float32).reshape(-1, 3)
        self._rest = avatar.base

    # --- geometry ---------------------------------------------------------------------------------------------

    def _corner_y(self, x: F32 | float) -> F32 | float:
        return self._yl + self._slope * (x - self._xl)

    def _lip_profile(self, x: F32) -> F32:
        """1 at the mouth centre, 0 at and beyond the corners (a parabola)."""
        u = (x - self._cx) / self._hw
        return np.clip(1.0 - u * u, 0.0, 1.0)

    def _jaw_profile(self, x: F32) -> F32:
        """1 across the chin, easing to 0 at the jaw line's ends."""
        span = self._jx1 - self._jx0
        t = np.minimum(x - self._jx0, self._jx1 - x) / (0.35 * span)
        return _smoothstep(t)

    # --- rendering --------------------------------------------------------------------------------------------

    def effective_open(self, params: npt.NDArray[np.floating]) -> float:
        """Lip gap in [0, 1]: ``jaw_open`` gated by ``lips_closed`` (closed lips keep the mouth shut)."""
        jaw = float(np.clip(params[JAW_OPEN], 0.0, 1.0))
        closed = float(np.clip(params[LIPS_CLOSED], 0.0, 1.0))
        return jaw * min(1.0, 2.0 * (1.0 - closed))

    def render(self, params: npt.NDArray[np.floating]) -> npt.NDArray[np.uint8]:
        """Render one frame for mouth ``params`` (see :data:`MOUTH_PARAMS`); returns a new H x W x 3 uint8 array."""
        if params.shape != (len(MOUTH_PARAMS),):
            raise ValueError(f"params must have shape ({len(MOUTH_PARAMS)},), got {params.shape}")
        opening = self.effective_open(params)
        scale = (
            1.0
            + STRETCH_GAIN * float(np.clip(params[STRETCH], 0.0, 1.0))
            - ROUNDING_GAIN * float(np.clip(params[ROUNDING], 0.0, 1.0))
        )
        out = self._rest.copy()
        if opening < 1e-3 and abs(scale - 1.0) < 1e-4:
            return out
        y0, y1, x0, x1 = self.roi
        out[y0:y1, x0:x1] = self._render_roi(opening, scale)
        return out

    def _render_roi(self, opening: float, scale: float) -> npt.NDArray[np.uint8]:
        X, Y = self._X, self._Y
        # Backward map: which base column does each output pixel show?
        sx = X - self._hbasis * (1.0 - 1.0 / scale)
        lip_in = self._corner_y(sx) + self._li_depth * self._lip_profile(sx)
        drop = self._max_open * opening
        # Below the lower lip's inner edge, blend from the lip's profile (0 at the corners) to the whole chin's.
        t = _smoothstep((Y - lip_in) / self._lip_to_chin)
        profile = self._lip_profile(sx) * (1.0 - t) + self._jaw_profile(sx) * t
        disp = np.where(lip_in <= Y, drop * profile * self._vfall, 0.0).astype(np.float32)
        sy = Y - disp
        warped = self._sample(sx, sy)

        # The newly opened gap is [lip_in, lip_in + disp) on screen (its source lies above the lip line); the pixel's
        # coverage of that interval anti-aliases both lip edges.
        inside = np.clip(np.minimum(Y + 0.5, lip_in + disp) - np.maximum(Y - 0.5, lip_in), 0.0, 1.0)
        if drop > 0:
            gap = np.maximum(drop * self._lip_profile(sx), 1e-3)
            v = np.clip((Y - lip_in) / gap, 0.0, 1.0)[..., None]
            side = self._lip_profile(sx)[..., None]
            # Deepest (darkest) a third of the way down and at the centre; lighter towards lips and corners.
            depth = np.clip(1.0 - np.abs(v - 0.35) / 0.65, 0.0, 1.0) * side
            interior = _EDGE + (_DEEP - _EDGE) * depth
            interior = interior + (_TONGUE - interior) * (_smoothstep((v - 0.6) / 0.4) * 0.7)
            if self._teeth:
                band = np.clip((self._teeth_px * side - (Y[..., None] - lip_in[..., None])) + 0.5, 0.0, 1.0)
                interior = interior + (_TEETH * (0.75 + 0.25 * side) - interior) * (band * 0.9)
            a = inside[..., None]
            warped = warped * (1.0 - a) + interior * a
        pixels: npt.NDArray[np.uint8] = np.clip(warped + 0.5, 0, 255).astype(np.uint8)
        return pixels

    def _sample(self, sx: F32, sy: F32) -> F32:
        """Bilinear sample of the base ROI at absolute coordinates, clamped to the ROI."""
        y0, _, x0, _ = self.roi
        fx = np.clip(sx - x0, 0.0, self._rw - 1.0)
        fy = np.clip(sy - y0, 0.0, self._rh - 1.0)
        ix = np.minimum(fx.astype(np.int32), self._rw - 2)
        iy = np.minimum(fy.astype(np.int32), self._rh - 2)
        ax = (fx - ix)[..., None]
        ay = (fy - iy)[..., None]
        i00 = iy * self._rw + ix
        b = self._base_roi
        top = b[i00] * (1.0 - ax) + b[i00 + 1] * ax
        bot = b[i00 + self._rw] * (1.0 - ax) + b[i00 + self._rw + 1] * ax
        sampled: F32 = top * (1.0 - ay) + bot * ay
        return sampled
