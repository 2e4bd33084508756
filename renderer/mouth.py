"""The photo mouth: mouth parameters in, the pixels of a region around the mouth and jaw out.

Only a region of interest (ROI) is recomputed. Inside it a backward warp, column by column, moves the lower lip and chin
down (jaw open; the upper lip lifts a little at its centre), the lips towards each other (lips closed: a photo that
shows teeth closes its lips when speech says so; while the person speaks, a smile's resting gap opens and shuts with the
jaw), and scales the mouth horizontally (stretch widens, rounding narrows). Every displacement field is multiplied by a
feather window that is exactly zero on the ROI border, so there are no seams, and a zero parameter vector at rest
reproduces the base image exactly.

The warp keeps the photo's texture: the base is split into a smooth part, sampled bilinearly, and its fine detail (skin
pores, lip lines, grain), taken from the nearest source pixel, so stretched lips and a dropped chin stay as sharp as the
photo instead of being smoothed by interpolation.

The gap that opens between the lips is filled with a mouth interior made for this photo (:class:`MouthLook`): upper
teeth hanging from under the upper lip (individual teeth: central incisors longest, each tooth shaded as a rounded
surface, soft gaps between them, fading into the shadow of the cheeks towards the corners, a translucent biting edge; on
a smiling mouth the upper gum line shows above them), lower teeth rising from behind the lower lip and showing
more as the jaw drops (the central few), a tongue low on the floor, a cavity that darkens with depth and, in front of it
all, the lower lip's wet inner edge fading into the dark. A photo's own teeth stay as photographed, without the sliver
of lower lip the landmarks leave under them. Its colours come from the photo itself (teeth from the eye whites, or from
the photo's own teeth when the builder saw them; cavity and tongue from the lips), so they follow its white balance and
light; it is blurred to the photo's measured sharpness, lit from the side the face is lit from and given the photo's
grain. The interior is drawn once per avatar into textures tied to the skull (teeth do not stretch with the lips); per
frame it is looked up, never redrawn.

Everything that does not depend on the parameters (pixel grids, windows, textures) is computed once in the constructor;
:meth:`MouthWarp.render_into` is a few dozen vectorised numpy operations per tile of ROI rows (small float32
temporaries, colour planes rather than interleaved RGB), and the mouth interior is computed only where the gap shows
(see bench/render.py and bench/mouth_quality.py).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from avaluma.renderer.avatar import EyeRig, MouthRig
from avaluma.renderer.lipsync.base import JAW_OPEN, LIPS_CLOSED, ROUNDING, STRETCH

F32 = npt.NDArray[np.float32]
U8 = npt.NDArray[np.uint8]

#: Largest lip gap, as a fraction of the mouth width (a wide "ah").
MAX_OPEN = 0.42
#: How far the chin drops for a given lower-lip drop (the chin is further from the jaw's hinge than the lip).
CHIN_GAIN = 1.15
#: Horizontal scale of the mouth at full stretch / full rounding.
STRETCH_GAIN = 0.18
ROUNDING_GAIN = 0.25
#: Photos whose lips are closer than this (px) at the centre get synthesised upper teeth.
TEETH_GAP_PX = 2.0
#: Teeth coloured from the eye whites are at least this bright relative to the skin beside the mouth (luma), and at
#: most :data:`TEETH_MAX_LUMA` from that rule.
TEETH_OVER_SKIN = 1.1
TEETH_MAX_LUMA = 230.0
#: Visible length of the upper central incisors below the upper lip, and the most the lower teeth show above the
#: lower lip, as fractions of the mouth width. The lower teeth rise into view in proportion to ``jaw_open`` up to
#: :data:`LOWER_FULL` (a gap of about 0.32 mouth widths), lit like the upper teeth. In the two real talking clips the
#: lower teeth show 0.04-0.06 mouth widths above the lip at gaps of 0.12-0.25 and 0.08-0.09 beyond, their brightest
#: 0.7 (one person) to 1.1-1.2 (the other) times the upper teeth's (bench/mouth_quality.py).
UPPER_TEETH = 0.115
LOWER_TEETH = 0.11
LOWER_FULL = 0.75
#: Saturation ((max - min) / max) of the lips or the skin from which a photo counts as in full colour; below it the
#: mouth interior's reds fade towards grey (none in a black-and-white photo).
COLOURFUL = 0.12
#: Light on the teeth inside a speaking mouth, relative to teeth lit like the face (what :class:`MouthLook` holds).
#: In two real talking-head clips no pixel inside the lips is brighter than the cheeks while the person speaks.
TEETH_LIGHT = 0.8
#: Light inside a barely open mouth, relative to one open half way or more. At inner lip gaps of 0.05-0.12 mouth
#: widths the two real clips' people show a dark slit (brightest tenth inside the lips 0.37 / 0.42 of the cheeks);
#: their avatars, at 0.5 here, showed a grey line of teeth edges (0.53 / 0.53), at 0.15 0.43 / 0.49
#: (bench/mouth_quality.py).
NARROW_LIGHT = 0.15
#: The share of the mouth's width over which the lips part at a small opening (all of it at full opening).
OPEN_SPAN = 0.75
#: The share of the upper teeth's visible length that relaxed lips leave showing (speaking without a smile).
RELAXED_TEETH = 0.45
#: The tongue's top, as a fraction of the opening's height up from the lower lip at the centre (times 0.8: it shows
#: above the lower teeth), and its colours as fractions of the lips' (in the upper jaw's shadow: darker than the lips,
#: so its top never reads as the lower lip).
TONGUE_HEIGHT = 0.5
TONGUE_LIT = (0.72, 0.46, 0.46)
TONGUE_DARK = (0.42, 0.24, 0.25)
#: The lower lip's wet inner edge: its width (fraction of the mouth width) over which it fades into the interior,
#: its opacity at the lip and its colour as fractions of the lips' (the lip turning inwards, out of the light).
MUCOSA = 0.03
MUCOSA_ALPHA = 0.85
MUCOSA_COLOUR = (0.62, 0.38, 0.38)
#: How far the upper lip's inner edge rises at its centre as the jaw drops (a fraction of the lower lip's drop).
LIP_LIFT = 0.12
#: The upper gum line on a stretched ("ee", smiling) open mouth: the band of gum between the upper lip and
#: the synthesised upper teeth, as a fraction of the mouth width (it dips a little further between the teeth), and
#: its colour as fractions of the mean of the lips' and the skin's.
GUM = 0.035
GUM_COLOUR = (0.9, 0.7, 0.74)
#: Pixels per tile of the ROI rendered at once (the head region uses the same tiles): per-pixel temporaries of ~50 kB
#: stay in cache and are reused by malloc. With whole-ROI float64 temporaries at 512x640, fresh memory (page faults)
#: every frame cost as much as the arithmetic. 6k..16k pixels measured best on 512x512 and 512x640.
TILE_PIXELS = 12288

#: Upper teeth from the centre outwards: (width, visible length), relative to a central incisor, as seen from the
#: front (the arch turns away, so teeth further back look narrower).
_UPPER_TEETH = ((1.0, 1.0), (0.74, 0.86), (0.66, 0.93), (0.55, 0.78), (0.48, 0.72), (0.5, 0.6))
_LOWER_TEETH = ((0.72, 1.0), (0.7, 0.95), (0.62, 0.9), (0.55, 0.8), (0.5, 0.7), (0.5, 0.6))
#: Central incisor width as a fraction of the mouth width.
_INCISOR = 0.16


def smoothstep(t: F32) -> F32:
    t = np.clip(t, 0.0, 1.0)
    rise = 2.0 * t
    np.subtract(3.0, rise, out=rise)
    t *= t
    t *= rise
    return t


def smoothstep_f(t: float) -> float:
    t = min(max(t, 0.0), 1.0)
    return t * t * (3.0 - 2.0 * t)


@dataclass(frozen=True, slots=True)
class MouthShape:
    """What a parameter vector means geometrically (all in [0, 1] except ``scale``)."""

    opening: float  #: lip gap, 0 shut .. 1 widest
    close: float  #: how much of a photo's resting lip gap is closed
    scale: float  #: horizontal scale of the mouth
    press: float = 0.0  #: how actively the person is speaking (0 at rest .. 1), see :func:`mouth_shape`

    @property
    def is_rest(self) -> bool:
        """The photo as it is (speech, ``press`` > 0, closes a smile's resting gap while the jaw is shut)."""
        return self.opening < 1e-3 and self.close < 1e-3 and abs(self.scale - 1.0) < 1e-4 and self.press < 1e-3


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
    return MouthShape(opening, close, scale, float(np.clip(press, 0.0, 1.0)))


# --- what the photo looks like --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MouthLook:
    """What the synthesised interior must match in this photo. Colours are linear-ish RGB 0..255 as in the photo."""

    teeth: tuple[float, float, float]  #: lit tooth enamel
    lips: tuple[float, float, float]  #: the lips' own colour (the interior's reds follow it)
    blur: float  #: Gaussian sigma (px) of the photo's softness around the mouth
    grain: float  #: standard deviation of the photo's pixel noise (grey levels)
    light: float  #: -1 (lit from the image's left) .. 1 (from its right)
    skin: tuple[float, float, float] | None = None  #: the skin beside the mouth
    #: ``teeth`` measured on the photo's own teeth, inside its mouth: already in the lips' shade (not dimmed again).
    teeth_in_mouth: bool = False


def _luma(rgb: F32) -> F32:
    out: F32 = rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114
    return out


def _window(shape: tuple[int, ...], x: float, y: float, r: float) -> tuple[slice, slice]:
    """Rows and columns of a square of radius ``r`` around (x, y), moved inside the image, never empty."""
    h, w = shape[:2]
    x = min(max(x, 0.0), w - 1.0)
    y = min(max(y, 0.0), h - 1.0)
    x0, x1 = int(max(0, x - r)), int(min(w, x + r + 1))
    y0, y1 = int(max(0, y - r)), int(min(h, y + r + 1))
    return slice(y0, max(y1, y0 + 1)), slice(x0, max(x1, x0 + 1))


def _patch(base: U8, x: float, y: float, r: float) -> F32:
    rows, cols = _window(base.shape, x, y, r)
    return base[rows, cols].reshape(-1, 3).astype(np.float32)


def _grey_patch(base: U8, x: float, y: float, r: float) -> F32:
    rows, cols = _window(base.shape, x, y, r)
    return _luma(base[rows, cols].astype(np.float32))


def _inside_eye(base: U8, eye: EyeRig) -> F32:
    """Pixels between an eye's lids (the sclera and iris)."""
    xs = np.arange(math.ceil(eye.upper[0][0]), int(eye.upper[-1][0]) + 1)
    up = np.interp(xs, [p[0] for p in eye.upper], [p[1] for p in eye.upper])
    lo = np.interp(xs, [p[0] for p in eye.lower], [p[1] for p in eye.lower])
    rows = []
    h = base.shape[0]
    for x, a, b in zip(xs, up, lo, strict=True):
        y0, y1 = math.ceil(a + 1), math.floor(b - 1)
        if 0 <= x < base.shape[1] and 0 <= y0 < y1 <= h:
            rows.append(base[y0:y1, x].astype(np.float32))
    return np.concatenate(rows) if rows else np.zeros((0, 3), np.float32)


def estimate_blur(grey: F32) -> float:
    """Gaussian sigma (px) of a picture's softness, from its strongest edges: a step edge blurred with sigma has a
    peak gradient of contrast / (sqrt(2 pi) sigma)."""
    if grey.shape[0] < 8 or grey.shape[1] < 8:
        return 0.7
    gx = (grey[1:-1, 2:] - grey[1:-1, :-2]) / 2
    gy = (grey[2:, 1:-1] - grey[:-2, 1:-1]) / 2
    mag = np.hypot(gx, gy)
    # Local contrast: range of a 7x7 neighbourhood (max - min, by shifted maxima/minima).
    pad = np.pad(grey, 3, mode="edge")
    hi = np.full_like(grey, -np.inf)
    lo = np.full_like(grey, np.inf)
    h, w = grey.shape
    for dy in range(7):
        for dx in range(7):
            win = pad[dy : dy + h, dx : dx + w]
            np.maximum(hi, win, out=hi)
            np.minimum(lo, win, out=lo)
    contrast = (hi - lo)[1:-1, 1:-1]
    strong = mag > np.percentile(mag, 97)
    strong &= contrast > 25
    if strong.sum() < 10:
        return 0.7
    ratio = float(np.median(mag[strong] / contrast[strong]))
    return float(np.clip(1.0 / (2.5066 * max(ratio, 1e-3)), 0.5, 4.0))


def estimate_grain(grey: F32) -> float:
    """Standard deviation of pixel noise, from the median absolute Laplacian (robust to edges)."""
    if grey.shape[0] < 3 or grey.shape[1] < 3:
        return 0.0
    lap = 4 * grey[1:-1, 1:-1] - grey[:-2, 1:-1] - grey[2:, 1:-1] - grey[1:-1, :-2] - grey[1:-1, 2:]
    return float(np.clip(1.4826 * np.median(np.abs(lap)) / math.sqrt(20.0), 0.0, 12.0))


def analyse_photo(
    base: U8, rig: MouthRig, eyes: Sequence[EyeRig] = (), teeth: Sequence[float] | None = None
) -> MouthLook:
    """The :class:`MouthLook` of a photo: ``teeth`` (RGB) when the builder measured the photo's own teeth, else from
    the eye whites (the same white, lit the same way; teeth sit in the lips' shade, so a little darker and warmer)."""
    mw = max(rig.mouth_width, 4.0)
    cx = (rig.mouth_left[0] + rig.mouth_right[0]) / 2
    lip_y = (rig.upper_lip_top[1] + rig.upper_lip_inner[1]) / 2
    upper_lip = np.median(_patch(base, cx, lip_y, max(1.0, 0.06 * mw)), axis=0)
    low_lip = np.median(_patch(base, cx, (rig.lower_lip_inner[1] + rig.lower_lip_bottom[1]) / 2, 0.06 * mw), axis=0)
    lips: F32 = ((upper_lip + low_lip) / 2).astype(np.float32)
    beside = [
        np.median(_patch(base, x, rig.mouth_center[1], 0.1 * mw), 0)
        for x in (rig.mouth_left[0] - 0.35 * mw, rig.mouth_right[0] + 0.35 * mw)
    ]
    skin = np.maximum(beside[0], beside[1])  # the lit side's
    enamel: F32
    measured = teeth is not None and len(teeth) == 3
    if measured:
        enamel = np.array(teeth, dtype=np.float32)
    else:
        whites = np.concatenate([_inside_eye(base, e) for e in eyes]) if eyes else np.zeros((0, 3), np.float32)
        if len(whites) >= 8:
            white = np.median(whites[_luma(whites) >= np.percentile(_luma(whites), 90)], axis=0).astype(np.float32)
            # Eye whites carry the photo's white balance but also their own redness: half of their tint is kept.
            neutral = float(_luma(white)) * np.ones(3, dtype=np.float32)
            enamel = ((0.5 * white + 0.5 * neutral) * np.array([1.0, 0.97, 0.9], dtype=np.float32)).astype(np.float32)
        else:
            # No eyes to measure: a warm white as bright as the face's highlights, a little brighter than its skin.
            face = _patch(base, cx, rig.mouth_center[1] - 0.8 * mw, 0.4 * mw)
            bright = min(235.0, 1.15 * float(np.percentile(_luma(face), 95)))
            enamel = (bright * np.array([1.0, 0.96, 0.88], dtype=np.float32)).astype(np.float32)
        # Narrowed or shadowed eyes show little white (mostly iris and lashes): lit teeth are at least about as
        # bright as the skin beside the mouth (photos whose own teeth the builder measured: 1.08-1.38 times it).
        enamel = _at_least(enamel, min(TEETH_MAX_LUMA, TEETH_OVER_SKIN * float(_luma(skin))))
    # Teeth are never darker than the lips around them, nor blown out, nor more coloured than a stained tooth.
    enamel = _at_least(enamel, float(_luma(lips)) * 1.25)
    enamel = enamel * np.float32(min(1.0, 245.0 / max(float(enamel.max()), 1.0)))
    top = float(enamel.max())
    saturation = (top - float(enamel.min())) / max(top, 1.0)
    if saturation > 0.22:
        luma = np.float32(_luma(enamel))
        enamel = luma + (enamel - luma) * np.float32(0.22 / saturation)
    y0, y1 = int(max(0, rig.upper_lip_top[1] - 0.6 * mw)), int(min(base.shape[0], rig.chin[1]))
    x0, x1 = int(max(0, rig.mouth_left[0] - 0.4 * mw)), int(min(base.shape[1], rig.mouth_right[0] + 0.4 * mw))
    grey = _luma(base[y0:y1, x0:x1].astype(np.float32))
    left, right = (float(_luma(b)) for b in beside)
    grain = min(
        estimate_grain(_grey_patch(base, x, rig.mouth_center[1] - 0.3 * mw, 0.12 * mw))
        for x in (rig.mouth_left[0] - 0.35 * mw, rig.mouth_right[0] + 0.35 * mw)
    )
    return MouthLook(
        teeth=(float(enamel[0]), float(enamel[1]), float(enamel[2])),
        lips=(float(lips[0]), float(lips[1]), float(lips[2])),
        blur=estimate_blur(grey),
        grain=grain,
        light=float(np.clip((right - left) / max(right + left, 1.0) * 3.0, -1.0, 1.0)),
        skin=(float(skin[0]), float(skin[1]), float(skin[2])),
        teeth_in_mouth=measured,
    )


def _at_least(colour: F32, luma: float) -> F32:
    """``colour`` scaled up (hue kept) to ``luma`` where it is darker."""
    return colour * np.float32(max(1.0, luma / max(float(_luma(colour)), 1.0)))


def _gaussian(img: F32, sigma: float) -> F32:
    """Separable Gaussian blur over the first two axes (edges replicated)."""
    if sigma < 0.3:
        return img
    r = max(1, math.ceil(3 * sigma))
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2).astype(np.float32)
    k /= k.sum()
    pad = np.pad(img, ((r, r), (0, 0)) + ((0, 0),) * (img.ndim - 2), mode="edge")
    out = sum(k[i] * pad[i : i + img.shape[0]] for i in range(2 * r + 1))
    pad = np.pad(out, ((0, 0), (r, r)) + ((0, 0),) * (img.ndim - 2), mode="edge")
    res: F32 = np.asarray(sum(k[i] * pad[:, i : i + img.shape[1]] for i in range(2 * r + 1)), dtype=np.float32)
    return res


def _teeth_row(
    xs: F32, cx: float, incisor: float, teeth: tuple[tuple[float, float], ...], length: float
) -> tuple[F32, F32, F32]:
    """Per column: visible tooth length (px), the tooth's own shading (rounded surface) and gap darkening."""
    u = np.abs(xs - cx)
    edges = np.cumsum([0.0] + [w * incisor for w, _ in teeth])
    lengths = np.zeros_like(xs)
    shade = np.ones_like(xs)
    gaps = np.ones_like(xs)
    # Real teeth are not identical: small fixed differences in length and brightness per tooth (left and right).
    jitter = np.random.default_rng(7).uniform(-1.0, 1.0, size=(2, len(teeth), 2))
    right = xs >= cx
    for i, (_, rel) in enumerate(teeth):
        a, b = edges[i], edges[i + 1]
        inside = (u >= a) & (u < b)
        t = (u - a) / max(b - a, 1e-3)  # 0 at the tooth's mesial edge, 1 at its distal edge
        dl = np.where(right, jitter[1, i, 0], jitter[0, i, 0]) * 0.05
        db = np.where(right, jitter[1, i, 1], jitter[0, i, 1]) * 0.035
        # A rounded biting edge: shorter at the tooth's corners.
        lengths = np.where(inside, length * rel * (1.0 + dl) * (1.0 - 0.22 * (2 * t - 1) ** 4), lengths)
        shade = np.where(inside, (0.9 + 0.1 * (1.0 - (2 * t - 1) ** 2)) * (1.0 + db), shade)
    for k, e in enumerate(edges[:-1]):
        # The gap between the two front teeth barely shows; further back the gaps deepen into shadow.
        depth = 0.12 if k == 0 else min(0.34, 0.18 + 0.05 * k)
        gaps = np.minimum(gaps, 1.0 - depth * np.exp(-(((u - e) / 0.6) ** 2)))
    lengths = np.where(u >= edges[-1], 0.0, lengths)
    return lengths.astype(np.float32), shade.astype(np.float32), gaps.astype(np.float32)


class MouthWarp:
    """Precomputed geometry of one mouth rig in one image; :meth:`render_roi` renders the ROI for a shape.

    Read-only after construction, so one instance serves every session of an avatar.
    """

    def __init__(
        self,
        base: npt.NDArray[np.uint8],
        rig: MouthRig,
        *,
        eyes: Sequence[EyeRig] = (),
        teeth: Sequence[float] | None = None,
    ) -> None:
        (xl, yl), (xr, yr) = rig.mouth_left, rig.mouth_right
        self._xl, self._yl, self._slope = xl, yl, (yr - yl) / (xr - xl)
        self._cx = (xl + xr) / 2.0
        self._hw = (xr - xl) / 2.0
        mw = 2.0 * self._hw
        #: The face's midline at the mouth (the lips' centre points): off the corners' midpoint on a turned head,
        #: whose nearer half of the mouth looks wider. Each half is measured on its own (:meth:`_across`).
        self._mx = min(max((rig.upper_lip_inner[0] + rig.lower_lip_inner[0]) / 2.0, xl + 0.25 * mw), xr - 0.25 * mw)
        self._per_px = (np.float32(1.0 / (self._mx - xl)), np.float32(1.0 / (xr - self._mx)))
        self.mouth_width = mw
        self._max_open = MAX_OPEN * mw
        corner_y = self._corner_y(self._cx)
        self._ui_depth = rig.upper_lip_inner[1] - corner_y
        self._li_depth = rig.lower_lip_inner[1] - corner_y
        self._upper_contour = _contour(rig.upper_inner)
        self._lower_contour = _contour(rig.lower_inner)
        rest_gap = rig.lower_lip_inner[1] - rig.upper_lip_inner[1]
        self._teeth = rest_gap < TEETH_GAP_PX
        #: A photo whose lips rest apart (a smile showing its teeth): that gap, in units of the jaw's full opening.
        #: While the person speaks, the gap is the jaw's: the lips come together over the teeth as the jaw closes and
        #: part to the photo's own gap at this much ``jaw_open``; the jaw drops further only beyond it (so the gap
        #: follows ``jaw_open`` and not the photo). At rest (``press`` 0) the photo's mouth is unchanged.
        self._rest_open = 0.0 if self._teeth else min(1.0, rest_gap / max(MAX_OPEN * mw, 1.0))
        jaw_x = [p[0] for p in rig.jaw]
        jaw_y = [p[1] for p in rig.jaw]
        self._jx0, self._jx1 = min(min(jaw_x), xl - 0.2 * mw), max(max(jaw_x), xr + 0.2 * mw)
        self._chin_y = max(rig.chin[1], max(jaw_y))
        self._lip_to_chin = max(self._chin_y - rig.lower_lip_inner[1], 1.0)
        self.look = analyse_photo(base, rig, eyes, teeth)
        #: Width (px) of the dark line where closed lips meet, which an opening mouth must not carry along.
        self._crease = max(1.5, 0.03 * mw)

        # ROI: the jaw region plus room for the chin to drop over the neck without a visible fold.
        margin = 0.15 * mw + 4.0
        h, w = base.shape[:2]
        x0 = int(max(0, np.floor(self._jx0 - margin)))
        x1 = int(min(w, np.ceil(self._jx1 + margin)))
        y0 = int(max(0, np.floor(rig.upper_lip_top[1] - 0.35 * mw - 4.0)))
        y1 = int(min(h, np.ceil(self._chin_y + 1.8 * CHIN_GAIN * self._max_open + margin)))
        self.roi = (y0, y1, x0, x1)
        self._rh, self._rw = y1 - y0, x1 - x0
        #: Top of the band in which the upper lip may be stretched down (fixed, so the nose never moves).
        self._top = float(y0) + 0.3 * (rig.upper_lip_top[1] - y0)

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
        self._hbasis = ((xs - self._mx) * gauss * window).astype(np.float32)
        #: The farthest any pixel's source column moves (px) per unit of ``1 - 1 / scale``.
        self._hbasis_max = float(np.abs(self._hbasis).max())
        #: The columns the inner lip contours span (x from, to), where both are strictly increasing in x: beyond
        #: them np.interp holds the end values, so only the columns that can reach them need interpolating.
        self._lip_span: tuple[float, float] | None = None
        if self._upper_contour is not None and self._lower_contour is not None:
            xu, xl_ = self._upper_contour[0], self._lower_contour[0]
            if bool(np.all(np.diff(xu) > 0)) and bool(np.all(np.diff(xl_) > 0)):
                self._lip_span = (float(min(xu[0], xl_[0])), float(max(xu[-1], xl_[-1])))
        #: Below the lowest point of the inner lip contours (plus a pixel: no interpolated line goes lower).
        self._low_bound: float | None = None
        if self._lip_span is not None and self._upper_contour is not None and self._lower_contour is not None:
            self._low_bound = float(max(self._upper_contour[1].max(), self._lower_contour[1].max())) + 1.0
        below = (ys - self._chin_y) / max(y1 - 2.0 - self._chin_y, 1.0)
        self._vfall = ((1.0 - smoothstep(below)) * window).astype(np.float32)
        # The base split into a smooth part (sampled bilinearly) and its fine detail (taken from the nearest pixel):
        # together they reproduce the base exactly where nothing moves, and keep its texture where the warp
        # stretches it. The four bilinear neighbours of every pixel of the smooth part ([i, i+1, i+w, i+w+1] x RGB)
        # are one table: one ``np.take`` per tile fetches them all (four fancy-indexing gathers cost ~20x more).
        # uint8 smooth part (the gather moves 12 bytes per pixel) and int16 detail: smooth + detail == base exactly.
        roi = np.ascontiguousarray(base[y0:y1, x0:x1])
        smooth = np.clip(np.rint(_gaussian(roi.astype(np.float32), 0.8)), 0, 255).astype(np.uint8)
        detail = roi.astype(np.int16) - smooth
        flat = smooth.reshape(-1, 3)
        rw = self._rw
        quad = np.concatenate([flat[: -rw - 1], flat[1:-rw], flat[rw:-1], flat[rw + 1 :]], axis=1)
        # One 16-byte row per pixel (12 bytes used), gathered as complex128 items: numpy's take copies 16-byte items
        # about 5x faster than 12 separate byte planes, which leaves time to transpose the gather into planes.
        quad16 = np.zeros((quad.shape[0], 16), np.uint8)
        quad16[:, :12] = quad
        self._quad = quad16.view(np.complex128)[:, 0]
        #: Planar (3 x pixels): a gather returns colour planes directly.
        self._detail = np.ascontiguousarray(detail.reshape(-1, 3).T)
        self._build_interior(xs[0], ys[:, 0])

    # --- the interior, drawn once ------------------------------------------------------------------------------

    def _build_interior(self, cols: F32, rows: F32) -> None:
        """Textures of the upper teeth (by depth below the upper lip), the lower teeth (by height above the lower
        lip) and a grain field, per ROI column; blurred to the photo's softness."""
        look = self.look
        mw = self.mouth_width
        lips = np.array(look.lips, dtype=np.float32)
        # Light: brighter on the lit side, and the far corners in the cheeks' shadow.
        u = self._across(cols)
        # Teeth are laid out across a frontal mouth: a turned head's farther half shows them narrower.
        frontal = (self._mx + u * self._hw).astype(np.float32)
        side_light = (1.0 + 0.18 * look.light * np.clip(u, -1, 1)).astype(np.float32)
        far = np.abs(u)
        corner_shade = (1.0 - 0.8 * smoothstep((far - np.float32(0.35)) / np.float32(0.6))).astype(np.float32)
        self._col_light = side_light * corner_shade

        skin = np.array(look.skin, dtype=np.float32) if look.skin is not None else lips
        # The interior's colours are the lips' made darker and redder; in a black-and-white photo they stay grey.
        colourful = max(float((c.max() - c.min()) / max(float(c.max()), 1.0)) for c in (lips, skin))
        chroma = np.float32(min(1.0, colourful / COLOURFUL))

        def tint(colour: F32) -> F32:
            luma = np.float32(_luma(colour))
            return (luma + (colour - luma) * chroma).astype(np.float32)

        # What the teeth turn into towards the corners: the warm shadow of the cavity, not a darker grey.
        shadow = tint(lips * np.array([0.3, 0.16, 0.16], np.float32))
        # Inside the mouth the teeth get less light than the face around it (a photo's own teeth already do).
        teeth_light = 1.0 if look.teeth_in_mouth else TEETH_LIGHT
        enamel = tint(np.array(look.teeth, dtype=np.float32) * np.float32(teeth_light))

        def layer(spec: tuple[tuple[float, float], ...], length: float, colour: F32, upper: bool) -> F32:
            n = math.ceil(length * 1.1) + 6
            lengths, shade, gaps = _teeth_row(frontal, self._mx, _INCISOR * mw * (1.0 if upper else 0.8), spec, length)
            d = np.arange(n, dtype=np.float32)[:, None] - 2.0  # depth from the lip line, px (2 rows above it)
            # Coverage with a rounded biting edge; the edge itself is translucent (greyer, darker). The lower teeth's
            # roots stay opaque: behind the lower lip, which they meet without a dark seam.
            alpha = np.clip(lengths[None, :] - d + 0.5, 0.0, 1.0) * ((d >= -0.5) | (not upper))
            if not upper:  # the lower teeth hide behind the lower lip and the cheeks sooner
                alpha = alpha * (1.0 - smoothstep((far - np.float32(0.12)) / np.float32(0.33)))[None, :]
            edge = np.exp(-(((lengths[None, :] - d) / max(1.2, 0.12 * length)) ** 2))
            # Enamel is brightest in the middle of its height, a little darker up under the lip.
            vertical = 0.9 + 0.1 * smoothstep(d / max(2.0, 0.35 * length))
            gain = (shade * gaps * side_light)[None, :] * vertical * (1.0 - 0.15 * edge)
            rgb = colour[None, None, :] * gain[..., None]
            rgb = rgb * (1 - 0.2 * edge[..., None]) + 0.2 * edge[..., None] * colour * 0.55
            fade = corner_shade[None, :, None]
            rgb = rgb * fade + shadow * (1.0 - fade)
            return np.concatenate([rgb, alpha[..., None]], axis=2).astype(np.float32)

        up_len = UPPER_TEETH * mw
        low_len = LOWER_TEETH * mw
        self._up_tex = _gaussian(layer(_UPPER_TEETH, up_len, enamel, True), look.blur)
        self._low_tex = _gaussian(layer(_LOWER_TEETH[:4], low_len, enamel, False), look.blur)
        self._up_rows, self._low_rows = self._up_tex.shape[0], self._low_tex.shape[0]
        self._low_len = low_len
        # Cavity and tongue colours from the lips: a dark, reddish throat; a tongue a little darker than the lips.
        self._deep = tint(lips * np.array([0.16, 0.08, 0.09], np.float32))[:, None, None]
        self._edge = tint(lips * np.array([0.42, 0.24, 0.25], np.float32))[:, None, None]
        self._tongue = tint(lips * np.array(TONGUE_LIT, np.float32))[:, None, None]
        self._mucosa = tint(lips * np.array(MUCOSA_COLOUR, np.float32))[:, None, None] * self._col_light[None, None, :]
        self._tongue_dark = tint(lips * np.array(TONGUE_DARK, np.float32))[:, None, None]
        # Gums: lit like the teeth (side light, the corners in shadow); between the teeth they reach lower.
        incisor = _INCISOR * mw
        edges = np.cumsum([w * incisor for w, _ in _UPPER_TEETH])
        across = np.abs(frontal - self._mx)
        papilla = np.zeros_like(cols)
        for e in (0.0, *edges[:-1]):
            papilla = np.maximum(papilla, np.exp(-(((across - e) / (0.2 * incisor)) ** 2)))
        self._papilla = papilla.astype(np.float32)
        # Gums are pink whatever the lips wear: half lips, half skin.
        gum = tint((0.5 * lips + 0.5 * skin) * np.array(GUM_COLOUR, np.float32))
        fade = corner_shade[None, :]
        self._gum = (
            gum[:, None, None] * (side_light * fade)[None] + shadow[:, None, None] * (1.0 - fade)[None]
        ).astype(np.float32)
        rng = np.random.default_rng(1234)
        self._grain = (rng.standard_normal((self._rh, self._rw)).astype(np.float32) * look.grain).astype(np.float32)
        self._soft = max(0.5, look.blur)

    # --- geometry ---------------------------------------------------------------------------------------------

    def _corner_y(self, x: F32 | float) -> F32 | float:
        return self._yl + self._slope * (x - self._xl)

    def _across(self, x: F32) -> F32:
        """Where columns ``x`` lie across the mouth: -1 at the left corner, 0 on the midline, 1 at the right corner."""
        d = (x - self._mx).astype(np.float32, copy=False)
        u: F32 = (d * np.where(d < 0, *self._per_px)).astype(np.float32, copy=False)
        return u

    def lip_profile(self, x: F32) -> F32:
        """1 on the mouth's midline, 0 at and beyond the corners (a parabola each side)."""
        return _bump(self._across(x))

    def _jaw_profile(self, x: F32) -> F32:
        span = self._jx1 - self._jx0
        t = np.minimum(x - self._jx0, self._jx1 - x) / (0.35 * span)
        return smoothstep(t)

    def _upper_line(self, x: npt.NDArray[np.floating]) -> F32:
        if self._upper_contour is not None:
            line: F32 = np.interp(x, *self._upper_contour).astype(np.float32)
            return line
        return (self._corner_y(x) + self._ui_depth * self.lip_profile(x)).astype(np.float32)

    def _lower_line(self, x: npt.NDArray[np.floating]) -> F32:
        if self._lower_contour is not None:
            line: F32 = np.interp(x, *self._lower_contour).astype(np.float32)
            return line
        return (self._corner_y(x) + self._li_depth * self.lip_profile(x)).astype(np.float32)

    def _columns(self, lo: float, hi: float, shift: float) -> tuple[int, int]:
        """Columns (c0, c1) of the ROI such that every pixel left of c0 reads from left of ``lo`` and every pixel
        from c1 on from right of ``hi``, when source columns move at most ``shift`` px (a margin of 2 px more)."""
        x0 = self.roi[2]
        c0 = min(max(0, math.floor(lo - shift) - 2 - x0), self._rw)
        c1 = max(c0, min(self._rw, math.ceil(hi + shift) + 3 - x0))
        return c0, c1

    def _lip_lines(self, sx: F32, shift: float) -> tuple[F32, F32]:
        """The upper and lower inner lip lines at source columns ``sx`` (as :meth:`_upper_line` and
        :meth:`_lower_line`), interpolated (in float64, as np.interp works) only on the columns that can reach the
        contours; beyond them the lines hold their end values, as np.interp does."""
        assert self._upper_contour is not None and self._lower_contour is not None and self._lip_span is not None
        c0, c1 = self._columns(*self._lip_span, shift)
        x = sx[:, c0:c1].astype(np.float64)
        lines = []
        for xp, fp in (self._upper_contour, self._lower_contour):
            line = np.empty(sx.shape, np.float32)
            line[:, :c0] = fp[0]
            line[:, c1:] = fp[-1]
            line[:, c0:c1] = np.interp(x, xp, fp)
            lines.append(line)
        return lines[0], lines[1]

    # --- rendering --------------------------------------------------------------------------------------------

    def render_roi(self, shape: MouthShape) -> npt.NDArray[np.uint8]:
        """The ROI (``roi``: y0, y1, x0, x1) rendered for ``shape``, as a new uint8 array."""
        out = np.empty((self._rh, self._rw, 3), dtype=np.uint8)
        self.render_into(out, shape)
        return out

    def render_into(self, out: npt.NDArray[np.uint8], shape: MouthShape) -> None:
        """Render the ROI for ``shape`` into ``out`` (an ROI-sized uint8 view, e.g. of the frame being composed)."""
        step = max(1, TILE_PIXELS // self._rw)
        # Tiles that start below the lips take the chin's path (whole tiles: an extra, smaller tile would cost more
        # than it saves on a small mouth).
        chin = self._chin_only_from(shape)
        for r0 in range(0, self._rh, step):
            render = self._render_chin_rows if r0 >= chin else self._render_rows
            render(out, shape, r0, min(self._rh, r0 + step))

    def _chin_only_from(self, shape: MouthShape) -> int:
        """The first ROI row from which only the chin's drop moves pixels for ``shape``: more than the lip-to-chin
        distance below the lowest the lower lip line can be (the lip-to-chin blend is exactly 1 there), and further
        below the lowest the moved lower lip can reach than any lip edge, the interior or the pressed-lip shadow."""
        if self._low_bound is None:
            return self._rh
        _, drop = self._close_and_drop(shape)
        margin = max(2.0 * self._crease, 0.5 * self._soft, 16.0) + 2.0
        y = max(self._low_bound + self._lip_to_chin + 1.0, self._low_bound + drop + margin)
        return min(self._rh, max(0, math.ceil(y) - self.roi[0]))

    def _render_chin_rows(self, out: npt.NDArray[np.uint8], shape: MouthShape, r0: int, r1: int) -> None:
        """Rows from :meth:`_chin_only_from` on: the pixels :meth:`_render_rows` gives them (the same operations),
        without the lip steps that leave them as they are."""
        X, Y = self._X[r0:r1], self._Y[r0:r1]
        sx = X - self._hbasis[r0:r1] * (1.0 - 1.0 / shape.scale)
        _, drop = self._close_and_drop(shape)
        self._store(out, self._sample(sx, Y - self._chin_drop(sx, drop, self._vfall[r0:r1])), r0, r1)

    def _chin_drop(self, sx: F32, drop: float, vfall: F32) -> F32:
        """How far the jaw's ``drop`` moves the pixels reading source columns ``sx`` on rows where the lip-to-chin
        blend is exactly 1 (the chin's shift alone), faded by ``vfall`` towards the ROI's bottom."""
        chin = self._jaw_profile(sx)
        chin *= CHIN_GAIN
        chin_shift = drop * chin
        chin_shift *= vfall
        return chin_shift

    def _rows(self, r0: int, r1: int, lo: float, hi: float) -> slice:
        """The rows of the tile ``r0:r1`` (relative to it) whose y lies in [``lo``, ``hi``], widened by a pixel each
        way (so float rounding never leaves out a row); empty when there are none."""
        base = self.roi[0] + r0
        a = min(max(0, math.floor(lo) - 1 - base), r1 - r0)
        b = max(a, min(r1 - r0, math.ceil(min(hi, float(self._rh + self.roi[0]))) + 2 - base))
        return slice(a, b)

    def _render_rows(self, out: npt.NDArray[np.uint8], shape: MouthShape, r0: int, r1: int) -> None:
        X, Y = self._X[r0:r1], self._Y[r0:r1]
        window = self._window[r0:r1]
        # Backward map: which base column does each output pixel show?
        k = 1.0 - 1.0 / shape.scale
        sx = X - self._hbasis[r0:r1] * k
        shift = self._hbasis_max * abs(k)
        if self._lip_span is not None:
            up, lower = self._lip_lines(sx, shift)
        else:
            up, lower = self._upper_line(sx), self._lower_line(sx)
        low = np.maximum(lower, up)
        # The lip profile is 0 beyond the mouth corners: computed (with the opening's) only on the columns that can
        # read from between them.
        c0, c1 = self._columns(self._cx - self._hw, self._cx + self._hw, shift)
        u = self._across(sx[:, c0:c1])
        side = np.zeros(sx.shape, np.float32)
        side[:, c0:c1] = _bump(u)  # the lip profile
        opens = np.zeros(sx.shape, np.float32)
        # The lips part in the middle first: the corners stay together until the mouth opens wide. (A lens, as a
        # speaking mouth opens; the half-ellipse used before opened every mouth from corner to corner.)
        u /= OPEN_SPAN + (1.0 - OPEN_SPAN) * min(1.0, shape.opening)
        opens[:, c0:c1] = _bump(u)
        rest_gap = low - up
        close, drop = self._close_and_drop(shape)
        # Closing the resting gap: the lower lip travels 60 % of the way up, the upper lip 40 % down. Opening, the
        # upper lip lifts a little at its centre (the opening is a lens, not a bowl under a flat lip).
        lift: F32 = (np.float32(LIP_LIFT * drop) * side) * window
        close_up = 0.4 * close * rest_gap * window - lift
        # The lower lip drops along a parabola over the span that parts (``opens``).
        lower_shift = drop * opens - 0.6 * close * rest_gap
        up_out = up + close_up
        low_out = low + lower_shift * window
        # Each step below changes only pixels in a band of rows around the moved lip lines: it is computed on the
        # rows of that band (the same values, on a fraction of the tile).
        u_min, u_max = float(up_out.min()), float(up_out.max())
        l_min, l_max = float(low_out.min()), float(low_out.max())

        # Below the lower lip: the lip (and, further down, the whole chin) moves by the jaw's displacement; the chin,
        # further from the hinge, moves a little more than the lip. Above the moved lower lip every pixel reads its
        # own row.
        sy = Y.copy()
        rs = self._rows(r0, r1, l_min, math.inf)
        if rs.start < rs.stop:
            # More than the lip-to-chin distance below the lower lip, t (below) is exactly 1 and the shift is the
            # chin's alone: those rows skip the blend from lip to chin.
            split = math.ceil(float(low[rs].max()) + self._lip_to_chin) + 1 - (self.roi[0] + r0)
            split = min(max(rs.start, split), rs.stop)
            vfall = self._vfall[r0:r1]
            near, far = slice(rs.start, split), slice(split, rs.stop)
            if near.start < near.stop:
                Yr = Y[near]
                t = smoothstep((Yr - low[near]) / self._lip_to_chin)
                chin = self._jaw_profile(sx[near])
                chin *= CHIN_GAIN
                chin *= t
                profile = 1.0 - t
                profile *= opens[near]
                profile += chin
                chin_shift = (drop * profile - 0.6 * close * rest_gap[near] * (1.0 - t)) * vfall[near]
                np.copyto(sy[near], Yr - chin_shift, where=low_out[near] <= Yr)
            if far.start < far.stop:
                Yr = Y[far]
                chin_shift = self._chin_drop(sx[far], drop, vfall[far])
                np.copyto(sy[far], Yr - chin_shift, where=low_out[far] <= Yr)
        skip = self._crease * min(1.0, 4.0 * shape.opening)
        reach = 2.0 * self._crease
        near_lips = skip > 0 and Y[0, 0] <= l_max + reach and Y[-1, 0] >= u_min - reach
        if near_lips:
            # Where the lips part, their inner edges show lip, not the dark crease the closed lips made in the photo:
            # the first pixels of each moved lip edge are read a little further into the lip.
            # (Over twice the crease's width, so the lip is compressed at most 2:1 there, never folded.)
            rs = self._rows(r0, r1, l_min, l_max + reach)
            below = (Y[rs] - low_out[rs]) / (2.0 * self._crease)
            np.copyto(sy[rs], sy[rs] + skip * side[rs] * (1.0 - below), where=(below >= 0) & (below < 1.0))
        # Above the upper lip's inner edge: the band from the fixed top down to the moved lip line follows the lip
        # smoothly (no kink in the skin's texture where the stretch starts), never folding.
        if close > 0 or drop > 0:
            rs = self._rows(r0, r1, self._top, u_max)
            Yr = Y[rs]
            band = np.maximum(up_out[rs] - self._top, 1.0)
            follow = smoothstep((Yr - self._top) / band) * np.clip(close_up[rs], -band / 1.6, band / 1.6)
            np.copyto(sy[rs], Yr - follow, where=(self._top <= Yr) & (up_out[rs] > Yr))
        # Inside the gap, the photo's own interior (its teeth) stays with the upper jaw...
        rs = self._rows(r0, r1, u_min, l_max)
        Yr = Y[rs]
        np.copyto(sy[rs], Yr - close_up[rs], where=(up_out[rs] <= Yr) & (low_out[rs] > Yr))
        if near_lips:
            rs = self._rows(r0, r1, u_min - reach, u_max)
            above = (up_out[rs] - Y[rs]) / (2.0 * self._crease)
            np.copyto(sy[rs], sy[rs] - skip * 0.6 * side[rs] * (1.0 - above), where=(above > 0) & (above < 1.0))
        warped = self._sample(sx, sy)

        # ...and whatever opens beyond the photo's own gap is synthesised. The lip edges are as soft as the photo.
        # The gap's top is never above the moved upper lip, so the coverage is 0 outside these rows.
        soft = self._soft
        rs = self._rows(r0, r1, u_min - 0.5 * soft, l_max + 0.5 * soft)
        if drop > 0 and rs.start < rs.stop:
            Yr = Y[rs]
            # A photo's own open mouth ends a crease's width above its lower lip line: the landmarked line lies a
            # few pixels into the lip, and those pixels (the lip's edge and the crease) would hang under the teeth
            # as a ghost of the lower lip when it drops away.
            new_top: F32 = up_out[rs] + rest_gap[rs] * (1.0 - close)
            if not self._teeth:
                inset = np.minimum(np.minimum(self._crease, 0.5 * drop * opens[rs]), new_top - up_out[rs])
                new_top = (new_top - inset).astype(np.float32, copy=False)
            synth = np.clip(
                (np.minimum(Yr + 0.5 * soft, low_out[rs]) - np.maximum(Yr - 0.5 * soft, new_top)) / soft, 0.0, 1.0
            ).astype(np.float32, copy=False)
            box = _nonzero_box(synth)
            if box is not None:
                # The interior is computed only in the box where the gap shows (a small band of the ROI); outside it
                # the coverage is 0 and the warped pixels stand as they are.
                band_rows, xs = slice(box[0], box[1]), slice(box[2], box[3])
                ys = slice(rs.start + box[0], rs.start + box[1])
                cut = [a[ys, xs] for a in (Y, sx, side, up_out, low_out)]
                cut += [synth[band_rows, xs], new_top[band_rows, xs]]
                self._paint_interior(warped[:, ys, xs], shape, r0 + ys.start, box[2], *cut)
        if close > 0 and self._teeth:
            # Pressed lips: a soft shadow along the line where they meet (exactly 0 a dozen pixels away from it: in
            # float32, exp(-(16 / 1.2) ** 2) is 0).
            # Rows where it is 0 everywhere are multiplied by 1, which leaves them exactly as they are.
            rs = self._rows(r0, r1, u_min - 16.0, u_max + 16.0)
            if rs.start < rs.stop:
                line = np.exp(-(((Y[rs] - up_out[rs]) / 1.2) ** 2)) * side[rs] * close * 0.35
                warped[:, rs] *= 1.0 - line
        self._store(out, warped, r0, r1)

    @staticmethod
    def _store(out: npt.NDArray[np.uint8], warped: F32, r0: int, r1: int) -> None:
        """Rows ``r0:r1`` of ``out`` from the planar float pixels ``warped`` (rounded, clipped to bytes)."""
        warped += 0.5
        np.clip(warped, 0, 255, out=warped)
        # Cast planar, then copied a plane at a time into the interleaved frame (4x faster than one strided cast).
        planes = warped.astype(np.uint8)
        dst = out[r0:r1]
        for c in range(3):
            dst[..., c] = planes[c]

    def _close_and_drop(self, shape: MouthShape) -> tuple[float, float]:
        """How much of the photo's resting gap is closed, and how far (px) the lower lip drops, for ``shape``."""
        j0 = self._rest_open * shape.press
        if j0 <= 0.0:
            return shape.close, self._max_open * shape.opening
        close = max(shape.close, shape.press * (1.0 - min(1.0, shape.opening / self._rest_open)))
        return close, self._max_open * max(0.0, shape.opening - j0)

    def _paint_interior(
        self,
        warped: F32,
        shape: MouthShape,
        row0: int,
        col0: int,
        Y: F32,
        sx: F32,
        side: F32,
        up_out: F32,
        low_out: F32,
        synth: F32,
        top: F32,
    ) -> None:
        # Colour arrays are planar (3 x rows x cols); the rest is per pixel (rows x cols).
        rows, cols = Y.shape
        gap = np.maximum(low_out - up_out, 1e-3)
        v = np.clip((Y - up_out) / gap, 0.0, 1.0)
        light = self._col_light[col0 : col0 + cols]
        # Cavity: darkest a third of the way down and at the centre, lighter towards the upper lip and corners;
        # it stays dark down to the lower lip, so that lip's inner edge is as crisp as in a photograph.
        depth = np.clip(1.0 - np.maximum(0.35 - v, (v - 0.35) * 0.4) / 0.65, 0.0, 1.0) * side
        interior = self._edge + (self._deep - self._edge) * depth
        # Tongue: a rounded hump low on the floor of the opening (below the photo's own teeth where they stay),
        # highest at the centre, in the upper jaw's shadow: darker than the lips, so its top never reads as the
        # lower lip's edge.
        u = self._across(sx) / 0.75
        hump = 0.55 + 0.25 * _bump(u)
        w = np.clip((Y - top) / np.maximum(low_out - top, 1e-3), 0.0, 1.0)
        tongue = smoothstep((w - (1.0 - hump * TONGUE_HEIGHT)) / 0.12) * 0.9 * side
        tongue_col = self._tongue_dark + (self._tongue - self._tongue_dark) * np.clip((w - 0.6) / 0.4, 0.0, 1.0)
        interior = (interior + (tongue_col - interior) * tongue) * light
        col_idx = np.arange(col0, col0 + cols)[None, :]
        # Lower teeth: behind the lower lip, their biting edge rising above it as the jaw drops.
        showing = self._low_len * float(np.clip(shape.opening / LOWER_FULL, 0.0, 1.0))
        if showing > 0.5:
            # Texture rows run from the root (row 2, at the lower lip) to the biting edge, which is on top.
            d = np.clip(np.rint(self._low_len - showing + (low_out - Y)) + 2.0, 0, self._low_rows - 1).astype(np.intp)
            texel = self._low_tex[d, col_idx]  # rows x cols x 4
            a = texel[..., 3] * (low_out - Y >= -0.5)
            interior = interior + (np.moveaxis(texel[..., :3], -1, 0) - interior) * a
        if self._teeth:
            # Relaxed lips cover most of the upper teeth: only their biting edges show under the lip; stretched
            # (smiling, "ee") or wide open, the whole crown.
            stretch = float(np.clip((shape.scale - 1.0) / STRETCH_GAIN, 0.0, 1.0))
            smile = 0.5 * stretch * smoothstep_f(shape.opening / 0.4)
            crown = max(stretch, min(1.0, smoothstep_f((shape.opening - 0.45) / 0.45) + smile))
            hidden = (1.0 - RELAXED_TEETH) * (1.0 - crown) * UPPER_TEETH * self.mouth_width
            # A stretched (smiling) open mouth shows the upper gum line: the teeth hang that much lower under the
            # lip. Opening the jaw alone does not lift the upper lip off the gums (a wide "ah" shows none).
            gum = GUM * self.mouth_width * smile
            d = np.clip(np.rint(Y - up_out - gum + hidden) + 2.0, 0, self._up_rows - 1).astype(np.intp)
            texel = self._up_tex[d, col_idx]
            a = texel[..., 3]
            interior = interior + (np.moveaxis(texel[..., :3], -1, 0) - interior) * a
            if gum > 0.3:
                edge = gum * (1.0 + 0.6 * self._papilla[col0 : col0 + cols])
                cover = np.clip((edge + 0.5 * self._soft - (Y - up_out)) / self._soft, 0.0, 1.0)
                interior = interior + (self._gum[:, :, col0 : col0 + cols] - interior) * cover
        # The upper lip shades what is right under it, and a narrow opening lets little light in.
        interior = interior * (0.72 + 0.28 * smoothstep((Y - up_out) / max(1.0, 0.04 * self.mouth_width)))
        interior *= np.float32(NARROW_LIGHT + (1.0 - NARROW_LIGHT) * smoothstep_f(shape.opening / 0.5))
        # The lower lip's wet inner edge, in front of everything inside: the lip turns into the dark gradually.
        # (At most a fifth of the opening's height: a small opening stays dark.)
        width = np.clip(0.2 * (low_out - top), 0.3, MUCOSA * self.mouth_width)
        wet = np.exp(-np.maximum(low_out - Y, 0.0) / width) * MUCOSA_ALPHA
        interior = interior + (self._mucosa[:, :, col0 : col0 + cols] - interior) * wet
        interior = interior + self._grain[row0 : row0 + rows, col0 : col0 + cols]
        warped[...] = warped * (1.0 - synth) + interior * synth

    def _sample(self, sx: F32, sy: F32) -> F32:
        """Smooth part bilinearly plus detail from the nearest pixel, at absolute coordinates clamped to the ROI;
        planar (3 x rows x cols)."""
        y0, _, x0, _ = self.roi
        fx = sx - np.float32(x0)
        np.clip(fx, 0.0, self._rw - 1.0, out=fx)
        fy = sy - np.float32(y0)
        np.clip(fy, 0.0, self._rh - 1.0, out=fy)
        # Integer parts kept as float32: subtracting them is exact, and float32 arithmetic stays float32.
        ix = np.floor(fx)
        np.minimum(ix, self._rw - 2.0, out=ix)
        iy = np.floor(fy)
        np.minimum(iy, self._rh - 2.0, out=iy)
        ax = fx
        ax -= ix
        ay = fy
        ay -= iy
        iy *= self._rw
        iy += ix
        index = iy.astype(np.intp)
        # Colour planes (12 x rows x cols): numpy broadcasts a per-pixel weight over separate planes ~6x faster than
        # over an interleaved RGB last axis. The gathered rows are transposed into planes of bytes, which the
        # arithmetic widens to float32 on the fly.
        rows = np.take(self._quad, index).view(np.uint8).reshape(-1, 16)
        q = np.empty((12, rows.shape[0]), np.uint8)
        q[...] = rows[:, :12].T
        q = q.reshape((12, *index.shape))
        bx = 1.0 - ax
        top = q[0:3] * bx
        top += q[3:6] * ax
        sampled: F32 = q[6:9] * bx
        sampled += q[9:12] * ax
        sampled *= ay
        top *= 1.0 - ay
        sampled += top
        nearest = index
        np.add(nearest, self._rw, out=nearest, where=ay >= 0.5)
        nearest += ax >= 0.5
        sampled += np.take(self._detail, nearest, axis=1)
        return sampled


def _bump(u: F32) -> F32:
    """1 - u^2, clipped to 0..1: 1 at u = 0, 0 from |u| = 1 on."""
    out: F32 = np.clip(np.float32(1.0) - u * u, 0.0, 1.0)
    return out


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
