"""The in-memory avatar: what a loaded ``.hvia`` file gives the compositor.

An :class:`Avatar` is immutable and shared by every session that renders it; its arrays are read-only.
The :class:`MouthRig`, :class:`EyeRig` and :class:`FaceRig` hold mouth, eyelid, brow and cheek landmarks in pixel
coordinates of the base image (detected by ``avaluma avatar build``, or measured by hand in format version 1 files).
A ``video`` avatar also carries a :class:`VideoAssets`: the idle loop's frames, where the mouth is in each of them,
and the mouth atlas.
"""

from __future__ import annotations

import itertools
import math
import re
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from avaluma.core.errors import InvalidArgument

AvatarKind = Literal["photo", "video"]
AVATAR_KINDS: tuple[str, ...] = ("photo", "video")
Point = tuple[float, float]

#: Avatar ids name files and appear in URLs and CLI flags: keep them boring.
AVATAR_ID_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")

_RIG_POINTS = (
    "mouth_center",
    "mouth_left",
    "mouth_right",
    "upper_lip_top",
    "upper_lip_inner",
    "lower_lip_inner",
    "lower_lip_bottom",
    "chin",
)


@dataclass(frozen=True, slots=True)
class MouthRig:
    """Mouth landmarks in pixels (x right, y down) of the base image.

    ``upper_lip_inner`` / ``lower_lip_inner`` are the centre points of the lips' inner edges; they coincide for a
    closed mouth and are apart when the photo shows teeth. The lip lines between the corners are modelled as parabolas
    through the corners and these centre points. ``jaw`` is the jaw line from the left cheek through the chin to the
    right cheek; it bounds the region that moves when the jaw opens.
    """

    mouth_center: Point
    mouth_left: Point
    mouth_right: Point
    upper_lip_top: Point
    upper_lip_inner: Point
    lower_lip_inner: Point
    lower_lip_bottom: Point
    chin: Point
    jaw: tuple[Point, ...]
    #: Optional inner lip contours, corner to corner, left to right (detected rigs have them; the compositor then
    #: follows the real lip line instead of a parabola).
    upper_inner: tuple[Point, ...] = ()
    lower_inner: tuple[Point, ...] = ()

    @property
    def mouth_width(self) -> float:
        return float(self.mouth_right[0] - self.mouth_left[0])

    def validate(self, width: int, height: int, *, source: str) -> None:
        """Raise :class:`InvalidArgument` unless the landmarks are inside the image and ordered like a mouth."""
        points = {name: getattr(self, name) for name in _RIG_POINTS}
        points.update({f"jaw[{i}]": p for i, p in enumerate(self.jaw)})
        for name, (x, y) in points.items():
            if not (0 <= x < width and 0 <= y < height):
                raise InvalidArgument(f"{source}: rig point {name}=({x}, {y}) is outside the {width}x{height} image")
        if self.mouth_width < 4:
            raise InvalidArgument(f"{source}: rig mouth_left must be at least 4 px left of mouth_right")
        ys = [self.upper_lip_top[1], self.upper_lip_inner[1], self.lower_lip_inner[1], self.lower_lip_bottom[1]]
        if ys != sorted(ys) or not self.lower_lip_bottom[1] < self.chin[1]:
            raise InvalidArgument(
                f"{source}: rig points must run top to bottom: upper_lip_top <= upper_lip_inner <= lower_lip_inner "
                "<= lower_lip_bottom < chin"
            )
        if len(self.jaw) < 3:
            raise InvalidArgument(f"{source}: rig jaw needs at least 3 points (left cheek, chin, right cheek)")
        for name in ("upper_inner", "lower_inner"):
            contour = getattr(self, name)
            if contour and (len(contour) < 3 or any(b[0] <= a[0] for a, b in itertools.pairwise(contour))):
                raise InvalidArgument(f"{source}: rig {name} needs 3 or more points with increasing x")
            for x, y in contour:
                if not (0 <= x < width and 0 <= y < height):
                    raise InvalidArgument(
                        f"{source}: rig {name} point ({x}, {y}) is outside the {width}x{height} image"
                    )

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {name: list(getattr(self, name)) for name in _RIG_POINTS}
        data["jaw"] = [list(p) for p in self.jaw]
        for name in ("upper_inner", "lower_inner"):
            if getattr(self, name):
                data[name] = [list(p) for p in getattr(self, name)]
        return data

    @staticmethod
    def from_json(data: Any, *, source: str) -> MouthRig:
        """Parse ``rig.json`` content; every problem is an :class:`InvalidArgument` naming ``source``."""
        if not isinstance(data, dict):
            raise InvalidArgument(f"{source}: rig must be a JSON object")
        missing = [k for k in (*_RIG_POINTS, "jaw") if k not in data]
        if missing:
            raise InvalidArgument(f"{source}: rig is missing {', '.join(missing)}")
        unknown = sorted(set(data) - {*_RIG_POINTS, "jaw", "upper_inner", "lower_inner"})
        if unknown:
            raise InvalidArgument(f"{source}: rig has unknown keys {', '.join(unknown)}")

        def point(value: Any, name: str) -> Point:
            ok = isinstance(value, list | tuple) and len(value) == 2
            if not ok or not all(_finite(v) for v in value):
                raise InvalidArgument(f"{source}: rig {name} must be [x, y] numbers")
            return (float(value[0]), float(value[1]))

        return MouthRig(
            **{name: point(data[name], name) for name in _RIG_POINTS},
            jaw=_points(data["jaw"], "jaw", source),
            upper_inner=_points(data.get("upper_inner", []), "upper_inner", source),
            lower_inner=_points(data.get("lower_inner", []), "lower_inner", source),
        )


def _finite(value: Any) -> bool:
    """A JSON number that is a finite float (not a bool; not NaN, infinite, or an integer too large for a float)."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an integer beyond float range (JSON allows any number of digits)
        return False


def _points(value: Any, name: str, source: str) -> tuple[Point, ...]:
    """A JSON list of [x, y] number pairs; every problem is an :class:`InvalidArgument` naming ``source``."""
    if not isinstance(value, list) or len(value) > 512:
        raise InvalidArgument(f"{source}: rig {name} must be a list of at most 512 [x, y] points")
    out = []
    for i, p in enumerate(value):
        ok = isinstance(p, list | tuple) and len(p) == 2
        if not ok or not all(_finite(v) for v in p):
            raise InvalidArgument(f"{source}: rig {name}[{i}] must be [x, y] numbers")
        out.append((float(p[0]), float(p[1])))
    return tuple(out)


@dataclass(frozen=True, slots=True)
class EyeRig:
    """One eye's lid contours in pixels, each from corner to corner with increasing x (corners shared).

    A blink moves the upper contour down onto the lower one; the skin above the lid stretches to cover the eye.
    """

    upper: tuple[Point, ...]
    lower: tuple[Point, ...]

    @property
    def width(self) -> float:
        return float(self.upper[-1][0] - self.upper[0][0])

    def validate(self, width: int, height: int, *, source: str) -> None:
        for name in ("upper", "lower"):
            contour = getattr(self, name)
            if len(contour) < 3 or any(b[0] <= a[0] for a, b in itertools.pairwise(contour)):
                raise InvalidArgument(f"{source}: eye {name} lid needs 3 or more points with increasing x")
            for x, y in contour:
                if not (0 <= x < width and 0 <= y < height):
                    raise InvalidArgument(f"{source}: eye {name} lid point ({x}, {y}) is outside the image")
        if self.width < 4:
            raise InvalidArgument(f"{source}: eye is narrower than 4 px")

    def to_json(self) -> dict[str, Any]:
        return {"upper": [list(p) for p in self.upper], "lower": [list(p) for p in self.lower]}

    @staticmethod
    def from_json(data: Any, *, source: str) -> EyeRig:
        if not isinstance(data, dict) or set(data) != {"upper", "lower"}:
            raise InvalidArgument(f"{source}: each eye must be an object with exactly 'upper' and 'lower' lid points")
        return EyeRig(
            upper=_points(data["upper"], "eye upper", source), lower=_points(data["lower"], "eye lower", source)
        )


@dataclass(frozen=True, slots=True)
class BrowRig:
    """One eyebrow's upper and lower edge, each 3 or more points with increasing x (outer and inner end included)."""

    upper: tuple[Point, ...]
    lower: tuple[Point, ...]

    def validate(self, width: int, height: int, *, source: str) -> None:
        for name in ("upper", "lower"):
            contour = getattr(self, name)
            if len(contour) < 3 or any(b[0] <= a[0] for a, b in itertools.pairwise(contour)):
                raise InvalidArgument(f"{source}: brow {name} edge needs 3 or more points with increasing x")
            for x, y in contour:
                if not (0 <= x < width and 0 <= y < height):
                    raise InvalidArgument(f"{source}: brow {name} edge point ({x}, {y}) is outside the image")
        if sum(p[1] for p in self.lower) / len(self.lower) <= sum(p[1] for p in self.upper) / len(self.upper):
            raise InvalidArgument(f"{source}: brow lower edge must lie below its upper edge")

    def to_json(self) -> dict[str, Any]:
        return {"upper": [list(p) for p in self.upper], "lower": [list(p) for p in self.lower]}

    @staticmethod
    def from_json(data: Any, *, source: str) -> BrowRig:
        if not isinstance(data, dict) or set(data) != {"upper", "lower"}:
            raise InvalidArgument(f"{source}: each brow must be an object with exactly 'upper' and 'lower' points")
        return BrowRig(
            upper=_points(data["upper"], "brow upper", source), lower=_points(data["lower"], "brow lower", source)
        )


_FACE_KEYS = {"brows", "cheeks", "face_width"}


@dataclass(frozen=True, slots=True)
class FaceRig:
    """The regions facial expressions move (format version 3): both brows (image-left first), the cheek apples (image
    left first) and the face width (cheek to cheek, in pixels: the expressions' unit of distance)."""

    brows: tuple[BrowRig, BrowRig]
    cheeks: tuple[Point, Point]
    face_width: float

    def validate(self, width: int, height: int, *, source: str) -> None:
        for brow in self.brows:
            brow.validate(width, height, source=source)
        for x, y in self.cheeks:
            if not (0 <= x < width and 0 <= y < height):
                raise InvalidArgument(f"{source}: face cheek point ({x}, {y}) is outside the image")
        left, right = self.brows
        if not left.upper[-1][0] < right.upper[0][0] or not self.cheeks[0][0] < self.cheeks[1][0]:
            raise InvalidArgument(f"{source}: face brows and cheeks must be given image-left first, not overlapping")
        span = max(left.upper[-1][0], right.upper[-1][0]) - min(left.upper[0][0], right.upper[0][0])
        if not (np.isfinite(self.face_width) and 8 <= self.face_width <= width):
            raise InvalidArgument(f"{source}: face face_width must be 8 px up to the image width")
        if span > 1.5 * self.face_width:
            raise InvalidArgument(f"{source}: face brows span {span:.0f} px, more than 1.5 x face_width")

    def to_json(self) -> dict[str, Any]:
        return {
            "brows": [brow.to_json() for brow in self.brows],
            "cheeks": [list(p) for p in self.cheeks],
            "face_width": round(self.face_width, 2),
        }

    @staticmethod
    def from_json(data: Any, *, source: str) -> FaceRig:
        """Parse ``rig.json``'s ``"face"``; every problem is an :class:`InvalidArgument` naming ``source``."""
        if not isinstance(data, dict) or set(data) != _FACE_KEYS:
            raise InvalidArgument(f"{source}: face must be an object with exactly {', '.join(sorted(_FACE_KEYS))}")
        brows, cheeks, fw = data["brows"], data["cheeks"], data["face_width"]
        if not isinstance(brows, list) or len(brows) != 2:
            raise InvalidArgument(f"{source}: face brows must be a list of 2 brows (image-left first)")
        points = _points(cheeks, "face cheeks", source)
        if len(points) != 2:
            raise InvalidArgument(f"{source}: face cheeks must be 2 [x, y] points (image-left first)")
        if not _finite(fw):
            raise InvalidArgument(f"{source}: face face_width must be a finite number")
        left, right = (BrowRig.from_json(b, source=source) for b in brows)
        return FaceRig(brows=(left, right), cheeks=(points[0], points[1]), face_width=float(fw))


@dataclass(frozen=True, slots=True, eq=False)
class MouthAtlas:
    """Mouth patches cut from a video, clustered by shape.

    ``tiles`` is ``[k, th, tw, 3]`` uint8, each centred on the mouth (the mouth centre sits at ``anchor`` inside the
    tile) in a frame rotated and scaled so the mouth corners are level and ``ref_width`` apart. ``params`` is
    ``[k, len(MOUTH_PARAMS)]``: the mouth parameters each tile shows.
    """

    tiles: npt.NDArray[np.uint8]
    params: npt.NDArray[np.float32]
    anchor: Point
    ref_width: float


@dataclass(frozen=True, slots=True, eq=False)
class VideoAssets:
    """What a ``video`` avatar adds: a seamless idle loop and a mouth atlas.

    ``frames`` is ``[n, H, W, 3]`` uint8 (the loop; frame ``n - 1`` flows into frame 0). ``mouth`` is ``[n, 4]``
    float32: per loop frame the mouth centre x, y, the mouth width and the mouth line's angle (radians).
    """

    frames: npt.NDArray[np.uint8]
    mouth: npt.NDArray[np.float32]
    atlas: MouthAtlas


@dataclass(frozen=True, slots=True, eq=False, weakref_slot=True)
class Avatar:
    """A loaded avatar. Build one with :func:`avaluma.renderer.hvia.load_hvia` (or directly, for tests)."""

    id: str
    name: str
    kind: AvatarKind
    width: int
    height: int
    fps: int
    format_version: int
    license: str
    #: The photo, H x W x 3 uint8, read-only (shared by all sessions).
    base: npt.NDArray[np.uint8]
    rig: MouthRig
    metadata: dict[str, Any] = field(default_factory=dict)
    #: Size of the ``.hvia`` file it came from (0 when built in memory).
    size_bytes: int = 0
    #: Eyelid rigs (none in version 1 files: no blinks then).
    eyes: tuple[EyeRig, ...] = ()
    #: The 468 face-mesh landmarks of the base image, ``[468, 3]`` float32, when the builder detected them.
    landmarks: npt.NDArray[np.float32] | None = None
    #: Idle loop and mouth atlas of a ``video`` avatar.
    video: VideoAssets | None = None
    #: Brow and cheek regions for facial expressions (none: the avatar renders no expressions).
    face: FaceRig | None = None

    def __post_init__(self) -> None:
        if not AVATAR_ID_RE.match(self.id):
            raise InvalidArgument(
                f"avatar id {self.id!r} is invalid: use 1-64 characters of a-z, 0-9, '-' and '_', starting with a "
                "letter or digit"
            )
        if self.base.shape != (self.height, self.width, 3) or self.base.dtype != np.uint8:
            raise InvalidArgument(
                f"avatar {self.id}: base image must be {self.height}x{self.width}x3 uint8, got "
                f"{'x'.join(map(str, self.base.shape))} {self.base.dtype}"
            )
        if self.kind not in AVATAR_KINDS:
            raise InvalidArgument(f"avatar {self.id}: kind must be one of {', '.join(AVATAR_KINDS)}, got {self.kind!r}")
        if (self.kind == "video") != (self.video is not None):
            raise InvalidArgument(f"avatar {self.id}: a video avatar needs its loop and atlas, and only it has them")
        if self.video is not None and self.video.frames.shape[1:] != (self.height, self.width, 3):
            raise InvalidArgument(f"avatar {self.id}: loop frames must be {self.height}x{self.width}x3")
        if self.base.flags.writeable:
            base = self.base.copy()
            base.flags.writeable = False
            object.__setattr__(self, "base", base)

    @property
    def memory_bytes(self) -> int:
        """Bytes of pixel data this avatar holds (shared by every session rendering it)."""
        total = self.base.nbytes
        if self.video is not None:
            total += self.video.frames.nbytes + self.video.atlas.tiles.nbytes
        return int(total)
