"""The in-memory avatar: what a loaded ``.hvia`` file gives the compositor.

An :class:`Avatar` is immutable and shared by every session that renders it; its base image is a read-only array.
The :class:`MouthRig` holds hand-measured (or, later, detected) mouth landmarks in pixel coordinates of the base image.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from avaluma.core.errors import InvalidArgument

AvatarKind = Literal["photo"]
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

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {name: list(getattr(self, name)) for name in _RIG_POINTS}
        data["jaw"] = [list(p) for p in self.jaw]
        return data

    @staticmethod
    def from_json(data: Any, *, source: str) -> MouthRig:
        """Parse ``rig.json`` content; every problem is an :class:`InvalidArgument` naming ``source``."""
        if not isinstance(data, dict):
            raise InvalidArgument(f"{source}: rig must be a JSON object")
        missing = [k for k in (*_RIG_POINTS, "jaw") if k not in data]
        if missing:
            raise InvalidArgument(f"{source}: rig is missing {', '.join(missing)}")
        unknown = sorted(set(data) - {*_RIG_POINTS, "jaw"})
        if unknown:
            raise InvalidArgument(f"{source}: rig has unknown keys {', '.join(unknown)}")

        def point(value: Any, name: str) -> Point:
            ok = isinstance(value, list | tuple) and len(value) == 2
            if not ok or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in value):
                raise InvalidArgument(f"{source}: rig {name} must be [x, y] numbers")
            return (float(value[0]), float(value[1]))

        jaw = data["jaw"]
        if not isinstance(jaw, list):
            raise InvalidArgument(f"{source}: rig jaw must be a list of [x, y] points")
        return MouthRig(
            **{name: point(data[name], name) for name in _RIG_POINTS},
            jaw=tuple(point(p, f"jaw[{i}]") for i, p in enumerate(jaw)),
        )


@dataclass(frozen=True, slots=True, eq=False)
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
        if self.base.flags.writeable:
            base = self.base.copy()
            base.flags.writeable = False
            object.__setattr__(self, "base", base)
