"""The ``.hvia`` avatar container, format version 1.

A ``.hvia`` file is a zip archive holding:

``manifest.json``
    ``{"format": "hvia", "format_version": 1, "id", "name", "kind": "photo", "fps", "width", "height", "license",
    "metadata": {...}, "entries": {"base.png": {"sha256", "size"}, "rig.json": {"sha256", "size"}}}``
``base.png``
    The RGB photo, exactly ``width`` x ``height``.
``rig.json``
    Mouth landmarks in pixels, see :class:`avaluma.renderer.avatar.MouthRig`.

Files come from users (``UploadAvatar``), so loading trusts nothing: sizes are checked from the zip directory before
anything is decompressed, every entry is checked against its sha256, and every problem is one
:class:`~avaluma.core.errors.AvatarFileError` naming the file and saying what to do. Later format versions add entries
(``video`` avatars); readers reject versions they do not know instead of guessing.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from avaluma.core.errors import AvatarFileError, InvalidArgument
from avaluma.renderer.avatar import Avatar, MouthRig

FORMAT = "hvia"
FORMAT_VERSION = 1
SUFFIX = ".hvia"
MANIFEST = "manifest.json"
BASE_IMAGE = "base.png"
RIG = "rig.json"
REQUIRED_ENTRIES = (BASE_IMAGE, RIG)

#: Upper bound of a file and of the sum of its uncompressed entries (decompression-bomb guard).
MAX_HVIA_BYTES = 64 * 1024 * 1024
MAX_ENTRIES = 16
MAX_MANIFEST_BYTES = 1024 * 1024
MAX_SIDE = 4096
MIN_SIDE = 16

_REBUILD = "rebuild it with `avaluma avatar build` or scripts/build_demo_avatars.py"


def _png_bytes(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb, mode="RGB").save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def _entry_meta(data: bytes) -> dict[str, Any]:
    return {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}


def dump_hvia_bytes(avatar: Avatar) -> bytes:
    """Serialise ``avatar`` as ``.hvia`` v1 bytes (what :func:`save_hvia` writes)."""
    base = _png_bytes(np.ascontiguousarray(avatar.base))
    rig = json.dumps(avatar.rig.to_json(), indent=2).encode()
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
        "entries": {BASE_IMAGE: _entry_meta(base), RIG: _entry_meta(rig)},
    }
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        # Manifest first so a reader can reject a file early; the PNG is already compressed, store it as is.
        # Fixed timestamps make the same avatar produce the same bytes (no churn when the demo asset is rebuilt).
        for name, content, method in (
            (MANIFEST, json.dumps(manifest, indent=2).encode(), zipfile.ZIP_DEFLATED),
            (BASE_IMAGE, base, zipfile.ZIP_STORED),
            (RIG, rig, zipfile.ZIP_DEFLATED),
        ):
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
        contents = {}
        for name in REQUIRED_ENTRIES:
            content = _read(zf, infos, name, source, MAX_HVIA_BYTES)
            if hashlib.sha256(content).hexdigest() != entries[name]["sha256"]:
                raise AvatarFileError(
                    f"{source}: checksum mismatch for {name}: the file is corrupt or was edited; {_REBUILD}"
                )
            contents[name] = content
    width, height = manifest["width"], manifest["height"]
    base = _decode_image(contents[BASE_IMAGE], width, height, source)
    try:
        rig_json = json.loads(contents[RIG])
    except ValueError:
        raise AvatarFileError(f"{source}: {RIG} is not valid JSON; {_REBUILD}") from None
    rig = MouthRig.from_json(rig_json, source=f"{source}: {RIG}")
    rig.validate(width, height, source=f"{source}: {RIG}")
    base.flags.writeable = False
    return Avatar(
        id=manifest["id"],
        name=manifest["name"],
        kind=manifest["kind"],
        width=width,
        height=height,
        fps=manifest["fps"],
        format_version=manifest["format_version"],
        license=manifest["license"],
        base=base,
        rig=rig,
        metadata=manifest["metadata"],
        size_bytes=len(data),
    )


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
    except (zipfile.BadZipFile, EOFError, OSError, ValueError) as e:
        raise AvatarFileError(f"{source}: entry {name} is corrupt ({e}); {_REBUILD}") from None


def _parse_manifest(raw: bytes, source: str) -> dict[str, Any]:
    try:
        m = json.loads(raw)
    except ValueError:
        raise AvatarFileError(f"{source}: {MANIFEST} is not valid JSON; {_REBUILD}") from None
    if not isinstance(m, dict) or m.get("format") != FORMAT:
        raise AvatarFileError(f'{source}: {MANIFEST} does not declare "format": "{FORMAT}"; {_REBUILD}')
    version = m.get("format_version")
    if version != FORMAT_VERSION:
        raise AvatarFileError(
            f"{source}: unsupported format_version {version!r}: this Avaluma reads version {FORMAT_VERSION}; "
            "upgrade Avaluma or rebuild the avatar"
        )

    def field(key: str, kind: type, check: Any = None, hint: str = "") -> Any:
        value = m.get(key)
        if not isinstance(value, kind) or isinstance(value, bool) or (check is not None and not check(value)):
            raise AvatarFileError(f"{source}: {MANIFEST} field {key!r} is missing or invalid{hint}; {_REBUILD}")
        return value

    field("id", str)
    field("name", str)
    field("license", str)
    field("kind", str, lambda v: v == "photo", " (version 1 knows only 'photo')")
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


def _decode_image(data: bytes, width: int, height: int, source: str) -> np.ndarray:
    try:
        with Image.open(io.BytesIO(data)) as img:
            # The header is read lazily: check the size before decoding any pixels.
            if img.format != "PNG":
                raise AvatarFileError(f"{source}: {BASE_IMAGE} is not a PNG image; {_REBUILD}")
            if img.size != (width, height):
                raise AvatarFileError(
                    f"{source}: {BASE_IMAGE} is {img.size[0]}x{img.size[1]} but the manifest says {width}x{height}; "
                    f"{_REBUILD}"
                )
            rgb = np.asarray(img.convert("RGB"), dtype=np.uint8).copy()
    except AvatarFileError:
        raise
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        raise AvatarFileError(f"{source}: {BASE_IMAGE} cannot be decoded ({e}); {_REBUILD}") from None
    return rgb
