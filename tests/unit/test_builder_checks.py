"""The builder's face checks on generated hard inputs: every refusal says what is wrong and what to do, in the user's
words (no internal rig names), and good faces still pass.

The inputs are made at test time from the bundled demo avatars' public-domain photos (tiled, shrunk, rotated, cut
off) and from their fitted landmarks (turned in 3-D). Real face models (fetched once, see
avaluma.renderer.face_models).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from avaluma.core.errors import InvalidArgument
from avaluma.renderer import face_check
from avaluma.renderer.builder import build_photo_avatar
from avaluma.renderer.facemesh import FaceMesh
from avaluma.renderer.hvia import load_hvia

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def mesh() -> FaceMesh:
    return FaceMesh(progress=lambda message: None)


@pytest.fixture(scope="module")
def hopper() -> np.ndarray:
    """Grace Hopper, 512x640, the face ~200 px wide, frontal."""
    return np.array(load_hvia(ROOT / "assets" / "avatars" / "grace-hopper.hvia").base)


def refusal(mesh: FaceMesh, rgb: np.ndarray) -> str:
    with pytest.raises(InvalidArgument) as info:
        build_photo_avatar(rgb, avatar_id="x", source="in.jpg", mesh=mesh)
    message = info.value.message
    assert message.startswith("in.jpg: ")
    assert "rig" not in message and "jaw[" not in message  # internal names never reach users
    return message


def test_a_good_face_passes_every_check(mesh: FaceMesh, hopper: np.ndarray) -> None:
    avatar = build_photo_avatar(hopper, avatar_id="ok", size=(512, 640), mesh=mesh)
    assert avatar.rig.mouth_width >= face_check.MIN_MOUTH_PX


def test_group_of_small_faces_is_counted(mesh: FaceMesh, hopper: np.ndarray) -> None:
    face = np.asarray(Image.fromarray(hopper[100:400, 100:400]).resize((70, 70)))
    group = np.full((300, 500, 3), 90, np.uint8)
    for i in range(6):
        r, c = divmod(i, 3)
        group[40 + r * 120 : 110 + r * 120, 40 + c * 150 : 110 + c * 150] = face
    message = refusal(mesh, group)
    assert "found 6 faces, each narrower than 80 px" in message and "crop the picture to one person" in message


def test_tiny_picture(mesh: FaceMesh, hopper: np.ndarray) -> None:
    tiny = np.asarray(Image.fromarray(hopper).resize((112, 140)))
    assert "the picture is only 112x140 px; use one at least 160 px" in refusal(mesh, tiny)


def test_small_face_in_a_big_picture(mesh: FaceMesh, hopper: np.ndarray) -> None:
    small = np.full((600, 800, 3), 120, np.uint8)
    small[250:378, 300:402] = np.asarray(Image.fromarray(hopper).resize((102, 128)))
    message = refusal(mesh, small)
    assert "px wide" in message and ("higher-resolution" in message or "crop closer" in message)


def test_tilted_head(mesh: FaceMesh, hopper: np.ndarray) -> None:
    tilted = np.asarray(Image.fromarray(hopper).rotate(45, fillcolor=(128, 128, 128)))
    assert "rotate the picture so the eyes are level" in refusal(mesh, tilted)


def test_face_cut_off_at_the_edge(mesh: FaceMesh, hopper: np.ndarray) -> None:
    # The chin and jaw below the picture's bottom edge (the old builder failed with "rig point chin=... outside").
    cut = np.ascontiguousarray(hopper[:335, 60:460])
    message = refusal(mesh, cut)
    assert "cut off at the bottom edge" in message


def test_not_a_face(mesh: FaceMesh) -> None:
    rng = np.random.default_rng(3)
    noise = (rng.random((320, 320, 3)) * 255).astype(np.uint8)
    assert "no face found" in refusal(mesh, noise)


def _turned(landmarks: np.ndarray, yaw_deg: float) -> np.ndarray:
    """Landmarks of the same face turned about the vertical axis through its centre (x right, z depth)."""
    c, s = math.cos(math.radians(yaw_deg)), math.sin(math.radians(yaw_deg))
    centre = landmarks.mean(axis=0)
    p = landmarks - centre
    out = p.copy()
    out[:, 0] = c * p[:, 0] - s * p[:, 2]
    out[:, 2] = s * p[:, 0] + c * p[:, 2]
    return (out + centre).astype(np.float32)


def test_profile_is_refused_with_the_turn_in_degrees(hopper: np.ndarray) -> None:
    landmarks = load_hvia(ROOT / "assets" / "avatars" / "grace-hopper.hvia").landmarks
    assert landmarks is not None
    frontal = face_check.head_pose(landmarks)
    assert abs(frontal.yaw) < 10 and abs(frontal.pitch) < 10 and abs(frontal.roll) < 10
    face_check.check_pose(face_check.head_pose(_turned(landmarks, 25)), "ok.jpg")  # a slight turn is fine
    profile = face_check.head_pose(_turned(landmarks, 70))
    assert 60 < abs(profile.yaw) < 80
    with pytest.raises(InvalidArgument, match=r"the head is turned \d+ degrees to the side \(at most 40 works\)"):
        face_check.check_pose(profile, "profile.jpg")


def test_cli_error_starts_on_its_own_line_after_the_progress_bar(tmp_path: Path, hopper: np.ndarray) -> None:
    from click.testing import CliRunner

    from avaluma.renderer.cli import avatar_group

    picture = tmp_path / "tilted.png"
    Image.fromarray(hopper).rotate(45, fillcolor=(128, 128, 128)).save(picture)
    result = CliRunner().invoke(
        avatar_group, ["build", "--photo", str(picture), "--id", "t", "-o", str(tmp_path / "t.hvia")]
    )
    assert result.exit_code == 1
    err = result.stderr
    assert "\nError: tilted.png: the head is tilted" in err
    assert "INFO" not in err and "rig point" not in err
    assert not (tmp_path / "t.hvia").exists()


def _dark_runs(column: np.ndarray, threshold: float) -> list[int]:
    """Lengths of the runs of dark pixels down a column."""
    runs, length = [], 0
    for dark in column.mean(axis=1) < threshold:
        if dark:
            length += 1
        elif length:
            runs.append(length)
            length = 0
    return [*runs, length] if length else runs


def test_open_mouth_photo_rests_closed_and_opens_one_mouth(mesh: FaceMesh, hopper: np.ndarray) -> None:
    """An open-mouthed photo (made here by opening Grace Hopper's mouth wide with the renderer itself) becomes an
    avatar whose rest pose is closed, and whose opened mouth is one mouth, not a second cavity under the first."""
    from avaluma.renderer.compositor import Compositor

    source = load_hvia(ROOT / "assets" / "avatars" / "grace-hopper.hvia")
    open_photo = Compositor(source).render(np.array([0.9, 0.0, 0.0, 0.0], dtype=np.float32), press=1.0)
    avatar = build_photo_avatar(open_photo, avatar_id="open", size=(512, 640), mesh=mesh)
    assert "rests with them closed" in avatar.metadata["rest_pose"]
    assert avatar.metadata["mouth"]["source_gap"] > 0.15
    rig = avatar.rig
    assert rig.lower_lip_inner[1] - rig.upper_lip_inner[1] < 0.03 * rig.mouth_width  # closed at rest
    x = int(rig.mouth_center[0])
    ys = slice(int(rig.upper_lip_top[1]) - 5, int(rig.chin[1]))
    dark = 0.5 * float(avatar.base[ys, x].mean())
    cavity = 0.1 * rig.mouth_width
    # At rest, at most the dark line where the lips meet: no cavity left.
    assert max(_dark_runs(avatar.base[ys, x].astype(float), dark), default=0) < cavity
    opened = Compositor(avatar).render(np.array([0.8, 0.0, 0.0, 0.0], dtype=np.float32), press=1.0)
    runs = _dark_runs(opened[ys, x].astype(float), dark)
    assert len([r for r in runs if r >= cavity]) == 1, runs  # one cavity, under one set of teeth


def test_a_smile_showing_its_teeth_stays_the_rest_pose(mesh: FaceMesh) -> None:
    """The astronaut smiles with her upper teeth showing: the real teeth are kept (they move with the upper jaw) and
    their colour is measured for the parts the renderer draws."""
    photo = np.array(load_hvia(ROOT / "assets" / "avatars" / "astronaut.hvia").base)
    avatar = build_photo_avatar(photo, avatar_id="smile", mesh=mesh)
    assert avatar.metadata["rest_pose"] == ""
    mouth = avatar.metadata["mouth"]
    assert mouth["teeth_fraction"] >= 0.4 and min(mouth["teeth_rgb"]) > 180
    np.testing.assert_array_equal(avatar.base, photo)
