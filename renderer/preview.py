"""Contact sheets: an avatar at key mouth shapes and idle states, in one PNG for people to look at.

Each cell is the face region of a real compositor frame (no retouching), labelled with what it shows.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageDraw, ImageFont

from avaluma.renderer.avatar import Avatar
from avaluma.renderer.compositor import Compositor, face_box
from avaluma.renderer.idle import IdlePose

U8 = npt.NDArray[np.uint8]

_REST = (0.0, 1.0, 0.0, 0.0)

#: (label, mouth params [jaw_open, lips_closed, rounding, stretch], press, idle pose)
SHAPES: tuple[tuple[str, tuple[float, float, float, float], float, IdlePose | None], ...] = (
    ("rest", (0.0, 1.0, 0.0, 0.0), 0.0, None),
    ("jaw 0.3", (0.3, 0.0, 0.0, 0.0), 1.0, None),
    ("jaw 0.6 (ah)", (0.6, 0.0, 0.0, 0.0), 1.0, None),
    ("jaw 1.0", (1.0, 0.0, 0.0, 0.0), 1.0, None),
    ("rounded (oo)", (0.4, 0.0, 1.0, 0.0), 1.0, None),
    ("stretched (ee)", (0.3, 0.0, 0.0, 1.0), 1.0, None),
    ("lips pressed (m)", (0.0, 1.0, 0.0, 0.0), 1.0, None),
    ("blink 50%", _REST, 0.0, IdlePose(blink=0.5)),
    ("blink", _REST, 0.0, IdlePose(blink=1.0)),
    ("listening", _REST, 0.0, IdlePose(head_dy=0.012)),
    ("thinking", _REST, 0.0, IdlePose(blink=0.22, head_dx=-0.014, head_dy=-0.012)),
)

CELL = (200, 250)
COLUMNS = 6


def _crop_box(avatar: Avatar) -> tuple[int, int, int, int]:
    x0, y0, x1, y1 = face_box(avatar)
    fw = x1 - x0
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2 + 0.05 * fw
    w = 1.35 * fw
    h = w * CELL[1] / CELL[0]
    left = int(max(0, min(avatar.width - w, cx - w / 2)))
    top = int(max(0, min(avatar.height - h, cy - h / 2)))
    return left, top, int(min(avatar.width, left + w)), int(min(avatar.height, top + h))


def contact_sheet(avatar: Avatar) -> Image.Image:
    """The contact sheet of ``avatar`` as an RGB image."""
    comp = Compositor(avatar)
    box = _crop_box(avatar)
    try:
        font = ImageFont.load_default(size=15)
        title_font = ImageFont.load_default(size=19)
    except (TypeError, OSError):  # Pillow without FreeType: the bitmap font
        font = title_font = ImageFont.load_default()
    rows = -(-len(SHAPES) // COLUMNS)
    label_h, title_h, gap = 24, 40, 6
    sheet_w = COLUMNS * (CELL[0] + gap) + gap
    sheet_h = title_h + rows * (CELL[1] + label_h + gap) + gap
    sheet = Image.new("RGB", (sheet_w, sheet_h), (24, 26, 30))
    draw = ImageDraw.Draw(sheet)
    title = f"{avatar.name} - {avatar.kind} avatar {avatar.width}x{avatar.height}, .hvia v{avatar.format_version}"
    draw.text((gap + 4, 10), title, fill=(235, 235, 235), font=title_font)
    for i, (label, params, press, pose) in enumerate(SHAPES):
        frame = comp.render(np.array(params, dtype=np.float32), pose=pose, press=press)
        cell = Image.fromarray(frame).resize(CELL, Image.Resampling.LANCZOS, box=box)
        r, c = divmod(i, COLUMNS)
        x = gap + c * (CELL[0] + gap)
        y = title_h + r * (CELL[1] + label_h + gap)
        sheet.paste(cell, (x, y))
        draw.text((x + 4, y + CELL[1] + 4), label, fill=(210, 210, 210), font=font)
    return sheet
