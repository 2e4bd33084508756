"""Contact sheets: an avatar at key mouth shapes and idle states, its mouth across the visemes, and a strip of speech,
in one PNG for people to look at.

Four sections, every cell a real frame (no retouching), labelled with what it shows:

1. the face at key shapes (rest, jaw 0.3 / 0.6 / 1.0, rounded, stretched, pressed) and idle states (blinks,
   listening, thinking);
2. expressions: each emotion at rest and mid-speech, rendered by a session's animator (the same emotion easing,
   expression motion and compositor a live session uses) once the emotion has settled; an avatar whose rig has no
   brow/cheek regions shows them all alike;
3. mouth close-ups at each viseme's canonical shape (the shapes the lip-sync model is trained towards), enlarged,
   so teeth, cavity, lip texture and edges can be judged;
4. a strip of speech: consecutive frames (every other frame at 25 fps) of a short phrase through the same smoother,
   idle life and compositor a live session uses, close on the lower face.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageDraw, ImageFont

from avaluma.core.media import EMOTIONS
from avaluma.renderer.animator import Animator
from avaluma.renderer.avatar import Avatar
from avaluma.renderer.compositor import Compositor, face_box
from avaluma.renderer.idle import IdleConfig, IdlePose
from avaluma.renderer.lipsync.visemes import (
    VISEME_SHAPES,
    VISEMES,
    coarticulated_params,
    frame_labels,
    spans_from_events,
)

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

#: "Hello, my piece of news", as IPA onsets (seconds): every mouth class, two lip closures, pauses at both ends.
PHRASE: tuple[tuple[float, str], ...] = (
    (0.20, "h"), (0.26, "ə"), (0.33, "l"), (0.40, "o"), (0.58, "m"), (0.66, "a"), (0.84, "p"), (0.92, "i"),
    (1.06, "s"), (1.16, "ə"), (1.22, "v"), (1.30, "n"), (1.37, "u"), (1.55, "z"), (1.66, "ʃ"), (1.76, "ɔ"),
    (1.92, "t"), (1.98, " "),
)  # fmt: skip
PHRASE_S = 2.2

#: Label line under a cell, section title line, gap between cells (pixels).
LABEL_H, TITLE_H, GAP = 24, 40, 6
CELL = (200, 250)
COLUMNS = 6
#: Frames an emotion is given to settle before its cells are taken (the easing takes ~0.4 s).
SETTLE_FRAMES = 20
#: The speech frame shown "mid-speech": the open "a" of "my" (0.66 s), where a smile has to hold through the jaw.
SPEAKING_FRAME = 17
MOUTH_CELL = (150, 112)
MOUTH_COLUMNS = 8
STRIP_CELL = (150, 150)
STRIP_FRAMES = 16
FPS = 25


def _crop_box(avatar: Avatar) -> tuple[int, int, int, int]:
    x0, y0, x1, y1 = face_box(avatar)
    fw = x1 - x0
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2 + 0.05 * fw
    w = 1.35 * fw
    h = w * CELL[1] / CELL[0]
    left = int(max(0, min(avatar.width - w, cx - w / 2)))
    top = int(max(0, min(avatar.height - h, cy - h / 2)))
    return left, top, int(min(avatar.width, left + w)), int(min(avatar.height, top + h))


def _box(avatar: Avatar, width: float, up: float, down: float, aspect: float) -> tuple[int, int, int, int]:
    """A box ``width`` mouth widths wide around the mouth, from ``up`` above to ``down`` below its centre."""
    rig = avatar.rig
    mw = rig.mouth_width
    cx, cy = rig.mouth_center
    w = width * mw
    h = max((up + down) * mw, w / aspect)
    top = cy - up * mw
    left = int(max(0, min(avatar.width - w, cx - w / 2)))
    top_i = int(max(0, min(avatar.height - h, top)))
    return left, top_i, int(min(avatar.width, left + w)), int(min(avatar.height, top_i + h))


def speech_params(fps: int = FPS) -> npt.NDArray[np.float32]:
    """Mouth parameters of :data:`PHRASE` at ``fps`` (the lip-sync model's own training targets, coarticulated)."""
    spans = spans_from_events(list(PHRASE), PHRASE_S)
    labels = frame_labels(spans, int(PHRASE_S * 100))
    params = coarticulated_params(labels)
    out: npt.NDArray[np.float32] = params[:: 100 // fps].astype(np.float32)
    return out


def expression_frames(avatar: Avatar, emotion: str) -> tuple[U8, U8]:
    """``emotion`` at rest and mid-speech (:data:`SPEAKING_FRAME` of :data:`PHRASE`), rendered by a fresh animator
    with idle life off (no blink or sway in the way), after :data:`SETTLE_FRAMES` of easing into the emotion."""
    animator = Animator(avatar, fps=FPS, idle=IdleConfig(enabled=False))
    animator.set_emotion(emotion)
    rest = animator.next_frame(None, speaking=False)
    for _ in range(SETTLE_FRAMES):
        rest = animator.next_frame(None, speaking=False)
    speaking = rest
    for row in speech_params()[: SPEAKING_FRAME + 1]:
        speaking = animator.next_frame(row, speaking=True)
    return rest, speaking


def _fonts() -> tuple[ImageFont.ImageFont | ImageFont.FreeTypeFont, ImageFont.ImageFont | ImageFont.FreeTypeFont]:
    try:
        return ImageFont.load_default(size=15), ImageFont.load_default(size=19)
    except (TypeError, OSError):  # Pillow without FreeType: the bitmap font
        return ImageFont.load_default(), ImageFont.load_default()


def contact_sheet(avatar: Avatar) -> Image.Image:
    """The contact sheet of ``avatar`` as an RGB image."""
    font, title_font = _fonts()
    label_h, title_h, gap = LABEL_H, TITLE_H, GAP
    rows = -(-len(SHAPES) // COLUMNS)
    mouth_rows = -(-len(VISEMES) // MOUTH_COLUMNS)
    strip_rows = -(-STRIP_FRAMES // MOUTH_COLUMNS)
    sheet_w = max(COLUMNS * (CELL[0] + gap), MOUTH_COLUMNS * (MOUTH_CELL[0] + gap)) + gap
    face_h = CELL[1] + label_h + gap
    expressions_y = title_h + rows * face_h + title_h
    mouths_y = expressions_y + 2 * face_h + title_h
    sections_y = (title_h, mouths_y, mouths_y + mouth_rows * (MOUTH_CELL[1] + label_h + gap) + title_h)
    sheet_h = sections_y[2] + strip_rows * (STRIP_CELL[1] + label_h + gap) + gap
    sheet = Image.new("RGB", (sheet_w, sheet_h), (24, 26, 30))
    draw = ImageDraw.Draw(sheet)
    title = f"{avatar.name} - {avatar.kind} avatar {avatar.width}x{avatar.height}, .hvia v{avatar.format_version}"
    draw.text((gap + 4, 10), title, fill=(235, 235, 235), font=title_font)

    def cell(img: Image.Image, label: str, x: int, y: int, size: tuple[int, int]) -> None:
        sheet.paste(img, (x, y))
        draw.text((x + 4, y + size[1] + 4), label, fill=(210, 210, 210), font=font)

    # 1. key shapes and idle states, one fresh compositor per cell (no tile memory between unrelated shapes).
    box = _crop_box(avatar)
    for i, (label, params, press, pose) in enumerate(SHAPES):
        frame = Compositor(avatar).render(np.array(params, dtype=np.float32), pose=pose, press=press)
        r, c = divmod(i, COLUMNS)
        img = Image.fromarray(frame).resize(CELL, Image.Resampling.LANCZOS, box=box)
        cell(img, label, gap + c * (CELL[0] + gap), sections_y[0] + r * (CELL[1] + label_h + gap), CELL)

    # 2. expressions: one column per emotion, at rest above, mid-speech below.
    draw.text(
        (gap + 4, expressions_y - title_h + 10),
        "expressions: each emotion at rest and mid-speech"
        + ("" if avatar.face is not None else " (no brow/cheek regions in this rig: expressions off)"),
        fill=(235, 235, 235),
        font=title_font,
    )
    for c, emotion in enumerate(EMOTIONS):
        for r, (frame, label) in enumerate(
            zip(expression_frames(avatar, emotion), (emotion, f"{emotion}, speaking"), strict=True)
        ):
            img = Image.fromarray(frame).resize(CELL, Image.Resampling.LANCZOS, box=box)
            cell(img, label, gap + c * (CELL[0] + gap), expressions_y + r * face_h, CELL)

    # 3. mouth close-ups across the visemes.
    y = sections_y[1] - title_h + 10
    draw.text((gap + 4, y), "mouth at each viseme (close-up)", fill=(235, 235, 235), font=title_font)
    mouth_box = _box(avatar, 1.5, 0.5, 0.62, MOUTH_CELL[0] / MOUTH_CELL[1])
    for i, (name, shape) in enumerate(zip(VISEMES, VISEME_SHAPES, strict=True)):
        frame = Compositor(avatar).render(shape.astype(np.float32), press=1.0)
        r, c = divmod(i, MOUTH_COLUMNS)
        img = Image.fromarray(frame).resize(MOUTH_CELL, Image.Resampling.LANCZOS, box=mouth_box)
        label = f"{name} jaw {shape[0]:.2f}"
        cell(
            img, label, gap + c * (MOUTH_CELL[0] + gap), sections_y[1] + r * (MOUTH_CELL[1] + label_h + gap), MOUTH_CELL
        )

    # 4. a strip of speech through a live session's animator.
    y = sections_y[2] - title_h + 10
    draw.text(
        (gap + 4, y), '"hello, my piece of news" (every 2nd frame, 25 fps)', fill=(235, 235, 235), font=title_font
    )
    animator = Animator(avatar, fps=FPS, idle=IdleConfig())
    strip_box = _box(avatar, 2.4, 1.0, 1.4, STRIP_CELL[0] / STRIP_CELL[1])
    start = 4  # the phrase starts after a short pause
    for i, row in enumerate(speech_params()):
        frame = animator.next_frame(row, speaking=True)
        k = (i - start) // 2
        if i < start or (i - start) % 2 or k >= STRIP_FRAMES:
            continue
        r, c = divmod(k, MOUTH_COLUMNS)
        img = Image.fromarray(frame).resize(STRIP_CELL, Image.Resampling.LANCZOS, box=strip_box)
        label = f"{i / FPS:.2f} s"
        cell(
            img, label, gap + c * (STRIP_CELL[0] + gap), sections_y[2] + r * (STRIP_CELL[1] + label_h + gap), STRIP_CELL
        )
    return sheet
