"""Head tilt (ExpressionPose.head_roll): the head region turns about the chin, blended through the head mask;
checked by geometric facts on the bundled demo avatars and the tiny test video (no snapshot images)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from hvia_samples import video_avatar

from avaluma.renderer.avatar import Avatar
from avaluma.renderer.compositor import MAX_HEAD_ROLL, Compositor, HeadRegion, prepared
from avaluma.renderer.expression import NEUTRAL, ExpressionPose
from avaluma.renderer.hvia import load_hvia
from avaluma.renderer.idle import IdlePose
from avaluma.renderer.lipsync.base import REST_POSE

ROOT = Path(__file__).resolve().parents[2]
OPEN_MOUTH = np.array([0.8, 0.0, 0.0, 0.4], dtype=np.float32)


@pytest.fixture(scope="module", params=["astronaut", "grace-hopper"])
def avatar(request: pytest.FixtureRequest) -> Avatar:
    return load_hvia(ROOT / "assets" / "avatars" / f"{request.param}.hvia")


def roll(angle: float) -> ExpressionPose:
    return ExpressionPose(head_roll=angle)


def whole(head: HeadRegion) -> tuple[int, int, int, int]:
    y0, y1, x0, x1 = head.roi
    return (0, y1 - y0, 0, x1 - x0)


@pytest.mark.parametrize(
    "pose", [None, IdlePose(), IdlePose(head_dx=0.02, head_dy=-0.01), IdlePose(head_dx=-0.01, blink=0.5)]
)
def test_zero_roll_is_byte_identical(avatar: Avatar, pose: IdlePose | None) -> None:
    comp = Compositor(avatar)
    for params in (REST_POSE, OPEN_MOUTH):
        plain = comp.render(params, pose=pose, press=1.0)
        for expression in (NEUTRAL, roll(5e-5), roll(-5e-5)):
            np.testing.assert_array_equal(comp.render(params, pose=pose, press=1.0, expression=expression), plain)


@pytest.mark.parametrize("angle", [-0.06, -0.02, 0.03, 0.06, 0.5])
def test_roll_changes_only_the_head(avatar: Avatar, angle: float) -> None:
    """Nothing outside the head region changes, nor inside it where the head mask is off."""
    comp = Compositor(avatar)
    head = prepared(avatar).head
    pose = IdlePose(head_dx=0.02, head_dy=-0.01)
    still = comp.render(OPEN_MOUTH, press=1.0)
    moved = comp.render(OPEN_MOUTH, pose=pose, press=1.0, expression=roll(angle))
    changed = np.abs(moved.astype(int) - still).max(axis=2) > 0
    assert changed.any()
    y0, y1, x0, x1 = head.roi
    allowed = np.zeros_like(changed)
    allowed[y0:y1, x0:x1] = head.mask[..., 0] > 0
    assert not (changed & ~allowed).any()


def eye_centres(frame: np.ndarray, avatar: Avatar, reference: np.ndarray) -> list[tuple[float, float]]:
    """Where each eye of ``reference`` is in ``frame``: best match of a patch around it (sum of squared
    differences over whole-pixel shifts, refined to sub-pixel with a parabola per axis)."""
    out = []
    lum, ref = frame.astype(float).mean(axis=2), reference.astype(float).mean(axis=2)
    for eye in avatar.eyes:
        pts = np.array([*eye.upper, *eye.lower])
        cx, cy = pts.mean(axis=0)
        r, search = max(6, round(0.7 * eye.width)), 10
        x, y = round(cx), round(cy)
        patch = ref[y - r : y + r + 1, x - r : x + r + 1]
        shifts = range(-search, search + 1)

        def ssd(i: int, j: int, x: int = x, y: int = y, r: int = r, patch: np.ndarray = patch) -> float:
            return float(((lum[y + j - r : y + j + r + 1, x + i - r : x + i + r + 1] - patch) ** 2).sum())

        cost = np.array([[ssd(i, j) for i in shifts] for j in shifts])
        j, i = np.unravel_index(cost.argmin(), cost.shape)
        assert 0 < i < 2 * search and 0 < j < 2 * search

        def vertex(a: float, b: float, c: float) -> float:
            return 0.5 * (a - c) / (a - 2 * b + c)

        out.append(
            (
                cx + i - search + vertex(cost[j, i - 1], cost[j, i], cost[j, i + 1]),
                cy + j - search + vertex(cost[j - 1, i], cost[j, i], cost[j + 1, i]),
            )
        )
    return out


@pytest.mark.parametrize("angle", [-0.06, 0.04, 0.06])
def test_roll_turns_the_line_through_the_eyes_by_the_roll(avatar: Avatar, angle: float) -> None:
    """Positive is clockwise in the image (y down): the line from the left eye to the right eye turns by the roll."""
    comp = Compositor(avatar)
    base = comp.render(REST_POSE)
    tilted = comp.render(REST_POSE, expression=roll(angle))
    (ax, ay), (bx, by) = eye_centres(base, avatar, base)
    (cx, cy), (dx, dy) = eye_centres(tilted, avatar, base)
    turned = math.atan2(dy - cy, dx - cx) - math.atan2(by - ay, bx - ax)
    assert turned == pytest.approx(angle, abs=0.008)


def test_the_chin_stays_and_the_crown_moves_most(avatar: Avatar) -> None:
    """The head turns about the chin: the pivot reads from itself, pixels far from it move about reach x roll."""
    head = prepared(avatar).head
    sx, sy = head.source(0.0, 0.0, MAX_HEAD_ROLL, whole(head))
    ys, xs = np.mgrid[0 : sx.shape[0], 0 : sx.shape[1]]
    moved = np.hypot(sx - xs, sy - ys)
    px, py = head.pivot
    assert moved[round(py), round(px)] < 0.5
    assert moved.max() <= head.reach * MAX_HEAD_ROLL + 1e-3
    assert moved.max() > 0.5 * head.reach * MAX_HEAD_ROLL


def test_roll_displacement_is_bounded_and_never_folds(avatar: Avatar) -> None:
    """A roll change of d moves no pixel more than reach x d (the tilt's part of the map is the mask times a
    rotation's, so no pixel moves more than a rigid turn would); and the map stays one-to-one (its Jacobian is
    positive everywhere) at the largest tilt and offset."""
    head = prepared(avatar).head
    tile = whole(head)
    rng = np.random.default_rng(0)
    for _ in range(10):
        angle = float(rng.uniform(-MAX_HEAD_ROLL, MAX_HEAD_ROLL))
        d = float(rng.uniform(-0.01, 0.01))
        shift = rng.uniform(-3.0, 3.0, size=2)
        x0, y0 = head.source(float(shift[0]), float(shift[1]), angle, tile)
        x1, y1 = head.source(float(shift[0]), float(shift[1]), angle + d, tile)
        assert np.hypot(x1 - x0, y1 - y0).max() <= head.reach * abs(d) * 1.001 + 1e-3
    limit = 0.05 * head.face_width  # MAX_HEAD_SHIFT
    for angle in (MAX_HEAD_ROLL, -MAX_HEAD_ROLL):
        sx, sy = head.source(limit, -limit, angle, tile)
        det = (
            np.diff(sx, axis=1)[:-1] * np.diff(sy, axis=0)[:, :-1]
            - np.diff(sx, axis=0)[:, :-1] * np.diff(sy, axis=1)[:-1]
        )
        assert det.min() > 0.3


def test_a_small_roll_change_makes_a_small_picture_change(avatar: Avatar) -> None:
    """Starting or changing a tilt never jumps: the first tilted frame is within a few levels of the untilted one
    (the tilt's fixed-point path against the offset's float one), and a 0.001 rad step moves edges by a fraction
    of a pixel."""
    comp = Compositor(avatar)
    pose = IdlePose(head_dx=0.013, head_dy=-0.007)
    plain = comp.render(REST_POSE, pose=pose).astype(int)
    barely = comp.render(REST_POSE, pose=pose, expression=roll(1.2e-4)).astype(int)
    assert np.abs(barely - plain).max() <= 4
    a = comp.render(REST_POSE, pose=pose, expression=roll(0.03)).astype(int)
    b = comp.render(REST_POSE, pose=pose, expression=roll(0.031)).astype(int)
    big = comp.render(REST_POSE, pose=pose, expression=roll(0.06)).astype(int)
    assert np.abs(b - a).mean() < 0.1 * np.abs(big - plain).mean()


def test_roll_is_capped(avatar: Avatar) -> None:
    comp = Compositor(avatar)
    np.testing.assert_array_equal(
        comp.render(REST_POSE, expression=roll(1.0)), comp.render(REST_POSE, expression=roll(MAX_HEAD_ROLL))
    )
    np.testing.assert_array_equal(
        comp.render(REST_POSE, expression=roll(-1.0)), comp.render(REST_POSE, expression=roll(-MAX_HEAD_ROLL))
    )


def test_video_avatars_tilt_their_head_only() -> None:
    """Video loop frames tilt too (about the chin, following the face by the mouth track); the background stays,
    and no tilt leaves the frames as they were."""
    track = np.array([[32.0, 40.0, 20.0, 0.0], [35.0, 42.0, 20.0, 0.0]], dtype=np.float32)
    clip = video_avatar(track)
    comp = Compositor(clip)
    head = prepared(clip).head
    y0, y1, x0, x1 = head.roi
    for frame in range(2):
        plain = comp.render(REST_POSE, frame=frame)
        np.testing.assert_array_equal(comp.render(REST_POSE, frame=frame, expression=roll(5e-5)), plain)
        tilted = comp.render(REST_POSE, frame=frame, expression=roll(0.06))
        changed = np.abs(tilted.astype(int) - plain).max(axis=2) > 0
        allowed = np.zeros_like(changed)
        allowed[y0:y1, x0:x1] = head.mask[..., 0] > 0
        assert changed.any() and not (changed & ~allowed).any()


def _float_tilt(frame: np.ndarray, head: HeadRegion, dx: float, dy: float, angle: float, pivot_shift) -> np.ndarray:  # type: ignore[no-untyped-def]
    """The tilt as plain float64 arithmetic: the same backward map, bilinear, blended through the mask."""
    y0, y1, x0, x1 = head.roi
    h, w = y1 - y0, x1 - x0
    src = frame[y0:y1, x0:x1].astype(np.float64)
    sx, sy = head.source(dx, dy, angle, whole(head), pivot_shift)
    sx = np.clip(sx.astype(np.float64), 0, w - 1 - 1 / 256)
    sy = np.clip(sy.astype(np.float64), 0, h - 1 - 1 / 256)
    ix, iy = np.floor(sx).astype(int), np.floor(sy).astype(int)
    fx, fy = (sx - ix)[..., None], (sy - iy)[..., None]
    top = src[iy, ix] * (1 - fx) + src[iy, ix + 1] * fx
    bottom = src[iy + 1, ix] * (1 - fx) + src[iy + 1, ix + 1] * fx
    m = head.mask2[..., None]  # type: ignore[index]
    out = frame.copy()
    out[y0:y1, x0:x1] = np.round(src + ((top * (1 - fy) + bottom * fy) - src) * m)
    return out


@pytest.mark.parametrize(
    "motion", [(2.1, -1.3, 0.03, (0.0, 0.0)), (0.0, 0.0, -0.08, (3.5, -2.0)), (-5.0, 4.0, 3e-4, (0, 0))]
)
def test_fixed_point_tilt_is_within_a_grey_level_of_float_arithmetic(avatar: Avatar, motion) -> None:  # type: ignore[no-untyped-def]
    """The tilt mixes pixels in 8-bit fixed point (1/256 px, rounded sums): against the same map in float64 no pixel
    is off by more than one level."""
    from avaluma.renderer.compositor import _tilt_head

    head = prepared(avatar).head
    frame = Compositor(avatar).render(OPEN_MOUTH)
    got = frame.copy()
    _tilt_head(got, head, *motion)
    want = _float_tilt(frame, head, *motion)
    assert np.abs(got.astype(int) - want.astype(int)).max() <= 1
    assert (got != frame).any()
