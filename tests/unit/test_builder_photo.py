"""The photo builder on real face models: detected rigs land on the face; bad pictures give one clear error.

Uses the MediaPipe face models (fetched once on first use, see avaluma.renderer.face_models).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from avaluma.core.errors import InvalidArgument
from avaluma.renderer.builder import build_photo_avatar, parse_size, read_image
from avaluma.renderer.compositor import Compositor
from avaluma.renderer.facemesh import FaceMesh
from avaluma.renderer.hvia import dump_hvia_bytes, load_hvia, load_hvia_bytes
from avaluma.renderer.lipsync.base import REST_POSE

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def mesh() -> FaceMesh:
    return FaceMesh(progress=lambda message: None)


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    """The astronaut photo (the demo avatar's base image is the unmodified 512x512 original)."""
    return np.array(load_hvia(ROOT / "assets" / "avatars" / "astronaut.hvia").base)


def test_rig_lands_on_the_face(mesh: FaceMesh, photo: np.ndarray) -> None:
    avatar = build_photo_avatar(photo, avatar_id="a", mesh=mesh)
    rig = avatar.rig
    # Hand-measured on this photo for format version 1: the detected rig agrees within a few pixels.
    assert abs(rig.mouth_left[0] - 203) < 5 and abs(rig.mouth_right[0] - 244) < 5
    assert abs(rig.chin[1] - 177.5) < 5 and abs(rig.upper_lip_inner[1] - 141.5) < 3
    assert len(avatar.eyes) == 2
    for eye, expected_x in zip(sorted(avatar.eyes, key=lambda e: e.upper[0][0]), (203, 247), strict=True):
        assert abs((eye.upper[0][0] + eye.upper[-1][0]) / 2 - expected_x) < 8
        assert 95 < eye.upper[len(eye.upper) // 2][1] < eye.lower[len(eye.lower) // 2][1] < 112


def test_round_trip_build_save_load_render(mesh: FaceMesh, photo: np.ndarray) -> None:
    avatar = build_photo_avatar(photo, avatar_id="round-trip", size=(512, 640), mesh=mesh)
    loaded = load_hvia_bytes(dump_hvia_bytes(avatar), source="x.hvia")
    assert (loaded.width, loaded.height, loaded.format_version) == (512, 640, 3)
    comp = Compositor(loaded)
    np.testing.assert_array_equal(comp.render(REST_POSE), loaded.base)
    opened = comp.render(np.array([1.0, 0.0, 0.0, 0.0], dtype=np.float32))
    rig = loaded.rig
    ys = slice(int(rig.upper_lip_inner[1]), int(rig.lower_lip_bottom[1] + 0.3 * rig.mouth_width))
    xs = slice(int(rig.mouth_left[0]), int(rig.mouth_right[0]))
    assert opened[ys, xs].mean() < loaded.base[ys, xs].mean() - 20  # the mouth opened: a dark cavity


def test_no_face(mesh: FaceMesh) -> None:
    with pytest.raises(InvalidArgument, match="no face found"):
        build_photo_avatar(np.full((300, 300, 3), 128, np.uint8), avatar_id="x", source="wall.jpg", mesh=mesh)


def test_several_faces(mesh: FaceMesh, photo: np.ndarray) -> None:
    face = photo[40:260, 110:330]
    pair = np.concatenate([face, face], axis=1)
    with pytest.raises(InvalidArgument, match="found 2 faces; crop the picture"):
        build_photo_avatar(pair, avatar_id="x", source="pair.jpg", mesh=mesh)


def test_face_too_small(mesh: FaceMesh, photo: np.ndarray) -> None:
    small = np.asarray(Image.fromarray(photo).resize((200, 200)))
    with pytest.raises(InvalidArgument, match=r"the face is only \d+ px wide, it needs at least 80 px"):
        build_photo_avatar(small, avatar_id="x", source="small.jpg", mesh=mesh)


def test_unreadable_photo_and_bad_size(tmp_path: Path) -> None:
    bad = tmp_path / "face.jpg"
    bad.write_bytes(b"not a jpeg")
    with pytest.raises(InvalidArgument, match="cannot read the photo"):
        read_image(bad)
    with pytest.raises(InvalidArgument, match="not WIDTHxHEIGHT"):
        parse_size("big")
    assert parse_size("512x640") == (512, 640)
