"""Property-based fuzzing of the ``.hvia`` reader: mutated and truncated archives, hostile JSON in every
JSON entry, huge declared shapes. The only outcomes allowed: an :class:`Avatar` that renders, or one
:class:`AvatarFileError` naming the file; never another exception, a logged traceback, a hang or unbounded memory.

Derandomized (the same inputs on every run, so CI is stable) and bounded: ``max_examples`` per property keeps the
whole module to seconds. ``pytest --hypothesis-show-statistics`` prints how many inputs each property tried.
"""

from __future__ import annotations

import io
import json
import logging
import resource
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hvia_samples import entries, npy_header_only, photo_bytes, png_header_only, video_bytes
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from avaluma.core.errors import AvatarFileError
from avaluma.core.media import AudioChunk
from avaluma.renderer.hvia import load_hvia_bytes

SOURCE = "fuzz.hvia"
#: Peak resident memory the whole module may add (the largest legitimate decode here is a few MB).
MAX_GROWTH_BYTES = 256 * 1024 * 1024

FUZZ = settings(
    derandomize=True,
    deadline=5000,  # ms per input: generous for a loaded 2-core box; a hang or a multi-second decode still fails
    max_examples=120,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture, HealthCheck.data_too_large],
    database=None,
)

PHOTO = photo_bytes()
VIDEO = video_bytes()
SAMPLES = {"photo": PHOTO, "video": VIDEO}
DEMO = (Path(__file__).resolve().parents[2] / "assets" / "avatars" / "astronaut.hvia").read_bytes()


def peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kB on Linux


@pytest.fixture(scope="module", autouse=True)
def _bounded_memory() -> Iterator[None]:
    before = peak_rss()
    yield
    assert peak_rss() - before < MAX_GROWTH_BYTES


@pytest.fixture(autouse=True)
def _no_tracebacks(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Every failure must be translated where it happens: the reader's last-resort net logs a traceback."""
    caplog.set_level(logging.WARNING)
    yield
    traced = [r.getMessage() for r in caplog.records if r.exc_info]
    assert traced == [], traced


def outcome(data: bytes) -> str:
    """Load ``data``: ``"error"`` for the project's error, ``"loaded"`` for an avatar that then rendered."""
    try:
        avatar = load_hvia_bytes(data, source=SOURCE)
    except AvatarFileError as exc:
        assert exc.message.startswith(f"{SOURCE}: "), exc.message
        return "error"
    from avaluma.renderer.engine import RenderSession
    from avaluma.renderer.lipsync.energy import EnergyBackend

    # What loads renders: idle, speaking and the end of a segment.
    session = RenderSession(avatar, EnergyBackend(), fps=25, audio_sample_rate=16_000)
    assert len(session.idle_frames(1)) == 1
    t = np.arange(1600, dtype=np.float32) / 16_000
    session.push_audio(AudioChunk((0.5 * np.sin(2 * np.pi * 200 * t)).astype(np.float32), 16_000))
    session.end_segment()
    return "loaded"


def zip_of(contents: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, content in contents.items():
            zf.writestr(name, content)
    return out.getvalue()


def signed(contents: dict[str, bytes], manifest: Any) -> bytes:
    """An archive whose manifest lists correct checksums for ``contents`` (when it is an object with entries), so
    the content itself, not its integrity data, is what the reader has to judge."""
    import hashlib

    if isinstance(manifest, dict) and isinstance(manifest.get("entries"), dict):
        manifest["entries"] = {
            name: {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)} for name, data in contents.items()
        }
    return zip_of({"manifest.json": json.dumps(manifest, allow_nan=True).encode(), **contents})


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=8), inner, max_size=6),
    max_leaves=24,
)


# --- mutated and truncated archives -----------------------------------------------------------------------------


@FUZZ
@given(
    kind=st.sampled_from(sorted(SAMPLES)),
    flips=st.lists(st.tuples(st.floats(0, 1), st.integers(0, 7)), min_size=1, max_size=8),
)
def test_bit_flips(kind: str, flips: list[tuple[float, int]]) -> None:
    data = bytearray(SAMPLES[kind])
    for where, bit in flips:
        data[min(len(data) - 1, int(where * len(data)))] ^= 1 << bit
    outcome(bytes(data))


def _regions(data: bytes) -> list[tuple[int, int]]:
    """Byte ranges of the zip structure and of every deflated entry's data (flips in stored PNG/MP4 data only ever
    meet the checksum; these are where the zip and zlib layers themselves are hit)."""
    import struct

    regions = []
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        for info in zf.infolist():
            at = info.header_offset
            name_len, extra_len = struct.unpack_from("<HH", data, at + 26)
            body = at + 30 + name_len + extra_len
            regions.append((at, body))  # local header
            if info.compress_type == zipfile.ZIP_DEFLATED:
                regions.append((body, body + info.compress_size))
    regions.append((max(r[1] for r in regions), len(data)))  # central directory and its end record
    return regions


DEMO_REGIONS = _regions(DEMO)


@settings(FUZZ, max_examples=50)
@given(
    flips=st.lists(st.tuples(st.sampled_from(DEMO_REGIONS), st.floats(0, 1), st.integers(0, 7)), min_size=1, max_size=3)
)
def test_bit_flips_of_the_bundled_demo_avatar(flips: list[tuple[tuple[int, int], float, int]]) -> None:
    # The attack that found defect 2: ~7.5 % of random bit flips of this file broke the server's start-up.
    data = bytearray(DEMO)
    for (start, end), where, bit in flips:
        data[min(end - 1, start + int(where * (end - start)))] ^= 1 << bit
    outcome(bytes(data))


@FUZZ
@given(kind=st.sampled_from(sorted(SAMPLES)), cut=st.floats(0, 1))
def test_truncation(kind: str, cut: float) -> None:
    data = SAMPLES[kind]
    assert outcome(data[: int(cut * (len(data) - 1))]) == "error"


@FUZZ
@given(kind=st.sampled_from(sorted(SAMPLES)), where=st.floats(0, 1), junk=st.binary(min_size=1, max_size=64))
def test_spliced_bytes(kind: str, where: float, junk: bytes) -> None:
    data = SAMPLES[kind]
    at = int(where * len(data))
    outcome(data[:at] + junk + data[at + len(junk) :])


# --- hostile JSON -----------------------------------------------------------------------------------------------


@FUZZ
@given(kind=st.sampled_from(sorted(SAMPLES)), data=st.data())
def test_hostile_json_in_every_json_entry(kind: str, data: st.DataObject) -> None:
    contents = entries(SAMPLES[kind])
    manifest = json.loads(contents.pop("manifest.json"))
    target = data.draw(st.sampled_from(sorted(n for n in (*contents, "manifest.json") if n.endswith(".json"))))
    value = json.loads(contents[target]) if target != "manifest.json" else manifest
    if isinstance(value, dict) and value and data.draw(st.booleans()):
        value[data.draw(st.sampled_from(sorted(value)))] = data.draw(json_values)  # one field replaced
    elif isinstance(value, dict) and data.draw(st.booleans()):
        value[data.draw(st.text(max_size=8))] = data.draw(json_values)  # an unknown field added
    else:
        value = data.draw(json_values)  # the whole entry replaced
    if target == "manifest.json":
        manifest = value
    else:
        contents[target] = json.dumps(value, allow_nan=True).encode()
    outcome(signed(contents, manifest))


@FUZZ
@given(
    kind=st.sampled_from(sorted(SAMPLES)),
    target=st.sampled_from(["manifest.json", "rig.json", "atlas.json"]),
    depth=st.integers(1, 300_000),
    opener=st.sampled_from([b"[", b'{"a":']),
)
def test_deeply_nested_json(kind: str, target: str, depth: int, opener: bytes) -> None:
    contents = entries(SAMPLES[kind])
    manifest = json.loads(contents.pop("manifest.json"))
    closer = b"]" if opener == b"[" else b"}"
    nested = opener * depth + b"1" + closer * depth
    if target == "manifest.json":
        assert outcome(zip_of({"manifest.json": nested, **contents})) == "error"
    elif target in contents:
        contents[target] = nested
        assert outcome(signed(contents, manifest)) == "error"


# --- huge declared shapes ---------------------------------------------------------------------------------------

huge = st.integers(min_value=0, max_value=2**62) | st.sampled_from([0, 1, 2, 468, 2**31 - 1, 2**32, 2**40])


@FUZZ
@given(
    kind=st.sampled_from(sorted(SAMPLES)),
    shape=st.lists(huge, min_size=0, max_size=4).map(tuple),
    dtype=st.sampled_from(["<f4", "<f8", ">f4", "<i2", "|u1", "|O", "<c16", "|V100"]),
)
def test_npy_headers_declaring_huge_or_odd_arrays(kind: str, shape: tuple[int, ...], dtype: str) -> None:
    contents = entries(SAMPLES[kind])
    manifest = json.loads(contents.pop("manifest.json"))
    target = "loop_mouth.npy" if kind == "video" else "landmarks.npy"
    contents[target] = npy_header_only(shape, dtype)
    assert outcome(signed(contents, manifest)) == "error"


@FUZZ
@given(
    kind=st.sampled_from(sorted(SAMPLES)),
    target=st.sampled_from(["base.png", "atlas.png"]),
    width=huge.map(lambda v: v % 2**31),
    height=huge.map(lambda v: v % 2**31),
)
def test_png_headers_declaring_huge_images(kind: str, target: str, width: int, height: int) -> None:
    contents = entries(SAMPLES[kind])
    manifest = json.loads(contents.pop("manifest.json"))
    if target not in contents:
        return
    contents[target] = png_header_only(width, height)
    assert outcome(signed(contents, manifest)) == "error"


@FUZZ
@given(
    width=huge,
    height=huge,
    frames=huge,
    tiles=st.integers(0, 5000),
    tile=st.tuples(huge, huge),
)
def test_manifest_and_atlas_declaring_huge_sizes(
    width: int, height: int, frames: int, tiles: int, tile: tuple[int, int]
) -> None:
    contents = entries(VIDEO)
    manifest = json.loads(contents.pop("manifest.json"))
    manifest.update(width=width, height=height, video={"frames": frames})
    atlas = json.loads(contents["atlas.json"])
    atlas.update(tile=list(tile), params=[[0.0, 1.0, 0.0, 0.0]] * tiles)
    contents["atlas.json"] = json.dumps(atlas).encode()
    outcome(signed(contents, manifest))
