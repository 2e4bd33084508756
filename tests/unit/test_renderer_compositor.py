"""The photo compositor, checked by geometric facts on the bundled demo avatar (no snapshot images)."""

from __future__ import annotations

import dataclasses
import itertools
from pathlib import Path

import numpy as np
import pytest

from avaluma.renderer.avatar import Avatar, MouthRig
from avaluma.renderer.compositor import Compositor, PhotoMouth
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


def grey_above(pixels: np.ndarray, floor: int, spread: int) -> np.ndarray:
    """Which pixels (colour on the last axis) look like teeth or an eye's white: every channel above ``floor`` and the
    channels within ``spread`` of each other."""
    return (pixels.min(axis=-1) > floor) & (pixels.max(axis=-1) - pixels.min(axis=-1) < spread)


def luma(rgb: np.ndarray | tuple[float, ...]) -> np.ndarray:
    """Luma (Rec. 601 weights) of RGB colours (colour on the last axis)."""
    return np.asarray(rgb, np.float64) @ np.array([0.299, 0.587, 0.114])


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
    """Horizontal extent of the opened mouth: columns with a pixel clearly darker than the photo in the mouth box."""
    ys = slice(int(avatar.rig.upper_lip_top[1]), int(avatar.rig.chin[1]))
    darker = (avatar.base[ys].astype(float).mean(axis=2) - frame[ys].astype(float).mean(axis=2)) > 40
    columns = np.flatnonzero(darker.any(axis=0))
    return int(columns[-1] - columns[0]) if len(columns) else 0


def test_stretch_widens_and_rounding_narrows(avatar: Avatar, compositor: Compositor) -> None:
    neutral = _dark_width(compositor.render(pose(0.7)), avatar, compositor)
    wide = _dark_width(compositor.render(pose(0.7, stretch=1.0)), avatar, compositor)
    narrow = _dark_width(compositor.render(pose(0.7, rounding=1.0)), avatar, compositor)
    assert narrow < neutral < wide


def test_deterministic(avatar: Avatar) -> None:
    params = pose(0.45, rounding=0.2, stretch=0.1)
    np.testing.assert_array_equal(Compositor(avatar).render(params), Compositor(avatar).render(params))


def test_out_of_range_params_are_clamped(avatar: Avatar, compositor: Compositor) -> None:
    np.testing.assert_array_equal(
        compositor.render(np.array([5.0, -3.0, 2.0, 0.0], dtype=np.float32)),
        compositor.render(np.array([1.0, 0.0, 1.0, 0.0], dtype=np.float32)),
    )


def test_wrong_param_shape_is_an_error(compositor: Compositor) -> None:
    with pytest.raises(ValueError, match="shape"):
        compositor.render(np.zeros(3, dtype=np.float32))


def closed_mouth_avatar(scale: int = 1) -> Avatar:
    """A flat skin-coloured face with a closed red mouth (no teeth showing) on a 128x128 image (``scale`` times
    larger in each direction)."""
    size = 128 * scale
    base = np.full((size, size, 3), (200, 160, 130), dtype=np.uint8)
    base[58 * scale : 66 * scale, 44 * scale : 84 * scale] = (170, 80, 80)  # lips, closed along y = 62

    def at(x: float, y: float) -> tuple[float, float]:
        return (x * scale, y * scale)

    rig = MouthRig(
        mouth_center=at(64.0, 62.0),
        mouth_left=at(44.0, 62.0),
        mouth_right=at(84.0, 62.0),
        upper_lip_top=at(64.0, 58.0),
        upper_lip_inner=at(64.0, 62.0),
        lower_lip_inner=at(64.0, 62.0),
        lower_lip_bottom=at(64.0, 66.0),
        chin=at(64.0, 90.0),
        jaw=(at(36.0, 70.0), at(64.0, 90.0), at(92.0, 70.0)),
    )
    return Avatar(
        id="closed",
        name="closed",
        kind="photo",
        width=size,
        height=size,
        fps=25,
        format_version=1,
        license="CC0",
        base=base,
        rig=rig,
    )


def test_closed_mouth_photo_gets_synthesised_teeth_cavity_tongue_and_lower_teeth() -> None:
    avatar = closed_mouth_avatar()
    frame = Compositor(avatar).render(pose(1.0)).astype(int)
    column = frame[58:84, 66]  # down the opened mouth, through the middle of a front tooth
    brightness = column.mean(axis=1)
    lips = brightness[0]
    upper = brightness[4:9].max()
    # Upper teeth just under the upper lip: brighter than the lips and near-neutral (inside the mouth a little darker
    # than the skin, as in real talking heads).
    teeth = column[4:9][brightness[4:9].argmax()]
    assert upper > lips + 20 and upper > 120 and (teeth.max() - teeth.min()) / teeth.max() < 0.25
    assert brightness[9:16].min() < 40  # then the dark cavity
    cavity = brightness[9:16].min()
    red = column[13:19]
    assert (red[:, 0] - red[:, 1]).max() > 40 and brightness[13:19].max() > cavity + 20  # a red, lit tongue
    assert brightness[17:21].max() > cavity + 70  # lower teeth above the (moved) lower lip
    np.testing.assert_array_equal(Compositor(avatar).render(REST_POSE), avatar.base)


def test_a_barely_open_mouth_is_a_dark_slit() -> None:
    """In real talking clips an opening of a few hundredths of the mouth width shows a dark slit (little light gets
    in), not a grey line of teeth edges."""
    avatar = closed_mouth_avatar(scale=4)
    frame = luma(Compositor(avatar).render(pose(0.15)))
    column = frame[236:268, 240:272].mean(axis=1)  # down the middle of the mouth, across the lip line (y = 248)
    lips = column[0]
    gap = column[column < 0.9 * lips]
    assert len(gap) >= 2 and np.median(gap) < 0.35 * lips, column  # it was grey (0.53 of the lips)


def test_a_turned_heads_teeth_sit_on_its_midline() -> None:
    """On a turned head the lips' centre points (the face's midline) lie nearer one corner: the teeth, the opening and
    the lips' motion are laid out about the midline, not about the corners' midpoint (24 px away here)."""
    avatar = closed_mouth_avatar(scale=4)  # corners at x = 176 and 336
    rig = dataclasses.replace(avatar.rig, upper_lip_inner=(232.0, 248.0), lower_lip_inner=(232.0, 248.0))
    frame = Compositor(dataclasses.replace(avatar, rig=rig)).render(pose(1.0)).astype(int)
    teeth = grey_above(frame[262:330, 176:336], 110, 40)  # in the lower half of the opening
    columns = np.nonzero(teeth)[1] + 176
    assert len(columns) > 50 and abs(columns.mean() - 232) < 8, columns.mean()  # it was 256


def teeth_showing_avatar() -> Avatar:
    """A flat face whose lips rest apart over a band of teeth (the builder closes such photos at rest, but files
    from older builders, and hand-made rigs, still have them)."""
    base = np.full((128, 128, 3), (200, 160, 130), dtype=np.uint8)
    base[56:61, 44:84] = (170, 80, 80)  # upper lip
    base[61:65, 46:82] = (225, 222, 212)  # teeth between the lips
    base[65:70, 44:84] = (170, 80, 80)  # lower lip
    rig = MouthRig(
        mouth_center=(64.0, 63.0),
        mouth_left=(44.0, 63.0),
        mouth_right=(84.0, 63.0),
        upper_lip_top=(64.0, 56.0),
        upper_lip_inner=(64.0, 61.0),
        lower_lip_inner=(64.0, 65.0),
        lower_lip_bottom=(64.0, 70.0),
        chin=(64.0, 92.0),
        jaw=((36.0, 72.0), (64.0, 92.0), (92.0, 72.0)),
    )
    return Avatar(id="teeth", name="teeth", kind="photo", width=128, height=128, fps=25, format_version=1,
                  license="CC0", base=base, rig=rig)  # fmt: skip


def test_lips_meet_when_lips_closed_is_1_while_speaking() -> None:
    """A photo whose lips rest apart over its teeth: a closure during speech shuts the lips over them."""
    avatar = teeth_showing_avatar()
    compositor = Compositor(avatar)

    def teeth_pixels(frame: np.ndarray) -> int:
        box = frame[58:68, 56:72].astype(int)
        return int(grey_above(box, 190, 25).sum())  # bright and grey

    pressed = compositor.render(np.array([0.0, 1.0, 0.0, 0.0], dtype=np.float32), press=1.0)
    assert teeth_pixels(avatar.base) > 40 and teeth_pixels(pressed) < 0.2 * teeth_pixels(avatar.base)
    # In silence (no press) the photo's own mouth is the rest pose.
    np.testing.assert_array_equal(compositor.render(REST_POSE, press=0.0), avatar.base)


def test_blink_closes_the_eyes_and_only_the_eyes(avatar: Avatar, compositor: Compositor) -> None:
    from avaluma.renderer.idle import IdlePose

    shut = compositor.render(REST_POSE, pose=IdlePose(blink=1.0)).astype(int)
    changed = np.abs(shut - avatar.base.astype(int)).max(axis=2) > 0
    ys, _xs = np.nonzero(changed)
    eye_ys = [p[1] for e in avatar.eyes for p in (*e.upper, *e.lower)]
    assert ys.min() >= min(eye_ys) - 0.5 * avatar.eyes[0].width and ys.max() <= max(eye_ys) + 0.3 * avatar.eyes[0].width
    for eye in avatar.eyes:
        # The white of the eye disappears under the lid's skin.
        x0, x1 = int(eye.upper[0][0]), int(eye.upper[-1][0])
        y0, y1 = int(min(p[1] for p in eye.upper)), int(max(p[1] for p in eye.lower)) + 1

        def white(img: np.ndarray, y0: int = y0, y1: int = y1, x0: int = x0, x1: int = x1) -> int:
            box = img[y0:y1, x0:x1].astype(int)
            return int(grey_above(box, 150, 40).sum())

        assert white(avatar.base) > 5 and white(shut) < 0.3 * white(avatar.base)


def test_head_motion_never_touches_pixels_outside_the_head_region(avatar: Avatar, compositor: Compositor) -> None:
    from avaluma.renderer.idle import IdlePose

    moved = compositor.render(REST_POSE, pose=IdlePose(head_dx=0.03, head_dy=-0.02))
    assert not np.array_equal(moved, avatar.base)
    np.testing.assert_array_equal(
        outside_roi(moved, compositor.head_roi), outside_roi(avatar.base, compositor.head_roi)
    )


def test_portrait_avatar_renders_at_512x640() -> None:
    avatar = load_hvia(ROOT / "assets" / "avatars" / "grace-hopper.hvia")
    comp = Compositor(avatar)
    frame = comp.render(pose(0.8))
    assert frame.shape == (640, 512, 3)
    np.testing.assert_array_equal(outside_roi(frame, comp.roi), outside_roi(avatar.base, comp.roi))


@pytest.mark.parametrize(("fmt", "shape"), [("rgb", (512, 512, 3)), ("rgba", (512, 512, 4)), ("i420", (393216,))])
def test_output_pixel_formats(avatar: Avatar, compositor: Compositor, fmt: str, shape: tuple[int, ...]) -> None:
    from avaluma.renderer.frame_formats import i420_to_rgb
    from avaluma.renderer.pixels import convert

    rgb = compositor.render(pose(0.5))
    out = convert(rgb, fmt)
    assert out.shape == shape and out.dtype == np.uint8
    if fmt == "rgba":
        np.testing.assert_array_equal(out[..., :3], rgb)
        assert (out[..., 3] == 255).all()
    if fmt == "i420":
        assert np.abs(i420_to_rgb(out.tobytes(), 512, 512).astype(int) - rgb.astype(int)).mean() < 4


def test_head_motion_shifts_the_face_by_the_requested_offset(avatar: Avatar, compositor: Compositor) -> None:
    """Where the head mask is fully on, a whole-pixel head offset shows the face exactly that many pixels over."""
    from avaluma.renderer.compositor import prepared
    from avaluma.renderer.idle import IdlePose

    head = prepared(avatar).head
    shift = 3
    moved = compositor.render(REST_POSE, pose=IdlePose(head_dx=shift / head.face_width)).astype(int)
    y0, y1, x0, x1 = head.roi
    core = np.zeros(avatar.base.shape[:2], dtype=bool)
    core[y0:y1, x0:x1] = head.mask[..., 0] >= 1.0
    ys, xs = np.nonzero(core)
    assert len(ys) > 1000
    np.testing.assert_allclose(moved[ys, xs], avatar.base[ys, xs - shift].astype(int), atol=1)


@pytest.mark.parametrize("name", ["astronaut", "grace-hopper"])
def test_head_motion_over_an_open_mouth_keeps_the_jaw_where_the_head_mask_is_off(name: str) -> None:
    """Outside the head mask a moving head changes nothing, not even the mouth's dropped chin below the face (it
    used to blend back towards the photo there, leaving a ghost of the collar under the chin)."""
    from avaluma.renderer.compositor import prepared
    from avaluma.renderer.idle import IdlePose

    avatar = load_hvia(ROOT / "assets" / "avatars" / f"{name}.hvia")
    comp = Compositor(avatar)
    open_mouth = pose(1.0, stretch=0.5)
    still = comp.render(open_mouth, press=1.0)
    moved = comp.render(open_mouth, pose=IdlePose(head_dx=0.02, head_dy=-0.015), press=1.0)
    head = prepared(avatar).head
    y0, y1, x0, x1 = head.roi
    off = np.ones(avatar.base.shape[:2], dtype=bool)
    off[y0:y1, x0:x1] = head.mask[..., 0] == 0
    changed_by_mouth = np.abs(still.astype(int) - avatar.base.astype(int)).max(axis=2) > 8
    assert (off & changed_by_mouth).sum() > 20  # the jaw drop does reach beyond the head mask
    np.testing.assert_array_equal(moved[off], still[off])
    assert not np.array_equal(moved[~off], still[~off])


def test_mouth_tiles_do_not_change_the_result(avatar: Avatar, monkeypatch: pytest.MonkeyPatch) -> None:
    """The mouth is rendered in row tiles with the interior only where the gap shows: one row per tile and the
    whole ROI in one tile give the same pixels."""
    from avaluma.renderer import mouth

    photo = Compositor(avatar)._prep.mouth
    assert isinstance(photo, PhotoMouth)
    warp = photo.warp
    shapes = [mouth.mouth_shape(p, press=1.0) for p in (pose(1.0), pose(0.4, 0.3, 0.6), np.array([0.3, 0.7, 0, 0.2]))]
    monkeypatch.setattr(mouth, "TILE_PIXELS", 1)
    per_row = [warp.render_roi(s) for s in shapes]
    monkeypatch.setattr(mouth, "TILE_PIXELS", 10**9)
    whole = [warp.render_roi(s) for s in shapes]
    for a, b in zip(per_row, whole, strict=True):
        np.testing.assert_array_equal(a, b)


def test_a_mouth_at_the_picture_edge_measures_and_renders(recwarn: pytest.WarningsRecorder) -> None:
    """The photo measurements (lip colour, cheeks for light and grain) reach beyond a mouth at the picture's edge:
    they are taken inside the picture instead, never from an empty patch (NaN colours)."""
    base = np.full((64, 64, 3), (200, 160, 130), dtype=np.uint8)
    rig = MouthRig(
        mouth_center=(58.0, 40.0), mouth_left=(52.0, 40.0), mouth_right=(63.0, 40.0), upper_lip_top=(58.0, 37.0),
        upper_lip_inner=(58.0, 40.0), lower_lip_inner=(58.0, 40.0), lower_lip_bottom=(58.0, 43.0),
        chin=(58.0, 60.0), jaw=((50.0, 45.0), (58.0, 60.0), (63.0, 45.0)),
    )  # fmt: skip
    avatar = Avatar(id="edge", name="edge", kind="photo", width=64, height=64, fps=25, format_version=1,
                    license="CC0", base=base, rig=rig)  # fmt: skip
    frame = Compositor(avatar).render(pose(1.0))
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]
    assert frame[40:50, 52:64].mean() < base[40:50, 52:64].mean() - 20  # it opened


def test_an_opening_photo_mouth_leaves_no_sliver_of_lower_lip_under_its_teeth() -> None:
    """Landmarks put the lower lip's inner line a little into the lip; as the jaw drops, the rows between the photo's
    teeth and that line must not hang under the teeth as a red band: below the teeth comes the dark cavity."""
    avatar = teeth_showing_avatar()
    # The lip's first two rows (65, 66) lie above the landmarked line.
    avatar = dataclasses.replace(avatar, rig=dataclasses.replace(avatar.rig, lower_lip_inner=(64.0, 67.0)))
    frame = Compositor(avatar).render(np.array([1.0, 0.0, 0.0, 0.0], np.float32), press=1.0).astype(int)
    column = frame[56:80, 62:67].mean(axis=1)  # down the middle of the mouth
    teeth = np.flatnonzero(grey_above(column, 190, 25))
    assert len(teeth) >= 3
    below = column[teeth[-1] + 1 : teeth[-1] + 4]
    assert below.mean(axis=1).max() < 110, below  # dark cavity, not the lip's red (170, 80, 80)


def test_lower_teeth_under_a_photos_own_teeth_are_lit_like_them() -> None:
    """The builder measured this photo's own teeth inside its mouth (already in the lips' shade): the lower teeth that
    rise as the jaw drops take that colour as it is, not dimmed a second time (they were half as bright)."""
    teeth = (225.0, 222.0, 212.0)
    avatar = dataclasses.replace(teeth_showing_avatar(), metadata={"mouth": {"teeth_rgb": list(teeth)}})
    frame = Compositor(avatar).render(np.array([1.0, 0.0, 0.0, 0.0], np.float32), press=1.0).astype(int)
    column = frame[56:90, 62:67].mean(axis=1).mean(axis=1)  # down the middle of the mouth
    cavity = int(np.argmin(column))
    lower_teeth = column[cavity : cavity + 12].max()  # between the cavity and the lower lip (110)
    assert lower_teeth > 0.7 * luma(teeth), column


def test_the_upper_lip_lifts_at_its_centre_as_the_jaw_drops() -> None:
    avatar = closed_mouth_avatar()
    compositor = Compositor(avatar)

    def lip_top(frame: np.ndarray, x: int) -> int:
        """First row from the top in column x that is lip red."""
        col = frame[40:70, x].astype(int)
        return 40 + int(np.flatnonzero(col[:, 0] - col[:, 1] > 60)[0])

    opened = compositor.render(pose(1.0))
    assert lip_top(opened, 64) < lip_top(avatar.base, 64)  # the centre of the upper lip rises
    assert lip_top(opened, 45) == lip_top(avatar.base, 45)  # its corners stay


def test_relaxed_lips_show_the_teeth_edges_and_a_smile_the_crowns() -> None:
    avatar = closed_mouth_avatar()
    compositor = Compositor(avatar)

    def teeth_pixels(frame: np.ndarray) -> int:
        box = frame[56:80, 44:84].astype(int)
        return int(grey_above(box, 70, 40).sum())  # lit and grey

    relaxed = compositor.render(np.array([0.3, 0.0, 0.0, 0.0], np.float32))
    stretched = compositor.render(np.array([0.3, 0.0, 0.0, 1.0], np.float32))
    assert 0 < teeth_pixels(relaxed) < 0.7 * teeth_pixels(stretched)


def test_the_lips_part_in_the_middle_first() -> None:
    avatar = closed_mouth_avatar()
    compositor = Compositor(avatar)

    def dark_rows(frame: np.ndarray, x: int) -> int:
        return int((frame[56:80, x].astype(int).mean(axis=1) < 90).sum())

    small, wide = compositor.render(pose(0.3)), compositor.render(pose(1.0))
    assert dark_rows(small, 64) > 0 and dark_rows(small, 48) == 0  # near a corner the lips still touch
    assert dark_rows(wide, 48) > 0  # wide open, they part there too


def test_a_black_and_white_photo_opens_a_grey_mouth() -> None:
    avatar = closed_mouth_avatar()
    grey = luma(avatar.base)
    bw = dataclasses.replace(avatar, base=np.repeat(np.rint(grey)[..., None], 3, axis=2).astype(np.uint8))
    frame = Compositor(bw).render(pose(1.0)).astype(int)
    assert np.abs(frame - bw.base.astype(int)).max() > 50  # the mouth opened
    spread = frame.max(axis=2) - frame.min(axis=2)
    assert spread.max() <= 3, spread.max()  # no red cavity, tongue or gums in a grey picture


def test_gums_show_in_a_smile_not_in_a_wide_relaxed_opening() -> None:
    compositor = Compositor(closed_mouth_avatar(scale=4))

    def red_rows_above_the_teeth(frame: np.ndarray) -> int:
        """At the mouth's centre column: lip- or gum-red rows from the upper lip down to the first tooth row."""
        col = frame[200:320, 256].astype(int)
        teeth = np.nonzero(grey_above(col, 70, 40))[0]
        red = (col[:, 0] > 120) & (col[:, 0] - col[:, 1] > 50)
        return int(red[: teeth[0]].sum())

    relaxed = red_rows_above_the_teeth(compositor.render(np.array([1.0, 0.0, 0.0, 0.0], np.float32)))
    smiling = red_rows_above_the_teeth(compositor.render(np.array([1.0, 0.0, 0.0, 1.0], np.float32)))
    assert smiling >= relaxed + 2, (relaxed, smiling)
