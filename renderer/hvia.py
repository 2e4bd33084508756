"""The ``.hvia`` avatar container (format version 3; version 1 and 2 files still load). Full description: docs/hvia.md.

A ``.hvia`` file is a zip archive holding:

``manifest.json``
    ``{"format": "hvia", "format_version": 3, "id", "name", "kind": "photo" | "video", "fps", "width", "height",
    "license", "metadata": {...}, "entries": {<name>: {"sha256", "size"}, ...}}`` (plus ``"video": {"frames"}`` for
    video avatars). Every other entry must be listed with its checksum.
``base.png``
    The RGB rest image, exactly ``width`` x ``height`` (a video avatar's first loop frame).
``rig.json``
    ``{"mouth": <MouthRig>, "eyes": [<EyeRig>, ...], "face": <FaceRig>}`` in pixels (version 1: the mouth rig alone;
    version 2: no ``"face"``, which version 3 may also leave out: the brow and cheek regions are then derived from
    ``landmarks.npy`` when the file has it, else the avatar renders no expressions).
``landmarks.npy`` (optional)
    ``[468, 3]`` float32 face-mesh landmarks of ``base.png``.
``loop.mp4``, ``loop_mouth.npy``, ``atlas.png``, ``atlas.json`` (video avatars)
    The idle loop (H.264), the mouth centre/width/angle per loop frame (``[frames, 4]`` float32), the mouth atlas
    tiles stacked vertically, and the tile size, anchor, reference width and mouth parameters of each tile.

Files come from users (``UploadAvatar``), so loading trusts nothing: sizes are checked from the zip directory before
anything is decompressed, every entry is checked against its sha256, arrays are read without pickle and checked for
shape and finiteness, decoded sizes are capped from what the file declares before any pixel is decoded (a small file
must not unpack into gigabytes), and every problem is one :class:`~avaluma.core.errors.AvatarFileError` naming the file
and saying what to do: a failure of the zip, JSON, PNG, ``.npy`` or video layers never escapes as anything else.
Readers reject versions they do not know instead of guessing. Loaded arrays are read-only and shared by every session
rendering the avatar.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import math
import os
import tempfile
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from avaluma.core.errors import AvatarFileError, InvalidArgument
from avaluma.renderer.avatar import AVATAR_KINDS, Avatar, EyeRig, FaceRig, MouthAtlas, MouthRig, VideoAssets

log = logging.getLogger(__name__)

FORMAT = "hvia"
#: The version this Avaluma writes.
FORMAT_VERSION = 3
#: The versions it reads.
READ_VERSIONS = (1, 2, 3)
SUFFIX = ".hvia"
MANIFEST = "manifest.json"
BASE_IMAGE = "base.png"
RIG = "rig.json"
LANDMARKS = "landmarks.npy"
LOOP = "loop.mp4"
LOOP_MOUTH = "loop_mouth.npy"
ATLAS_IMAGE = "atlas.png"
ATLAS = "atlas.json"
REQUIRED_ENTRIES = (BASE_IMAGE, RIG)
VIDEO_ENTRIES = (LOOP, LOOP_MOUTH, ATLAS_IMAGE, ATLAS)
#: Longest idle loop a file may hold (decoded frames live in memory, shared by sessions).
MAX_LOOP_FRAMES = 250
MAX_ATLAS_TILES = 256

#: Upper bound of a file and of the sum of its uncompressed entries (decompression-bomb guard).
MAX_HVIA_BYTES = 64 * 1024 * 1024
MAX_ENTRIES = 16
MAX_MANIFEST_BYTES = 1024 * 1024
MAX_SIDE = 4096
MIN_SIDE = 16
#: Decoded idle loop (``frames x width x height x 3`` bytes) a file may declare: checked before decoding. Room for the
#: builder's largest output (512x640, 4 s at 60 fps) and for 1024x1024 loops of 4 s at 25 fps.
MAX_LOOP_DECODED_BYTES = 320 * 1024 * 1024
#: Decoded mouth atlas (``tiles x tile_w x tile_h x 3`` bytes): checked before decoding. The renderer keeps a float32
#: copy of the atlas (4x this), so it is held well below the loop's cap.
MAX_ATLAS_DECODED_BYTES = 32 * 1024 * 1024
#: Largest atlas tile side.
MAX_TILE_SIDE = 1024
#: Smallest mouth width (pixels) a video avatar's mouth track may hold: the atlas is scaled by ``ref_width / width``.
MIN_MOUTH_WIDTH = 4.0

_REBUILD = "rebuild it with `avaluma avatar build` or scripts/build_demo_avatars.py"


def _png_bytes(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb, mode="RGB").save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def _entry_meta(data: bytes) -> dict[str, Any]:
    return {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}


def _npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(array, dtype=np.float32), allow_pickle=False)
    return buf.getvalue()


def dump_hvia_bytes(avatar: Avatar) -> bytes:
    """Serialise ``avatar`` as ``.hvia`` version 3 bytes (what :func:`save_hvia` writes)."""
    rig: dict[str, Any] = {"mouth": avatar.rig.to_json(), "eyes": [eye.to_json() for eye in avatar.eyes]}
    if avatar.face is not None:
        rig["face"] = avatar.face.to_json()
    contents: list[tuple[str, bytes, int]] = [
        (BASE_IMAGE, _png_bytes(np.ascontiguousarray(avatar.base)), zipfile.ZIP_STORED),
        (RIG, json.dumps(rig, indent=1).encode(), zipfile.ZIP_DEFLATED),
    ]
    if avatar.landmarks is not None:
        contents.append((LANDMARKS, _npy_bytes(avatar.landmarks), zipfile.ZIP_DEFLATED))
    extra: dict[str, Any] = {}
    if avatar.video is not None:
        from avaluma.renderer.loop_video import encode_loop

        video = avatar.video
        atlas = video.atlas
        k, th, tw = atlas.tiles.shape[:3]
        atlas_json = {
            "tile": [tw, th],
            "anchor": list(atlas.anchor),
            "ref_width": atlas.ref_width,
            "params": [[round(float(v), 4) for v in row] for row in atlas.params],
        }
        contents += [
            (LOOP, encode_loop(video.frames, avatar.fps), zipfile.ZIP_STORED),
            (LOOP_MOUTH, _npy_bytes(video.mouth), zipfile.ZIP_DEFLATED),
            (ATLAS_IMAGE, _png_bytes(np.ascontiguousarray(atlas.tiles.reshape(k * th, tw, 3))), zipfile.ZIP_STORED),
            (ATLAS, json.dumps(atlas_json).encode(), zipfile.ZIP_DEFLATED),
        ]
        extra["video"] = {"frames": len(video.frames)}
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "id": avatar.id,
        "name": avatar.name,
        "kind": avatar.kind,
        "fps": avatar.fps,
        "width": avatar.width,
        "height": avatar.height,
        "license": avatar.license,
        "metadata": avatar.metadata,
        **extra,
        "entries": {name: _entry_meta(content) for name, content, _ in contents},
    }
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        # Manifest first so a reader can reject a file early; images and video are already compressed, store them.
        # Fixed timestamps make the same avatar produce the same bytes (no churn when the demo asset is rebuilt).
        for name, content, method in [(MANIFEST, json.dumps(manifest, indent=2).encode(), zipfile.ZIP_DEFLATED),
                                      *contents]:  # fmt: skip
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = method
            info.external_attr = 0o644 << 16
            zf.writestr(info, content)
    return buf.getvalue()


def save_hvia(avatar: Avatar, path: str | os.PathLike[str]) -> Path:
    """Write ``avatar`` to ``path`` atomically (a reader never sees a half-written file); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = dump_hvia_bytes(avatar)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; avatars are shared, readable files
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_hvia(path: str | os.PathLike[str]) -> Avatar:
    """Load and validate a ``.hvia`` file. Raises :class:`AvatarFileError` with the path in the message."""
    path = Path(path)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise AvatarFileError(f"{path}: avatar file not found") from None
    if size > MAX_HVIA_BYTES:
        raise AvatarFileError(f"{path}: {size} bytes is larger than the {MAX_HVIA_BYTES} byte limit for .hvia files")
    return load_hvia_bytes(path.read_bytes(), source=str(path))


def load_hvia_bytes(data: bytes, *, source: str) -> Avatar:
    """Load and validate ``.hvia`` content; ``source`` names it in error messages (a path or an upload name)."""
    try:
        return _load(data, source)
    except AvatarFileError:
        raise
    except InvalidArgument as e:  # rig/avatar validation: same problem, reported as a bad file
        raise AvatarFileError(e.message) from e
    except (Exception, RecursionError, MemoryError) as e:
        # The layers below (zipfile, zlib, json, PIL, numpy, PyAV) raise many kinds of errors on hostile input; the
        # known ones are translated where they happen. Anything else is still the file's fault, not the caller's:
        # one error naming the file, and the details in the log for whoever maintains this reader.
        log.warning("unexpected error loading an avatar file", exc_info=e, extra={"source": source})
        raise AvatarFileError(
            f"{source}: cannot be loaded ({type(e).__name__}: {_short(e)}); {_REBUILD}, or copy it again"
        ) from None


def _short(exc: BaseException, limit: int = 200) -> str:
    text = str(exc)
    return text if len(text) <= limit else text[:limit] + "..."


def _load(data: bytes, source: str) -> Avatar:
    if len(data) > MAX_HVIA_BYTES:
        raise AvatarFileError(
            f"{source}: {len(data)} bytes is larger than the {MAX_HVIA_BYTES} byte limit for .hvia files"
        )
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile:
        raise AvatarFileError(
            f"{source}: not a .hvia file (not a zip archive, or truncated): {_REBUILD}, or copy it again"
        ) from None
    with zf:
        infos = {info.filename: info for info in zf.infolist()}
        if len(infos) > MAX_ENTRIES:
            raise AvatarFileError(f"{source}: {len(infos)} entries, more than the {MAX_ENTRIES} a .hvia may hold")
        declared = sum(info.file_size for info in infos.values())
        if declared > MAX_HVIA_BYTES:
            raise AvatarFileError(
                f"{source}: entries unpack to {declared} bytes, more than the {MAX_HVIA_BYTES} byte limit"
            )
        manifest = _parse_manifest(_read(zf, infos, MANIFEST, source, MAX_MANIFEST_BYTES), source)
        entries = manifest["entries"]
        wanted = list(REQUIRED_ENTRIES)
        if manifest["kind"] == "video":
            wanted += VIDEO_ENTRIES
        if LANDMARKS in entries:
            wanted.append(LANDMARKS)
        contents = {}
        for name in wanted:
            meta = entries.get(name)
            if not isinstance(meta, dict) or not isinstance(meta.get("sha256"), str):
                raise AvatarFileError(f"{source}: {MANIFEST} has no sha256 for {name}; {_REBUILD}")
            content = _read(zf, infos, name, source, MAX_HVIA_BYTES)
            if hashlib.sha256(content).hexdigest() != meta["sha256"]:
                raise AvatarFileError(
                    f"{source}: checksum mismatch for {name}: the file is corrupt or was edited; {_REBUILD}"
                )
            contents[name] = content
    width, height = manifest["width"], manifest["height"]
    version = manifest["format_version"]
    # Decoded sizes are checked from the declarations first: nothing is decoded for a file that would be too big.
    layout = _video_layout(manifest, contents, source) if manifest["kind"] == "video" else None
    base = _decode_image(contents[BASE_IMAGE], width, height, source, BASE_IMAGE)
    rig_json = _parse_json(contents[RIG], source, RIG)
    eyes: tuple[EyeRig, ...] = ()
    face: FaceRig | None = None
    if version >= 2:
        # Version 3 adds the optional "face" (brows and cheeks); version 2 holds exactly mouth and eyes.
        keys = {"mouth", "eyes"} if version == 2 else {"mouth", "eyes", "face"}
        if (
            not isinstance(rig_json, dict)
            or not {"mouth", "eyes"} <= set(rig_json) <= keys
            or not isinstance(rig_json["eyes"], list)
        ):
            keys_text = '"mouth" and "eyes" (a list)' + (' and optionally "face"' if version > 2 else "")
            raise AvatarFileError(f"{source}: {RIG} must hold exactly {keys_text}; {_REBUILD}")
        eyes = tuple(EyeRig.from_json(e, source=f"{source}: {RIG}") for e in rig_json["eyes"][:8])
        for eye in eyes:
            eye.validate(width, height, source=f"{source}: {RIG}")
        if "face" in rig_json:
            face = FaceRig.from_json(rig_json["face"], source=f"{source}: {RIG}")
            face.validate(width, height, source=f"{source}: {RIG}")
        rig_json = rig_json["mouth"]
    rig = MouthRig.from_json(rig_json, source=f"{source}: {RIG}")
    rig.validate(width, height, source=f"{source}: {RIG}")
    landmarks = None
    if LANDMARKS in contents:
        landmarks = _decode_array(contents[LANDMARKS], (468, 3), source, LANDMARKS)
        if face is None:
            # Files from before version 3 (or written without the regions) that carry the landmarks get the same
            # brows and cheeks the builder would store; landmarks that give no usable rig just mean no expressions.
            from avaluma.renderer.rig_builder import face_rig

            face = face_rig(landmarks, width, height)
    video = _load_video(manifest, contents, layout, source) if layout is not None else None
    base.flags.writeable = False
    return Avatar(
        id=manifest["id"],
        name=manifest["name"],
        kind=manifest["kind"],
        width=width,
        height=height,
        fps=manifest["fps"],
        format_version=version,
        license=manifest["license"],
        base=base,
        rig=rig,
        metadata=manifest["metadata"],
        size_bytes=len(data),
        eyes=eyes,
        landmarks=landmarks,
        video=video,
        face=face,
    )


@dataclass(frozen=True, slots=True)
class _VideoLayout:
    """What a video avatar's manifest and ``atlas.json`` declare, checked before anything is decoded."""

    frames: int
    tile_w: int
    tile_h: int
    anchor: tuple[float, float]
    ref_width: float
    params: np.ndarray


def _video_layout(manifest: dict[str, Any], contents: dict[str, bytes], source: str) -> _VideoLayout:
    info = manifest.get("video")
    frames_n = info.get("frames") if isinstance(info, dict) else None
    if not isinstance(frames_n, int) or isinstance(frames_n, bool) or not 2 <= frames_n <= MAX_LOOP_FRAMES:
        raise AvatarFileError(f'{source}: {MANIFEST} field "video.frames" must be 2..{MAX_LOOP_FRAMES}; {_REBUILD}')
    width, height = manifest["width"], manifest["height"]
    loop_bytes = frames_n * width * height * 3
    if loop_bytes > MAX_LOOP_DECODED_BYTES:
        raise AvatarFileError(
            f"{source}: the idle loop ({frames_n} frames of {width}x{height}) decodes to {loop_bytes} bytes, more than "
            f"the {MAX_LOOP_DECODED_BYTES} byte limit for decoded loops: use a shorter loop or a smaller size"
        )
    atlas_json = _parse_json(contents[ATLAS], source, ATLAS)
    try:
        tw, th = (int(v) for v in atlas_json["tile"])
        anchor = (float(atlas_json["anchor"][0]), float(atlas_json["anchor"][1]))
        ref_width = float(atlas_json["ref_width"])
        params = np.array(atlas_json["params"], dtype=np.float32)
    except (ValueError, KeyError, TypeError, IndexError, OverflowError):
        raise AvatarFileError(f"{source}: {ATLAS} is not a valid atlas description; {_REBUILD}") from None
    k = len(params)
    if not (1 <= k <= MAX_ATLAS_TILES and params.shape == (k, 4) and np.isfinite(params).all()):
        raise AvatarFileError(f"{source}: {ATLAS} needs 1..{MAX_ATLAS_TILES} rows of 4 mouth parameters; {_REBUILD}")
    side = MAX_TILE_SIDE
    if not (
        8 <= tw <= side and 8 <= th <= side and 0 <= anchor[0] < tw and 0 <= anchor[1] < th and 1 < ref_width <= tw
    ):
        raise AvatarFileError(f"{source}: {ATLAS} tile geometry is invalid; {_REBUILD}")
    atlas_bytes = k * tw * th * 3
    if atlas_bytes > MAX_ATLAS_DECODED_BYTES:
        raise AvatarFileError(
            f"{source}: the mouth atlas ({k} tiles of {tw}x{th}) decodes to {atlas_bytes} bytes, more than the "
            f"{MAX_ATLAS_DECODED_BYTES} byte limit for decoded atlases: use fewer or smaller tiles"
        )
    return _VideoLayout(frames_n, tw, th, anchor, ref_width, params)


def _check_mouth_track(mouth: np.ndarray, width: int, height: int, source: str) -> None:
    """Every loop frame's mouth must be on the image with a real width: the renderer places the atlas there."""
    cx, cy, mw, angle = mouth[:, 0], mouth[:, 1], mouth[:, 2], mouth[:, 3]
    bad = ~((cx >= 0) & (cx < width) & (cy >= 0) & (cy < height))
    bad |= ~((mw >= MIN_MOUTH_WIDTH) & (mw <= width))
    bad |= ~(np.abs(angle) <= math.pi)
    if bad.any():
        i = int(np.argmax(bad))
        x, y, w, a = (round(float(v), 2) for v in mouth[i])
        raise AvatarFileError(
            f"{source}: {LOOP_MOUTH} frame {i} puts the mouth at ({x}, {y}), width {w}, angle {a}: the centre must lie "
            f"inside the {width}x{height} image, the width be {MIN_MOUTH_WIDTH:g}..{width} px and the angle within "
            f"+-pi; {_REBUILD}"
        )


def _load_video(manifest: dict[str, Any], contents: dict[str, bytes], layout: _VideoLayout, source: str) -> VideoAssets:
    from avaluma.renderer.loop_video import decode_loop

    width, height = manifest["width"], manifest["height"]
    mouth = _decode_array(contents[LOOP_MOUTH], (layout.frames, 4), source, LOOP_MOUTH)
    _check_mouth_track(mouth, width, height, source)
    try:
        frames = decode_loop(contents[LOOP], layout.frames, width, height)
    except ValueError as e:
        raise AvatarFileError(f"{source}: {LOOP} cannot be decoded ({_short(e)}); {_REBUILD}") from None
    k, tw, th = len(layout.params), layout.tile_w, layout.tile_h
    tiles = _decode_image(contents[ATLAS_IMAGE], tw, k * th, source, ATLAS_IMAGE).reshape(k, th, tw, 3)
    tiles.flags.writeable = False
    params = layout.params
    params.flags.writeable = False
    return VideoAssets(frames=frames, mouth=mouth, atlas=MouthAtlas(tiles, params, layout.anchor, layout.ref_width))


def _decode_array(data: bytes, shape: tuple[int, ...], source: str, name: str) -> np.ndarray:
    wrong = f"{source}: {name} must be a finite float32 array of shape {shape}"
    try:
        # Read the header first: its declared shape and dtype decide how much np.load would allocate.
        header = io.BytesIO(data)
        version = np.lib.format.read_magic(header)
        if version == (1, 0):
            declared_shape, _fortran, dtype = np.lib.format.read_array_header_1_0(header)
        elif version == (2, 0):
            declared_shape, _fortran, dtype = np.lib.format.read_array_header_2_0(header)
        else:
            raise ValueError(f".npy format version {version[0]}.{version[1]} (this reader takes 1.0 and 2.0)")
        if tuple(declared_shape) != shape or dtype != np.float32:
            raise AvatarFileError(f"{wrong}, got {dtype} {tuple(declared_shape)}; {_REBUILD}")
        array = np.load(io.BytesIO(data), allow_pickle=False)
    except AvatarFileError:
        raise
    except (ValueError, OSError, EOFError, TypeError, SyntaxError) as e:
        raise AvatarFileError(f"{source}: {name} is not a valid .npy array ({_short(e)}); {_REBUILD}") from None
    if array.dtype != np.float32 or array.shape != shape or not np.isfinite(array).all():
        raise AvatarFileError(f"{wrong}, got {array.dtype} {array.shape}; {_REBUILD}")
    array.flags.writeable = False
    checked: np.ndarray = array
    return checked


def _read(zf: zipfile.ZipFile, infos: dict[str, zipfile.ZipInfo], name: str, source: str, limit: int) -> bytes:
    info = infos.get(name)
    if info is None:
        raise AvatarFileError(f"{source}: missing entry {name}; {_REBUILD}")
    if info.file_size > limit:
        raise AvatarFileError(f"{source}: entry {name} is {info.file_size} bytes, more than the {limit} byte limit")
    try:
        with zf.open(info) as f:
            # zipfile stops at the declared size, so a lying header cannot make us unpack more than we checked.
            return f.read(limit + 1)
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, NotImplementedError, RuntimeError) as e:
        # zlib.error: a broken deflate stream; NotImplementedError: an unknown compression method; RuntimeError: the
        # entry claims to be encrypted. None of these is anything the server can do something about.
        raise AvatarFileError(f"{source}: entry {name} is corrupt ({_short(e)}); {_REBUILD}") from None


def _parse_json(raw: bytes, source: str, name: str) -> Any:
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):  # RecursionError: nested deeper than the parser's stack
        raise AvatarFileError(f"{source}: {name} is not valid JSON; {_REBUILD}") from None


def _parse_manifest(raw: bytes, source: str) -> dict[str, Any]:
    m = _parse_json(raw, source, MANIFEST)
    if not isinstance(m, dict) or m.get("format") != FORMAT:
        raise AvatarFileError(f'{source}: {MANIFEST} does not declare "format": "{FORMAT}"; {_REBUILD}')
    version = m.get("format_version")
    if version not in READ_VERSIONS or isinstance(version, bool):
        raise AvatarFileError(
            f"{source}: unsupported format_version {version!r}: this Avaluma reads versions "
            f"{', '.join(map(str, READ_VERSIONS))}; upgrade Avaluma or rebuild the avatar"
        )

    def field(key: str, kind: type, check: Any = None, hint: str = "") -> Any:
        value = m.get(key)
        if not isinstance(value, kind) or isinstance(value, bool) or (check is not None and not check(value)):
            raise AvatarFileError(f"{source}: {MANIFEST} field {key!r} is missing or invalid{hint}; {_REBUILD}")
        return value

    field("id", str)
    field("name", str)
    field("license", str)
    kinds = ("photo",) if version == 1 else AVATAR_KINDS
    field("kind", str, lambda v: v in kinds, f" (version {version} knows {', '.join(kinds)})")
    field("fps", int, lambda v: 1 <= v <= 60, " (1..60)")
    field("width", int, lambda v: MIN_SIDE <= v <= MAX_SIDE, f" ({MIN_SIDE}..{MAX_SIDE})")
    field("height", int, lambda v: MIN_SIDE <= v <= MAX_SIDE, f" ({MIN_SIDE}..{MAX_SIDE})")
    m.setdefault("metadata", {})
    field("metadata", dict)
    entries = field("entries", dict)
    for name in REQUIRED_ENTRIES:
        meta = entries.get(name)
        if not isinstance(meta, dict) or not isinstance(meta.get("sha256"), str):
            raise AvatarFileError(f"{source}: {MANIFEST} has no sha256 for {name}; {_REBUILD}")
    return m


def _decode_image(data: bytes, width: int, height: int, source: str, name: str) -> np.ndarray:
    try:
        with Image.open(io.BytesIO(data)) as img:
            # The header is read lazily: check the size before decoding any pixels.
            if img.format != "PNG":
                raise AvatarFileError(f"{source}: {name} is not a PNG image; {_REBUILD}")
            if img.size != (width, height):
                raise AvatarFileError(
                    f"{source}: {name} is {img.size[0]}x{img.size[1]} but the manifest says {width}x{height}; "
                    f"{_REBUILD}"
                )
            rgb = np.asarray(img.convert("RGB"), dtype=np.uint8).copy()
    except AvatarFileError:
        raise
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        raise AvatarFileError(f"{source}: {name} cannot be decoded ({e}); {_REBUILD}") from None
    return rgb
