"""Does a fitted face make a good avatar? Head pose, fit stability and size limits, each with a message that says
what to do.

The builder's checks, in the order a user meets them (the numbers are documented in docs/hvia.md, "Limits"):

- the picture is at least :data:`MIN_IMAGE_SIDE` px on its shorter side;
- exactly one usable face (small faces are searched for on overlapping tiles of the picture, so a group photo says
  how many faces it found rather than "no face");
- the face is at least :data:`~avaluma.renderer.builder.MIN_FACE_PX` wide, and its mouth at least
  :data:`MIN_MOUTH_PX` wide in the avatar;
- the head is turned at most :data:`MAX_YAW_DEG`, nodded at most :data:`MAX_PITCH_DEG` and tilted at most
  :data:`MAX_ROLL_DEG`;
- the face mesh fits the face: refitting it from a shifted, rescaled crop lands within :data:`MAX_FIT_SPREAD` of the
  face width (a mesh forced onto something that is not a frontal human face drifts), and the fitted features are in
  human proportions;
- the whole face (chin to forehead, cheek to cheek) is inside the picture;
- the mouth is uncovered (lips where the mesh puts them, :func:`check_mouth_visible`; a video's frames are judged one
  by one and dropped instead), and the face is a real human one: photographed, not drawn, with human skin
  (:func:`check_human`).

Pure functions over landmarks (``[468, 3]`` in pixels, MediaPipe's canonical indices) and the framed picture, except
:func:`fit_spread`, which runs the face mesh again.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from PIL import Image

from avaluma.core.errors import InvalidArgument

F32 = npt.NDArray[np.float32]

#: Shorter side of the source picture, px: below it there is not enough of a face to animate.
MIN_IMAGE_SIDE = 160
#: Mouth width in the built avatar, px (corner to corner): below it the mouth is a smudge at normal viewing size.
MIN_MOUTH_PX = 36
#: Head turn (left/right), nod (up/down) and tilt limits, degrees from facing the camera.
MAX_YAW_DEG = 40.0
MAX_PITCH_DEG = 30.0
MAX_ROLL_DEG = 30.0
#: Frontal faces measure a pitch of about -6 degrees with :func:`head_pose` (the chin sits in front of the forehead).
PITCH_OFFSET_DEG = -6.0
#: Mean landmark displacement between two fits from different crops, as a fraction of the face width.
#: Measured on 13 real photos: 0.011..0.042; a near-profile: 0.078.
MAX_FIT_SPREAD = 0.06

_CHEEK_R, _CHEEK_L, _FOREHEAD, _CHIN, _NOSE_TIP = 234, 454, 10, 152, 1
_EYE_OUTER_R, _EYE_OUTER_L = 33, 263
_MOUTH_L, _MOUTH_R = 61, 291
FACE_OVAL = (10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377, 152, 148, 176,
             149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109)  # fmt: skip


@dataclass(frozen=True, slots=True)
class HeadPose:
    """Degrees: ``yaw`` > 0 turned towards the image's right, ``pitch`` > 0 chin up, ``roll`` > 0 clockwise."""

    yaw: float
    pitch: float
    roll: float


def head_pose(lm: F32) -> HeadPose:
    """Head pose from the mesh's 3-D landmarks (its z is relative depth in the scale of x)."""
    across = lm[_CHEEK_L].astype(np.float64) - lm[_CHEEK_R]
    yaw = math.degrees(math.atan2(float(across[2]), math.hypot(float(across[0]), float(across[1]))))
    down = lm[_CHIN].astype(np.float64) - lm[_FOREHEAD]
    pitch = math.degrees(math.atan2(-float(down[2]), math.hypot(float(down[0]), float(down[1])))) - PITCH_OFFSET_DEG
    eyes = lm[_EYE_OUTER_L].astype(np.float64) - lm[_EYE_OUTER_R]
    roll = math.degrees(math.atan2(float(eyes[1]), float(eyes[0])))
    return HeadPose(yaw, pitch, roll)


def face_width(lm: F32) -> float:
    return float(np.linalg.norm(lm[_CHEEK_L, :2] - lm[_CHEEK_R, :2]))


def mouth_width(lm: F32) -> float:
    return float(np.linalg.norm(lm[_MOUTH_R, :2] - lm[_MOUTH_L, :2]))


def check_image_size(width: int, height: int, source: str) -> None:
    if min(width, height) < MIN_IMAGE_SIDE:
        raise InvalidArgument(
            f"{source}: the picture is only {width}x{height} px; use one at least {MIN_IMAGE_SIDE} px on its shorter "
            "side (a face of 200 px or more gives the best mouth)"
        )


def check_pose(pose: HeadPose, source: str) -> None:
    """Refuse heads turned, nodded or tilted past the limits, saying which way and how far."""
    if abs(pose.yaw) > MAX_YAW_DEG:
        raise InvalidArgument(
            f"{source}: the head is turned {abs(pose.yaw):.0f} degrees to the side (at most {MAX_YAW_DEG:.0f} works); "
            "use a picture where the person faces the camera, both eyes and both mouth corners visible"
        )
    if abs(pose.pitch) > MAX_PITCH_DEG:
        way = "up" if pose.pitch > 0 else "down"
        raise InvalidArgument(
            f"{source}: the head is tipped {abs(pose.pitch):.0f} degrees {way} (at most {MAX_PITCH_DEG:.0f} works); "
            "use a picture taken at eye level, the person looking into the camera"
        )
    if abs(pose.roll) > MAX_ROLL_DEG:
        raise InvalidArgument(
            f"{source}: the head is tilted {abs(pose.roll):.0f} degrees (at most {MAX_ROLL_DEG:.0f} works); rotate the "
            "picture so the eyes are level"
        )


def check_proportions(lm: F32, source: str) -> None:
    """The fitted features must sit where a human face has them (a mesh forced onto a non-face does not)."""
    fw = face_width(lm)
    nose = (float(lm[_NOSE_TIP, 0]) - float(lm[_CHEEK_R, 0])) / max(float(lm[_CHEEK_L, 0] - lm[_CHEEK_R, 0]), 1e-3)
    eyes = float(np.linalg.norm(lm[_EYE_OUTER_L, :2] - lm[_EYE_OUTER_R, :2])) / max(fw, 1e-3)
    mouth = mouth_width(lm) / max(fw, 1e-3)
    if not (-0.05 <= nose <= 1.05 and 0.45 <= eyes <= 1.0 and 0.2 <= mouth <= 0.7):
        raise InvalidArgument(
            f"{source}: the face could not be fitted reliably (its features are not where a face facing the camera "
            "has them); use a sharp photo of one person's face, facing the camera, nothing covering it"
        )


def check_fit_spread(spread: float, source: str) -> None:
    if spread > MAX_FIT_SPREAD:
        raise InvalidArgument(
            f"{source}: the face could not be fitted reliably (the landmarks move by {100 * spread:.0f} % of the face "
            "width between two fits); use a sharp, evenly lit photo of a person facing the camera, nothing covering "
            "the face"
        )


def check_inside(lm: F32, width: int, height: int, source: str) -> None:
    """The whole face oval (with a small margin) must be inside the picture the avatar is made from."""
    pts = lm[list(FACE_OVAL), :2]
    margin = 0.02 * face_width(lm)
    sides = []
    if float(pts[:, 0].min()) < margin:
        sides.append("left")
    if float(pts[:, 0].max()) > width - 1 - margin:
        sides.append("right")
    if float(pts[:, 1].min()) < -0.1 * face_width(lm):  # the forehead may touch the top edge
        sides.append("top")
    if float(pts[:, 1].max()) > height - 1 - margin:
        sides.append("bottom")
    if sides:
        raise InvalidArgument(
            f"{source}: the face is cut off at the {' and '.join(sides)} edge of the picture; use a picture that shows "
            "the whole head with some room around it"
        )


def check_mouth_size(mouth_px: float, face_px_source: float, source: str) -> None:
    """``mouth_px``: mouth width in the avatar; ``face_px_source``: the face's width in the source picture. The
    builder never enlarges a face beyond the source's resolution, so a bigger mouth needs a bigger face."""
    if mouth_px < MIN_MOUTH_PX:
        need = face_px_source * MIN_MOUTH_PX / max(mouth_px, 1e-3)
        raise InvalidArgument(
            f"{source}: the mouth would be only {mouth_px:.0f} px wide in the avatar (at least {MIN_MOUTH_PX} px "
            f"needed); use a higher-resolution picture in which the face is at least {need:.0f} px wide"
        )


Refit = Callable[[Image.Image, tuple[float, float], float, float], tuple[F32, float]]


def fit_spread(refit: Refit, rgb: npt.NDArray[np.uint8], lm: F32) -> float:
    """Mean landmark displacement / face width between ``lm`` and a fit from a crop shifted by 5 % and grown by
    15 % (``refit(image, centre, size, angle) -> (landmarks, presence)``, the mesh's own crop-and-fit)."""
    from avaluma.renderer.facemesh import crop_from_landmarks

    (cx, cy), size, angle = crop_from_landmarks(lm)
    image = Image.fromarray(rgb)
    spreads = []
    for dx, dy, grow in ((0.05, -0.04, 1.15), (-0.05, 0.04, 0.92)):
        other, _ = refit(image, (cx + dx * size, cy + dy * size), size * grow, angle)
        spreads.append(float(np.linalg.norm(other[:, :2] - lm[:, :2], axis=1).mean()))
    return max(spreads) / max(face_width(lm), 1e-3)


# --- is it a real human face, and is its mouth uncovered? ---------------------------------------------------------
#
# The face mesh fits a human mesh onto anything the detector accepts (a drawn face, an animal, a face with a hand over
# the mouth) and reports it present, so these checks look at the picture inside the fitted mesh instead. Every score is
# measured at the avatar's resolution, its scales relative to the face width, so they do not depend on the picture's
# size. bench/face_check.py prints them for the development portraits, talking-face frames and generated non-faces.

#: A drawn face: the fraction of the face (inside the mesh's oval) whose 5x5 neighbourhood spans at most
#: :data:`_FLAT_LEVELS` grey levels in every colour channel. Photos and realistic paintings: at most 0.06 (H.264 video
#: frames are the flattest); flat-coloured or airbrushed drawings, also JPEG-compressed: 0.27 and more.
MAX_FLAT = 0.2
_FLAT_LEVELS = 2
#: ...counted only where the rest has little detail (texture below this): a photo compressed to JPEG quality 10 has
#: flat 8x8 blocks (0.25 of a dark, smooth-skinned face) but keeps its texture (1.0); flat drawings: 0.37 at most.
FLAT_TEXTURE = 0.6
#: ...or a face without skin texture: the median magnitude of the skin's brightness detail at 1-2 % of the face width
#: (band-pass), grey levels. Photos, paintings and video frames: 0.34 and more; smooth-shaded drawings: 0.03..0.18.
MIN_TEXTURE = 0.15
#: ...or an inked outline: the fraction of the jaw line (ear to chin to ear, 19 points) where, across it, a thin dark
#: line (at most 3 % of the face width at half depth, 20+ grey levels and a quarter darker than both sides) runs
#: between smooth sides. Photos, the painting and video frames: 0.11 at most (a beard, a collar or a planked wall make
#: dark lines with rough sides); drawings with outlines, even with noise and JPEG added: 0.84 and more.
MAX_OUTLINE = 0.5
_JAW_LINE = (234, 93, 132, 58, 172, 136, 150, 149, 176, 148, 152, 377, 400, 378, 379, 365, 397, 288, 361, 323, 454)
#: Skin colour (colour pictures only; a black-and-white photo has none to judge): the fraction of the cheeks', nose's
#: and forehead's pixels (neither blown out nor black) whose chroma is in the range of human skin under ordinary
#: light. Real faces from dark to light skin, painted ones and video frames: 0.6 and more; a blue, green or grey face
#: (fur, a mask, a painted creature): far less.
MIN_SKIN = 0.3
#: A picture is "black and white" when the median saturation of the face is below this.
GREY_SATURATION = 0.04
#: An uncovered mouth: the lips' brightness relief. Down each column of the mouth's middle 60 %, from the top of the
#: upper lip to just below the lower one, the range of the (lightly smoothed) brightness over its median; the median
#: over the columns. The line where the lips meet, teeth and the shadow under the lower lip give real mouths 0.36 and
#: more in the development portraits (a broad smile with teeth is the lowest) and 0.42 in every frame of the real
#: clips; the renderer's own closed mouth (a clip made from a photo avatar) 0.22; a skin-coloured thing held over
#: the mouth (the face's own cheek colour and grain, soft edges) 0.10 or less.
MIN_MOUTH_RELIEF = 0.18
#: ...and a weak relief (under :data:`WEAK_MOUTH_RELIEF`) counts only with lips of their own colour: a hand with the
#: gaps between its fingers across the mouth gives 0.27..0.31, but its "lips" have the skin's chroma (a distance of
#: 1.7 or less, YCbCr levels) where real lips differ by 4.5..29 in the portraits (0.8 for the painting, whose relief
#: is strong) and by 1.7 and more in H.264 video frames. Black-and-white pictures have no colour to judge.
WEAK_MOUTH_RELIEF = 0.33
MIN_LIP_COLOUR = 2.0
#: ...and in colour pictures the lips are at least this saturated relative to the skin (the lips' median saturation
#: over the cheeks', nose's and forehead's): 0.98 and more in the portraits, the clips' frames and under white-balance
#: casts; a grey or black thing held over the mouth (a microphone) 0.0, whatever relief its edge makes.
MIN_LIP_SATURATION = 0.4

_CHEEK_PATCH_R = (117, 118, 101, 36, 205, 187, 123)
_CHEEK_PATCH_L = (346, 347, 330, 266, 425, 411, 352)
_NOSE_PATCH = (168, 417, 351, 419, 248, 281, 5, 51, 3, 196, 122, 193)
_FOREHEAD_PATCH = (67, 109, 10, 338, 297, 299, 9, 69)
_LIP_TOP, _LIP_BOTTOM = (0, 37, 267), (17, 84, 314)
# Human skin chroma (YCbCr, 0..255): the portraits' skin, dark to light, under white-balance casts up to red x0.7 and
# blue x1.4 (cool), blue x0.55 (tungsten), green x1.15 or magenta spans Cb-128 from -60 to +38 and Cr-128 from -29 to
# +62, so only what lies well beyond that (blue, cyan or green paint, a coloured mask, a creature) is not skin: the
# range is one-sided.
_SKIN_CB = (0.0, 128.0 + 45.0)
_SKIN_CR = (128.0 - 35.0, 255.0)


#: The face mesh's own confidence that its crop holds a face. Every photo and video frame of a person measured (the
#: development portraits, also blurred, shrunk to a quarter, JPEG quality 10 or darkened, and the clips' frames):
#: 0.9999 and more; a cat's face: 0.01 and less. Below this the builder says what was found is not a human face.
MIN_PRESENCE = 0.9


def check_presence(presence: float, source: str) -> None:
    if presence < MIN_PRESENCE:
        sure = math.floor(100 * presence)
        raise InvalidArgument(
            f"{source}: what was found does not fit a human face (the face model is {sure} % sure it is one; photos "
            "of people score 99 % and more); use a photo of a real human face, frontal, evenly lit, nothing covering it"
        )


@dataclass(frozen=True, slots=True)
class Appearance:
    """What the picture shows inside the fitted mesh (see the limits above for the ranges of real faces)."""

    flat: float
    texture: float
    skin: float | None
    mouth_relief: float
    lip_colour: float | None = None
    outline: float = 0.0
    lip_saturation: float | None = None


def _luma(rgb: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
    f = rgb.astype(np.float32)
    out: npt.NDArray[np.float32] = 0.299 * f[..., 0] + 0.587 * f[..., 1] + 0.114 * f[..., 2]
    return out


def _blur(a: npt.NDArray[np.float32], sigma: float) -> npt.NDArray[np.float32]:
    """Separable Gaussian blur (edges repeated), as shifted sums: no SciPy in the renderer."""
    r = max(1, int(3 * sigma + 0.5))
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2).astype(np.float32)
    k /= k.sum()
    p = np.pad(a, r, mode="edge")
    h, w = a.shape
    rows = sum(k[i] * p[i : i + h, :] for i in range(2 * r + 1))
    out = sum(k[i] * rows[:, i : i + w] for i in range(2 * r + 1))
    return np.asarray(out, dtype=np.float32)


def _polygon_mask(shape: tuple[int, ...], lm: F32, indices: tuple[int, ...]) -> npt.NDArray[np.bool_]:
    from PIL import ImageDraw

    m = Image.new("L", (shape[1], shape[0]), 0)
    ImageDraw.Draw(m).polygon([(float(lm[i, 0]), float(lm[i, 1])) for i in indices], fill=255)
    return np.asarray(m) > 0


def _box(lm: F32, shape: tuple[int, ...], pad: int) -> tuple[slice, slice]:
    x0, y0 = np.floor(lm[:, :2].min(axis=0)).astype(int) - pad
    x1, y1 = np.ceil(lm[:, :2].max(axis=0)).astype(int) + pad
    return slice(max(0, int(y0)), min(shape[0], int(y1))), slice(max(0, int(x0)), min(shape[1], int(x1)))


def flatness(rgb: npt.NDArray[np.uint8], lm: F32) -> float:
    """Fraction of the face oval whose 5x5 neighbourhood spans at most :data:`_FLAT_LEVELS` levels in every channel."""
    ys, xs = _box(lm, rgb.shape, 2)
    face = rgb[ys, xs].astype(np.int16)
    span = np.zeros(face.shape[:2], dtype=np.int16)
    for c in range(3):
        hi, lo = face[..., c].copy(), face[..., c].copy()
        for axis in (0, 1):
            shifted_hi = [np.roll(hi, s, axis=axis) for s in (-2, -1, 1, 2)]
            shifted_lo = [np.roll(lo, s, axis=axis) for s in (-2, -1, 1, 2)]
            hi = np.maximum.reduce([hi, *shifted_hi])
            lo = np.minimum.reduce([lo, *shifted_lo])
        span = np.maximum(span, hi - lo)
    oval = _polygon_mask(rgb.shape, lm, FACE_OVAL)[ys, xs]
    oval[:2], oval[-2:], oval[:, :2], oval[:, -2:] = False, False, False, False  # np.roll wraps there
    return float((span[oval] <= _FLAT_LEVELS).mean()) if oval.any() else 0.0


def _skin_mask(rgb: npt.NDArray[np.uint8], lm: F32) -> npt.NDArray[np.bool_]:
    m = _polygon_mask(rgb.shape, lm, _CHEEK_PATCH_R) | _polygon_mask(rgb.shape, lm, _CHEEK_PATCH_L)
    return m | _polygon_mask(rgb.shape, lm, _NOSE_PATCH) | _polygon_mask(rgb.shape, lm, _FOREHEAD_PATCH)


def skin_texture(rgb: npt.NDArray[np.uint8], lm: F32) -> float:
    """Median magnitude of the skin's brightness detail between 1 % and 2 % of the face width (grey levels)."""
    ys, xs = _box(lm, rgb.shape, 8)
    y = _luma(rgb[ys, xs])
    sigma = 0.01 * face_width(lm)
    band = _blur(y, sigma) - _blur(y, 2 * sigma)
    skin = _skin_mask(rgb, lm)[ys, xs] & (y > 10) & (y < 245)  # blown-out highlights have no texture to show
    return float(np.median(np.abs(band[skin]))) if skin.any() else 0.0


def drawn_outline(rgb: npt.NDArray[np.uint8], lm: F32) -> float:
    """Fraction of the jaw line with a thin dark line between smooth sides across it (see :data:`MAX_OUTLINE`)."""
    y = _luma(rgb)
    fw = face_width(lm)
    centre = lm[:, :2].astype(np.float64).mean(axis=0)
    points = lm[list(_JAW_LINE), :2].astype(np.float64)
    steps = np.linspace(-0.06, 0.06, 49) * fw  # across the jaw line, 0.25 % of the face width apart
    step = 0.12 / 48
    near, far = round(0.015 / step), round(0.04 / step)  # the sides: 1.5 % to 4 % of the face width away
    lines = 0
    for k in range(1, len(points) - 1):
        along = points[k + 1] - points[k - 1]
        normal = np.array([along[1], -along[0]]) / max(float(np.linalg.norm(along)), 1e-6)
        if np.dot(normal, points[k] - centre) < 0:
            normal = -normal
        xy = points[k] + steps[:, None] * normal
        xs = np.clip(np.round(xy[:, 0]).astype(int), 0, rgb.shape[1] - 1)
        ys = np.clip(np.round(xy[:, 1]).astype(int), 0, rgb.shape[0] - 1)
        profile = y[ys, xs]
        i = int(np.argmin(profile[far:-far])) + far
        inner, outer = profile[i - far : i - near], profile[i + near + 1 : i + far + 1]
        sides = min(float(np.median(inner)), float(np.median(outer)))
        depth = sides - float(profile[i])
        if depth <= 20 or depth <= 0.25 * sides or max(float(inner.std()), float(outer.std())) >= 0.2 * depth:
            continue
        dark = profile < profile[i] + depth / 2
        a, b = i, i
        while a > 0 and dark[a - 1]:
            a -= 1
        while b < len(profile) - 1 and dark[b + 1]:
            b += 1
        if (b - a + 1) * step <= 0.03:
            lines += 1
    return lines / (len(points) - 2)


def skin_colour(rgb: npt.NDArray[np.uint8], lm: F32) -> float | None:
    """Fraction of the skin patches' pixels with a human skin chroma; None for a black-and-white picture."""
    skin = _skin_mask(rgb, lm)
    px = rgb[skin].astype(np.float32)
    if len(px) == 0:
        return 0.0
    if float(np.median(_saturation(px))) < GREY_SATURATION:
        return None
    r, g, b = px[:, 0], px[:, 1], px[:, 2]
    y = 0.299 * r + 0.587 * g + 0.114 * b
    cb = 128.0 - 0.168736 * r - 0.331264 * g + 0.5 * b
    cr = 128.0 + 0.5 * r - 0.418688 * g - 0.081312 * b
    lit = (y > 20) & (y < 235)  # blown-out and black pixels have no colour to judge
    if not lit.any():
        return None
    inside = (cb >= _SKIN_CB[0]) & (cb <= _SKIN_CB[1]) & (cr >= _SKIN_CR[0]) & (cr <= _SKIN_CR[1])
    return float(inside[lit].mean())


def mouth_relief(rgb: npt.NDArray[np.uint8], lm: F32) -> float:
    """The lips' brightness relief (see :data:`MIN_MOUTH_RELIEF`)."""
    fw = face_width(lm)
    x0, x1 = float(lm[_MOUTH_L, 0]), float(lm[_MOUTH_R, 0])
    top = float(lm[list(_LIP_TOP), 1].min())  # not above: a shadow under the nose is no lip
    bottom = float(lm[list(_LIP_BOTTOM), 1].max()) + 0.03 * fw
    sigma = max(0.008 * fw, 0.5)
    pad = int(3 * sigma) + 2
    h, w = rgb.shape[:2]
    ya, yb = max(0, int(top) - pad), min(h, math.ceil(bottom) + pad)
    xa, xb = max(0, int(min(x0, x1)) - pad), min(w, math.ceil(max(x0, x1)) + pad)
    if yb - ya < 2 * pad + 2 or xb - xa < 2 * pad + 2:
        return 0.0
    y = _blur(_luma(rgb[ya:yb, xa:xb]), sigma)
    mouth = y[max(0, int(top) - ya) : int(bottom) - ya + 1, max(0, int(min(x0, x1)) - xa) : int(max(x0, x1)) - xa + 1]
    n = mouth.shape[1]
    cols = mouth[:, int(0.2 * n) : max(int(0.8 * n), int(0.2 * n) + 1)]
    spans = cols.max(axis=0) - cols.min(axis=0)
    return float(np.median(spans) / max(float(np.median(cols)), 1.0))


_LIPS_OUTER = (61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291, 375, 321, 405, 314, 17, 84, 181, 91, 146)
_LIPS_INNER = (78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308, 324, 318, 402, 317, 14, 87, 178, 88, 95)


def _saturation(px: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    out: npt.NDArray[np.float32] = (px.max(axis=-1) - px.min(axis=-1)) / np.maximum(px.max(axis=-1), 1.0)
    return out


def _skin_saturation(rgb: npt.NDArray[np.uint8], lm: F32) -> float:
    """Median saturation of the cheeks, nose and forehead (under :data:`GREY_SATURATION`: a black-and-white picture)."""
    px = rgb[_skin_mask(rgb, lm)].astype(np.float32)
    return float(np.median(_saturation(px))) if len(px) else 0.0


def _lips_and_ring(
    rgb: npt.NDArray[np.uint8], lm: F32
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]] | None:
    """The lips' pixels (outer minus inner contour) and those of the skin in a band around them."""
    ys, xs = _box(lm[list(_LIPS_OUTER)], rgb.shape, int(0.1 * face_width(lm)) + 2)
    part = rgb[ys, xs].astype(np.float32)
    if part.size == 0:
        return None
    shifted = lm.copy()
    shifted[:, 0] -= xs.start
    shifted[:, 1] -= ys.start
    outer = shifted[list(_LIPS_OUTER), :2].astype(np.float64)
    away = outer - outer.mean(axis=0)
    grown = outer + away / np.maximum(np.linalg.norm(away, axis=1, keepdims=True), 1e-3) * 0.06 * face_width(lm)
    ring_lm = np.zeros((len(grown), 3), dtype=np.float32)
    ring_lm[:, :2] = grown
    lips_out = _polygon_mask(part.shape, shifted, _LIPS_OUTER)
    lips = lips_out & ~_polygon_mask(part.shape, shifted, _LIPS_INNER)
    ring = _polygon_mask(part.shape, ring_lm, tuple(range(len(grown)))) & ~lips_out
    if lips.sum() < 10 or ring.sum() < 10:
        return None
    return part[lips], part[ring]


def lip_measures(rgb: npt.NDArray[np.uint8], lm: F32) -> tuple[float | None, float | None]:
    """The lips' colour against the skin around them: their chroma distance (YCbCr levels, medians) and their median
    saturation over the skin's (see :data:`MIN_LIP_COLOUR`, :data:`MIN_LIP_SATURATION`); None, None for a
    black-and-white picture."""
    found = _lips_and_ring(rgb, lm)
    skin = _skin_saturation(rgb, lm)
    if found is None or skin < GREY_SATURATION:
        return None, None
    (cb_lips, cr_lips), (cb_ring, cr_ring) = (
        (
            128.0 - 0.168736 * px[:, 0] - 0.331264 * px[:, 1] + 0.5 * px[:, 2],
            128.0 + 0.5 * px[:, 0] - 0.418688 * px[:, 1] - 0.081312 * px[:, 2],
        )
        for px in found
    )
    colour = math.hypot(float(np.median(cb_lips) - np.median(cb_ring)), float(np.median(cr_lips) - np.median(cr_ring)))
    return colour, float(np.median(_saturation(found[0]))) / skin


def appearance(rgb: npt.NDArray[np.uint8], lm: F32) -> Appearance:
    lips = lip_measures(rgb, lm)
    return Appearance(
        flat=flatness(rgb, lm),
        texture=skin_texture(rgb, lm),
        skin=skin_colour(rgb, lm),
        mouth_relief=mouth_relief(rgb, lm),
        lip_colour=lips[0],
        outline=drawn_outline(rgb, lm),
        lip_saturation=lips[1],
    )


def covered(relief: float, colour: float | None, saturation: float | None) -> bool:
    """No lips where the fitted mouth is: no brightness relief, a weak one without lip colour, or (colour pictures)
    grey "lips"."""
    if relief < MIN_MOUTH_RELIEF or (saturation is not None and saturation < MIN_LIP_SATURATION):
        return True
    return relief < WEAK_MOUTH_RELIEF and colour is not None and colour < MIN_LIP_COLOUR


def mouth_covered(rgb: npt.NDArray[np.uint8], lm: F32) -> bool:
    """:func:`covered` for one picture (a video frame)."""
    relief = mouth_relief(rgb, lm)
    return relief < MIN_MOUTH_RELIEF or covered(relief, *lip_measures(rgb, lm))


def check_human(a: Appearance, source: str) -> None:
    """Refuse drawn faces and faces without human skin, saying what was found."""
    use = "use a photo of a real human face, frontal, evenly lit, nothing covering it"
    flat = a.flat > MAX_FLAT and a.texture < FLAT_TEXTURE
    if flat or a.texture < MIN_TEXTURE or a.outline > MAX_OUTLINE:
        if flat:
            what = f"{100 * a.flat:.0f} % of it is flat colour"
        elif a.outline > MAX_OUTLINE:
            what = f"a thin dark line is drawn along {100 * a.outline:.0f} % of its jaw"
        else:
            what = f"its skin has no texture ({a.texture:.2f} grey levels of detail, a photo has {MIN_TEXTURE} or more)"
        raise InvalidArgument(
            f"{source}: the face looks drawn, not photographed ({what}); the avatar needs a real face: {use} "
            "(a heavily compressed, smoothed or blurred photo can look the same: use the original file)"
        )
    if a.skin is not None and a.skin < MIN_SKIN:
        raise InvalidArgument(
            f"{source}: the face does not look like human skin (only {100 * a.skin:.0f} % of the cheeks, nose and "
            f"forehead have a skin colour); the avatar needs a real human face: {use}, in daylight or white light"
        )


def check_mouth_visible(a: Appearance, source: str) -> None:
    if covered(a.mouth_relief, a.lip_colour, a.lip_saturation):
        raise InvalidArgument(
            f"{source}: the mouth is covered or cannot be seen (no lips found where the face's mouth is); use a "
            "picture in which the lips are uncovered: no hand, microphone, mask or hair in front of the mouth"
        )
