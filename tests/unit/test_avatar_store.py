"""AvatarStore over a real directory with real .hvia files."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest

from avaluma.core.errors import AlreadyExists, AvatarFileError, InvalidArgument, NotFound
from avaluma.core.live.avatar_store import AvatarStore, check_avatar_id

DEMO = Path(__file__).resolve().parents[2] / "assets" / "avatars" / "astronaut.hvia"


@pytest.fixture
def demo_bytes() -> bytes:
    if not DEMO.exists():
        pytest.skip(f"{DEMO} missing: run scripts/build_demo_avatars.py")
    return DEMO.read_bytes()


@pytest.fixture
def directory(tmp_path: Path, demo_bytes: bytes) -> Path:
    (tmp_path / "astronaut.hvia").write_bytes(demo_bytes)
    return tmp_path


def test_open_loads_valid_files_and_skips_bad_ones(directory: Path, caplog) -> None:
    (directory / "corrupt.hvia").write_bytes(b"garbage")
    shutil.copy(directory / "astronaut.hvia", directory / "Bad Name.hvia")
    (directory / "notes.txt").write_text("not an avatar")
    with caplog.at_level(logging.WARNING, logger="avaluma.core.live.avatar_store"):
        store = AvatarStore.open(directory)
    assert store.ids() == ["astronaut"]
    reasons = {Path(r.path).name: r.reason for r in caplog.records}  # type: ignore[attr-defined]
    assert "not a .hvia file" in reasons["corrupt.hvia"]
    assert "rename it" in reasons["Bad Name.hvia"]


def test_open_creates_a_missing_directory(tmp_path: Path) -> None:
    store = AvatarStore.open(tmp_path / "new")
    assert store.ids() == [] and (tmp_path / "new").is_dir()
    with pytest.raises(NotFound, match="no avatars are loaded"):
        store.get("astronaut")


def test_get_unknown_lists_available_ids(directory: Path) -> None:
    store = AvatarStore.open(directory)
    assert store.get("astronaut").width == 512
    with pytest.raises(NotFound, match=r"unknown avatar 'bob' \(available: astronaut\)"):
        store.get("bob")


def test_add_validates_writes_atomically_and_persists(directory: Path, demo_bytes: bytes) -> None:
    store = AvatarStore.open(directory)
    avatar = store.add(demo_bytes, "copy")
    assert avatar.id == "copy" and avatar.size_bytes == len(demo_bytes)
    assert store.ids() == ["astronaut", "copy"]
    assert (directory / "copy.hvia").read_bytes() == demo_bytes
    assert not list(directory.glob("*.tmp")), "temporary files must not be left behind"
    assert AvatarStore.open(directory).ids() == ["astronaut", "copy"]

    with pytest.raises(AlreadyExists, match="overwrite"):
        store.add(demo_bytes, "copy")
    assert store.add(demo_bytes, "copy", overwrite=True).id == "copy"


def test_add_rejects_corrupt_data_and_stores_nothing(directory: Path, demo_bytes: bytes) -> None:
    store = AvatarStore.open(directory)
    with pytest.raises(AvatarFileError):
        store.add(b"PK\x03\x04 truncated", "junk")
    with pytest.raises(AvatarFileError):
        store.add(demo_bytes[:1000], "junk")
    assert store.ids() == ["astronaut"]
    assert sorted(p.name for p in directory.iterdir()) == ["astronaut.hvia"]


@pytest.mark.parametrize("bad", ["", "../x", "a/b", "a\\b", ".hidden", "UP", "-x", "x" * 65, "a.b", "ä"])
def test_unsafe_ids_are_rejected(directory: Path, demo_bytes: bytes, bad: str) -> None:
    with pytest.raises(InvalidArgument, match="invalid avatar id"):
        check_avatar_id(bad)
    store = AvatarStore.open(directory)
    with pytest.raises(InvalidArgument, match="invalid avatar id"):
        store.add(demo_bytes, bad)
    assert sorted(p.name for p in directory.iterdir()) == ["astronaut.hvia"]


@pytest.mark.parametrize("good", ["a", "0", "my-avatar_2", "x" * 64])
def test_safe_ids_pass(good: str) -> None:
    assert check_avatar_id(good) == good


def test_delete(directory: Path) -> None:
    store = AvatarStore.open(directory)
    store.delete("astronaut")
    assert store.ids() == [] and not (directory / "astronaut.hvia").exists()
    with pytest.raises(NotFound):
        store.delete("astronaut")
