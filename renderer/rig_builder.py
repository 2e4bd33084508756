"""Rigs from face-mesh landmarks: the mouth rig, the eyelid rigs, the brow and cheek rig and mouth measurements.

Pure functions over a ``[468, 2+]`` landmark array in image pixels (MediaPipe's canonical face mesh indices).
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from avaluma.core.errors import InvalidArgument
from avaluma.renderer.avatar import BrowRig, EyeRig, FaceRig, MouthRig, Point

F32 = npt.NDArray[np.float32]

MOUTH_LEFT, MOUTH_RIGHT = 61, 291
UPPER_LIP_TOP, UPPER_LIP_INNER, LOWER_LIP_INNER, LOWER_LIP_BOTTOM, CHIN = 0, 13, 14, 17, 152
UPPER_INNER = (78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308)
LOWER_INNER = (78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308)
JAW = (132, 58, 172, 136, 150, 149, 176, 148, 152, 377, 400, 378, 379, 365, 397, 288, 361)
# Eyes in image order (left of the image first): the subject's right eye, then the left one.
EYES = (
    ((33, 246, 161, 160, 159, 158, 157, 173, 133), (33, 7, 163, 144, 145, 153, 154, 155, 133)),
    ((362, 398, 384, 385, 386, 387, 388, 466, 263), (362, 382, 381, 380, 374, 373, 390, 249, 263)),
)

# Brows in image order (the subject's right brow first), upper and lower edge from the outer to the inner end.
BROWS = (
    ((70, 63, 105, 66, 107), (46, 53, 52, 65, 55)),
    ((336, 296, 334, 293, 300), (285, 295, 282, 283, 276)),
)
#: Cheek apples (below the outer eye, where a smile lifts the cheek), image-left first.
CHEEKS = (50, 280)
#: Face width: the face oval's leftmost and rightmost points.
FACE_SIDES = (234, 454)


def _pt(lm: F32, i: int) -> Point:
    return (round(float(lm[i, 0]), 2), round(float(lm[i, 1]), 2))


def _monotonic(points: list[Point]) -> tuple[Point, ...]:
    """Sorted by x with near-duplicates dropped (a contour the compositor can interpolate)."""
    out: list[Point] = []
    for p in sorted(points):
        if not out or p[0] > out[-1][0] + 0.25:
            out.append(p)
    return tuple(out)


def mouth_rig(lm: F32) -> MouthRig:
    """The compositor's mouth rig from landmarks; inner contours run from the outer corners."""
    left, right = _pt(lm, MOUTH_LEFT), _pt(lm, MOUTH_RIGHT)
    if left[0] > right[0]:
        left, right = right, left
    top, ui, li, bottom, chin = (_pt(lm, i) for i in (UPPER_LIP_TOP, UPPER_LIP_INNER, LOWER_LIP_INNER,
                                                      LOWER_LIP_BOTTOM, CHIN))  # fmt: skip
    # Keep the vertical order the rig promises even when the model is off by a fraction of a pixel.
    ui = (ui[0], max(ui[1], top[1]))
    li = (li[0], max(li[1], ui[1]))
    bottom = (bottom[0], max(bottom[1], li[1]))
    chin = (chin[0], max(chin[1], bottom[1] + 1.0))
    upper = _monotonic([left, *(_pt(lm, i) for i in UPPER_INNER[1:-1]), right])
    lower = _monotonic([left, *(_pt(lm, i) for i in LOWER_INNER[1:-1]), right])
    lower = tuple((x, max(y, float(np.interp(x, [p[0] for p in upper], [p[1] for p in upper])))) for x, y in lower)
    center = ((left[0] + right[0]) / 2, (ui[1] + li[1]) / 2)
    return MouthRig(
        mouth_center=center,
        mouth_left=left,
        mouth_right=right,
        upper_lip_top=top,
        upper_lip_inner=ui,
        lower_lip_inner=li,
        lower_lip_bottom=bottom,
        chin=chin,
        jaw=tuple(_pt(lm, i) for i in JAW),
        upper_inner=upper if len(upper) >= 3 else (),
        lower_inner=lower if len(lower) >= 3 else (),
    )


def eye_rigs(lm: F32) -> tuple[EyeRig, ...]:
    rigs = []
    for upper_ids, lower_ids in EYES:
        upper = _monotonic([_pt(lm, i) for i in upper_ids])
        lower = _monotonic([_pt(lm, i) for i in lower_ids])
        if len(upper) >= 3 and len(lower) >= 3:
            rigs.append(EyeRig(upper=upper, lower=lower))
    return tuple(rigs)


def face_rig(lm: F32, width: int, height: int) -> FaceRig | None:
    """The brows, cheeks and face width expressions move, or ``None`` when the landmarks do not give a usable rig
    (points off the image, brows out of order)."""
    brows = tuple(BrowRig(upper=_monotonic([_pt(lm, i) for i in up]), lower=_monotonic([_pt(lm, i) for i in low]))
                  for up, low in BROWS)  # fmt: skip
    rig = FaceRig(
        brows=(brows[0], brows[1]),
        cheeks=(_pt(lm, CHEEKS[0]), _pt(lm, CHEEKS[1])),
        face_width=round(abs(float(lm[FACE_SIDES[1], 0] - lm[FACE_SIDES[0], 0])), 2),
    )
    try:
        rig.validate(width, height, source="landmarks")
    except InvalidArgument:
        return None
    return rig


def mouth_measure(lm: F32) -> tuple[float, float, float, float]:
    """(centre x, centre y, mouth width, mouth-line angle in radians) of a face."""
    left, right = lm[MOUTH_LEFT, :2], lm[MOUTH_RIGHT, :2]
    centre = (lm[UPPER_LIP_INNER, :2] + lm[LOWER_LIP_INNER, :2] + left + right) / 4
    d = right - left
    return float(centre[0]), float(centre[1]), float(math.hypot(*d)), float(math.atan2(d[1], d[0]))


def face_width(lm: F32) -> float:
    return float(lm[454, 0] - lm[234, 0])


def lip_gap(lm: F32) -> float:
    """Inner lip gap relative to the mouth width."""
    _, _, width, _ = mouth_measure(lm)
    return float(np.linalg.norm(lm[LOWER_LIP_INNER, :2] - lm[UPPER_LIP_INNER, :2])) / max(width, 1e-3)


def mouth_params(lm: F32, *, neutral_width: float, rest_gap: float = 0.0) -> F32:
    """Mouth parameters a face shows (the inverse of what the compositor renders), for the video atlas.

    ``jaw_open`` from the inner lip gap beyond the person's resting gap (``rest_gap``, relative to the mouth width:
    someone who rests with teeth showing is not "open"), ``lips_closed`` when the gap is within 3 % of the resting one,
    ``stretch`` / ``rounding`` from the mouth width relative to the person's neutral width.
    """
    _, _, width, _ = mouth_measure(lm)
    rel = max(0.0, lip_gap(lm) - rest_gap)
    jaw = min(1.0, rel / 0.38)
    closed = 1.0 if rel < 0.03 else max(0.0, 1.0 - (rel - 0.03) / 0.05)
    ratio = width / max(neutral_width, 1e-3)
    stretch = min(1.0, max(0.0, (ratio - 1.0) / 0.18))
    rounding = min(1.0, max(0.0, (1.0 - ratio) / 0.25))
    return np.array([jaw, closed, rounding, stretch], dtype=np.float32)
