"""A photo whose lips rest apart over its teeth (the astronaut demo avatar smiles with them) opens with the jaw while
the person speaks: the lips come together over the teeth as the jaw shuts, part to the photo's own gap and then drop
further, so the visible gap follows ``jaw_open`` instead of staying at the photo's. At rest the photo is untouched.
Real demo avatar, real renderer; the gap is read from the pixels down the mouth's centre column."""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest

from avaluma.renderer.avatar import Avatar
from avaluma.renderer.compositor import Compositor
from avaluma.renderer.hvia import load_hvia

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def smiling() -> Avatar:
    avatar = load_hvia(ROOT / "assets" / "avatars" / "astronaut.hvia")
    rig = avatar.rig
    assert rig.lower_lip_inner[1] - rig.upper_lip_inner[1] > 4  # its teeth show between the lips
    return avatar


def gap_px(avatar: Avatar, frame: np.ndarray) -> int:
    """Rows down the mouth's centre (+-2 columns) that are teeth or mouth interior, not lip: bright and nearly grey,
    or dark."""
    rig = avatar.rig
    x = round((rig.mouth_left[0] + rig.mouth_right[0]) / 2)
    y0, y1 = round(rig.upper_lip_top[1]), round(rig.chin[1])
    column = frame[y0:y1, x - 2 : x + 3].astype(np.float32).mean(axis=1)
    luma = column @ np.array([0.299, 0.587, 0.114], np.float32)
    saturation = (column.max(axis=1) - column.min(axis=1)) / np.maximum(column.max(axis=1), 1.0)
    return int((((luma > 150) & (saturation < 0.2)) | (luma < 110)).sum())


def jaw(value: float) -> np.ndarray:
    return np.array([value, 0.0, 0.0, 0.0], dtype=np.float32)


def test_at_rest_the_smile_is_the_photo(smiling: Avatar) -> None:
    np.testing.assert_array_equal(Compositor(smiling).render(jaw(0.0), press=0.0), smiling.base)


def test_speaking_the_gap_follows_the_jaw_from_shut_to_wide(smiling: Avatar) -> None:
    comp = Compositor(smiling)
    photo = gap_px(smiling, np.asarray(smiling.base))
    gaps = [gap_px(smiling, comp.render(jaw(j), press=1.0)) for j in (0.0, 0.15, 0.3, 0.5, 0.75, 1.0)]
    assert photo >= 4
    assert gaps[0] <= 1  # the lips meet over the teeth
    assert all(b >= a for a, b in pairwise(gaps)), gaps
    assert gaps[-1] >= 3 * photo  # and the jaw drops well beyond the photo's own gap
    # Roughly in proportion: halfway open is about half the full gap.
    assert 0.3 * gaps[-1] <= gaps[3] <= 0.7 * gaps[-1], gaps
