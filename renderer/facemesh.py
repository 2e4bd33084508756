"""Offline face detection and 468-point face mesh (MediaPipe's models under ``ai-edge-litert``).

:class:`FaceMesh` finds faces with the BlazeFace short-range detector, then fits the face mesh in a rotated, square
crop around each face (twice: the second crop comes from the first fit's landmarks, which is tighter and steadier than
the detector's box). For video, :meth:`FaceMesh.track` crops from the previous frame's landmarks and only falls back to
the detector when the fit is lost.

Landmarks are returned in pixels of the input image, shape ``[468, 3]`` (x right, y down, z relative depth in the same
scale as x). Index names follow MediaPipe's canonical face mesh (see :mod:`avaluma.renderer.rig_builder`).
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from PIL import Image

from avaluma.core.errors import FailedPrecondition
from avaluma.renderer.face_models import Progress, _stderr, ensure_face_models

F32 = npt.NDArray[np.float32]

DETECTOR_SIZE = 128
MESH_SIZE = 192
MIN_DETECTION_SCORE = 0.6
MIN_PRESENCE = 0.5
#: Tiles show the detector more background per face: it takes a surer detection to count a face there.
MIN_SMALL_FACE_SCORE = 0.7
#: The mesh crop is the face box grown by this factor (MediaPipe's value).
CROP_SCALE = 1.5
N_LANDMARKS = 468

# Eye corners (outer, inner) used for the crop's rotation: the subject's right eye is on the image's left.
_RIGHT_EYE = (33, 133)
_LEFT_EYE = (263, 362)


@dataclass(frozen=True, slots=True)
class Detection:
    """A detected face in image pixels: box centre and size, two eye keypoints (image-left eye first), a score."""

    cx: float
    cy: float
    width: float
    height: float
    eyes: tuple[tuple[float, float], tuple[float, float]]
    score: float


def _anchors() -> F32:
    """BlazeFace short-range SSD anchors (centres in 0..1): 16x16x2 at stride 8, then 8x8x6 at stride 16."""
    rows = []
    for stride, per_cell in ((8, 2), (16, 6)):
        n = DETECTOR_SIZE // stride
        for y in range(n):
            for x in range(n):
                rows += [((x + 0.5) / n, (y + 0.5) / n)] * per_cell
    return np.array(rows, dtype=np.float32)


def _load_interpreter(path: Path) -> Any:
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        raise FailedPrecondition(
            "the avatar builder needs the ai-edge-litert package to run its face models: pip install ai-edge-litert"
        ) from None
    with quiet_native_stderr():
        interpreter = Interpreter(model_path=str(path), num_threads=1)
        interpreter.allocate_tensors()
    return interpreter


@contextlib.contextmanager
def quiet_native_stderr() -> Iterator[None]:
    """Silence what native code writes to file descriptor 2 meanwhile (TFLite prints an ``INFO: Created TensorFlow
    Lite XNNPACK delegate`` line from C++, which split the builder's progress bar). Python's own ``sys.stderr`` is
    flushed first and keeps working for exceptions raised afterwards."""
    fd = 2  # the process's stderr, whatever sys.stderr is (a test runner replaces the Python object, not the fd)
    sys.stderr.flush()
    saved = os.dup(fd)
    try:
        with open(os.devnull, "wb") as devnull:
            os.dup2(devnull.fileno(), fd)
            yield
    finally:
        os.dup2(saved, fd)
        os.close(saved)


def _similarity_crop(
    image: Image.Image, center: tuple[float, float], size: float, angle: float, out: int
) -> tuple[F32, npt.NDArray[np.float64]]:
    """Crop a square of side ``size`` around ``center`` rotated by ``angle`` (radians), resampled to ``out`` px.

    Returns the crop as float 0..1 and the 2x3 matrix mapping crop pixels back to image pixels.
    """
    c, s = math.cos(angle), math.sin(angle)
    k = size / out
    # crop (u, v) -> image: centre + R(angle) @ ((u, v) - out/2) * k
    a, b = c * k, -s * k
    d, e = s * k, c * k
    tx = center[0] - a * out / 2 - b * out / 2
    ty = center[1] - d * out / 2 - e * out / 2
    matrix = np.array([[a, b, tx], [d, e, ty]], dtype=np.float64)
    crop = image.transform((out, out), Image.Transform.AFFINE, (a, b, tx, d, e, ty), resample=Image.Resampling.BILINEAR)
    return np.asarray(crop, dtype=np.float32) / 255.0, matrix


class FaceMesh:
    """Face detector + face mesh. Load once, call many times; not thread-safe."""

    def __init__(self, *, progress: Progress = _stderr) -> None:
        directory = ensure_face_models(progress)
        self._detector = _load_interpreter(directory / "face_detection_short_range.tflite")
        self._mesh = _load_interpreter(directory / "face_landmark.tflite")
        self._anchors = _anchors()

    # --- detection --------------------------------------------------------------------------------------------

    def detect(self, rgb: npt.NDArray[np.uint8]) -> list[Detection]:
        """All faces in ``rgb`` (H x W x 3 uint8), best first."""
        h, w = rgb.shape[:2]
        side = max(h, w)
        # Letterbox to a square so the detector sees undistorted faces.
        square = Image.new("RGB", (side, side))
        ox, oy = (side - w) // 2, (side - h) // 2
        square.paste(Image.fromarray(rgb), (ox, oy))
        small = np.asarray(square.resize((DETECTOR_SIZE, DETECTOR_SIZE), Image.Resampling.BILINEAR), np.float32)
        tensor = (small / 127.5 - 1.0)[None]
        det = self._detector
        det.set_tensor(det.get_input_details()[0]["index"], tensor)
        det.invoke()
        outputs = {o["name"]: det.get_tensor(o["index"]) for o in det.get_output_details()}
        raw = outputs["regressors"][0]
        logits = np.clip(outputs["classificators"][0, :, 0].astype(np.float64), -100, 100)
        scores = 1.0 / (1.0 + np.exp(-logits))
        keep = np.flatnonzero(scores >= MIN_DETECTION_SCORE)
        boxes = []
        for i in keep:
            ax, ay = self._anchors[i]
            r = raw[i] / DETECTOR_SIZE
            cx, cy, bw, bh = ax + r[0], ay + r[1], r[2], r[3]
            eyes = ((ax + r[4], ay + r[5]), (ax + r[6], ay + r[7]))
            boxes.append((float(scores[i]), cx, cy, bw, bh, eyes))
        faces = []
        # Weighted non-maximum suppression (as MediaPipe does): overlapping boxes vote for one face.
        boxes.sort(key=lambda b: -b[0])
        while boxes:
            best = boxes[0]
            group = [b for b in boxes if _iou(best, b) > 0.3]
            boxes = [b for b in boxes if _iou(best, b) <= 0.3]
            weights = np.array([g[0] for g in group])
            weights /= weights.sum()
            cx, cy, bw, bh = (float(sum(wt * g[k] for wt, g in zip(weights, group, strict=True))) for k in (1, 2, 3, 4))
            e = [
                [float(sum(wt * g[5][j][k] for wt, g in zip(weights, group, strict=True))) for k in (0, 1)]
                for j in (0, 1)
            ]

            def px(x: float, y: float) -> tuple[float, float]:
                return (x * side - ox, y * side - oy)

            faces.append(
                Detection(
                    cx=px(cx, cy)[0],
                    cy=px(cx, cy)[1],
                    width=bw * side,
                    height=bh * side,
                    eyes=(px(*e[0]), px(*e[1])),
                    score=best[0],
                )
            )
        return faces

    def detect_small(self, rgb: npt.NDArray[np.uint8]) -> list[Detection]:
        """Faces too small for :meth:`detect` on the whole picture (the detector sees it at 128 px): the detector run
        on overlapping tiles half the picture's shorter side wide. A face is counted from the tile that holds all of
        it; the same face seen from several tiles is counted once. Best first."""
        h, w = rgb.shape[:2]
        side = max(64, min(h, w) // 2)
        step = side // 2
        found: list[Detection] = []
        for y in sorted({*range(0, max(1, h - side + 1), step), max(0, h - side)}):
            for x in sorted({*range(0, max(1, w - side + 1), step), max(0, w - side)}):
                for f in self.detect(rgb[y : y + side, x : x + side]):
                    if f.score < MIN_SMALL_FACE_SCORE:
                        continue
                    margin = 2 + 0.1 * f.width
                    inside = f.cx - f.width / 2 > margin and f.cx + f.width / 2 < side - margin
                    if inside and margin < f.cy - f.height / 2 and f.cy + f.height / 2 < side - margin:
                        (ax, ay), (bx, by) = f.eyes
                        eyes = ((ax + x, ay + y), (bx + x, by + y))
                        found.append(Detection(f.cx + x, f.cy + y, f.width, f.height, eyes, f.score))
        found.sort(key=lambda f: -f.score)
        kept: list[Detection] = []
        for f in found:
            if not any(same_face(f, k) for k in kept):
                kept.append(f)
        return kept

    # --- landmarks --------------------------------------------------------------------------------------------

    def _fit(self, image: Image.Image, center: tuple[float, float], size: float, angle: float) -> tuple[F32, float]:
        crop, matrix = _similarity_crop(image, center, size, angle, MESH_SIZE)
        mesh = self._mesh
        mesh.set_tensor(mesh.get_input_details()[0]["index"], crop[None])
        mesh.invoke()
        outs = sorted(mesh.get_output_details(), key=lambda o: -int(np.prod(o["shape"])))
        points = mesh.get_tensor(outs[0]["index"]).reshape(N_LANDMARKS, 3).astype(np.float64)
        presence = float(1.0 / (1.0 + np.exp(-mesh.get_tensor(outs[1]["index"]).reshape(-1)[0])))
        xy = points[:, :2] @ matrix[:, :2].T + matrix[:, 2]
        z = points[:, 2:3] * (size / MESH_SIZE)
        return np.concatenate([xy, z], axis=1).astype(np.float32), presence

    def fit_crop(self, image: Image.Image, center: tuple[float, float], size: float, angle: float) -> tuple[F32, float]:
        """Landmarks fitted in one given square crop (centre, side, rotation in radians) and the presence score."""
        return self._fit(image, center, size, angle)

    def landmarks_from_detection(self, rgb: npt.NDArray[np.uint8], face: Detection) -> tuple[F32, float]:
        """468 landmarks for a detected face and the model's face-presence score."""
        (rx, ry), (lx, ly) = face.eyes
        angle = math.atan2(ly - ry, lx - rx)
        image = Image.fromarray(rgb)
        points, _presence = self._fit(image, (face.cx, face.cy), CROP_SCALE * max(face.width, face.height), angle)
        return self._refit(image, points)

    def track(self, rgb: npt.NDArray[np.uint8], previous: F32) -> tuple[F32, float]:
        """Landmarks in a frame, cropped from the previous frame's landmarks (no detector)."""
        return self._refit(Image.fromarray(rgb), previous)

    def _refit(self, image: Image.Image, points: F32) -> tuple[F32, float]:
        center, size, angle = crop_from_landmarks(points)
        return self._fit(image, center, size, angle)


def same_face(a: Detection, b: Detection) -> bool:
    """Two detections of one face (e.g. the whole face and the part of it a tile shows): centres closer than 0.8 of
    the larger box's width."""
    return math.hypot(a.cx - b.cx, a.cy - b.cy) < 0.8 * max(a.width, b.width)


def crop_from_landmarks(points: F32) -> tuple[tuple[float, float], float, float]:
    """The mesh crop (centre, side, rotation) that frames a face whose landmarks are known."""
    right = points[list(_RIGHT_EYE), :2].mean(axis=0)
    left = points[list(_LEFT_EYE), :2].mean(axis=0)
    angle = math.atan2(float(left[1] - right[1]), float(left[0] - right[0]))
    c, s = math.cos(-angle), math.sin(-angle)
    xy = points[:, :2].astype(np.float64)
    mid = xy.mean(axis=0)
    rotated = (xy - mid) @ np.array([[c, s], [-s, c]])
    lo, hi = rotated.min(axis=0), rotated.max(axis=0)
    box_center = (lo + hi) / 2
    # Back to image coordinates.
    ca, sa = math.cos(angle), math.sin(angle)
    center = mid + np.array([[ca, -sa], [sa, ca]]) @ box_center
    size = CROP_SCALE * float(max(hi - lo))
    return (float(center[0]), float(center[1])), size, angle


def _iou(a: tuple[Any, ...], b: tuple[Any, ...]) -> float:
    ax0, ay0, ax1, ay1 = a[1] - a[3] / 2, a[2] - a[4] / 2, a[1] + a[3] / 2, a[2] + a[4] / 2
    bx0, by0, bx1, by1 = b[1] - b[3] / 2, b[2] - b[4] / 2, b[1] + b[3] / 2, b[2] + b[4] / 2
    iw, ih = max(0.0, min(ax1, bx1) - max(ax0, bx0)), max(0.0, min(ay1, by1) - max(ay0, by0))
    inter = iw * ih
    union = a[3] * a[4] + b[3] * b[4] - inter
    return float(inter / union) if union > 0 else 0.0
