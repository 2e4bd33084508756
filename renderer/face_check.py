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
- the whole face (chin to forehead, cheek to cheek) is inside the picture.

Pure functions over landmarks (``[468, 3]`` in pixels, MediaPipe's canonical indices) except :func:`fit_spread`,
which runs the face mesh again.
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
