"""Gaze (ExpressionPose.gaze_dx/gaze_dy): the iris shifts inside the eye opening of a photo avatar, nothing else
moves; checked by geometric facts on the bundled demo avatars (no snapshot images)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hvia_samples import video_avatar

from avaluma.renderer.avatar import Avatar, EyeRig
from avaluma.renderer.compositor import Compositor, prepared
from avaluma.renderer.expression import NEUTRAL, ExpressionPose
from avaluma.renderer.eyes import MAX_GAZE, MAX_GAZE_Y_OPENING, EyelidWarp
from avaluma.renderer.hvia import load_hvia
from avaluma.renderer.idle import IdlePose
from avaluma.renderer.lipsync.base import REST_POSE

ROOT = Path(__file__).resolve().parents[2]
NAMES = ("astronaut", "grace-hopper")


@pytest.fixture(scope="module", params=NAMES)
def avatar(request: pytest.FixtureRequest) -> Avatar:
    return load_hvia(ROOT / "assets" / "avatars" / f"{request.param}.hvia")


def gaze(dx: float = 0.0, dy: float = 0.0) -> ExpressionPose:
    return ExpressionPose(gaze_dx=dx, gaze_dy=dy)


def opening(avatar: Avatar, eye: EyeRig, margin: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pixels at least ``margin`` px inside the lids (a boolean image), and the pixel x and y grids."""
    ys, xs = np.mgrid[0 : avatar.height, 0 : avatar.width].astype(float)
    up = np.interp(xs, [p[0] for p in eye.upper], [p[1] for p in eye.upper], left=np.inf, right=np.inf)
    low = np.interp(xs, [p[0] for p in eye.lower], [p[1] for p in eye.lower], left=-np.inf, right=-np.inf)
    return (ys > up + margin) & (ys < low - margin), xs, ys


def iris(frame: np.ndarray, avatar: Avatar, eye: EyeRig, threshold: float | None = None) -> tuple[float, float, float]:
    """The darkness-weighted centre (x, y) of the eye opening (the iris and pupil), and the darkness threshold
    (the opening's median brightness in the first frame measured, reused for the others)."""
    inside, xs, ys = opening(avatar, eye, 1.0)
    lum = frame.astype(float).mean(axis=2)
    if threshold is None:
        threshold = float(np.median(lum[inside]))
    weight = np.where(inside, np.maximum(threshold - lum, 0.0), 0.0)
    return float((xs * weight).sum() / weight.sum()), float((ys * weight).sum() / weight.sum()), threshold


@pytest.mark.parametrize(
    "pose", [None, IdlePose(), IdlePose(blink=0.6), IdlePose(head_dx=0.02, head_dy=-0.01, blink=0.3)]
)
def test_zero_gaze_is_byte_identical(avatar: Avatar, pose: IdlePose | None) -> None:
    comp = Compositor(avatar)
    plain = comp.render(REST_POSE, pose=pose)
    for expression in (NEUTRAL, gaze(5e-5, -5e-5)):
        np.testing.assert_array_equal(comp.render(REST_POSE, pose=pose, expression=expression), plain)
    for eye in prepared(avatar).eyes:
        for blink in (0.0, 0.5, 1.0):
            np.testing.assert_array_equal(eye.render_roi(blink, gaze=(0.0, 0.0)), eye.render_roi(blink))


def test_open_eye_without_gaze_is_the_photo(avatar: Avatar) -> None:
    for eye in prepared(avatar).eyes:
        y0, y1, x0, x1 = eye.roi
        np.testing.assert_array_equal(eye.render_roi(0.0), avatar.base[y0:y1, x0:x1])


def test_the_iris_follows_the_gaze_sideways(avatar: Avatar) -> None:
    comp = Compositor(avatar)
    base = comp.render(REST_POSE)
    for eye in avatar.eyes:
        x0, y0, threshold = iris(base, avatar, eye)
        shift = 0.12 * eye.width
        right = iris(comp.render(REST_POSE, expression=gaze(0.12)), avatar, eye, threshold)
        left = iris(comp.render(REST_POSE, expression=gaze(-0.12)), avatar, eye, threshold)
        assert right[0] - x0 > 0.4 * shift and x0 - left[0] > 0.4 * shift
        assert abs(right[1] - y0) < 0.3 and abs(left[1] - y0) < 0.3  # sideways, not up or down
        small = iris(comp.render(REST_POSE, expression=gaze(0.03)), avatar, eye, threshold)
        assert 0.0 < small[0] - x0 < right[0] - x0  # a smaller gaze moves it less


def test_the_iris_looks_up(avatar: Avatar) -> None:
    comp = Compositor(avatar)
    base = comp.render(REST_POSE)
    for eye in avatar.eyes:
        _x0, y0, threshold = iris(base, avatar, eye)
        _x, y, _ = iris(comp.render(REST_POSE, expression=gaze(dy=-0.12)), avatar, eye, threshold)
        assert y0 - y > 0.3


def test_the_iris_looks_down_on_a_large_eye() -> None:
    """Down is the weakest direction (the iris already meets the lower lid and the lids stay); on the portrait's
    larger eyes it still shows."""
    avatar = load_hvia(ROOT / "assets" / "avatars" / "grace-hopper.hvia")
    comp = Compositor(avatar)
    base = comp.render(REST_POSE)
    moved = [iris(comp.render(REST_POSE, expression=gaze(dy=0.12)), avatar, eye)[1] for eye in avatar.eyes]
    assert np.mean(moved) - np.mean([iris(base, avatar, eye)[1] for eye in avatar.eyes]) > 0.3


@pytest.mark.parametrize("g", [(0.12, 0.0), (-0.1, -0.1), (0.05, 0.12)])
def test_gaze_changes_only_the_eye_openings(avatar: Avatar, g: tuple[float, float]) -> None:
    """Lids, lashes, skin and everything else stay: only pixels within a pixel of the opening change."""
    comp = Compositor(avatar)
    changed = np.abs(comp.render(REST_POSE, expression=gaze(*g)).astype(int) - avatar.base).max(axis=2) > 0
    assert changed.any()
    allowed = np.zeros_like(changed)
    for eye in avatar.eyes:
        allowed |= opening(avatar, eye, -1.0)[0]
    assert not (changed & ~allowed).any()


@pytest.mark.parametrize("blink", [0.3, 0.7, 1.0])
def test_blink_with_gaze_stays_inside_the_eyes(avatar: Avatar, blink: float) -> None:
    comp = Compositor(avatar)
    frame = comp.render(REST_POSE, pose=IdlePose(blink=blink), expression=gaze(0.12, -0.08)).astype(int)
    changed = np.abs(frame - avatar.base).max(axis=2) > 0
    inside = np.zeros_like(changed)
    for eye in prepared(avatar).eyes:
        y0, y1, x0, x1 = eye.roi
        inside[y0:y1, x0:x1] = True
    assert changed.any() and not (changed & ~inside).any()


def test_a_shut_lid_covers_the_shifted_eye(avatar: Avatar) -> None:
    """The lid is drawn over the shifted eye: shut, the gaze hardly shows (only where the lid line meets it)."""
    comp = Compositor(avatar)
    look = gaze(0.12, -0.08)
    shut = comp.render(REST_POSE, pose=IdlePose(blink=1.0)).astype(int)
    shut_looking = comp.render(REST_POSE, pose=IdlePose(blink=1.0), expression=look).astype(int)
    open_looking = comp.render(REST_POSE, expression=look).astype(int)
    assert np.abs(shut_looking - shut).sum() < 0.1 * np.abs(open_looking - avatar.base).sum()


def test_gaze_displacement_is_bounded_and_never_folds(avatar: Avatar) -> None:
    """A gaze change of d moves no pixel more than d eye widths (per axis), whatever the gaze; the map stays
    one-to-one: it is applied along the rows, then along the columns, and each pass's source coordinate increases
    along its line (the shift grows by less than a pixel per pixel)."""
    rng = np.random.default_rng(0)
    for eye in prepared(avatar).eyes:
        for _ in range(20):
            g = rng.uniform(-MAX_GAZE, MAX_GAZE, size=2)
            d = rng.uniform(-0.02, 0.02, size=2)
            u0, v0 = eye.gaze_field((float(g[0]), float(g[1])))
            u1, v1 = eye.gaze_field((float(g[0] + d[0]), float(g[1] + d[1])))
            assert np.abs(u1 - u0).max() <= abs(d[0]) * eye.eye_width + 1e-4
            assert np.abs(v1 - v0).max() <= abs(d[1]) * eye.eye_width + 1e-4
        for g in ((MAX_GAZE, MAX_GAZE), (-MAX_GAZE, -MAX_GAZE), (1.0, -1.0)):  # past the cap too
            u, v = eye.gaze_field(g)
            assert np.abs(u).max() <= MAX_GAZE * eye.eye_width + 1e-4
            assert np.abs(v).max() <= MAX_GAZE_Y_OPENING * eye.eye_width + 1e-4
            assert np.abs(np.diff(u, axis=1)).max() < 0.85 and np.abs(np.diff(v, axis=0)).max() < 0.85


def test_gaze_is_capped(avatar: Avatar) -> None:
    comp = Compositor(avatar)
    np.testing.assert_array_equal(
        comp.render(REST_POSE, expression=gaze(5.0, -5.0)),
        comp.render(REST_POSE, expression=gaze(MAX_GAZE, -MAX_GAZE)),
    )


def test_an_eye_rig_at_the_picture_edge_renders() -> None:
    """The gaze band is clamped to the eye ROI, which is clamped to the picture."""
    base = np.random.default_rng(3).integers(0, 256, size=(40, 60, 3), dtype=np.uint8)
    eye = EyeRig(upper=((1.0, 2.0), (8.0, 0.5), (15.0, 2.0)), lower=((1.0, 2.0), (8.0, 5.0), (15.0, 2.0)))
    warp = EyelidWarp(base, eye)
    y0, y1, x0, x1 = warp.roi
    for blink in (0.0, 0.5):
        assert warp.render_roi(blink, gaze=(0.12, -0.12)).shape == (y1 - y0, x1 - x0, 3)


def test_video_avatars_have_no_gaze() -> None:
    """Video avatars have no eye rigs: a gaze leaves their frames as they are."""
    clip = video_avatar()
    comp = Compositor(clip)
    for frame in range(2):
        np.testing.assert_array_equal(
            comp.render(REST_POSE, frame=frame, expression=gaze(0.12, 0.1)), comp.render(REST_POSE, frame=frame)
        )
