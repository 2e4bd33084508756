"""Compositor: mouth parameters and an idle pose in, a full frame out.

A frame starts as a copy of the avatar's base (a photo, or the current frame of a video avatar's idle loop). Then:

1. the mouth: for a photo, :class:`~avaluma.renderer.mouth.MouthWarp` warps a region around the mouth and jaw and
   synthesises the interior; for a video avatar, :class:`~avaluma.renderer.atlas.AtlasMouth` places the one real
   atlas patch that matches the parameters (with hysteresis) onto the loop frame's mouth;
2. blinks and gaze: :class:`~avaluma.renderer.eyes.EyelidWarp` per eye shifts the iris inside the opening and
   draws the lid over it (photo avatars with an eyelid rig; video avatars have none and get no gaze);
3. facial expression: :class:`~avaluma.renderer.face_warp.FaceWarp` moves the brows, mouth corners and cheeks of the
   frame as edited so far (a smile bends the mouth the lip-sync drew); avatars whose rig has brow and cheek regions
   only. For a video avatar the warp comes from the base image's landmarks and follows the face through the loop by
   the per-frame mouth track (shifted by whole pixels, its displacements scaled and turned with the mouth);
4. head motion: the head region (with its edited mouth and eyes) moves by a sub-pixel offset (sway, breathing,
   state) and is blended over the unmoved frame through a feathered elliptical mask, so background pixels never
   change; only row tiles where the mask is non-zero are recomputed. (Blending over the unmoved *edited* frame, not
   the base photo, matters where the mask fades out over an open mouth's dropped chin: blending towards the base
   there pulled back part of the jaw drop and left a ghost of the collar under the chin.) The expression's head
   tilt turns the head about the chin in the same blend, the turn fading with the mask (photo and video avatars;
   a video's pivot follows the face by the mouth track).

Every step works on a region of interest and is skipped when it has nothing to do: the rest pose with a still idle
pose reproduces the base exactly. Per-avatar geometry is computed once and shared by all sessions rendering that
avatar (:func:`prepared`); a :class:`Compositor` itself holds only the mouth tile a video avatar showed last, so it
is cheap per session. What differs between a photo and a video avatar is the :class:`MouthRenderer` it gets
(:class:`PhotoMouth` or :class:`VideoMouth`); the other steps are the same code for both.
"""

from __future__ import annotations

import math
import threading
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np
import numpy.typing as npt

from avaluma.renderer.avatar import Avatar, MouthRig
from avaluma.renderer.expression import ExpressionPose
from avaluma.renderer.eyes import GAZE_EPS, EyelidWarp
from avaluma.renderer.face_warp import FaceWarp
from avaluma.renderer.idle import IdlePose
from avaluma.renderer.lipsync.base import MOUTH_PARAMS
from avaluma.renderer.mouth import MAX_OPEN, TILE_PIXELS, MouthWarp, mouth_shape, smoothstep

if TYPE_CHECKING:
    from avaluma.renderer.atlas import AtlasMouth
    from avaluma.renderer.avatar import VideoAssets

__all__ = [
    "MAX_OPEN",
    "Compositor",
    "HeadRegion",
    "MouthRenderer",
    "PhotoMouth",
    "Placement",
    "Prepared",
    "VideoMouth",
    "prepared",
]

F32 = npt.NDArray[np.float32]
U8 = npt.NDArray[np.uint8]

#: Largest head offset, as a fraction of the face width (a cap on whatever the idle pose asks for).
MAX_HEAD_SHIFT = 0.05
#: Largest head tilt (radians; a cap on whatever the expression asks for, which stays within about 0.06). Where the
#: mask fades out the tilt fades with it, so the warp's slope there is about MAX_HEAD_ROLL * reach / fade width
#: (about 0.5 on the demo avatars): the map stays one-to-one and nothing tears.
MAX_HEAD_ROLL = 0.08
#: Tilts below this (radians) are treated as zero: the head moves exactly as without one (a pixel 300 px from the
#: pivot would move 0.03 px).
ROLL_EPS = 1e-4

# MediaPipe face-mesh face oval (closed contour).
FACE_OVAL = (10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377, 152, 148, 176,
             149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109)  # fmt: skip


@dataclass(frozen=True, slots=True, eq=False)
class HeadRegion:
    """Where the head is: the region that moves, its feathered mask (1 on the face, 0 on the region's border)."""

    roi: tuple[int, int, int, int]
    mask: F32  #: [h, w, 1]
    face_width: float
    pad: int
    #: The mask repeated per colour channel [h, w, 3] (a per-pixel weight broadcast over RGB is much slower).
    mask3: F32
    #: Row tiles (r0, r1, c0, c1), relative to ``roi``, covering every pixel with a non-zero mask and nothing else:
    #: only they are recomputed when the head moves.
    tiles: tuple[tuple[int, int, int, int], ...]
    #: Where the head tilts about (x, y), relative to ``roi``: the chin (the neck is below it, the head turns on it).
    pivot: tuple[float, float] = (0.0, 0.0)
    #: The mask as a contiguous [h, w] array (the tilt fades with it).
    mask2: F32 | None = None
    #: The farthest any pixel with a non-zero mask is from ``pivot`` (px): a tilt moves no pixel more than
    #: ``reach * |roll|`` (plus the offset).
    reach: float = 0.0
    #: The mask as uint32 0..256 (the tilt's fixed-point blend).
    mask8: npt.NDArray[np.uint32] | None = None

    def source(
        self,
        dx: float,
        dy: float,
        roll: float,
        tile: tuple[int, int, int, int],
        pivot_shift: tuple[float, float] = (0.0, 0.0),
        *,
        scale: float = 1.0,
    ) -> tuple[F32, F32]:
        """Where the pixels of ``tile`` (r0, r1, c0, c1) read the unmoved head from (x, y relative to ``roi``)
        when it is offset by (dx, dy) px and tilted ``roll`` radians (clockwise) about ``pivot`` (moved by
        ``pivot_shift``); times ``scale`` plus a half (fixed point, rounded by truncation) when ``scale`` is not 1.

        The head point q shows at ``pivot + R(roll) (q - pivot) + (dx, dy)``; inverted, and with the tilt's part
        scaled by the mask, so that it fades out where the head blends into the unmoved frame (no double image of
        a tilted edge there) and a pixel never reads from more than ``|(dx, dy)| + reach * |roll|`` away.
        """
        r0, r1, c0, c1 = tile
        assert self.mask2 is not None
        xs = np.arange(c0, c1, dtype=np.float32)[None, :]
        ys = np.arange(r0, r1, dtype=np.float32)[:, None]
        ax = xs - np.float32(dx + self.pivot[0] + pivot_shift[0])
        ay = ys - np.float32(dy + self.pivot[1] + pivot_shift[1])
        c1_, s_ = np.float32(scale * (math.cos(roll) - 1.0)), np.float32(scale * math.sin(roll))
        offset = 0.0 if scale == 1.0 else 0.5
        m = self.mask2[r0:r1, c0:c1]
        # Scaled on the rows and columns (1-D), so the scale costs nothing per pixel.
        sx: F32 = m * (c1_ * ax + s_ * ay)
        sx += np.float32(scale) * (xs - np.float32(dx)) + np.float32(offset)
        sy: F32 = m * (c1_ * ay - s_ * ax)
        sy += np.float32(scale) * (ys - np.float32(dy)) + np.float32(offset)
        return sx, sy


def face_box(avatar: Avatar) -> tuple[float, float, float, float]:
    """Face bounding box (x0, y0, x1, y1): from the landmarks, else estimated from the mouth rig's jaw line."""
    if avatar.landmarks is not None:
        pts = avatar.landmarks[list(FACE_OVAL), :2]
        x0, y0 = pts.min(axis=0)
        x1, y1 = pts.max(axis=0)
        return float(x0), float(y0), float(x1), float(y1)
    rig: MouthRig = avatar.rig
    jx = [p[0] for p in rig.jaw]
    fw = 1.1 * (max(jx) - min(jx))
    cx = rig.chin[0]
    return cx - fw / 2, rig.chin[1] - 1.3 * fw, cx + fw / 2, rig.chin[1]


def _head_region(avatar: Avatar) -> HeadRegion:
    x0f, y0f, x1f, y1f = face_box(avatar)
    fw, fh = x1f - x0f, y1f - y0f
    cx, cy = (x0f + x1f) / 2, (y0f + y1f) / 2
    h, w = avatar.height, avatar.width
    x0, x1 = int(max(0, math.floor(x0f - 0.28 * fw))), int(min(w, math.ceil(x1f + 0.28 * fw)))
    y0, y1 = int(max(0, math.floor(y0f - 0.3 * fh))), int(min(h, math.ceil(y1f + 0.22 * fh)))
    ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    r = np.sqrt(((xs - cx) / (0.56 * fw)) ** 2 + ((ys - cy) / (0.62 * fh)) ** 2)
    ramp = 3.0
    border = smoothstep(np.minimum(np.minimum(xs - x0, x1 - 1 - xs), np.minimum(ys - y0, y1 - 1 - ys)) / ramp)
    mask = ((1.0 - smoothstep((r - 0.9) / 0.35)) * border).astype(np.float32)[..., None]
    pad = math.ceil(MAX_HEAD_SHIFT * fw) + 2
    live = mask[..., 0] > 0
    step = max(1, TILE_PIXELS // max(1, x1 - x0))
    tiles = []
    for r0 in range(0, y1 - y0, step):
        r1 = min(y1 - y0, r0 + step)
        cols = np.flatnonzero(live[r0:r1].any(axis=0))
        if cols.size:
            tiles.append((r0, r1, int(cols[0]), int(cols[-1]) + 1))
    mask3 = np.ascontiguousarray(np.repeat(mask, 3, axis=2))
    # The head tilts on the neck: about the chin (the bottom of the face box), so the chin and the collar below it,
    # where the mask fades out, move least.
    pivot = (cx - x0, y1f - y0)
    reach = (
        float(np.sqrt((xs[live] - x0 - pivot[0]) ** 2 + (ys[live] - y0 - pivot[1]) ** 2).max()) if live.any() else 0.0
    )
    mask2 = np.ascontiguousarray(mask[..., 0])
    mask8 = np.round(mask2 * 256).astype(np.uint32)
    return HeadRegion((y0, y1, x0, x1), mask3[..., :1], fw, pad, mask3, tuple(tiles), pivot, mask2, reach, mask8)


@dataclass(frozen=True, slots=True)
class Placement:
    """Where a frame's face sits relative to the base image: ``shift`` (dy, dx) whole pixels, its ``scale`` and
    ``turn`` (radians), and ``pivot_shift`` (x, y) px of the head's pivot. A photo's face is always in place."""

    shift: tuple[int, int] = (0, 0)
    scale: float = 1.0
    turn: float = 0.0
    pivot_shift: tuple[float, float] = (0.0, 0.0)


IN_PLACE = Placement()


class MouthRenderer(Protocol):
    """How one kind of avatar gets a frame with its mouth drawn: :class:`PhotoMouth` or :class:`VideoMouth`.

    Read-only and shared by every session rendering the avatar; a session's own state (the atlas tile a video showed
    last) is passed in and handed back."""

    @property
    def roi(self) -> tuple[int, int, int, int]:
        """The region the mouth can change (y0, y1, x0, x1)."""
        ...

    @property
    def idle_pose(self) -> bool:
        """Whether the idle pose (sway, breathing, blinks) moves the face: not a video's, whose loop moves itself."""
        ...

    def draw(
        self, params: npt.NDArray[np.floating], *, frame: int, press: float, tile: int | None
    ) -> tuple[U8, int | None]:
        """A new frame (the photo, or the loop frame of frame number ``frame``) with the mouth drawn for ``params``;
        and the atlas tile shown (None for a photo)."""
        ...

    def placement(self, frame: int) -> Placement:
        """Where the face of frame number ``frame`` sits relative to the base image."""
        ...


@dataclass(frozen=True, slots=True, eq=False)
class PhotoMouth:
    """A photo avatar's mouth: :class:`~avaluma.renderer.mouth.MouthWarp` warps the region around the mouth and jaw
    and synthesises the interior."""

    base: U8
    warp: MouthWarp
    idle_pose: bool = True

    @property
    def roi(self) -> tuple[int, int, int, int]:
        return self.warp.roi

    def draw(
        self, params: npt.NDArray[np.floating], *, frame: int, press: float, tile: int | None
    ) -> tuple[U8, int | None]:
        out = self.base.copy()
        shape = mouth_shape(params, press=press)
        if not shape.is_rest:
            y0, y1, x0, x1 = self.warp.roi
            self.warp.render_into(out[y0:y1, x0:x1], shape)
        return out, None

    def placement(self, frame: int) -> Placement:
        return IN_PLACE


@dataclass(frozen=True, slots=True, eq=False)
class VideoMouth:
    """A video avatar's mouth: :class:`~avaluma.renderer.atlas.AtlasMouth` places the one real atlas patch that
    matches the parameters (with hysteresis: the ``tile`` shown last) onto the loop frame's mouth. The face follows
    the mouth track through the loop."""

    video: VideoAssets
    atlas: AtlasMouth
    idle_pose: bool = False

    @property
    def roi(self) -> tuple[int, int, int, int]:
        return self.atlas.roi

    def draw(
        self, params: npt.NDArray[np.floating], *, frame: int, press: float, tile: int | None
    ) -> tuple[U8, int | None]:
        index = frame % len(self.video.frames)
        out: U8 = self.video.frames[index].copy()
        tile = self.atlas.select(params, tile)
        self.atlas.paste(out, index, tile)
        return out, tile

    def placement(self, frame: int) -> Placement:
        # The base image is loop frame 0: the track says how the face moved from there.
        ref, now = self.video.mouth[0], self.video.mouth[frame % len(self.video.frames)]
        return Placement(
            shift=(round(float(now[1] - ref[1])), round(float(now[0] - ref[0]))),
            scale=float(now[2] / ref[2]),
            turn=float(now[3] - ref[3]),
            pivot_shift=(float(now[0] - ref[0]), float(now[1] - ref[1])),
        )


@dataclass(frozen=True, slots=True, eq=False)
class Prepared:
    """Read-only per-avatar geometry shared by every session that renders the avatar."""

    mouth: MouthRenderer
    #: Blinks and gaze, one per eye (photo avatars with an eyelid rig; video avatars have none).
    eyes: tuple[EyelidWarp, ...]
    head: HeadRegion
    #: Expressions (none where the rig lacks brow and cheek regions: the avatar renders none).
    face: FaceWarp | None = None


_CACHE: weakref.WeakKeyDictionary[Avatar, Prepared] = weakref.WeakKeyDictionary()
_CACHE_LOCK = threading.Lock()


def _mouth_renderer(avatar: Avatar) -> MouthRenderer:
    """A video's atlas (imported only then: the photo path stays light), or the photo mouth with the teeth colour the
    builder measured on the photo's own open mouth when it did."""
    if avatar.video is not None:
        from avaluma.renderer.atlas import AtlasMouth

        return VideoMouth(avatar.video, AtlasMouth(avatar.video))
    return PhotoMouth(avatar.base, MouthWarp(avatar.base, avatar.rig, eyes=avatar.eyes, teeth=measured_teeth(avatar)))


def measured_teeth(avatar: Avatar) -> list[float] | None:
    """The teeth colour (RGB) the builder measured on the photo's own open mouth, if it did."""
    mouth = avatar.metadata.get("mouth")
    teeth = mouth.get("teeth_rgb") if isinstance(mouth, dict) else None
    if isinstance(teeth, list) and len(teeth) == 3 and all(isinstance(v, int | float) for v in teeth):
        return [float(v) for v in teeth]
    return None


def _face_warp(avatar: Avatar) -> FaceWarp | None:
    if avatar.face is None:
        return None
    return FaceWarp((avatar.height, avatar.width), avatar.face, avatar.rig, avatar.eyes)


def prepared(avatar: Avatar) -> Prepared:
    """The shared geometry of ``avatar`` (computed on first use, then cached for as long as the avatar lives)."""
    with _CACHE_LOCK:
        found = _CACHE.get(avatar)
        if found is None:
            found = Prepared(
                mouth=_mouth_renderer(avatar),
                eyes=tuple(EyelidWarp(avatar.base, eye) for eye in avatar.eyes) if avatar.video is None else (),
                head=_head_region(avatar),
                face=_face_warp(avatar),
            )
            _CACHE[avatar] = found
        return found


class Compositor:
    """Renders frames of one avatar; one per session is cheap. Deterministic: the only state kept between frames
    is the mouth tile a video avatar showed last (for temporal coherence), so frames depend on the sequence.
    Randomness lives in :class:`~avaluma.renderer.idle.IdleMotion`.
    """

    def __init__(self, avatar: Avatar) -> None:
        self.avatar = avatar
        self._prep = prepared(avatar)
        #: The atlas tile a video avatar showed last (its mouth changes tile only for a clearly better match).
        self._tile: int | None = None

    @property
    def roi(self) -> tuple[int, int, int, int]:
        """The region the mouth can change (y0, y1, x0, x1)."""
        return self._prep.mouth.roi

    @property
    def head_roi(self) -> tuple[int, int, int, int]:
        """The region idle motion can change (y0, y1, x0, x1); pixels outside it never change."""
        return self._prep.head.roi

    def effective_open(self, params: npt.NDArray[np.floating]) -> float:
        """Lip gap in [0, 1]: ``jaw_open`` gated by ``lips_closed`` (closed lips keep the mouth shut)."""
        return mouth_shape(params).opening

    def render(
        self,
        params: npt.NDArray[np.floating],
        *,
        pose: IdlePose | None = None,
        press: float = 0.0,
        frame: int = 0,
        expression: ExpressionPose | None = None,
    ) -> U8:
        """Render one frame; returns a new H x W x 3 uint8 array.

        ``params`` are the mouth parameters (see :data:`MOUTH_PARAMS`), ``pose`` the idle pose (none: still),
        ``press`` how much ``lips_closed`` also shuts a photo's resting lip gap (1 during lively speech, 0 at rest),
        ``frame`` the frame number (selects the idle-loop frame of a video avatar), ``expression`` the facial
        expression (none or all-zero: the face as built, byte-identical; avatars without brow and cheek regions
        render no brows or smile, avatars without eye rigs, such as video avatars, no gaze).
        """
        if params.shape != (len(MOUTH_PARAMS),):
            raise ValueError(f"params must have shape ({len(MOUTH_PARAMS)},), got {params.shape}")
        prep = self._prep
        out, self._tile = prep.mouth.draw(params, frame=frame, press=press, tile=self._tile)
        if not prep.mouth.idle_pose:
            pose = None
        still = pose is None or pose.is_still
        blink = pose.blink if not still and pose is not None else 0.0
        gaze = (expression.gaze_dx, expression.gaze_dy) if expression is not None else (0.0, 0.0)
        if blink > 1e-3 or max(abs(gaze[0]), abs(gaze[1])) >= GAZE_EPS:
            for eye in prep.eyes:  # none on video avatars (no eye rigs): they get no gaze
                y0, y1, x0, x1 = eye.roi
                out[y0:y1, x0:x1] = eye.render_roi(blink, gaze=gaze)
        place = prep.mouth.placement(frame)
        if expression is not None and prep.face is not None:
            # Before the head moves: the expression moves with the head.
            prep.face.apply(out, expression, shift=place.shift, scale=place.scale, turn=place.turn)
        roll = expression.head_roll if expression is not None else 0.0
        if (still or pose is None) and abs(roll) < ROLL_EPS:
            return out
        self._move_head(out, pose, roll=roll, pivot_shift=place.pivot_shift)
        return out

    def _move_head(
        self, out: U8, pose: IdlePose | None, *, roll: float = 0.0, pivot_shift: tuple[float, float] = (0.0, 0.0)
    ) -> None:
        """Move the head region of ``out`` in place by the idle pose's offset and tilt it ``roll`` radians
        (clockwise, capped at :data:`MAX_HEAD_ROLL`) about the chin, moved by ``pivot_shift`` (x, y) px (a video
        loop frame whose head sits elsewhere than in the base image). No tilt: exactly the offset alone."""
        head = self._prep.head
        limit = MAX_HEAD_SHIFT * head.face_width
        dx = float(np.clip(pose.head_dx * head.face_width, -limit, limit)) if pose is not None else 0.0
        dy = float(np.clip(pose.head_dy * head.face_width, -limit, limit)) if pose is not None else 0.0
        roll = float(np.clip(roll, -MAX_HEAD_ROLL, MAX_HEAD_ROLL))
        if abs(roll) >= ROLL_EPS:
            _tilt_head(out, head, dx, dy, roll, pivot_shift)
            return
        if abs(dx) < 1e-3 and abs(dy) < 1e-3:
            return
        y0, y1, x0, x1 = head.roi
        # The head as edited so far (mouth, eyes), before any of it moves; read beyond its edges as edge-replicated.
        src = out[y0:y1, x0:x1].copy()
        # Output pixel (x, y) shows the edited head at (x - dx, y - dy): bilinear, separably, from integer shifts.
        ix, iy = math.floor(dx), math.floor(dy)
        fx, fy = dx - ix, dy - iy
        dst = out[y0:y1, x0:x1]
        for r0, r1, c0, c1 in head.tiles:
            # win[k, j] is the head at (r0 - iy - 1 + k, c0 - ix - 1 + j): one extra row and column for bilinear.
            win = _window(src, r0 - iy - 1, r1 - r0 + 1, c0 - ix - 1, c1 - c0 + 1).astype(np.float32)
            across = win[:, 1:] * (1 - fx)
            across += win[:, :-1] * fx
            shifted = across[1:] * (1 - fy)
            shifted += across[:-1] * fy
            # Blended over the unmoved frame: where the mask fades out, the face (with its open mouth) stays put.
            current = src[r0:r1, c0:c1].astype(np.float32)
            shifted -= current
            shifted *= head.mask3[r0:r1, c0:c1]
            shifted += current
            # A convex mix of bytes plus a half: within 0..255.5 (up to float rounding), so the truncating cast
            # needs no clip (the same bytes as with one, 20 % less work).
            shifted += 0.5
            np.copyto(dst[r0:r1, c0:c1], shifted, casting="unsafe")


#: A packed pixel (uint32: R, G, B, a spare byte) mixed two channels at a time in 16-bit lanes (room for a sum of
#: products with 8-bit weights): R and B in one pass, G in the other; the halves round a lane's sum before the shift.
_RB, _RB_HALF = np.uint32(0x00FF00FF), np.uint32(0x00800080)
_G, _G_HALF = np.uint32(0x0000FF00), np.uint32(0x00008000)
_EIGHT, _BYTE, _FULL = np.uint32(8), np.uint32(255), np.uint32(256)


def _tilt_head(out: U8, head: HeadRegion, dx: float, dy: float, roll: float, pivot_shift: tuple[float, float]) -> None:
    """The head offset by (dx, dy) and tilted ``roll``: a bilinear backward map per row tile, blended through the
    mask over the unmoved frame like the plain offset (so the background never changes).

    A general map needs a gather per pixel, not the plain offset's shifted windows. To stay cheap (about 2.5 ms at
    512x640 on one core, against about 5 ms in float32) each pixel is gathered as one uint32 and its channels are
    mixed two at a time in 16-bit lanes with 8-bit weights (1/256 px; the four bilinear weights sum to 256 exactly,
    one rounding for the bilinear sum and one for the blend): within a level of the float result, which a tilt
    starting or ending (back to the plain offset) cannot show.
    """
    y0, y1, x0, x1 = head.roi
    h, w = y1 - y0, x1 - x0
    # The head as edited so far, one spare byte after it: pixel k read as a uint32 is its R, G, B and the next
    # pixel's R (never read).
    buf = np.empty(h * w * 3 + 1, np.uint8)
    buf[:-1].reshape(h, w, 3)[...] = out[y0:y1, x0:x1]
    packed = np.ascontiguousarray(np.ndarray((h, w), np.uint32, buffer=buf.data, strides=(3 * w, 3)))
    flat = packed.reshape(-1)
    dst = out[y0:y1, x0:x1]
    assert head.mask8 is not None
    for tile in head.tiles:
        r0, r1, c0, c1 = tile
        # Reads beyond the region's edge replicate the edge (as the plain offset's window does); 8 fraction bits.
        sx, sy = head.source(dx, dy, roll, tile, pivot_shift, scale=256.0)
        fx = np.clip(sx, 0, 256 * (w - 1) - 1, out=sx).astype(np.uint32)
        fy = np.clip(sy, 0, 256 * (h - 1) - 1, out=sy).astype(np.uint32)
        i = fy >> _EIGHT
        i *= np.uint32(w)
        i += fx >> _EIGHT
        index = i.astype(np.intp)
        fx &= _BYTE
        fy &= _BYTE
        # The bilinear weights (top left, top right, bottom left, bottom right), summing to 256 exactly.
        w11 = fx * fy
        w11 += np.uint32(128)
        w11 >>= _EIGHT
        w10 = fy - w11
        w00 = _FULL - fx
        w00 -= w10
        weights = (w00, fx - w11, w10, w11)
        taps = (np.take(flat, index), np.take(flat[1:], index), np.take(flat[w:], index), np.take(flat[w + 1 :], index))
        current = packed[r0:r1, c0:c1]
        m = head.mask8[r0:r1, c0:c1]
        keep = _FULL - m
        mixed: npt.NDArray[np.uint32] | None = None
        for lanes, half in ((_RB, _RB_HALF), (_G, _G_HALF)):
            v = (taps[0] & lanes) * weights[0]
            for tap, weight in zip(taps[1:], weights[1:], strict=True):
                v += (tap & lanes) * weight
            v += half
            v >>= _EIGHT
            v &= lanes
            # Blended over the unmoved frame: where the mask fades out, the face (with its open mouth) stays put.
            v *= m
            now = current & lanes
            now *= keep
            v += now
            v += half
            v >>= _EIGHT
            v &= lanes
            mixed = v if mixed is None else mixed | v
        assert mixed is not None
        # Back to 3-byte pixels: each uint32 written at 3-byte steps in order (its spare byte is overwritten by the
        # next one), then one block copy (3x faster than three strided channel copies).
        rgb = np.empty(mixed.size * 3 + 1, np.uint8)
        np.ndarray(mixed.shape, np.uint32, buffer=rgb.data, strides=(3 * (c1 - c0), 3))[...] = mixed
        dst[r0:r1, c0:c1] = rgb[:-1].reshape(r1 - r0, c1 - c0, 3)


def _window(src: U8, r: int, n: int, c: int, m: int) -> U8:
    """``src[r:r+n, c:c+m]``, with rows and columns beyond the edges replicating the edge."""
    h, w = src.shape[:2]
    rows = src[r : r + n] if r >= 0 and r + n <= h else np.take(src, np.clip(np.arange(r, r + n), 0, h - 1), axis=0)
    if c >= 0 and c + m <= w:
        return rows[:, c : c + m]
    return np.take(rows, np.clip(np.arange(c, c + m), 0, w - 1), axis=1)
