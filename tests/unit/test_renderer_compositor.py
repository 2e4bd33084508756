"""The photo compositor, checked by geometric facts on the bundled demo avatar (no snapshot images)."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from avaluma.renderer.avatar import Avatar, MouthRig
from avaluma.renderer.compositor import Compositor
from avaluma.renderer.hvia import load_hvia
from avaluma.renderer.lipsync.base import REST_POSE

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def avatar() -> Avatar:
    return load_hvia(ROOT / "assets" / "avatars" / "astronaut.hvia")


@pytest.fixture(scope="module")
def compositor(avatar: Avatar) -> Compositor:
    return Compositor(avatar)


def pose(jaw: float = 0.0, rounding: float = 0.0, stretch: float = 0.0) -> np.ndarray:
    return np.array([jaw, 1.0 - jaw, rounding, stretch], dtype=np.float32)


def mouth_box(avatar: Avatar) -> tuple[slice, slice]:
    rig = avatar.rig
    ys = slice(int(rig.upper_lip_inner[1]), int(rig.lower_lip_bottom[1] + 0.4 * rig.mouth_width))
    xs = slice(int(rig.mouth_left[0]), int(rig.mouth_right[0]) + 1)
    return ys, xs


def outside_roi(frame: np.ndarray, roi: tuple[int, int, int, int]) -> np.ndarray:
    y0, y1, x0, x1 = roi
    mask = np.ones(frame.shape[:2], dtype=bool)
    mask[y0:y1, x0:x1] = False
    return frame[mask]


def test_rest_pose_is_the_base_image(avatar: Avatar, compositor: Compositor) -> None:
    frame = compositor.render(REST_POSE)
    assert frame.shape == (512, 512, 3) and frame.dtype == np.uint8
    np.testing.assert_array_equal(frame, avatar.base)
    assert frame.flags.writeable  # a new array, not the shared base


def test_lips_closed_keeps_the_mouth_shut(avatar: Avatar, compositor: Compositor) -> None:
    closed_but_jaw_set = np.array([0.8, 1.0, 0.0, 0.0], dtype=np.float32)
    np.testing.assert_array_equal(compositor.render(closed_but_jaw_set), avatar.base)


@pytest.mark.parametrize("seed", range(5))
def test_pixels_outside_the_roi_never_change(avatar: Avatar, compositor: Compositor, seed: int) -> None:
    params = np.random.default_rng(seed).random(4).astype(np.float32)
    frame = compositor.render(params)
    np.testing.assert_array_equal(outside_roi(frame, compositor.roi), outside_roi(avatar.base, compositor.roi))


def test_roi_border_is_seamless(avatar: Avatar, compositor: Compositor) -> None:
    """The feather window brings every displacement to zero at the ROI edge, so the border ring equals the base."""
    frame = compositor.render(pose(1.0, stretch=1.0)).astype(int)
    base = avatar.base.astype(int)
    y0, y1, x0, x1 = compositor.roi
    ring = np.zeros(frame.shape[:2], dtype=bool)
    ring[y0:y1, x0:x1] = True
    ring[y0 + 1 : y1 - 1, x0 + 1 : x1 - 1] = False
    assert np.abs(frame[ring] - base[ring]).max() <= 1
    # ...and the change eases in: one pixel inside the border it is small compared with the mouth itself.
    inner = np.zeros_like(ring)
    inner[y0 + 1 : y1 - 1, x0 + 1 : x1 - 1] = True
    inner[y0 + 2 : y1 - 2, x0 + 2 : x1 - 2] = False
    ys, xs = mouth_box(avatar)
    assert np.abs(frame[inner] - base[inner]).mean() < 0.2 * np.abs(frame[ys, xs] - base[ys, xs]).mean()


def test_opening_darkens_the_mouth_monotonically(avatar: Avatar, compositor: Compositor) -> None:
    ys, xs = mouth_box(avatar)
    base = avatar.base.astype(float)
    brightness, change = [], []
    for jaw in np.linspace(0.0, 1.0, 6):
        frame = compositor.render(pose(float(jaw))).astype(float)
        brightness.append(frame[ys, xs].mean())
        change.append(np.abs(frame - base).sum())
    assert all(b1 > b2 for b1, b2 in itertools.pairwise(brightness)), brightness
    assert all(c1 < c2 for c1, c2 in itertools.pairwise(change)), change
    assert brightness[0] - brightness[-1] > 30  # a wide-open mouth is clearly darker, not a subtle tint


def test_jaw_drop_moves_the_chin_down(avatar: Avatar, compositor: Compositor) -> None:
    """The chin's lower edge (bright skin over the dark collar) moves down when the jaw opens."""
    cx = int(avatar.rig.chin[0])

    def chin_edge(frame: np.ndarray) -> int:
        column = frame[int(avatar.rig.chin[1]) - 10 : compositor.roi[1], cx].astype(float).mean(axis=1)
        return int(np.argmax(column < 80))

    assert chin_edge(compositor.render(pose(1.0))) >= chin_edge(avatar.base) + 8


def _dark_width(frame: np.ndarray, avatar: Avatar, compositor: Compositor) -> int:
    # The row a third of the way into the lip gap at full opening, where the cavity is darkest.
    row = int(avatar.rig.lower_lip_inner[1] + 0.3 * 0.38 * avatar.rig.mouth_width)
    dark = frame[row, :, :].astype(float).mean(axis=1) < 70
    return int(dark.sum())


def test_stretch_widens_and_rounding_narrows(avatar: Avatar, compositor: Compositor) -> None:
    neutral = _dark_width(compositor.render(pose(0.7)), avatar, compositor)
    wide = _dark_width(compositor.render(pose(0.7, stretch=1.0)), avatar, compositor)
    narrow = _dark_width(compositor.render(pose(0.7, rounding=1.0)), avatar, compositor)
    assert narrow < neutral < wide


def test_deterministic(avatar: Avatar) -> None:
    params = pose(0.45, rounding=0.2, stretch=0.1)
    np.testing.assert_array_equal(Compositor(avatar).render(params), Compositor(avatar, seed=0).render(params))


def test_out_of_range_params_are_clamped(avatar: Avatar, compositor: Compositor) -> None:
    np.testing.assert_array_equal(
        compositor.render(np.array([5.0, -3.0, 2.0, 0.0], dtype=np.float32)),
        compositor.render(np.array([1.0, 0.0, 1.0, 0.0], dtype=np.float32)),
    )


def test_wrong_param_shape_is_an_error(compositor: Compositor) -> None:
    with pytest.raises(ValueError, match="shape"):
        compositor.render(np.zeros(3, dtype=np.float32))


def closed_mouth_avatar() -> Avatar:
    """A flat skin-coloured face with a closed red mouth (no teeth showing) on a 128x128 image."""
    base = np.full((128, 128, 3), (200, 160, 130), dtype=np.uint8)
    base[58:66, 44:84] = (170, 80, 80)  # lips, closed along y = 62
    rig = MouthRig(
        mouth_center=(64.0, 62.0),
        mouth_left=(44.0, 62.0),
        mouth_right=(84.0, 62.0),
        upper_lip_top=(64.0, 58.0),
        upper_lip_inner=(64.0, 62.0),
        lower_lip_inner=(64.0, 62.0),
        lower_lip_bottom=(64.0, 66.0),
        chin=(64.0, 90.0),
        jaw=((36.0, 70.0), (64.0, 90.0), (92.0, 70.0)),
    )
    return Avatar(
        id="closed",
        name="closed",
        kind="photo",
        width=128,
        height=128,
        fps=25,
        format_version=1,
        license="CC0",
        base=base,
        rig=rig,
    )


def test_closed_mouth_photo_gets_synthesised_teeth_and_cavity() -> None:
    avatar = closed_mouth_avatar()
    frame = Compositor(avatar).render(pose(1.0)).astype(int)
    column = frame[62:80, 64].mean(axis=1)  # straight down the middle of the opened mouth
    assert column[:2].min() > 170  # teeth just under the upper lip, brighter than lips and skin
    assert column[3:12].min() < 60  # then the dark cavity
    np.testing.assert_array_equal(Compositor(avatar).render(REST_POSE), avatar.base)
