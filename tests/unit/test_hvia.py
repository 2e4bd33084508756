"""The .hvia container (v2, and v1 still loading): round trip, the demo avatars, one clear error per kind of damage."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hvia_samples import RIG, photo_avatar
from PIL import Image

from avaluma.core.errors import AvatarFileError, InvalidArgument
from avaluma.renderer.avatar import Avatar, EyeRig
from avaluma.renderer.hvia import (
    MAX_HVIA_BYTES,
    dump_hvia_bytes,
    load_hvia,
    load_hvia_bytes,
    save_hvia,
)

ROOT = Path(__file__).resolve().parents[2]


def small_avatar(**overrides: object) -> Avatar:
    """The shared tiny photo avatar, as a v1 file would have held it."""
    return photo_avatar(**{"format_version": 1, **overrides})


def rezip(data: bytes, *, replace: dict[str, bytes] | None = None, drop: str | None = None) -> bytes:
    """Copy a .hvia archive, replacing or dropping entries (the manifest is left as it was)."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            if info.filename == drop:
                continue
            dst.writestr(info.filename, (replace or {}).get(info.filename, src.read(info.filename)))
    return out.getvalue()


def manifest_of(data: bytes) -> dict[str, object]:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return json.loads(zf.read("manifest.json"))  # type: ignore[no-any-return]


def with_manifest(data: bytes, **changes: object) -> bytes:
    manifest = manifest_of(data)
    manifest.update(changes)
    return rezip(data, replace={"manifest.json": json.dumps(manifest).encode()})


def test_round_trip(tmp_path: Path) -> None:
    avatar = small_avatar()
    path = save_hvia(avatar, tmp_path / "sub" / "tiny.hvia")
    loaded = load_hvia(path)
    np.testing.assert_array_equal(loaded.base, avatar.base)
    assert loaded.rig == avatar.rig
    assert (loaded.id, loaded.name, loaded.kind, loaded.width, loaded.height, loaded.fps) == (
        "tiny",
        "Tiny test face",
        "photo",
        64,
        64,
        25,
    )
    assert (loaded.format_version, loaded.license, loaded.metadata) == (3, "CC0", {"source": "test"})
    assert loaded.size_bytes == path.stat().st_size
    assert not loaded.base.flags.writeable
    assert list(tmp_path.joinpath("sub").iterdir()) == [path]  # no temporary file left behind


def test_manifest_lists_every_entry_with_its_checksum() -> None:
    data = dump_hvia_bytes(small_avatar())
    manifest = manifest_of(data)
    assert manifest["format"] == "hvia" and manifest["format_version"] == 3
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        for name, meta in manifest["entries"].items():  # type: ignore[attr-defined]
            assert hashlib.sha256(zf.read(name)).hexdigest() == meta["sha256"]


def test_bundled_demo_avatar_loads_and_is_small() -> None:
    path = ROOT / "assets" / "avatars" / "astronaut.hvia"
    avatar = load_hvia(path)
    assert (avatar.id, avatar.kind, avatar.width, avatar.height) == ("astronaut", "photo", 512, 512)
    assert path.stat().st_size < 1024 * 1024
    rig = avatar.rig
    # The mouth sits in the lower middle of the face (where it was measured by hand for format version 1).
    assert 190 < rig.mouth_left[0] < rig.mouth_center[0] < rig.mouth_right[0] < 260
    assert 120 < rig.mouth_center[1] < 170 < rig.chin[1] < 200
    assert avatar.format_version == 3 and len(avatar.eyes) == 2 and avatar.landmarks is not None
    left, right = sorted(avatar.eyes, key=lambda e: e.upper[0][0])
    assert right.upper[0][0] > left.upper[-1][0]  # two distinct eyes, both above the mouth
    assert max(p[1] for e in avatar.eyes for p in e.lower) < rig.upper_lip_top[1]


def test_portrait_demo_avatar_is_512x640() -> None:
    avatar = load_hvia(ROOT / "assets" / "avatars" / "grace-hopper.hvia")
    assert (avatar.width, avatar.height, avatar.kind) == (512, 640, "photo")
    assert avatar.base.shape == (640, 512, 3)


def v1_bytes(avatar: Avatar) -> bytes:
    """A format version 1 file as the foundation wrote it: flat mouth rig, no eyes, no landmarks."""
    data = dump_hvia_bytes(avatar)
    rig = json.dumps(avatar.rig.to_json()).encode()
    manifest = manifest_of(data)
    manifest["format_version"] = 1
    manifest["entries"] = {  # type: ignore[index]
        "base.png": manifest["entries"]["base.png"],  # type: ignore[index]
        "rig.json": {"sha256": hashlib.sha256(rig).hexdigest(), "size": len(rig)},
    }
    return rezip(data, replace={"rig.json": rig, "manifest.json": json.dumps(manifest).encode()})


def test_version_1_files_still_load() -> None:
    loaded = load_hvia_bytes(v1_bytes(small_avatar()), source="old.hvia")
    assert loaded.format_version == 1 and loaded.rig == RIG and loaded.eyes == () and loaded.landmarks is None


def test_v2_round_trip_keeps_eyes_and_landmarks() -> None:
    eye = EyeRig(upper=((10.0, 20.0), (14.0, 18.0), (18.0, 20.0)), lower=((10.0, 20.0), (14.0, 22.0), (18.0, 20.0)))
    lm = np.random.default_rng(0).uniform(1, 60, size=(468, 3)).astype(np.float32)
    loaded = load_hvia_bytes(dump_hvia_bytes(small_avatar(eyes=(eye, eye), landmarks=lm)), source="x.hvia")
    assert loaded.eyes == (eye, eye)
    assert loaded.landmarks is not None and not loaded.landmarks.flags.writeable
    np.testing.assert_array_equal(loaded.landmarks, lm)


def test_bad_landmarks_array_is_rejected() -> None:
    lm = np.zeros((468, 3), dtype=np.float32)
    lm[0, 0] = np.nan
    with pytest.raises(AvatarFileError, match=r"landmarks\.npy must be a finite float32 array"):
        load_hvia_bytes(dump_hvia_bytes(small_avatar(landmarks=lm)), source="x.hvia")


def test_eye_outside_the_image_is_rejected() -> None:
    eye = EyeRig(upper=((10.0, 20.0), (14.0, 18.0), (90.0, 20.0)), lower=((10.0, 20.0), (14.0, 22.0), (90.0, 20.0)))
    with pytest.raises(AvatarFileError, match="outside the image"):
        load_hvia_bytes(dump_hvia_bytes(small_avatar(eyes=(eye,))), source="x.hvia")


@pytest.mark.parametrize(
    ("damage", "expected"),
    [
        (lambda d: b"this is not a zip file at all", "not a .hvia file"),
        (lambda d: d[: len(d) // 2], "truncated"),
        (lambda d: rezip(d, drop="rig.json"), "missing entry rig.json"),
        (lambda d: rezip(d, drop="manifest.json"), "missing entry manifest.json"),
        (lambda d: rezip(d, replace={"rig.json": b'{"mouth_center": [1, 2]}'}), "checksum mismatch for rig.json"),
        (lambda d: with_manifest(d, format_version=4), "unsupported format_version 4"),
        (lambda d: with_manifest(d, format_version=True), "unsupported format_version True"),
        (lambda d: with_manifest(d, format="zip"), 'does not declare "format": "hvia"'),
        (lambda d: with_manifest(d, kind="cartoon"), "field 'kind'"),
        (lambda d: with_manifest(d, kind="video"), "no sha256 for loop.mp4"),
        (lambda d: with_manifest(d, width=128), "base.png is 64x64 but the manifest says 128x64"),
        (lambda d: rezip(d, replace={"manifest.json": b"{nope"}), "manifest.json is not valid JSON"),
    ],
)
def test_damaged_files_give_one_clear_error(damage, expected: str) -> None:  # type: ignore[no-untyped-def]
    data = damage(dump_hvia_bytes(small_avatar()))
    with pytest.raises(AvatarFileError, match=r"upload\.hvia") as info:
        load_hvia_bytes(data, source="upload.hvia")
    assert expected in info.value.message
    assert info.value.code == "INVALID_ARGUMENT"


def test_rig_outside_the_image_is_rejected() -> None:
    bad = small_avatar(rig=dataclasses.replace(RIG, chin=(32.0, 99.0)))
    with pytest.raises(AvatarFileError, match=r"rig point chin=\(32.0, 99.0\) is outside the 64x64 image"):
        load_hvia_bytes(dump_hvia_bytes(bad), source="x.hvia")


def test_replaced_image_with_matching_checksum_but_wrong_size_is_rejected() -> None:
    data = dump_hvia_bytes(small_avatar())
    buf = io.BytesIO()
    Image.new("RGB", (32, 32)).save(buf, format="PNG")
    png = buf.getvalue()
    manifest = manifest_of(data)
    manifest["entries"]["base.png"]["sha256"] = hashlib.sha256(png).hexdigest()  # type: ignore[index]
    tampered = rezip(data, replace={"base.png": png, "manifest.json": json.dumps(manifest).encode()})
    with pytest.raises(AvatarFileError, match=r"base\.png is 32x32 but the manifest says 64x64"):
        load_hvia_bytes(tampered, source="x.hvia")


def test_decompression_bomb_is_rejected_from_declared_sizes() -> None:
    # 80 MiB of zeros deflate to ~80 KiB: the declared size, not the file size, must trip the limit.
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("manifest.json", "{}")
        zf.writestr("base.png", b"\0" * (MAX_HVIA_BYTES + 16 * 1024 * 1024))
    data = buf.getvalue()
    assert len(data) < MAX_HVIA_BYTES // 100
    with pytest.raises(AvatarFileError, match="byte limit"):
        load_hvia_bytes(data, source="bomb.hvia")


def test_oversized_file_is_rejected_before_reading(tmp_path: Path) -> None:
    path = tmp_path / "huge.hvia"
    with path.open("wb") as f:
        f.truncate(MAX_HVIA_BYTES + 1)  # sparse: costs no disk
    with pytest.raises(AvatarFileError, match="larger than the"):
        load_hvia(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(AvatarFileError, match="avatar file not found"):
        load_hvia(tmp_path / "nope.hvia")


def test_avatar_validates_its_fields() -> None:
    with pytest.raises(InvalidArgument, match="avatar id"):
        small_avatar(id="../etc")
    with pytest.raises(InvalidArgument, match="base image must be 64x64x3 uint8"):
        small_avatar(base=np.zeros((64, 64), dtype=np.uint8))
    writable = np.zeros((64, 64, 3), dtype=np.uint8)
    avatar = small_avatar(base=writable)
    writable[:] = 255  # the avatar keeps its own read-only copy
    assert avatar.base.max() == 0 and not avatar.base.flags.writeable
