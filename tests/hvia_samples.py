"""Small ``.hvia`` files for tests, and the tools to damage them the way an attacker or a bad disk would.

Importable from any test (``tests/`` is on ``sys.path`` through its conftest): ``from hvia_samples import ...``.
"""

from __future__ import annotations

import hashlib
import io
import json
import struct
import zipfile
from typing import Any

import numpy as np

from avaluma.renderer.avatar import Avatar, BrowRig, FaceRig, MouthAtlas, MouthRig, VideoAssets
from avaluma.renderer.hvia import dump_hvia_bytes

SIDE = 64

RIG = MouthRig(
    mouth_center=(32.0, 40.0),
    mouth_left=(22.0, 40.0),
    mouth_right=(42.0, 40.0),
    upper_lip_top=(32.0, 37.0),
    upper_lip_inner=(32.0, 40.0),
    lower_lip_inner=(32.0, 40.0),
    lower_lip_bottom=(32.0, 43.0),
    chin=(32.0, 54.0),
    jaw=((16.0, 44.0), (32.0, 54.0), (48.0, 44.0)),
)

#: Brows and cheeks (format version 3) for the tiny face: expressions have something to move.
FACE = FaceRig(
    brows=(
        BrowRig(upper=((14.0, 18.0), (19.0, 16.0), (25.0, 17.0)), lower=((14.0, 20.0), (19.0, 19.0), (25.0, 20.0))),
        BrowRig(upper=((39.0, 17.0), (45.0, 16.0), (50.0, 18.0)), lower=((39.0, 20.0), (45.0, 19.0), (50.0, 20.0))),
    ),
    cheeks=((20.0, 34.0), (44.0, 34.0)),
    face_width=40.0,
)


def photo_avatar(**overrides: Any) -> Avatar:
    base = np.random.default_rng(1).integers(0, 256, size=(SIDE, SIDE, 3), dtype=np.uint8)
    fields: dict[str, Any] = dict(
        id="tiny",
        name="Tiny test face",
        kind="photo",
        width=SIDE,
        height=SIDE,
        fps=25,
        format_version=3,
        license="CC0",
        base=base,
        rig=RIG,
        metadata={"source": "test"},
        face=FACE,
    )
    fields.update(overrides)
    return Avatar(**fields)


def video_avatar(mouth: np.ndarray | None = None) -> Avatar:
    """A two-frame video avatar of 64x64 with a two-tile atlas (``mouth``: the ``[2, 4]`` per-frame mouth track)."""
    rng = np.random.default_rng(2)
    frames = rng.integers(0, 256, size=(2, SIDE, SIDE, 3), dtype=np.uint8)
    tiles = rng.integers(0, 256, size=(2, 16, 16, 3), dtype=np.uint8)
    params = np.array([[0.0, 1.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0]], dtype=np.float32)
    track = np.array([[32.0, 40.0, 20.0, 0.0]] * 2, dtype=np.float32) if mouth is None else mouth
    video = VideoAssets(frames=frames, mouth=track, atlas=MouthAtlas(tiles, params, (8.0, 6.4), 10.0))
    return photo_avatar(id="clip", kind="video", base=frames[0], video=video)


def entries(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return {name: zf.read(name) for name in zf.namelist()}


def manifest_of(data: bytes) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(entries(data)["manifest.json"])
    return loaded


def rebuild(data: bytes, *, replace: dict[str, bytes] | None = None, **manifest_changes: Any) -> bytes:
    """``data`` with entries replaced and manifest fields changed, checksums updated: a file only its content
    (not its integrity data) gives away."""
    contents = entries(data)
    contents.update(replace or {})
    manifest = json.loads(contents.pop("manifest.json"))
    manifest.update(manifest_changes)
    for name, content in contents.items():
        manifest["entries"][name] = {"sha256": hashlib.sha256(content).hexdigest(), "size": len(content)}
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("manifest.json", json.dumps(manifest))
        for name, content in contents.items():
            zf.writestr(name, content)
    return out.getvalue()


def patch_entry_header(data: bytes, name: str, *, method: int | None = None, flags: int | None = None) -> bytes:
    """Set the compression method or the flag bits of entry ``name`` in both its local and central headers."""
    out = bytearray(data)
    encoded = name.encode()
    for signature, name_at, flag_at in ((b"PK\x03\x04", 30, 6), (b"PK\x01\x02", 46, 8)):
        start = 0
        while (at := out.find(signature, start)) >= 0:
            start = at + 4
            name_len = struct.unpack_from("<H", out, at + (26 if signature == b"PK\x03\x04" else 28))[0]
            if bytes(out[at + name_at : at + name_at + name_len]) != encoded:
                continue
            if flags is not None:
                struct.pack_into("<H", out, at + flag_at, flags)
            if method is not None:
                struct.pack_into("<H", out, at + flag_at + 2, method)
    return bytes(out)


def corrupt_deflate(data: bytes, name: str) -> bytes:
    """Overwrite the start of entry ``name``'s compressed data (stored deflated) with bytes zlib rejects."""
    out = bytearray(data)
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        info = zf.getinfo(name)
    assert info.compress_type == zipfile.ZIP_DEFLATED
    at = info.header_offset
    name_len, extra_len = struct.unpack_from("<HH", out, at + 26)
    body = at + 30 + name_len + extra_len
    out[body : body + 4] = b"\xff\xff\xff\xff"  # block type 3: "invalid block type"
    return bytes(out)


def npy_header_only(shape: tuple[int, ...], dtype: str = "<f4") -> bytes:
    """A ``.npy`` whose header declares ``shape`` but that carries (almost) no data."""
    header = repr({"descr": dtype, "fortran_order": False, "shape": shape}).encode()
    header += b" " * (-(10 + len(header) + 1) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header + b"\0" * 16


def png_header_only(width: int, height: int) -> bytes:
    """A PNG signature and IHDR chunk declaring ``width`` x ``height`` RGB, and no pixel data: enough for a reader
    that checks sizes from the header, a failure for one that decodes."""
    import zlib

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", len(ihdr)) + chunk + struct.pack(">I", zlib.crc32(chunk))


def photo_bytes() -> bytes:
    return dump_hvia_bytes(photo_avatar())


def video_bytes(mouth: np.ndarray | None = None) -> bytes:
    return dump_hvia_bytes(video_avatar(mouth))
