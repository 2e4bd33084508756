"""A video avatar's mouth: the atlas patches nearest to the parameters, blended onto the loop frame's mouth.

The two tiles closest to the wanted parameters (weighted distance, the jaw counting most) are mixed by inverse
distance, so shapes change smoothly rather than snapping between tiles. The mix is placed on the loop frame's mouth
(its centre, width and angle were tracked at build time) through a feathered elliptical mask, so only the mouth and
chin area changes. The rest pose picks the closed-mouth tile: silence shows a closed mouth.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
from PIL import Image

from avaluma.renderer.avatar import VideoAssets
from avaluma.renderer.mouth import smoothstep

F32 = npt.NDArray[np.float32]
U8 = npt.NDArray[np.uint8]

PARAM_WEIGHTS = np.array([1.5, 1.0, 0.7, 0.7], dtype=np.float32)


class AtlasMouth:
    """Shared, read-only rendering data of one video avatar's atlas."""

    def __init__(self, video: VideoAssets) -> None:
        atlas = video.atlas
        self._video = video
        self._tiles = atlas.tiles.astype(np.float32)
        self._params = atlas.params * PARAM_WEIGHTS
        _k, th, tw = atlas.tiles.shape[:3]
        ys, xs = np.mgrid[0:th, 0:tw].astype(np.float32)
        ax, ay = atlas.anchor
        r = np.sqrt(((xs - ax) / (0.42 * tw)) ** 2 + ((ys - (ay + 0.12 * th)) / (0.46 * th)) ** 2)
        self._alpha = ((1.0 - smoothstep((r - 0.65) / 0.35)) * 255).astype(np.uint8)
        self._anchor = atlas.anchor
        self._ref = atlas.ref_width
        h, w = video.frames.shape[1:3]
        boxes = [self._box(i, w, h) for i in range(len(video.frames))]
        self.roi = (
            min(b[1] for b in boxes),
            max(b[3] for b in boxes),
            min(b[0] for b in boxes),
            max(b[2] for b in boxes),
        )

    def _matrix(self, index: int) -> tuple[float, ...]:
        """Affine frame -> tile coefficients for loop frame ``index`` (PIL wants the inverse map)."""
        cx, cy, width, angle = (float(v) for v in self._video.mouth[index])
        s = self._ref / max(width, 1e-3)
        c, si = math.cos(-angle) * s, math.sin(-angle) * s
        ax, ay = self._anchor
        # frame (x, y) -> tile: anchor + R(-angle) * s * ((x, y) - centre)
        return (c, -si, ax - c * cx + si * cy, si, c, ay - si * cx - c * cy)

    def _box(self, index: int, w: int, h: int) -> tuple[int, int, int, int]:
        cx, cy, width, _ = (float(v) for v in self._video.mouth[index])
        th, tw = self._tiles.shape[1:3]
        half = 0.75 * max(tw, th) * width / self._ref
        return (
            int(max(0, math.floor(cx - half))),
            int(max(0, math.floor(cy - half))),
            int(min(w, math.ceil(cx + half))),
            int(min(h, math.ceil(cy + half))),
        )

    def select(self, params: npt.NDArray[np.floating]) -> tuple[list[int], list[float]]:
        """The tiles to mix for ``params`` and their weights (summing to 1)."""
        p = np.clip(np.asarray(params, dtype=np.float32), 0.0, 1.0) * PARAM_WEIGHTS
        d = np.sqrt(((self._params - p) ** 2).sum(axis=1))
        order = np.argsort(d, kind="stable")[:2]
        if len(order) == 1 or d[order[0]] < 1e-4:
            return [int(order[0])], [1.0]
        d1, d2 = float(d[order[0]]), float(d[order[1]])
        return [int(order[0]), int(order[1])], [d2 / (d1 + d2), d1 / (d1 + d2)]

    def paste(self, out: U8, index: int, params: npt.NDArray[np.floating]) -> None:
        """Draw the mouth for ``params`` onto ``out`` (loop frame ``index``), in place."""
        ids, weights = self.select(params)
        tile = sum(self._tiles[i] * w for i, w in zip(ids, weights, strict=True))
        rgba = np.dstack([np.clip(np.asarray(tile) + 0.5, 0, 255).astype(np.uint8), self._alpha])
        h, w = out.shape[:2]
        x0, y0, x1, y1 = self._box(index, w, h)
        a, b, c, d, e, f = self._matrix(index)
        # Shift the map so the output box's origin is (0, 0).
        coeffs = (a, b, c + a * x0 + b * y0, d, e, f + d * x0 + e * y0)
        warped = Image.fromarray(rgba, "RGBA").transform(
            (x1 - x0, y1 - y0), Image.Transform.AFFINE, coeffs, Image.Resampling.BILINEAR
        )
        region = Image.fromarray(out[y0:y1, x0:x1])
        region.paste(warped, (0, 0), warped)
        out[y0:y1, x0:x1] = np.asarray(region)
