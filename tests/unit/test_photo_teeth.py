"""The drawn teeth of a photo avatar take their white from the eye whites; where the eyes show little white (narrowed,
shadowed, small in the picture) the teeth are still at least about as bright as the skin beside the mouth, not the
grey of the iris and lashes. Real demo avatar, its eyes and lips darkened in the picture the way such a photo is."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from avaluma.renderer.hvia import load_hvia
from avaluma.renderer.mouth import TEETH_OVER_SKIN, analyse_photo

ROOT = Path(__file__).resolve().parents[2]


def luma(rgb: tuple[float, float, float]) -> float:
    return 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]


def test_teeth_are_as_bright_as_the_skin_when_the_eyes_show_no_white() -> None:
    avatar = load_hvia(ROOT / "assets" / "avatars" / "grace-hopper.hvia")
    rig = avatar.rig
    picture = Image.fromarray(np.asarray(avatar.base).copy())
    draw = ImageDraw.Draw(picture)
    for eye in avatar.eyes:  # narrowed eyes: iris and lashes between the lids, no white
        draw.polygon([tuple(p) for p in (*eye.upper, *reversed(eye.lower))], fill=(45, 35, 32))
    cx, cy, mw = rig.mouth_center[0], rig.mouth_center[1], rig.mouth_width
    draw.ellipse((cx - 0.45 * mw, cy - 0.2 * mw, cx + 0.45 * mw, cy + 0.2 * mw), fill=(95, 40, 50))  # dark lips
    base = np.asarray(picture)

    look = analyse_photo(base, rig, avatar.eyes)
    assert luma(look.teeth) >= 0.99 * TEETH_OVER_SKIN * luma(look.skin) > luma(look.lips) + 40

    # A photo with plenty of eye white keeps the white it measured.
    original = analyse_photo(np.asarray(avatar.base), rig, avatar.eyes)
    assert luma(original.teeth) > TEETH_OVER_SKIN * luma(original.skin)
