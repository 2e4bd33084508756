"""Hostile ``.hvia`` files: every failure is one ``AvatarFileError`` naming the file and
the reason, decoded sizes are capped before anything is decoded, and what loads can be rendered."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hvia_samples import (
    corrupt_deflate,
    entries,
    npy_header_only,
    patch_entry_header,
    photo_bytes,
    png_header_only,
    rebuild,
    video_bytes,
)

from avaluma.core.errors import AvatarFileError
from avaluma.renderer import hvia
from avaluma.renderer.hvia import load_hvia_bytes

# --- defect 2: every way the zip/JSON/npy layers can fail is the project's own error ----------------------------


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        # zlib.error from a broken deflate stream.
        (lambda d: corrupt_deflate(d, "rig.json"), "rig.json is corrupt"),
        # NotImplementedError: a compression method zipfile does not know.
        (lambda d: patch_entry_header(d, "rig.json", method=99), "rig.json is corrupt"),
        # RuntimeError: the entry claims to be encrypted.
        (lambda d: patch_entry_header(d, "rig.json", flags=0x1), "rig.json is corrupt"),
        # RecursionError: JSON nested deeper than the parser's stack.
        (lambda d: rebuild(d, replace={"rig.json": b"[" * 200_000 + b"]" * 200_000}), "rig.json is not valid JSON"),
        # MemoryError (or a huge allocation): a .npy header declaring an enormous shape.
        (lambda d: rebuild(d, replace={"landmarks.npy": npy_header_only((2**40, 3))}), "landmarks.npy must be"),
        (lambda d: rebuild(d, replace={"landmarks.npy": npy_header_only((468, 3), "|O")}), "landmarks.npy"),
    ],
    ids=["zlib", "compression-method", "encrypted", "deep-json", "huge-npy", "object-npy"],
)
def test_loader_failures_are_avatar_file_errors(damage, reason: str) -> None:  # type: ignore[no-untyped-def]
    data = photo_bytes()
    if "landmarks" in reason:
        data = rebuild(data, replace={"landmarks.npy": npy_header_only((468, 3))})  # make room for the entry
    with pytest.raises(AvatarFileError) as info:
        load_hvia_bytes(damage(data), source="evil.hvia")
    assert info.value.message.startswith("evil.hvia: ")
    assert reason in info.value.message


def test_deeply_nested_manifest_is_an_avatar_file_error() -> None:
    contents = entries(photo_bytes())
    contents["manifest.json"] = b'{"format": "hvia", "x": ' + b"[" * 200_000 + b"]" * 200_000 + b"}"
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, content in contents.items():
            zf.writestr(name, content)
    with pytest.raises(AvatarFileError, match=r"manifest\.json is not valid JSON"):
        load_hvia_bytes(out.getvalue(), source="evil.hvia")


# --- defect 1: decoded sizes are capped from the declarations, before any pixel is decoded ------------------------


def test_atlas_declaring_too_many_decoded_pixels_is_refused_before_decoding() -> None:
    # The shape of the attack: 160 tiles of 1024x1024 (a 513 KB file that decodes to 2.5 GB with the float copy).
    data = video_bytes()
    atlas = json.loads(entries(data)["atlas.json"])
    atlas["tile"] = [1024, 1024]
    atlas["anchor"] = [512, 400]
    atlas["params"] = [[0.0, 1.0, 0.0, 0.0]] * 160
    bomb = rebuild(data, replace={"atlas.json": json.dumps(atlas).encode(), "atlas.png": png_header_only(1024, 163840)})
    with pytest.raises(AvatarFileError) as info:
        load_hvia_bytes(bomb, source="bomb.hvia")
    message = info.value.message
    assert "atlas" in message and "decoded" in message and str(hvia.MAX_ATLAS_DECODED_BYTES) in message


def test_loop_declaring_too_many_decoded_pixels_is_refused_before_decoding() -> None:
    data = video_bytes()
    big = rebuild(
        data,
        replace={"base.png": png_header_only(4096, 4096), "loop_mouth.npy": npy_header_only((250, 4))},
        width=4096,
        height=4096,
        video={"frames": 250},
    )
    with pytest.raises(AvatarFileError) as info:
        load_hvia_bytes(big, source="bomb.hvia")
    message = info.value.message
    assert "loop" in message and "decoded" in message and str(hvia.MAX_LOOP_DECODED_BYTES) in message


def test_the_caps_leave_room_for_what_the_builder_makes() -> None:
    from avaluma.renderer import builder

    # The builder's largest default output: 512x640, 4 s loops at up to 60 fps; its atlas stays within its budget.
    width, height = max(builder.SIZES, key=lambda s: s[0] * s[1])
    loop_bytes = round(60 * builder.LOOP_S[1]) * width * height * 3
    assert loop_bytes <= hvia.MAX_LOOP_DECODED_BYTES
    assert hvia.MAX_ATLAS_DECODED_BYTES >= builder.ATLAS_BUDGET_BYTES


# --- defect 6: an avatar that loads can be rendered -------------------------------------------------------------


@pytest.mark.parametrize(
    "track",
    [
        [[-40.0, -40.0, 20.0, 0.0]] * 2,  # mouth off the image (negative)
        [[32.0, 40.0, 20.0, 0.0], [500.0, 40.0, 20.0, 0.0]],  # off the image on the right, in one frame
        [[32.0, 40.0, -20.0, 0.0]] * 2,  # negative width
        [[32.0, 40.0, 0.0001, 0.0]] * 2,  # a mouth of no width
        [[32.0, 40.0, 20.0, 50.0]] * 2,  # an angle that is no angle
    ],
    ids=["negative", "off-right", "negative-width", "zero-width", "angle"],
)
def test_video_avatar_with_an_off_image_mouth_is_refused_at_load(track: list[list[float]]) -> None:
    data = video_bytes(np.array(track, dtype=np.float32))
    with pytest.raises(AvatarFileError, match=r"clip\.hvia: loop_mouth\.npy"):
        load_hvia_bytes(data, source="clip.hvia")


def test_a_valid_video_avatar_loads_and_renders() -> None:
    from avaluma.renderer.engine import RenderSession
    from avaluma.renderer.lipsync.energy import EnergyBackend

    avatar = load_hvia_bytes(video_bytes(), source="clip.hvia")
    session = RenderSession(avatar, EnergyBackend(), fps=25, audio_sample_rate=16_000)
    frames = list(session.idle_frames(2))
    assert [f.rgb.shape for f in frames] == [(64, 64, 3)] * 2


# --- the brow and cheek regions ("face" in rig.json, format version 3) ------------------------------------------


def _with_face(change) -> bytes:  # type: ignore[no-untyped-def]
    data = photo_bytes()
    rig = json.loads(entries(data)["rig.json"])
    change(rig["face"])
    return rebuild(data, replace={"rig.json": json.dumps(rig, allow_nan=True).encode()})


def _set(key, value):  # type: ignore[no-untyped-def]
    return lambda face: face.__setitem__(key, value)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda f: f.clear(), "face must be an object with exactly brows, cheeks, face_width"),
        (_set("mood", "happy"), "face must be an object with exactly"),
        (_set("brows", {"left": []}), "face brows must be a list of 2 brows"),
        (lambda f: f["brows"].pop(), "face brows must be a list of 2 brows"),
        (lambda f: f["brows"][0].pop("lower"), "each brow must be an object with exactly 'upper' and 'lower'"),
        (lambda f: f["brows"][0]["upper"].__setitem__(1, [float("nan"), 3]), r"brow upper\[1\] must be \[x, y\]"),
        (lambda f: f["brows"][0]["upper"].__setitem__(1, [True, 3]), r"brow upper\[1\] must be \[x, y\]"),
        (lambda f: f["brows"][1]["lower"].__setitem__(2, [640, 20]), "brow lower edge point .* outside the image"),
        (lambda f: f["brows"][0]["upper"].reverse(), "brow upper edge needs 3 or more points with increasing x"),
        (
            lambda f: f["brows"][0]["upper"].__setitem__(slice(None), [[14, 30], [19, 30], [25, 30]]),
            "brow lower edge must lie below",
        ),
        (lambda f: f["brows"].reverse(), "image-left first"),
        (lambda f: f["cheeks"].pop(), "face cheeks must be 2"),
        (_set("cheeks", [[20, 34], [-1, 34]]), "cheek point .* outside the image"),
        (_set("face_width", -3), "face_width must be 8 px up to the image width"),
        (_set("face_width", float("inf")), "face_width must be a finite number"),
        (_set("face_width", 10**400), "face_width must be a finite number"),
        (lambda f: f["brows"][0]["upper"].__setitem__(-1, [2**70, 3]), "brow upper edge point .* outside the image"),
        (lambda f: f["brows"][0]["upper"].__setitem__(0, [10**400, 3]), r"brow upper\[0\] must be \[x, y\]"),
        (_set("face_width", 10_000), "face_width must be 8 px up to the image width"),
        (_set("face_width", True), "face_width must be a finite number"),
        (_set("face_width", "40"), "face_width must be a finite number"),
        (_set("face_width", 9), "brows span .* more than 1.5 x face_width"),
    ],
)
def test_hostile_face_regions_are_one_clear_error(change, reason: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(AvatarFileError, match=rf"^face\.hvia: rig\.json: .*{reason}"):
        load_hvia_bytes(_with_face(change), source="face.hvia")


def test_huge_integers_in_the_mouth_rig_are_one_clear_error() -> None:
    """JSON integers beyond float range (they reached every rig point parser)."""
    data = photo_bytes()
    rig = json.loads(entries(data)["rig.json"])
    for key, value in (("chin", [10**400, 3]), ("jaw", [[1, 2], [10**400, 3], [5, 6]])):
        broken = json.loads(json.dumps(rig))
        broken["mouth"][key] = value
        damaged = rebuild(data, replace={"rig.json": json.dumps(broken).encode()})
        with pytest.raises(
            AvatarFileError, match=r"^big\.hvia: rig\.json: rig (chin|jaw\[1\]) must be \[x, y\] numbers"
        ):
            load_hvia_bytes(damaged, source="big.hvia")


def test_face_regions_in_a_version_2_file_are_refused() -> None:
    with pytest.raises(AvatarFileError, match=r"rig\.json must hold exactly \"mouth\" and \"eyes\" \(a list\);"):
        load_hvia_bytes(rebuild(photo_bytes(), format_version=2), source="old.hvia")


def test_version_2_files_load_with_or_without_landmarks() -> None:
    """A version 2 file (no "face") without landmarks renders no expressions; with landmarks it gets the regions the
    builder would have stored."""
    from avaluma.renderer.compositor import Compositor
    from avaluma.renderer.expression import ExpressionPose

    data = photo_bytes()
    rig = json.loads(entries(data)["rig.json"])
    del rig["face"]
    v2 = rebuild(data, replace={"rig.json": json.dumps(rig).encode()}, format_version=2)
    avatar = load_hvia_bytes(v2, source="old.hvia")
    assert avatar.format_version == 2 and avatar.face is None and avatar.landmarks is None
    comp = Compositor(avatar)
    rest = np.array([0.0, 1.0, 0.0, 0.0], np.float32)
    assert np.array_equal(comp.render(rest, expression=ExpressionPose(smile=1.0, brow_raise=1.0)), comp.render(rest))

    demo = (Path(__file__).resolve().parents[2] / "assets" / "avatars" / "astronaut.hvia").read_bytes()
    current = load_hvia_bytes(demo, source="astronaut.hvia")
    rig = json.loads(entries(demo)["rig.json"])
    del rig["face"]
    old = load_hvia_bytes(
        rebuild(demo, replace={"rig.json": json.dumps(rig).encode()}, format_version=2), source="astronaut-v2.hvia"
    )
    assert old.format_version == 2 and current.face is not None and old.face == current.face
