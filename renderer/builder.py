"""``avaluma avatar build``: an :class:`~avaluma.renderer.avatar.Avatar` from one photo or from a short video.

Photo: detect the one face, frame it at the output size, fit the 468-point face mesh and derive the mouth rig (jaw,
lip lines), the eyelid rigs and the landmarks the file keeps. The compositor synthesises the mouth interior.

Video: frame the clip around the face found in its first frame, track the face mesh through every frame, measure the
mouth in each, pick the quietest stretch whose ends match best as the idle loop (cross-faded so it runs seamlessly),
and cluster all frames' mouths by shape into an atlas of aligned mouth patches with the parameters each shows.

Every failure a user can cause is an :class:`~avaluma.core.errors.InvalidArgument` that says what to do.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from PIL import Image

from avaluma.core.errors import InvalidArgument
from avaluma.renderer import face_check
from avaluma.renderer.avatar import Avatar, MouthAtlas, VideoAssets
from avaluma.renderer.facemesh import Detection, FaceMesh, same_face
from avaluma.renderer.lipsync.base import REST_POSE
from avaluma.renderer.rig_builder import eye_rigs, face_rig, lip_gap, mouth_measure, mouth_params, mouth_rig

U8 = npt.NDArray[np.uint8]
F32 = npt.NDArray[np.float32]
#: progress(message, fraction done or None)
Progress = Callable[[str, float | None], None]

#: Smallest face (detector box width, px in the source) we build from: below it the mouth is a few pixels wide.
MIN_FACE_PX = 80
#: A second face counts as "several faces" when it is at least this fraction of the largest one's width.
OTHER_FACE_FRACTION = 0.4
#: Face width as a fraction of the output width when the source leaves room to zoom in.
FACE_FRACTION = 0.42
MIN_CLIP_S = 2.0
MAX_CLIP_S = 60.0
LOOP_S = (2.0, 4.0)
CROSSFADE_FRAMES = 6
ATLAS_TILES = 40
SIZES = ((512, 512), (512, 640))


def _quiet(message: str, fraction: float | None) -> None:
    del message, fraction


def parse_size(text: str) -> tuple[int, int]:
    """``"512x640"`` -> (512, 640); even sides 64..2048."""
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise InvalidArgument(f"size {text!r} is not WIDTHxHEIGHT, e.g. 512x512 or 512x640") from None
    if not (64 <= w <= 2048 and 64 <= h <= 2048 and w % 2 == 0 and h % 2 == 0):
        raise InvalidArgument(f"size {text!r}: width and height must be even and 64..2048")
    return w, h


def read_image(path: Path) -> U8:
    try:
        with Image.open(path) as img:
            return np.asarray(img.convert("RGB"), dtype=np.uint8).copy()
    except FileNotFoundError:
        raise InvalidArgument(f"{path}: photo not found") from None
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        raise InvalidArgument(f"{path}: cannot read the photo ({e}); use a JPEG or PNG file") from None


def find_face(mesh: FaceMesh, rgb: U8, source: str) -> Detection:
    """The one face in a picture. Small faces are also searched for on tiles of the picture, so that a group photo
    is answered with how many faces it holds rather than "no face"."""
    faces = mesh.detect(rgb)
    if not faces or max(f.width for f in faces) < 2 * MIN_FACE_PX:
        for small in mesh.detect_small(rgb):
            if not any(same_face(small, f) for f in faces):
                faces.append(small)
    return the_face(faces, source)


def the_face(faces: list[Detection], source: str) -> Detection:
    """The one face in a picture, or the error that explains why there is not exactly one usable face."""
    if not faces:
        raise InvalidArgument(
            f"{source}: no face found; use a sharp, well-lit picture of one person facing the camera, with the face at "
            f"least {MIN_FACE_PX} px wide"
        )
    largest = max(faces, key=lambda f: f.width)
    others = [f for f in faces if f is not largest and f.width >= OTHER_FACE_FRACTION * largest.width]
    if others and largest.width < MIN_FACE_PX:
        raise InvalidArgument(
            f"{source}: found {len(others) + 1} faces, each narrower than {MIN_FACE_PX} px; crop the picture to one "
            f"person, with their face at least {MIN_FACE_PX} px wide"
        )
    if others:
        raise InvalidArgument(
            f"{source}: found {len(others) + 1} faces; crop the picture to the one person who should be the avatar"
        )
    if largest.width < MIN_FACE_PX:
        raise InvalidArgument(
            f"{source}: the face is only {largest.width:.0f} px wide, it needs at least {MIN_FACE_PX} px; use a "
            "higher-resolution picture or crop closer to the face"
        )
    return largest


def framing(face: Detection, image_w: int, image_h: int, size: tuple[int, int]) -> tuple[float, float, float, float]:
    """The crop box (x0, y0, x1, y1) with the output's aspect ratio: face centred, never zoomed in past the point where
    the face is :data:`FACE_FRACTION` of the width nor beyond the source's resolution, and kept inside the image."""
    out_w, out_h = size
    aspect = out_h / out_w
    crop_w = max(face.width / FACE_FRACTION, float(out_w))
    crop_w = min(crop_w, image_w, image_h / aspect)
    crop_h = crop_w * aspect
    cx = face.cx
    cy = face.cy + 0.08 * crop_h  # a little more room below the face (neck, shoulders) than above
    x0 = min(max(cx - crop_w / 2, 0.0), image_w - crop_w)
    y0 = min(max(cy - crop_h / 2, 0.0), image_h - crop_h)
    return x0, y0, x0 + crop_w, y0 + crop_h


def _crop(rgb: U8, box: tuple[float, float, float, float], size: tuple[int, int]) -> U8:
    img = Image.fromarray(rgb)
    return np.asarray(img.resize(size, Image.Resampling.LANCZOS, box=box), dtype=np.uint8).copy()


def _fit(mesh: FaceMesh, rgb: U8, source: str) -> F32:
    face = the_face(mesh.detect(rgb), source)
    landmarks, presence = mesh.landmarks_from_detection(rgb, face)
    face_check.check_presence(presence, source)
    return landmarks


def check_face(
    mesh: FaceMesh, rgb: U8, landmarks: F32, *, source: str, source_face_px: float, mouth: bool = True
) -> None:
    """The builder's face-fit quality checks on the framed picture (see :mod:`avaluma.renderer.face_check`).
    ``mouth=False``: the mouth may be covered in this picture (a video's frames are judged one by one, see
    :func:`frame_quality`)."""
    h, w = rgb.shape[:2]
    face_check.check_inside(landmarks, w, h, source)
    face_check.check_pose(face_check.head_pose(landmarks), source)
    face_check.check_proportions(landmarks, source)
    looks = face_check.appearance(rgb, landmarks)
    if mouth:  # first: a smooth hand over the mouth also makes the face flatter
        face_check.check_mouth_visible(looks, source)
    face_check.check_human(looks, source)
    face_check.check_fit_spread(face_check.fit_spread(mesh.fit_crop, rgb, landmarks), source)
    face_check.check_mouth_size(face_check.mouth_width(landmarks), source_face_px, source)


def _validated(avatar: Avatar, source: str) -> Avatar:
    """Rig validation in a user's words: its own messages name internal rig points."""
    try:
        avatar.rig.validate(avatar.width, avatar.height, source=source)
        for eye in avatar.eyes:
            eye.validate(avatar.width, avatar.height, source=source)
    except InvalidArgument:
        raise InvalidArgument(
            f"{source}: the mouth and eyes could not be placed in the avatar (the face is too close to the picture's "
            "edge or partly hidden); use a picture that shows the whole face, uncovered, with some room around it"
        ) from None
    return avatar


#: A photo whose inner lip gap is wider than this fraction of the mouth width is "open": its rest pose is closed.
OPEN_MOUTH_GAP = 0.03
#: ...unless it is a smile whose gap (at most this wide) is mostly teeth: then the photo is the rest pose.
SMILE_MAX_GAP = 0.3
SMILE_TEETH_FRACTION = 0.4
#: The photo's teeth colour is used (for synthesised teeth) only when enamel fills at least this much of the gap.
MIN_TEETH_FRACTION = 0.25
# Inner lip contour pairs (upper, lower) from corner to corner, MediaPipe indices.
_INNER_PAIRS = ((191, 95), (80, 88), (81, 178), (82, 87), (13, 14), (312, 317), (311, 402), (310, 318), (415, 324))
_INNER_RING = (78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308, 324, 318, 402, 317, 14, 87, 178, 88, 95)


def photo_teeth(rgb: U8, landmarks: F32) -> tuple[list[float] | None, float]:
    """What shows between the lips of a photo whose lips are apart: the colour of its teeth (bright, unsaturated
    pixels inside the inner lip contour; None when too few) and the fraction of the gap they fill."""
    from PIL import ImageDraw

    ring = [(float(landmarks[i, 0]), float(landmarks[i, 1])) for i in _INNER_RING]
    mask_img = Image.new("L", (rgb.shape[1], rgb.shape[0]), 0)
    ImageDraw.Draw(mask_img).polygon(ring, fill=255)
    inside = rgb[np.asarray(mask_img) > 0].astype(np.float32)
    if len(inside) < 30:
        return None, 0.0
    weights = np.array([0.299, 0.587, 0.114], dtype=np.float32)
    luma = inside @ weights
    saturation = (inside.max(axis=1) - inside.min(axis=1)) / np.maximum(inside.max(axis=1), 1.0)
    # Enamel: nearly grey and bright, brighter than the lips' wet inner edge (the gap's darker half).
    lips = float(np.percentile(luma, 25))
    enamel = (luma > max(90.0, 1.3 * lips)) & (saturation < 0.25)
    teeth = inside[enamel]
    fraction = float(enamel.mean())
    if len(teeth) < 12 or fraction < MIN_TEETH_FRACTION:  # a few bright pixels may be wet lip, not enamel
        return None, fraction
    top = teeth[teeth @ weights >= np.percentile(teeth @ weights, 50)]
    return [round(float(v), 1) for v in np.median(top, axis=0)], fraction


def close_mouth(mesh: FaceMesh, rgb: U8, landmarks: F32) -> tuple[U8, F32]:
    """The photo with its open mouth closed (the lower lip and chin move up, the upper lip down, as when the lips
    meet in speech), and its landmarks refitted on the result: the rest pose of an open-mouthed photo, so an opening
    mouth never shows a second mouth under the real one."""
    from avaluma.renderer.mouth import MouthShape, MouthWarp

    warp = MouthWarp(rgb, mouth_rig(landmarks))
    closed = rgb.copy()
    y0, y1, x0, x1 = warp.roi
    warp.render_into(closed[y0:y1, x0:x1], MouthShape(opening=0.0, close=1.0, scale=1.0))
    refit, presence = mesh.track(closed, landmarks)
    points = refit if presence >= 0.5 else landmarks.copy()
    # Wherever the refit still sees a sliver of a gap, the lips meet on the line between them.
    for upper, lower in _INNER_PAIRS:
        if points[lower, 1] > points[upper, 1]:
            mid = (points[upper, :2] + points[lower, :2]) / 2
            points[upper, :2] = points[lower, :2] = mid
    return closed, points


def build_photo_avatar(
    image: U8,
    *,
    avatar_id: str,
    name: str | None = None,
    license: str = "",
    size: tuple[int, int] = (512, 512),
    fps: int = 25,
    source: str = "photo",
    metadata: dict[str, Any] | None = None,
    mesh: FaceMesh | None = None,
    progress: Progress = _quiet,
) -> Avatar:
    """A ``photo`` avatar from an RGB image (H x W x 3 uint8)."""
    progress("loading the face models", None)
    mesh = mesh or FaceMesh()
    face_check.check_image_size(image.shape[1], image.shape[0], source)
    progress("finding the face", 0.2)
    face = find_face(mesh, image, source)
    progress("framing", 0.4)
    box = framing(face, image.shape[1], image.shape[0], size)
    rgb = _crop(image, box, size)
    progress("fitting the face mesh", 0.6)
    landmarks = _fit(mesh, rgb, source)
    check_face(mesh, rgb, landmarks, source=source, source_face_px=face.width)
    progress("rigging mouth and eyelids", 0.8)
    rest: dict[str, Any] = {}
    gap = lip_gap(landmarks)
    if gap > OPEN_MOUTH_GAP:
        teeth, fraction = photo_teeth(rgb, landmarks)
        mouth = {
            "source_gap": round(gap, 3),
            "teeth_fraction": round(fraction, 2),
            **({"teeth_rgb": teeth} if teeth else {}),
        }
        if gap <= SMILE_MAX_GAP and fraction >= SMILE_TEETH_FRACTION:
            # A smile showing its teeth: the real teeth are the best reference there is; they stay, and move with the
            # upper jaw, and the mouth opens below them.
            rest = {"rest_pose": "", "mouth": mouth}
        else:
            rgb, landmarks = close_mouth(mesh, rgb, landmarks)
            rest = {
                "rest_pose": f"the lips in the photo are apart ({100 * gap:.0f} % of the mouth width): the avatar "
                "rests with them closed",
                "mouth": mouth,
            }
    avatar = Avatar(
        id=avatar_id,
        name=name or avatar_id,
        kind="photo",
        width=size[0],
        height=size[1],
        fps=fps,
        format_version=3,
        license=license,
        base=rgb,
        rig=mouth_rig(landmarks),
        metadata={"builder": "avaluma avatar build --photo", "source": source, **rest, **(metadata or {})},
        eyes=eye_rigs(landmarks),
        landmarks=_readonly(landmarks),
        face=face_rig(landmarks, size[0], size[1]),
    )
    _validated(avatar, source)
    progress("done", 1.0)
    return avatar


def _readonly(a: F32) -> F32:
    a = np.ascontiguousarray(a, dtype=np.float32)
    a.flags.writeable = False
    return a


# --- video -----------------------------------------------------------------------------------------------------


def read_video(path: Path, *, max_s: float = MAX_CLIP_S) -> tuple[list[U8], float]:
    """All frames (RGB) of a clip up to ``max_s`` seconds, and its frame rate."""
    import av

    if not path.is_file():
        raise InvalidArgument(f"{path}: video not found")
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise InvalidArgument(f"{path}: the file has no video track; use an MP4/MOV/WebM clip")
            stream = container.streams.video[0]
            rate = float(stream.average_rate or stream.guessed_rate or 25)
            frames: list[U8] = []
            for frame in container.decode(stream):
                frames.append(np.asarray(frame.to_ndarray(format="rgb24"), dtype=np.uint8))
                if len(frames) >= max_s * rate:
                    break
    except av.FFmpegError as e:
        raise InvalidArgument(f"{path}: cannot read the video ({e}); use an MP4 (H.264) clip") from None
    if len(frames) / rate < MIN_CLIP_S:
        raise InvalidArgument(
            f"{path}: the clip is {len(frames) / rate:.1f} s long; it needs at least {MIN_CLIP_S:.0f} s (5-20 s of the "
            "person speaking, then a few seconds at rest, works best)"
        )
    return frames, rate


def _resample_indices(n: int, rate: float, fps: int) -> list[int]:
    count = max(1, int(n / rate * fps))
    return [min(n - 1, int(i * rate / fps)) for i in range(count)]


def build_video_avatar(
    frames: list[U8],
    rate: float,
    *,
    avatar_id: str,
    name: str | None = None,
    license: str = "",
    size: tuple[int, int] = (512, 512),
    fps: int = 25,
    source: str = "video",
    atlas_tiles: int = ATLAS_TILES,
    metadata: dict[str, Any] | None = None,
    mesh: FaceMesh | None = None,
    progress: Progress = _quiet,
) -> Avatar:
    """A ``video`` avatar from decoded RGB frames at ``rate`` frames/s."""
    progress("loading the face models", None)
    mesh = mesh or FaceMesh()
    frames = [frames[i] for i in _resample_indices(len(frames), rate, fps)]
    face_check.check_image_size(frames[0].shape[1], frames[0].shape[0], source)
    face = find_face(mesh, frames[0], f"{source} (first frame)")
    box = framing(face, frames[0].shape[1], frames[0].shape[0], size)
    crops = np.stack([_crop(f, box, size) for f in frames])
    n = len(crops)
    landmarks = np.zeros((n, 468, 3), dtype=np.float32)
    lost = np.zeros(n, dtype=bool)
    first = _fit(mesh, crops[0], f"{source} (first frame)")
    check_face(mesh, crops[0], first, source=f"{source} (first frame)", source_face_px=face.width, mouth=False)
    previous: F32 = first
    for i in range(n):
        points, presence = mesh.track(crops[i], previous)
        if presence < 0.5:
            faces = mesh.detect(crops[i])
            if faces:
                points, presence = mesh.landmarks_from_detection(crops[i], max(faces, key=lambda f: f.width))
        if presence < 0.5:
            lost[i] = True
            points = previous
        landmarks[i] = previous = points
        progress("tracking the face", (i + 1) / n)
    # A light temporal smoothing of the track (3 frames) removes landmark jitter without visible lag.
    smooth = landmarks.copy()
    smooth[1:-1] = (landmarks[:-2] + 2 * landmarks[1:-1] + landmarks[2:]) / 4
    progress("checking every frame", None)
    quality = frame_quality(crops, smooth, lost)
    good = quality.good
    if good.sum() < MIN_CLIP_S * fps:
        raise InvalidArgument(
            f"{source}: only {good.sum() / fps:.1f} s of the clip show the face clearly ({quality.summary()}); use a "
            "clip where the person faces the camera, in focus, with nothing (hands, hair) crossing the face"
        )
    measures = np.array([mouth_measure(lm) for lm in smooth], dtype=np.float32)
    neutral = float(np.median(measures[good, 2]))
    rest_gap = float(np.percentile([lip_gap(lm) for lm in smooth[good]], 10))
    params = np.stack([mouth_params(lm, neutral_width=neutral, rest_gap=rest_gap) for lm in smooth])

    progress("choosing the idle loop", None)
    start, length = choose_loop(crops, params, fps, good=good, landmarks=smooth)
    loop = crossfade_loop(crops, start, length)
    loop_mouth = crossfade_loop(measures, start, length).astype(np.float32)
    progress("building the mouth atlas", None)
    keep = np.flatnonzero(good)
    atlas = build_atlas(
        crops[keep], measures[keep], params[keep], tiles=atlas_tiles, sources=([frames[i] for i in keep], box)
    )
    base_lm = smooth[start]
    loop.flags.writeable = False
    loop_mouth.flags.writeable = False
    avatar = Avatar(
        id=avatar_id,
        name=name or avatar_id,
        kind="video",
        width=size[0],
        height=size[1],
        fps=fps,
        format_version=3,
        license=license,
        base=np.ascontiguousarray(loop[0]),
        rig=mouth_rig(base_lm),
        metadata={
            "builder": "avaluma avatar build --video",
            "source": source,
            "loop": {"start_s": round(start / fps, 2), "frames": length},
            "frames": quality.counts(),
            **(metadata or {}),
        },
        eyes=eye_rigs(base_lm),
        landmarks=_readonly(base_lm),
        face=face_rig(base_lm, size[0], size[1]),
        video=VideoAssets(frames=loop, mouth=loop_mouth, atlas=atlas),
    )
    progress("done", 1.0)
    return avatar


#: Per-frame limits of the video builder: head turned or nodded further than this from the clip's median pose (deg).
FRAME_TURN_DEG = 15.0
#: A frame is blurred when its face's sharpness (variance of the Laplacian) is under this fraction of the clip's median.
FRAME_BLUR_FRACTION = 0.45
#: A frame is occluded when its mouth-and-chin appearance score (below) exceeds the clip's median by this many median
#: absolute deviations plus :data:`OCCLUSION_MARGIN` (the two real clips of the development set: none over).
OCCLUSION_MADS = 6.0
OCCLUSION_MARGIN = 10.0
#: Lip gaps (relative to the mouth width) within one step of each other count as "open about as wide".
OCCLUSION_GAP_STEP = 0.04

#: Where a hand or hair in front of the mouth shows: the outer lip contour, the chin and the cheeks beside the mouth
#: (they move with speech, but their colour and texture stay those of lips and skin).
_MOUTH_RING = np.array(
    [61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291, 375, 321, 405, 314, 17, 84, 181, 91, 146,
     152, 148, 176, 377, 400, 175, 199, 200, 18, 206, 426, 216, 436, 57, 287, 202, 422],
    dtype=np.intp,
)  # fmt: skip


@dataclasses.dataclass(frozen=True, slots=True)
class FrameQuality:
    """Which frames of a clip are usable, and why the others are not (a frame counts under its first reason)."""

    lost: npt.NDArray[np.bool_]
    turned: npt.NDArray[np.bool_]
    blurred: npt.NDArray[np.bool_]
    occluded: npt.NDArray[np.bool_]

    @property
    def good(self) -> npt.NDArray[np.bool_]:
        ok: npt.NDArray[np.bool_] = ~(self.lost | self.turned | self.blurred | self.occluded)
        return ok

    def counts(self) -> dict[str, int]:
        """Frames used and dropped per reason (kept in the avatar's metadata as its build report)."""
        lost, turned = self.lost, self.turned & ~self.lost
        occluded = self.occluded & ~(lost | turned)
        blurred = self.blurred & ~(lost | turned | occluded)
        return {
            "total": len(self.lost),
            "used": int(self.good.sum()),
            "dropped_face_lost": int(lost.sum()),
            "dropped_head_turned": int(turned.sum()),
            "dropped_occluded": int(occluded.sum()),
            "dropped_blurred": int(blurred.sum()),
        }

    def summary(self) -> str:
        c = self.counts()
        return _frames_summary(c)


def _frames_summary(c: dict[str, int]) -> str:
    parts = [
        f"{c[key]} {label}"
        for key, label in (
            ("dropped_occluded", "with something covering the face"),
            ("dropped_head_turned", f"with the head turned more than {FRAME_TURN_DEG:.0f} degrees"),
            ("dropped_blurred", "blurred"),
            ("dropped_face_lost", "without a face"),
        )
        if c.get(key)
    ]
    dropped = c["total"] - c["used"]
    return f"used {c['used']} of {c['total']} frames" + (f"; dropped {dropped}: {', '.join(parts)}" if dropped else "")


def build_report(avatar: Avatar) -> list[str]:
    """Lines for people about what the builder did beyond the obvious (frames dropped, an open mouth closed)."""
    lines = []
    frames = avatar.metadata.get("frames")
    if isinstance(frames, dict) and {"total", "used"} <= set(frames):
        lines.append(_frames_summary(frames))
    rest = avatar.metadata.get("rest_pose")
    if isinstance(rest, str) and rest:
        lines.append(rest)
    return lines


def frame_quality(crops: U8, landmarks: F32, lost: npt.NDArray[np.bool_]) -> FrameQuality:
    """Head turns (against the clip's median pose), blur (against the clip's median sharpness) and occlusions (the
    mouth region's colour and texture against their medians over the clip) per frame."""
    n = len(crops)
    h, w = crops.shape[1:3]
    poses = np.array([[p.yaw, p.pitch] for p in map(face_check.head_pose, landmarks)], dtype=np.float32)
    ok = ~lost
    centre = np.median(poses[ok], axis=0) if ok.any() else np.zeros(2, np.float32)
    turned = (np.abs(poses - centre) > FRAME_TURN_DEG).any(axis=1) | (np.abs(poses[:, 0]) > face_check.MAX_YAW_DEG)
    sharp = np.zeros(n, dtype=np.float32)
    # Per frame and mouth-ring landmark: mean colour and grey-level spread of the 7x7 patch around it.
    looks = np.zeros((n, len(_MOUTH_RING), 4), dtype=np.float32)
    for i in range(n):
        lm = landmarks[i]
        x0, y0 = np.maximum(np.floor(lm[:, :2].min(axis=0)).astype(int), 0)
        x1, y1 = np.ceil(lm[:, :2].max(axis=0)).astype(int)
        grey = crops[i, y0 : min(h, y1), x0 : min(w, x1)].astype(np.float32).mean(axis=2)
        if grey.shape[0] > 4 and grey.shape[1] > 4:
            lap = grey[1:-1, 1:-1] * 4 - grey[:-2, 1:-1] - grey[2:, 1:-1] - grey[1:-1, :-2] - grey[1:-1, 2:]
            sharp[i] = float(lap.var())
        xs = np.clip(np.round(lm[_MOUTH_RING, 0]).astype(int), 3, w - 4)
        ys = np.clip(np.round(lm[_MOUTH_RING, 1]).astype(int), 3, h - 4)
        patch = np.stack([crops[i, ys + dy, xs + dx] for dy in range(-3, 4) for dx in range(-3, 4)], axis=1)
        patch = patch.astype(np.float32)
        looks[i, :, :3] = patch.mean(axis=1)
        looks[i, :, 3] = patch.mean(axis=2).std(axis=1)
    usable = ok & ~turned
    if not usable.any():
        usable = np.ones(n, dtype=bool)
    blurred = sharp < FRAME_BLUR_FRACTION * float(np.median(sharp[usable]))
    # Compared with frames whose mouth is open about as wide: an open mouth changes the lip contour's colour too.
    gaps = np.round(np.array([lip_gap(lm) for lm in landmarks]) / OCCLUSION_GAP_STEP)
    diff = np.empty_like(looks)
    for g in np.unique(gaps):
        alike = usable & (np.abs(gaps - g) <= 1)
        if alike.sum() < 5:
            alike = usable
        diff[gaps == g] = looks[gaps == g] - np.median(looks[alike], axis=0)
    diff[..., :3] -= np.median(diff[..., :3], axis=1, keepdims=True)  # the frame's overall light change
    score = np.median(np.linalg.norm(diff[..., :3], axis=2) + 2.0 * np.abs(diff[..., 3]), axis=1)
    typical = float(np.median(score[usable]))
    spread = float(np.median(np.abs(score[usable] - typical)))
    occluded = score > typical + OCCLUSION_MADS * spread + OCCLUSION_MARGIN
    # ...and, whatever the rest of the clip does (a hand held still over the mouth all along), frames without lips
    # where the mouth should be.
    occluded |= np.array([face_check.mouth_covered(crops[i], landmarks[i]) for i in range(n)], dtype=bool)
    return FrameQuality(lost=lost, turned=turned, blurred=blurred, occluded=occluded)


def choose_loop(
    frames: U8,
    params: F32,
    fps: int,
    *,
    good: npt.NDArray[np.bool_] | None = None,
    landmarks: F32 | None = None,
) -> tuple[int, int]:
    """(start, length) of the idle loop: quiet mouth, every frame usable (``good``, the cross-fade's lead-in
    included), and a last frame that flows into the first: in pixels and in head position (``landmarks``), so the
    cross-fade never blends two head positions into a ghost."""
    n = len(frames)
    lo = min(n - CROSSFADE_FRAMES - 1, int(LOOP_S[0] * fps))
    hi = min(n - CROSSFADE_FRAMES - 1, int(LOOP_S[1] * fps))
    if lo < 2:
        raise InvalidArgument(f"the clip is too short for an idle loop: it needs at least {MIN_CLIP_S:.0f} s")
    bad = np.concatenate([[0], np.cumsum(~good if good is not None else np.zeros(n, bool))])
    # Small grey thumbnails make the end-match cheap.
    thumbs = np.stack([np.asarray(Image.fromarray(f).convert("L").resize((32, 32)), np.float32) for f in frames])
    head = None
    if landmarks is not None:
        width = float(np.median(landmarks[:, 454, 0] - landmarks[:, 234, 0]))
        head = landmarks[:, :, :2].reshape(n, -1, 2) / max(width, 1.0)
    openness = params[:, 0]
    best, best_score = (CROSSFADE_FRAMES, lo), math.inf
    for length in range(lo, hi + 1, max(1, (hi - lo) // 8 or 1)):
        for start in range(CROSSFADE_FRAMES, n - length + 1, 2):
            if bad[start + length] - bad[start - CROSSFADE_FRAMES]:
                continue
            end = start + length - 1
            # The fade blends the end into the frames before the start; the seam itself is the clip's own step
            # into the start, which must be an ordinary one (not the middle of a head movement).
            mismatch = float(np.abs(thumbs[end] - thumbs[start - 1]).mean()) / 255.0
            mismatch += 2.0 * float(np.abs(thumbs[start] - thumbs[start - 1]).mean()) / 255.0
            if head is not None:
                mismatch += float(np.linalg.norm(head[end] - head[start - 1], axis=1).mean())
            score = float(openness[start : start + length].mean()) + 4.0 * mismatch
            if score < best_score:
                best, best_score = (start, length), score
    if best_score == math.inf:
        raise InvalidArgument(
            f"no {LOOP_S[0]:.0f} s stretch of the clip shows the face clearly and still; use a clip with a few "
            "seconds of the person at rest, facing the camera, nothing crossing the face"
        )
    return best


def crossfade_loop(frames: npt.NDArray[Any], start: int, length: int) -> npt.NDArray[Any]:
    """``frames[start:start+length]`` with its last frames faded into the ones before ``start``, so it loops: the
    last frame *is* the frame before ``start`` (the step from it to the first is a real step of the clip), and the
    difference between the two ends is spread over the fade."""
    loop = frames[start : start + length].astype(np.float32)
    k = min(CROSSFADE_FRAMES, start, length // 2)
    for j in range(k):
        w = (j + 1) / k
        loop[length - k + j] = (1 - w) * loop[length - k + j] + w * frames[start - k + j].astype(np.float32)
    if frames.dtype == np.uint8:
        as_bytes: npt.NDArray[Any] = np.clip(loop + 0.5, 0, 255).astype(np.uint8)
        return as_bytes
    return loop


def tile_geometry(ref_width: float) -> tuple[int, int, tuple[float, float]]:
    tw = int(2 * round(1.1 * ref_width))
    th = int(2 * round(0.95 * ref_width))
    return tw, th, (tw / 2.0, th * 0.4)


def cut_tile(frame: U8, measure: F32, ref_width: float) -> U8:
    """The mouth of ``frame`` in atlas space: centred on the anchor, level, scaled to ``ref_width``."""
    tw, th, (ax, ay) = tile_geometry(ref_width)
    cx, cy, width, angle = (float(v) for v in measure)
    s = width / ref_width
    c, si = math.cos(angle) * s, math.sin(angle) * s
    # tile (u, v) -> frame: centre + R(angle) * s * ((u, v) - anchor)
    coeffs = (c, -si, cx - c * ax + si * ay, si, c, cy - si * ax - c * ay)
    tile = Image.fromarray(frame).transform((tw, th), Image.Transform.AFFINE, coeffs, Image.Resampling.BICUBIC)
    return np.asarray(tile, dtype=np.uint8)


def kmeans(x: F32, k: int, *, seed: int = 0, iters: int = 30) -> npt.NDArray[np.int64]:
    rng = np.random.default_rng(seed)
    centres = x[rng.choice(len(x), size=k, replace=False)].copy()
    labels = np.zeros(len(x), dtype=np.int64)
    for _ in range(iters):
        d = ((x[:, None, :] - centres[None]) ** 2).sum(axis=2)
        labels = d.argmin(axis=1)
        for j in range(k):
            members = x[labels == j]
            if len(members):
                centres[j] = members.mean(axis=0)
    return labels


#: Weights of the mouth parameters when comparing shapes (the jaw matters most).
PARAM_WEIGHTS = np.array([1.5, 1.0, 0.7, 0.7], dtype=np.float32)


#: Largest decoded atlas the builder writes (the loader's cap is 32 MiB): tiles are cut at up to
#: :data:`ATLAS_SUPERSAMPLE` times the avatar's resolution, less when that would exceed this.
ATLAS_BUDGET_BYTES = 24 * 1024 * 1024
ATLAS_SUPERSAMPLE = 2.0


def _mouth_sharpness(frame: U8, measure: F32) -> float:
    cx, cy, width, _ = (float(v) for v in measure)
    x0, x1 = int(max(0, cx - 0.6 * width)), int(cx + 0.6 * width)
    y0, y1 = int(max(0, cy - 0.4 * width)), int(cy + 0.4 * width)
    grey = frame[y0:y1, x0:x1].astype(np.float32).mean(axis=2)
    if grey.shape[0] < 3 or grey.shape[1] < 3:
        return 0.0
    lap = 4 * grey[1:-1, 1:-1] - grey[:-2, 1:-1] - grey[2:, 1:-1] - grey[1:-1, :-2] - grey[1:-1, 2:]
    return float(lap.var())


def build_atlas(
    frames: U8,
    measures: F32,
    params: F32,
    *,
    tiles: int = ATLAS_TILES,
    sources: tuple[list[U8], tuple[float, float, float, float]] | None = None,
) -> MouthAtlas:
    """Cluster the frames' mouths by shape; each cluster's sharpest typical frame becomes a tile, with its parameters.
    The most closed mouth is always a tile, so silence has an exact match.

    ``sources``: the clip's frames before framing and the crop box (in their pixels) that made ``frames``: tiles are
    then cut from them at up to :data:`ATLAS_SUPERSAMPLE` times the avatar's resolution, so placing a tile (a second
    resampling) loses almost none of the real mouth's sharpness."""
    ref_width = float(np.median(measures[:, 2]))
    weighted = params * PARAM_WEIGHTS
    k = max(1, min(tiles, len(np.unique(np.round(weighted, 2), axis=0))))
    labels = kmeans(weighted, k)
    chosen: list[int] = [int(np.argmin(((params - REST_POSE) * PARAM_WEIGHTS) ** 2 @ np.ones(4)))]
    for j in range(k):
        members = np.flatnonzero(labels == j)
        if not len(members):
            continue
        centre = weighted[members].mean(axis=0)
        dist = np.sqrt(((weighted[members] - centre) ** 2).sum(axis=1))
        # Among the members about as typical as the most typical one, the sharpest (motion blur, focus).
        near = members[dist <= dist.min() + 0.05]
        pick = int(max(near, key=lambda i: _mouth_sharpness(frames[i], measures[i])))
        if pick not in chosen:
            chosen.append(pick)
    scale = 1.0
    if sources is not None:
        x0, y0, x1, _ = sources[1]
        tw, th, _ = tile_geometry(ref_width)
        scale = min(ATLAS_SUPERSAMPLE, (x1 - x0) / frames.shape[2])
        scale = min(scale, (ATLAS_BUDGET_BYTES / (len(chosen) * tw * th * 3)) ** 0.5)
        scale = max(1.0, scale)
    if sources is not None and scale > 1.0:
        originals, (x0, y0, x1, _) = sources
        k_src = (x1 - x0) / frames.shape[2]  # source px per avatar px
        cut = []
        for i in chosen:
            cx, cy, width, angle = (float(v) for v in measures[i])
            in_source = np.array([x0 + cx * k_src, y0 + cy * k_src, width * k_src, angle], dtype=np.float32)
            cut.append(cut_tile(originals[i], in_source, ref_width * scale))
        tile_stack = np.stack(cut)
    else:
        tile_stack = np.stack([cut_tile(frames[i], measures[i], ref_width) for i in chosen])
    tile_stack.flags.writeable = False
    tile_params = params[chosen].astype(np.float32)
    tile_params.flags.writeable = False
    _, _, anchor = tile_geometry(ref_width * scale)
    return MouthAtlas(tiles=tile_stack, params=tile_params, anchor=anchor, ref_width=ref_width * scale)
