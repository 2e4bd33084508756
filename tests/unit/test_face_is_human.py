"""The builder refuses what is not a real, uncovered human face (drawn faces, faces without human skin, a mouth held
covered) with one message that says what it found and what to do, and real faces keep building.

Generated inputs (tests/face_samples.py: PIL drawings, the demo avatars' public-domain photos recoloured or with a
skin-coloured occluder over the mouth). The development portraits beside the checkout (../shared/data/portraits, not
part of the repository) are used when present: every portrait of a person must build. Real face models.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from face_samples import airbrushed, cartoon, drawn_faces, jpeg, microphone, noisy, occluded, recoloured
from PIL import Image

from avaluma.core.errors import InvalidArgument
from avaluma.renderer import face_check
from avaluma.renderer.builder import build_photo_avatar
from avaluma.renderer.facemesh import FaceMesh
from avaluma.renderer.hvia import load_hvia

ROOT = Path(__file__).resolve().parents[2]
PORTRAITS = ROOT.parent / "shared" / "data" / "portraits"
#: Portraits of one person each (the README's 01-11); 12-14 are the profile, group and cat hard cases.
PEOPLE = sorted(p for p in PORTRAITS.glob("[01][0-9]_*.[jp][pn]g") if int(p.name[:2]) <= 11)


@pytest.fixture(scope="module")
def mesh() -> FaceMesh:
    return FaceMesh(progress=lambda message: None)


def demo(name: str) -> tuple[np.ndarray, np.ndarray]:
    avatar = load_hvia(ROOT / "assets" / "avatars" / f"{name}.hvia")
    assert avatar.landmarks is not None
    return np.array(avatar.base), np.array(avatar.landmarks)


def refusal(mesh: FaceMesh, rgb: np.ndarray) -> str:
    with pytest.raises(InvalidArgument) as info:
        build_photo_avatar(rgb, avatar_id="x", source="in.png", size=(512, 640), mesh=mesh)
    message = info.value.message
    assert message.startswith("in.png: ")
    return message


@pytest.mark.parametrize("style", ["flat colour", "airbrushed, JPEG", "airbrushed, noise, JPEG"])
def test_a_drawn_face_is_refused(mesh: FaceMesh, style: str) -> None:
    drawing = {
        "flat colour": cartoon(),
        "airbrushed, JPEG": jpeg(airbrushed(cartoon()), 60),
        "airbrushed, noise, JPEG": jpeg(noisy(airbrushed(cartoon()), 3.0), 75),  # grain like a photo's: the outline
    }[style]
    message = refusal(mesh, drawing)
    assert "the face looks drawn, not photographed" in message
    assert "use a photo of a real human face, frontal" in message


def test_every_generated_drawing_scores_as_drawn(mesh: FaceMesh) -> None:
    """The scores behind the refusal, on each style of tests/face_samples.py (flat, dark skin, softened, JPEG,
    airbrushed, with photo-like grain): flat colour, no skin texture or an inked outline, while the same checks pass
    the photos."""
    for name, drawing in drawn_faces().items():
        face = mesh.detect(drawing)[0]
        landmarks, _ = mesh.landmarks_from_detection(drawing, face)
        looks = face_check.appearance(drawing, landmarks)
        drawn = looks.flat > face_check.MAX_FLAT or looks.texture < face_check.MIN_TEXTURE
        assert drawn or looks.outline > face_check.MAX_OUTLINE, (name, looks)
    for name in ("grace-hopper", "astronaut"):
        looks = face_check.appearance(*demo(name))
        assert looks.flat < 0.05 and looks.texture > 2 * face_check.MIN_TEXTURE and looks.outline < 0.2, (name, looks)
        assert looks.skin is not None and looks.skin > 0.9 and looks.mouth_relief > 1.5 * face_check.MIN_MOUTH_RELIEF


def test_a_face_without_human_skin_is_refused(mesh: FaceMesh) -> None:
    """Grace Hopper's photo with every hue turned three quarters round and saturated: texture and shape of a real face,
    skin a blue-violet beyond any white-balance cast (face paint, a mask, a painted creature)."""
    photo, _ = demo("grace-hopper")
    message = refusal(mesh, recoloured(photo, 0.75))
    assert "the face does not look like human skin" in message and "use a photo of a real human face" in message


def test_what_the_face_model_does_not_take_for_a_face_is_refused(mesh: FaceMesh) -> None:
    """Grace Hopper recoloured: the detector still finds a face, the face mesh is sure it is none."""
    photo, _ = demo("grace-hopper")
    message = refusal(mesh, recoloured(photo))
    assert "what was found does not fit a human face (the face model is" in message
    assert "use a photo of a real human face" in message


CASTS = {"cool": (0.7, 0.95, 1.4), "warm": (1.25, 1.0, 0.55), "green": (0.8, 1.25, 0.85)}


@pytest.mark.parametrize("gains", CASTS.values(), ids=CASTS.keys())
def test_a_photo_under_coloured_light_still_builds(mesh: FaceMesh, gains: tuple[float, float, float]) -> None:
    """White-balance casts (shade or a screen's light, tungsten, fluorescent) move skin far from its daylight
    colour: the skin check must not take them for paint."""
    photo, _ = demo("astronaut")
    cast = np.clip(photo * np.array(gains), 0, 255).astype(np.uint8)
    build_photo_avatar(cast, avatar_id="cast", size=(512, 640), mesh=mesh)


def test_a_black_and_white_photo_still_builds(mesh: FaceMesh) -> None:
    photo, landmarks = demo("grace-hopper")
    grey = np.repeat(np.asarray(Image.fromarray(photo).convert("L"))[..., None], 3, axis=2)
    assert face_check.skin_colour(grey, landmarks) is None  # no colour to judge
    build_photo_avatar(grey, avatar_id="grey", size=(512, 640), mesh=mesh)


@pytest.mark.parametrize(("name", "fingers"), [("grace-hopper", 0), ("astronaut", 0), ("grace-hopper", 4)])
def test_a_hand_over_the_mouth_is_refused(mesh: FaceMesh, name: str, fingers: int) -> None:
    """A still, skin-coloured thing over the mouth (the face's own cheek colour and grain, soft edges; with the
    dark gaps between fingers across it, which the mesh takes for lips): the mesh still draws a mouth there, the
    builder must not."""
    photo, landmarks = demo(name)
    message = refusal(mesh, occluded(photo, landmarks, fingers=fingers))
    assert "the mouth is covered or cannot be seen" in message
    assert "no hand, microphone, mask or hair in front of the mouth" in message


def test_a_microphone_in_front_of_the_mouth_is_refused(mesh: FaceMesh) -> None:
    """A dark grey thing: its edge makes a strong relief where the mesh puts the lips, but lips are never grey."""
    photo, landmarks = demo("astronaut")
    assert "the mouth is covered or cannot be seen" in refusal(mesh, microphone(photo, landmarks))


@pytest.mark.skipif(not PEOPLE, reason=f"the development portraits are not beside the checkout ({PORTRAITS})")
@pytest.mark.parametrize("path", PEOPLE, ids=lambda p: p.name[:2])
def test_every_development_portrait_of_a_person_builds(mesh: FaceMesh, path: Path) -> None:
    """Dark and light skin, East Asian, elderly, beards, glasses, a smile with teeth, an open mouth, a black-and-white
    archive photo, a 16th-century painting: all build (none of them was used to set the limits' far ends)."""
    photo = np.asarray(Image.open(path).convert("RGB"))
    build_photo_avatar(photo, avatar_id="p", source=path.name, size=(512, 640), mesh=mesh)


@pytest.mark.skipif(not PEOPLE, reason=f"the development portraits are not beside the checkout ({PORTRAITS})")
def test_development_portraits_with_the_mouth_covered_are_refused(mesh: FaceMesh) -> None:
    for path in PEOPLE[:4]:
        photo = np.asarray(Image.open(path).convert("RGB"))
        avatar = build_photo_avatar(photo, avatar_id="p", source=path.name, size=(512, 640), mesh=mesh)
        assert avatar.landmarks is not None
        covered = occluded(np.array(avatar.base), np.array(avatar.landmarks))
        assert "the mouth is covered" in refusal(mesh, covered), path.name
