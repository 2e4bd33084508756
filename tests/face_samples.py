"""Generated hard inputs for the builder's "is this a real, uncovered human face?" checks (tests and
bench/face_check.py): drawn faces in several styles, a real face recoloured out of the human skin range, a
skin-coloured occluder (a hand) or a dark one (a microphone) held over a real face's mouth, and stand-ins for a
primate's face (eyes without whites, lips without a red border, fur). Everything is made here
from PIL shapes, noise and the picture it is given: no third-party images.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

SKIN_LIGHT = (255, 205, 160)
SKIN_DARK = (120, 80, 50)


def cartoon(*, skin: tuple[int, int, int] = SKIN_LIGHT, size: tuple[int, int] = (512, 640)) -> np.ndarray:
    """A drawn face in flat colours with dark outlines (clip-art style): oval face, hair, eyes with irises and
    brows, a nose line, red lips."""
    w, h = size
    im = Image.new("RGB", size, (120, 180, 230))
    d = ImageDraw.Draw(im)
    sx, sy = w / 512, h / 640
    d.ellipse((136 * sx, 150 * sy, 376 * sx, 470 * sy), fill=skin, outline=(60, 40, 30), width=4)
    d.pieslice((120 * sx, 110 * sy, 392 * sx, 330 * sy), 180, 360, fill=(90, 50, 20))
    for x in (200 * sx, 312 * sx):
        d.ellipse((x - 28 * sx, 270 * sy, x + 28 * sx, 306 * sy), fill="white", outline="black", width=3)
        d.ellipse((x - 12 * sx, 276 * sy, x + 12 * sx, 300 * sy), fill=(60, 100, 40))
        d.ellipse((x - 5 * sx, 283 * sy, x + 5 * sx, 293 * sy), fill="black")
        d.arc((x - 32 * sx, 245 * sy, x + 32 * sx, 270 * sy), 200, 340, fill=(70, 40, 20), width=5)
    d.line((256 * sx, 300 * sy, 246 * sx, 360 * sy, 262 * sx, 362 * sy), fill=(180, 120, 90), width=4)
    d.chord((206 * sx, 385 * sy, 306 * sx, 425 * sy), 0, 180, fill=(190, 60, 60), outline=(100, 20, 20), width=3)
    return np.asarray(im).copy()


def airbrushed(rgb: np.ndarray) -> np.ndarray:
    """The drawing with soft radial shading over it (a smooth-shaded illustration)."""
    h, w = rgb.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w]
    shade = 1.0 - 0.35 * np.clip(np.hypot((xx - 0.43 * w) / (0.4 * w), (yy - 0.44 * h) / (0.38 * h)), 0, 1.2)
    return np.clip(rgb * shade[..., None], 0, 255).astype(np.uint8)


def soften(rgb: np.ndarray, radius: float = 1.5) -> np.ndarray:
    return np.asarray(Image.fromarray(rgb).filter(ImageFilter.GaussianBlur(radius))).copy()


def jpeg(rgb: np.ndarray, quality: int = 60) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "JPEG", quality=quality)
    buf.seek(0)
    return np.asarray(Image.open(buf).convert("RGB")).copy()


def noisy(rgb: np.ndarray, sigma: float = 4.0, seed: int = 0) -> np.ndarray:
    noise = np.random.default_rng(seed).normal(0.0, sigma, rgb.shape)
    return np.clip(rgb + noise, 0, 255).astype(np.uint8)


def drawn_faces() -> dict[str, np.ndarray]:
    """The drawn faces the builder must refuse, by name."""
    flat = cartoon()
    return {
        "drawn, flat colour": flat,
        "drawn, dark skin": cartoon(skin=SKIN_DARK),
        "drawn, softened": soften(flat),
        "drawn, JPEG q50": jpeg(flat, 50),
        "drawn, airbrushed": airbrushed(flat),
        "drawn, airbrushed, JPEG q60": jpeg(airbrushed(flat), 60),
        "drawn, with noise": noisy(flat, 4.0),
        "drawn, airbrushed, noise, JPEG q75": jpeg(noisy(airbrushed(flat), 3.0), 75),
    }


def recoloured(rgb: np.ndarray, hue_turn: float = 0.5, saturation: float = 2.5) -> np.ndarray:
    """The picture with every hue turned by ``hue_turn`` of a full turn and its saturation multiplied (skin becomes a
    strong blue-green, like face paint, a mask or a painted creature: beyond any white-balance cast), brightness and
    texture kept."""
    hsv = np.asarray(Image.fromarray(rgb).convert("HSV")).copy()
    hsv[..., 0] = ((hsv[..., 0].astype(np.int32) + int(256 * hue_turn)) % 256).astype(np.uint8)
    hsv[..., 1] = np.clip(hsv[..., 1].astype(np.float32) * saturation, 0, 255).astype(np.uint8)
    return np.asarray(Image.fromarray(hsv, "HSV").convert("RGB")).copy()


# Cheek patch (MediaPipe indices, the subject's right cheek) the occluder takes its colour and grain from.
_CHEEK = (117, 118, 101, 36, 205, 187, 123)


def occluded(rgb: np.ndarray, landmarks: np.ndarray, *, fingers: int = 0, seed: int = 0) -> np.ndarray:
    """A still, skin-coloured thing (a hand, say) held over the mouth: an ellipse over the lips and their
    surroundings in the face's own cheek colour, with the cheek's own grain, a little shading and soft edges;
    ``fingers`` > 1: the dark gaps between that many fingers run across it (lines the face mesh takes for lips)."""
    from PIL import ImageDraw

    lm = np.asarray(landmarks, dtype=np.float64)
    fw = float(np.linalg.norm(lm[454, :2] - lm[234, :2]))
    mask = Image.new("L", (rgb.shape[1], rgb.shape[0]), 0)
    ImageDraw.Draw(mask).polygon([(float(lm[i, 0]), float(lm[i, 1])) for i in _CHEEK], fill=255)
    cheek = rgb[np.asarray(mask) > 0].astype(np.float32)
    colour = np.median(cheek, axis=0)
    grey = rgb.astype(np.float32).mean(axis=2)
    around = (np.roll(grey, 1, 0) + np.roll(grey, -1, 0) + np.roll(grey, 1, 1) + np.roll(grey, -1, 1)) / 4
    detail = np.abs(grey - around)
    grain = float(np.median(detail[np.asarray(mask) > 0]))  # the cheek's pixel-to-pixel detail, not its shading
    h, w = rgb.shape[:2]
    cx = float(lm[[61, 291], 0].mean())
    cy = float(lm[[0, 17], 1].mean())
    rx, ry = 0.38 * fw, 0.22 * fw  # from under the nose to the chin, as a hand over the mouth
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    noise = np.random.default_rng(seed).normal(0.0, 1.0, (h, w)).astype(np.float32)
    noise = sum(np.roll(noise, (dy, dx), axis=(0, 1)) for dy in (-1, 0, 1) for dx in (-1, 0, 1))  # grain, not pixels
    noise *= 1.5 * grain / max(float(noise.std()), 1e-6)
    shade = 1.0 + 0.10 * (xx - cx) / rx * 0.5 - 0.08 * (yy - cy) / ry * 0.5
    blob = colour[None, None, :] * shade[..., None] + noise[..., None]
    d = np.hypot((xx - cx) / rx, (yy - cy) / ry)
    alpha = np.clip((1.0 - d) / 0.15, 0.0, 1.0)[..., None]
    for k in range(1, fingers):
        gap_y = cy - ry + 2 * ry * k / fingers
        blob *= (1.0 - 0.45 * np.exp(-0.5 * ((yy - gap_y) / (0.006 * fw)) ** 2))[..., None]
    out = alpha * blob + (1.0 - alpha) * rgb.astype(np.float32)
    return np.clip(out, 0, 255).astype(np.uint8)


def microphone(rgb: np.ndarray, landmarks: np.ndarray, *, seed: int = 0) -> np.ndarray:
    """A dark grey, round thing (a microphone's head) held in front of the mouth, with a soft highlight, a little
    grain and soft edges."""
    lm = np.asarray(landmarks, dtype=np.float64)
    fw = float(np.linalg.norm(lm[454, :2] - lm[234, :2]))
    cx, cy = float(lm[[61, 291], 0].mean()), float(lm[[0, 17], 1].mean())
    h, w = rgb.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    highlight = np.exp(-((xx - cx + 0.1 * fw) ** 2 + (yy - cy + 0.08 * fw) ** 2) / (2 * (0.05 * fw) ** 2))
    grain = np.random.default_rng(seed).normal(0.0, 2.0, (h, w))
    body = (40.0 + 25.0 * highlight + grain)[..., None]
    alpha = np.clip((1.0 - np.hypot((xx - cx) / (0.3 * fw), (yy - cy) / (0.2 * fw))) / 0.1, 0.0, 1.0)[..., None]
    return np.clip(alpha * body + (1.0 - alpha) * rgb.astype(np.float32), 0, 255).astype(np.uint8)


# Eye openings (MediaPipe indices, lid contours) and the features a furred face keeps bare.
EYE_R = (33, 246, 161, 160, 159, 158, 157, 173, 133, 155, 154, 153, 145, 144, 163, 7)
EYE_L = (263, 466, 388, 387, 386, 385, 384, 398, 362, 382, 381, 380, 374, 373, 390, 249)
_FACE_OVAL = (10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377, 152, 148, 176,
              149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109)  # fmt: skip
_BARE = (168, 417, 465, 357, 327, 326, 2, 97, 98, 128, 245, 193)  # the nose bridge and nose
_LIPS = (61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291, 375, 321, 405, 314, 17, 84, 181, 91, 146)


def _mask(shape: tuple[int, ...], lm: np.ndarray, indices: tuple[int, ...], grow: float = 0.0) -> np.ndarray:
    points = lm[list(indices), :2].astype(np.float64)
    if grow:
        centre = points.mean(axis=0)
        points = centre + (points - centre) * (1.0 + grow)
    m = Image.new("L", (shape[1], shape[0]), 0)
    ImageDraw.Draw(m).polygon([(float(x), float(y)) for x, y in points], fill=255)
    return np.asarray(m) > 0


def dark_sclera(rgb: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """The eyes without whites, as most primates' are: every pixel between the lids mapped to a dark brown of its own
    brightness (the iris and pupil stay darkest, a catchlight stays a highlight)."""
    lm = np.asarray(landmarks, dtype=np.float64)
    out = rgb.astype(np.float32)
    eyes = _mask(rgb.shape, lm, EYE_R) | _mask(rgb.shape, lm, EYE_L)
    luma = out[eyes] @ np.array([0.299, 0.587, 0.114], np.float32)
    brown = np.array([0.55, 0.36, 0.22], np.float32)
    shade = np.where(luma > 235, luma, 25.0 + 0.3 * luma)  # whites fall to the iris' level; catchlights stay
    out[eyes] = shade[:, None] * brown[None, :] / brown.max()
    return np.clip(out, 0, 255).astype(np.uint8)


def furred(rgb: np.ndarray, landmarks: np.ndarray, *, seed: int = 0) -> np.ndarray:
    """The face's skin replaced by fur: thousands of short, slightly curved strands in shades of the skin's own colour
    made darker and browner, running down and outwards from the midline, over the face oval (grown a little) except
    the eyes, the nose and the lips, which stay bare as on an ape's face."""
    lm = np.asarray(landmarks, dtype=np.float64)
    fw = float(np.linalg.norm(lm[454, :2] - lm[234, :2]))
    oval = _mask(rgb.shape, lm, _FACE_OVAL, grow=0.12)
    bare = _mask(rgb.shape, lm, EYE_R, grow=0.5) | _mask(rgb.shape, lm, EYE_L, grow=0.5)
    bare |= _mask(rgb.shape, lm, _BARE, grow=0.1) | _mask(rgb.shape, lm, _LIPS, grow=0.25)
    skin = np.median(rgb[oval & ~bare].astype(np.float32), axis=0)
    base = skin * np.array([0.55, 0.45, 0.38], np.float32)
    rng = np.random.default_rng(seed)
    fur = Image.fromarray(np.clip(np.broadcast_to(base, rgb.shape), 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(fur)
    cx = float(lm[[234, 454], 0].mean())
    ys, xs = np.nonzero(oval)
    length = 0.06 * fw
    for i in rng.choice(len(xs), size=min(len(xs), 9000), replace=False):
        x, y = float(xs[i]), float(ys[i])
        angle = np.pi / 2 + 0.6 * np.sign(x - cx) * min(1.0, abs(x - cx) / (0.3 * fw)) + rng.normal(0, 0.25)
        tone = base * rng.uniform(0.55, 1.6)
        bend = rng.normal(0, 0.15)
        pts = [
            (x + t * length * np.cos(angle + bend * t), y + t * length * np.sin(angle + bend * t)) for t in (0, 0.5, 1)
        ]
        draw.line(pts, fill=tuple(int(v) for v in np.clip(tone, 0, 255)), width=1)
    fur_a = np.asarray(fur).astype(np.float32)
    alpha = (oval & ~bare).astype(np.float32)
    alpha = (
        np.asarray(Image.fromarray((alpha * 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(2)))[..., None]
        / 255.0
    )
    return np.clip(alpha * fur_a + (1 - alpha) * rgb.astype(np.float32), 0, 255).astype(np.uint8)


def bare_lips(rgb: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """Lips without a red border (only human lips have one): the lips take the chroma of the skin around them, their
    brightness and texture kept."""
    lm = np.asarray(landmarks, dtype=np.float64)
    lips = _mask(rgb.shape, lm, _LIPS, grow=0.08)
    ring = _mask(rgb.shape, lm, _LIPS, grow=0.6) & ~lips
    out = rgb.astype(np.float32)
    weights = np.array([0.299, 0.587, 0.114], np.float32)
    skin = np.median(out[ring], axis=0)
    luma = out[lips] @ weights
    out[lips] = luma[:, None] * (skin / max(float(skin @ weights), 1.0))[None, :]
    soft = (
        np.asarray(Image.fromarray((lips * 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(1.5)))[..., None]
        / 255.0
    )
    return np.clip(soft * out + (1 - soft) * rgb.astype(np.float32), 0, 255).astype(np.uint8)


def primate_like(rgb: np.ndarray, landmarks: np.ndarray, *, seed: int = 0, fur: bool = True) -> np.ndarray:
    """A stand-in for a monkey's or an ape's face photographed face on (no real one is available here): a person's
    photo with eyes without whites, lips without a red border and (``fur``) furred skin, the bare nose kept."""
    out = bare_lips(dark_sclera(rgb, landmarks), landmarks)
    return furred(out, landmarks, seed=seed) if fur else out
