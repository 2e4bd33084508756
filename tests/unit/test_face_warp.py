"""Facial expressions: the face warp on real avatars, through the compositor.

Measured on the rendered pixels and on the warp's own displacement field; no timing assertions (the render cost is
``bench/expressions.py``'s business).
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
from hvia_samples import FACE, photo_avatar, video_avatar

from avaluma.renderer.compositor import Compositor, prepared
from avaluma.renderer.expression import NEUTRAL, ExpressionPose
from avaluma.renderer.face_warp import FaceWarp
from avaluma.renderer.hvia import load_hvia
from avaluma.renderer.idle import IdlePose
from avaluma.renderer.rig_builder import BROWS

ROOT = Path(__file__).resolve().parents[2]
REST = np.array([0.0, 1.0, 0.0, 0.0], np.float32)
OPEN = np.array([0.8, 0.0, 0.0, 0.2], np.float32)
HAPPY = ExpressionPose(smile=1.0)
SERIOUS = ExpressionPose(brow_inner=-1.0)
SURPRISED = ExpressionPose(brow_raise=1.0, brow_inner=0.2)
CONCERNED = ExpressionPose(brow_inner=1.0)
STRONG = (HAPPY, SERIOUS, SURPRISED, CONCERNED, ExpressionPose(brow_raise=1.0, brow_inner=-1.0, smile=1.0),
          ExpressionPose(brow_raise=1.0, brow_inner=1.0, smile=1.0))  # fmt: skip


@pytest.fixture(scope="module")
def grace():  # type: ignore[no-untyped-def]
    return load_hvia(ROOT / "assets" / "avatars" / "grace-hopper.hvia")


def gray(frame: np.ndarray) -> np.ndarray:
    return frame.astype(np.float32).mean(axis=2)


def best_shift(before: np.ndarray, after: np.ndarray, box: tuple[int, int, int, int], reach: int) -> tuple[int, int]:
    """The whole-pixel (dy, dx) that best maps the patch ``box`` of ``before`` onto ``after`` (least squares)."""
    y0, y1, x0, x1 = box
    patch = before[y0:y1, x0:x1]
    scores = {
        (dy, dx): float(((after[y0 + dy : y1 + dy, x0 + dx : x1 + dx] - patch) ** 2).mean())
        for dy, dx in itertools.product(range(-reach, reach + 1), repeat=2)
    }
    return min(scores, key=scores.__getitem__)


def test_the_rest_pose_renders_byte_identical_frames(grace) -> None:  # type: ignore[no-untyped-def]
    comp = Compositor(grace)
    idle = IdlePose(head_dx=0.01, head_dy=-0.005, blink=0.5)
    for params, pose in itertools.product((REST, OPEN), (None, idle)):
        plain = comp.render(params, pose=pose)
        # All-zero, and below the threshold / out of range (a negative smile is clamped to none).
        for expression in (NEUTRAL, ExpressionPose(brow_raise=5e-5, smile=-0.3)):
            assert np.array_equal(comp.render(params, pose=pose, expression=expression), plain)


def test_expressions_change_only_pixels_inside_the_warp_regions(grace) -> None:  # type: ignore[no-untyped-def]
    comp = Compositor(grace)
    warp = prepared(grace).face
    assert warp is not None and len(warp.regions) == 2
    inside = np.zeros((grace.height, grace.width), bool)
    for y0, y1, x0, x1 in warp.regions:
        inside[y0:y1, x0:x1] = True
    for params in (REST, OPEN):
        plain = comp.render(params)
        for expression in STRONG:
            changed = (comp.render(params, expression=expression) != plain).any(axis=2)
            assert changed.any() and not (changed & ~inside).any()
    # The regions are the face's: well inside the picture, clear of its outer quarter.
    for _, _, x0, x1 in warp.regions:
        assert 0.2 * grace.width < x0 < x1 < 0.8 * grace.width


def test_brow_raise_lifts_the_brows_and_keeps_the_eyes(grace) -> None:  # type: ignore[no-untyped-def]
    comp = Compositor(grace)
    before = gray(comp.render(REST))
    after = gray(comp.render(REST, expression=ExpressionPose(brow_raise=1.0)))
    fw = grace.face.face_width
    for brow in grace.face.brows:
        xs = [p[0] for p in brow.upper]
        ys = [p[1] for p in brow.upper + brow.lower]
        box = (int(min(ys)) - 3, int(max(ys)) + 3, int(xs[1]), int(xs[-2]))
        dy, dx = best_shift(before, after, box, reach=10)
        assert -0.045 * fw <= dy <= -0.02 * fw and abs(dx) <= 1
    for eye in grace.eyes:  # the eye itself (between its lids) stays where it is
        ys = [p[1] for p in eye.upper + eye.lower]
        box = (int(min(ys)) + 1, int(max(ys)), int(eye.upper[1][0]), int(eye.upper[-2][0]))
        assert best_shift(before, after, box, reach=4) == (0, 0)


def test_frown_lowers_and_concern_lifts_the_inner_brow_ends(grace) -> None:  # type: ignore[no-untyped-def]
    warp = prepared(grace).face
    assert warp is not None
    inner = np.array([grace.face.brows[0].upper[-1], grace.face.brows[1].upper[0]], np.float32)
    outer = np.array([grace.face.brows[0].upper[0], grace.face.brows[1].upper[-1]], np.float32)
    frown, concern = warp.displacement(SERIOUS, inner), warp.displacement(CONCERNED, inner)
    assert (frown[:, 1] > 2).all() and (concern[:, 1] < -2).all()  # down / up, pixels (y down)
    assert frown[0, 0] > 0 > frown[1, 0] and concern[0, 0] > 0 > concern[1, 0]  # both draw towards the middle
    assert (np.abs(warp.displacement(CONCERNED, outer)[:, 1]) < 0.3 * np.abs(concern[:, 1])).all()


def test_smile_raises_the_mouth_corners_and_keeps_the_lip_sync(grace) -> None:  # type: ignore[no-untyped-def]
    comp = Compositor(grace)
    rig = grace.rig
    for params in (REST, OPEN):
        before = gray(comp.render(params))
        after = gray(comp.render(params, expression=HAPPY))
        for (cx, cy), outward in ((rig.mouth_left, -1), (rig.mouth_right, 1)):
            box = (int(cy) - 8, int(cy) + 8, int(cx) - 8, int(cx) + 8)
            dy, dx = best_shift(before, after, box, reach=10)
            assert dy <= -4 and dx * outward >= 1, (params, dy, dx)
    # The mouth keeps moving under a held smile: opening it changes the mouth as much as without the smile.
    plain = np.abs(gray(comp.render(OPEN)) - gray(comp.render(REST))).sum()
    smiling = np.abs(gray(comp.render(OPEN, expression=HAPPY)) - gray(comp.render(REST, expression=HAPPY))).sum()
    assert 0.8 < smiling / plain < 1.25


def landmark_points(avatar) -> np.ndarray:  # type: ignore[no-untyped-def]
    """The points an expression moves: brows, mouth corners, cheeks, eyelids."""
    lm = avatar.landmarks[:, :2]
    ids = [i for pair in BROWS for edge in pair for i in edge] + [61, 291, 50, 280, 145, 374, 159, 386, 0, 17]
    return np.asarray(lm[ids], np.float32)


def test_per_frame_displacement_is_bounded_and_monotone(grace) -> None:  # type: ignore[no-untyped-def]
    """An emotion eased over 0.4 s at 25 fps changes by at most ~0.15 per frame (smoothstep's peak slope 1.5 over 10
    frames): no landmark may then move more than 0.15 x 0.045 face widths (1.3 px here) between frames for one
    component, 0.15 x 0.08 (2.3 px) when brow_raise and brow_inner rise together (their lifts add up)."""
    warp = prepared(grace).face
    assert warp is not None
    points = landmark_points(grace)
    fw = grace.face.face_width
    step = 0.15
    targets = [(ExpressionPose(brow_raise=1.0), 0.045), (ExpressionPose(brow_inner=1.0), 0.045),
               (ExpressionPose(brow_inner=-1.0), 0.045), (HAPPY, 0.045),
               (ExpressionPose(brow_raise=1.0, brow_inner=-1.0, smile=1.0), 0.045),
               (ExpressionPose(brow_raise=1.0, brow_inner=1.0, smile=1.0), 0.08)]  # fmt: skip
    for target, per_unit in targets:
        previous = np.zeros_like(points)
        previous_size = np.zeros(len(points))
        for k in range(1, 8):
            a = min(1.0, k * step)
            pose = ExpressionPose(brow_raise=a * target.brow_raise, brow_inner=a * target.brow_inner,
                                  smile=a * target.smile)  # fmt: skip
            moved = warp.displacement(pose, points)
            assert np.hypot(*(moved - previous).T).max() <= step * per_unit * fw
            size = np.hypot(*moved.T)
            assert (size >= previous_size - 1e-4).all()  # monotone in the pose value
            previous, previous_size = moved, size
        assert previous_size.max() > 0.02 * fw  # and it does move at full strength
    # Across the sign change of brow_inner (concerned <-> serious) the field is continuous too.
    a = warp.displacement(ExpressionPose(brow_inner=step / 2), points)
    b = warp.displacement(ExpressionPose(brow_inner=-step / 2), points)
    assert np.hypot(*(a - b).T).max() <= step * 0.045 * fw


def test_the_warp_never_folds(grace) -> None:  # type: ignore[no-untyped-def]
    """Backward mapping stays one-to-one: along every column and row the sampled source position keeps increasing."""
    warp = prepared(grace).face
    assert warp is not None
    ys, xs = np.mgrid[0 : grace.height, 0 : grace.width].astype(np.float32)
    for pose in STRONG:
        fields, _ = warp.fields(xs, ys)
        d = sum(v * np.stack(fields[k]) for k, v in FaceWarp.components(pose).items())
        assert (np.diff(ys - d[1], axis=0) > 0).all() and (np.diff(xs - d[0], axis=1) > 0).all()


def test_video_avatars_follow_the_face_through_the_loop() -> None:
    # Frame 1's face sits 3 px lower and 2 px further right than frame 0's (the mouth track says so).
    track = np.array([[32.0, 40.0, 20.0, 0.0], [34.0, 43.0, 20.0, 0.0]], np.float32)
    avatar = video_avatar(track)
    assert avatar.face == FACE
    comp = Compositor(avatar)
    changed = []
    for frame in (0, 1):
        plain = comp.render(REST, frame=frame)
        assert np.array_equal(comp.render(REST, frame=frame, expression=NEUTRAL), plain)
        changed.append((comp.render(REST, frame=frame, expression=SURPRISED) != plain).any(axis=2))
    assert changed[0].any()
    ys, xs = np.nonzero(changed[0])
    moved = np.zeros_like(changed[0])
    moved[ys + 3, xs + 2] = True
    assert (changed[1] & ~moved).sum() <= 0.02 * changed[1].sum()  # the same region, shifted with the face


def test_avatars_without_face_regions_render_no_expression() -> None:
    avatar = photo_avatar(face=None)
    assert prepared(avatar).face is None
    comp = Compositor(avatar)
    for expression in STRONG:
        assert np.array_equal(comp.render(OPEN, expression=expression), comp.render(OPEN))


def test_tiny_sample_face_renders_every_expression() -> None:
    comp = Compositor(photo_avatar())
    plain = comp.render(REST)
    for expression in STRONG:
        assert not np.array_equal(comp.render(REST, expression=expression), plain)


def test_a_giant_face_gets_no_expression_instead_of_huge_fields() -> None:
    """Fields cost memory per pixel: a face that would need more than MAX_REGION_PIXELS per region (hostile or
    absurd sizes, e.g. a 2560 px wide face in a 4096 px image) renders no expression at all."""
    from hvia_samples import RIG

    from avaluma.renderer.avatar import BrowRig, FaceRig, MouthRig

    k = 64.0

    def scaled(points):  # type: ignore[no-untyped-def]
        return tuple((x * k, y * k) for x, y in points)

    face = FaceRig(
        brows=tuple(BrowRig(upper=scaled(b.upper), lower=scaled(b.lower)) for b in FACE.brows),  # type: ignore[arg-type]
        cheeks=scaled(FACE.cheeks),  # type: ignore[arg-type]
        face_width=FACE.face_width * k,
    )
    mouth = MouthRig(**{name: (v[0] * k, v[1] * k) for name, v in RIG.to_json().items() if name != "jaw"},
                     jaw=scaled(RIG.jaw))  # fmt: skip
    warp = FaceWarp((4096, 4096), face, mouth)
    assert warp.regions == ()
    frame = np.zeros((4096, 4096, 3), np.uint8)
    warp.apply(frame, SURPRISED)
    assert not frame.any()


def test_the_fields_are_smooth_so_there_are_no_seams(grace) -> None:  # type: ignore[no-untyped-def]
    """Every unit field changes by at most 0.6 px between neighbouring pixels at full strength (a seam would be a step
    of several pixels; these are the stretch above the eyes and the falloffs), also where a region ends, and is zero
    outside the regions the warp may change."""
    warp = prepared(grace).face
    assert warp is not None
    ys, xs = np.mgrid[0 : grace.height, 0 : grace.width].astype(np.float32)
    fields, shade = warp.fields(xs, ys)
    inside = np.zeros(ys.shape, bool)
    for y0, y1, x0, x1 in warp.regions:
        inside[y0:y1, x0:x1] = True
    for name, (dx, dy) in fields.items():
        for d in (dx, dy):
            assert np.abs(np.diff(d, axis=0)).max() < 0.6 and np.abs(np.diff(d, axis=1)).max() < 0.6, name
            assert np.abs(d[~inside]).max() < 1e-3, name
    assert np.abs(np.diff(shade, axis=1)).max() < 0.05 and shade[~inside].max() < 1e-4


def _float_warp(warp: FaceWarp, frame: np.ndarray, pose: ExpressionPose, shift=(0, 0), scale=1.0, turn=0.0):  # type: ignore[no-untyped-def]
    """The warp as plain float64 arithmetic (the definition the fixed-point renderer approximates)."""
    out = frame.astype(np.float64)
    h, w = frame.shape[:2]
    weights = FaceWarp.components(pose)
    for group in (warp._upper, warp._lower):
        names = [k for k in weights if k in group.fields]
        if not names or not group.ys.size:
            continue
        d = sum(weights[k] * group.fields[k].astype(np.float64) for k in names)
        c, s = scale * np.cos(turn), scale * np.sin(turn)
        d = np.stack([c * d[:, 0] - s * d[:, 1], s * d[:, 0] + c * d[:, 1]], axis=1)
        y0, y1, x0, x1 = group.box
        dy, dx = min(max(shift[0], -y0), h - y1), min(max(shift[1], -x0), w - x1)
        sy = np.clip(group.ys + dy - d[:, 1], 0, h - 1.001)
        sx = np.clip(group.xs + dx - d[:, 0], 0, w - 1.001)
        iy, ix = np.floor(sy).astype(int), np.floor(sx).astype(int)
        fy, fx = (sy - iy)[:, None], (sx - ix)[:, None]
        top = out[iy, ix] * (1 - fx) + out[iy, ix + 1] * fx
        bottom = out[iy + 1, ix] * (1 - fx) + out[iy + 1, ix + 1] * fx
        value = top * (1 - fy) + bottom * fy
        if group.shade is not None and "frown" in weights:
            value *= (1.0 - weights["frown"] * group.shade)[:, None]
        out[group.ys + dy, group.xs + dx] = np.round(value)
    return out.astype(np.uint8)


@pytest.mark.parametrize("placement", [((0, 0), 1.0, 0.0), ((3, -2), 1.1, 0.05), ((-4, 5), 0.9, -0.2)])
def test_fixed_point_warp_is_within_a_grey_level_of_float_arithmetic(grace, placement) -> None:  # type: ignore[no-untyped-def]
    """The renderer mixes pixels in 8-bit fixed point (1/256 px, rounded sums): against the same warp in float64, no
    pixel is off by more than one level, and pixels outside the regions stay untouched (also shifted, scaled and
    turned as on a video avatar's loop frame)."""
    warp = prepared(grace).face
    shift, scale, turn = placement
    frame = Compositor(grace).render(OPEN)
    for pose in (*STRONG, ExpressionPose(brow_raise=0.4), ExpressionPose(brow_raise=0.01, smile=0.003)):
        got = frame.copy()
        warp.apply(got, pose, shift=shift, scale=scale, turn=turn)
        want = _float_warp(warp, frame, pose, shift, scale, turn)
        assert np.abs(got.astype(int) - want.astype(int)).max() <= 1, pose
        assert (got != frame).any()
