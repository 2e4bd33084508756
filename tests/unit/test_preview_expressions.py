"""``avaluma avatar preview``'s expression rows: each emotion at rest and mid-speech, real frames of a session's
animator placed on the sheet as they were rendered; an avatar without brow/cheek regions shows every emotion alike."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from avaluma.core.media import EMOTIONS
from avaluma.renderer import preview
from avaluma.renderer.avatar import Avatar
from avaluma.renderer.hvia import load_hvia

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def avatar() -> Avatar:
    return load_hvia(ROOT / "assets" / "avatars" / "astronaut.hvia")


def cell_at(sheet: Image.Image, column: int, row: int) -> np.ndarray:
    """The pixels of expression cell (``column``: emotion, ``row``: 0 at rest, 1 speaking) on the sheet."""
    shape_rows = -(-len(preview.SHAPES) // preview.COLUMNS)
    face_h = preview.CELL[1] + preview.LABEL_H + preview.GAP
    top = preview.TITLE_H + shape_rows * face_h + preview.TITLE_H + row * face_h
    left = preview.GAP + column * (preview.CELL[0] + preview.GAP)
    return np.asarray(sheet)[top : top + preview.CELL[1], left : left + preview.CELL[0]]


def as_cell(avatar: Avatar, frame: np.ndarray) -> np.ndarray:
    box = preview._crop_box(avatar)
    return np.asarray(Image.fromarray(frame).resize(preview.CELL, Image.Resampling.LANCZOS, box=box))


def test_the_sheet_has_a_rest_and_a_speaking_cell_per_emotion(avatar: Avatar) -> None:
    sheet = preview.contact_sheet(avatar)
    for column, emotion in enumerate(EMOTIONS):
        rest, speaking = preview.expression_frames(avatar, emotion)
        assert rest.shape == speaking.shape == (avatar.height, avatar.width, 3)
        assert np.array_equal(cell_at(sheet, column, 0), as_cell(avatar, rest)), emotion
        assert np.array_equal(cell_at(sheet, column, 1), as_cell(avatar, speaking)), emotion
        # Mid-speech the jaw is open: the mouth region differs from the face at rest.
        cx, cy = (int(v) for v in avatar.rig.mouth_center)
        w = int(avatar.rig.mouth_width)
        mouth = (slice(cy - w // 2, cy + w), slice(cx - w, cx + w))
        assert np.abs(rest[mouth].astype(int) - speaking[mouth].astype(int)).mean() > 2.0, emotion


def test_without_brow_and_cheek_regions_every_emotion_renders_alike(avatar: Avatar) -> None:
    bare = dataclasses.replace(avatar, face=None)
    neutral = preview.expression_frames(bare, "neutral")
    for emotion in EMOTIONS[1:]:
        frames = preview.expression_frames(bare, emotion)
        assert all(np.array_equal(a, b) for a, b in zip(frames, neutral, strict=True)), emotion
