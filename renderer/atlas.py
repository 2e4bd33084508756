"""A video avatar's mouth: one real atlas patch per frame, chosen for the parameters, placed on the loop frame's mouth.

Patches are never averaged: a blend of two frames of real teeth is a grey smear, so every frame shows one real
mouth, sharp (bicubic resampling, once when the atlas is cut and once when it is placed), its colour scaled to the
loop frame's light where it blends in (tiles come from other moments of the clip). The choice has temporal
coherence: the patch shown last frame stays while it is within :data:`HYSTERESIS` of the best match and about as
near the wanted opening, so noise in the parameters does not flick the mouth between two neighbouring shapes
(measured by bench/mouth_quality.py: the rendered open-close rate against the lip-sync track's). The patch is
placed on the loop frame's mouth (its centre, width and angle were tracked at build time) through a feathered
elliptical mask, so only the mouth and chin area changes. The rest pose picks the closed-mouth tile: silence shows a
closed mouth, and so do closures within speech (the tiles are matched on the visible opening, ``jaw_open`` gated by
``lips_closed``).
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
from PIL import Image

from avaluma.renderer.avatar import VideoAssets
from avaluma.renderer.mouth import mouth_shape, smoothstep

F32 = npt.NDArray[np.float32]
U8 = npt.NDArray[np.uint8]

PARAM_WEIGHTS = np.array([1.5, 1.0, 0.7, 0.7], dtype=np.float32)
#: How much worse (weighted parameter distance, jaw penalty included) the last tile may match than the best before
#: the mouth switches: about 0.06 of jaw_open ...
HYSTERESIS = 0.25
#: ... unless the best tile is clearly nearer the wanted opening: the last tile is held only while its opening is off
#: by at most HOLD_RATIO times the best tile's error plus HOLD_SLACK. Between two tiles that are both far off (a sparse
#: atlas) noise does not flick the mouth; where the atlas has a tile at the wanted opening, the mouth goes there.
#: On the two real clips of the development set (lip-sync v4, bench/mouth_quality.py) the rendered open-close rate is
#: -5 % and +8 % of the track's and every shut frame of the track shows a shut mouth (with the plain hysteresis and a
#: jaw tolerance of 0.04: -11 % / +8 %, 91 % / 89 % shut); the mouth changes tile 10.2 / 8.2 times a second (8.0 /
#: 7.1), of which 0.8 / 0.3 times between tiles less than 0.05 apart in opening (0.1 / 0.0).
HOLD_RATIO = 2.0
HOLD_SLACK = 0.02
#: A tile whose jaw_open is further than this from the wanted one pays JAW_PENALTY per unit beyond it.
JAW_TOLERANCE = 0.02
JAW_PENALTY = 4.0


class AtlasMouth:
    """Shared, read-only rendering data of one video avatar's atlas."""

    def __init__(self, video: VideoAssets) -> None:
        atlas = video.atlas
        self._video = video
        self._tiles_u8 = np.ascontiguousarray(atlas.tiles)
        self._raw = np.asarray(atlas.params, dtype=np.float32)
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
        # Light matching: a tile comes from another moment of the clip (the light on the face, the exposure may
        # differ), so it is scaled per colour channel to the loop frame's colour in the ring where it blends in.
        alpha = self._alpha.astype(np.float32) / 255.0
        ring = alpha * (1.0 - alpha)
        self._ring = ring / max(float(ring.sum()), 1e-6)
        self._tile_ring = np.einsum("kyxc,yx->kc", atlas.tiles.astype(np.float32), self._ring)
        self._loop_ring = np.stack([self._ring_colour(video.frames[i], i) for i in range(len(video.frames))])

    def _ring_colour(self, frame: U8, index: int) -> npt.NDArray[np.float32]:
        """Mean colour of the loop frame under the tile's blending ring (the frame seen in tile space)."""
        a, b, c, d, e, f = self._matrix(index)
        # PIL's transform maps output (tile) pixels to input (frame) pixels: the inverse of frame -> tile.
        det = a * e - b * d
        ia, ib, id_, ie = e / det, -b / det, -d / det, a / det
        ic, if_ = -(ia * c + ib * f), -(id_ * c + ie * f)
        th, tw = self._tiles_u8.shape[1:3]
        seen = Image.fromarray(frame).transform((tw, th), Image.Transform.AFFINE, (ia, ib, ic, id_, ie, if_))
        colour: npt.NDArray[np.float32] = np.einsum("yxc,yx->c", np.asarray(seen, np.float32), self._ring)
        return colour.astype(np.float32)

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
        th, tw = self._tiles_u8.shape[1:3]
        half = 0.75 * max(tw, th) * width / self._ref
        return (
            int(max(0, math.floor(cx - half))),
            int(max(0, math.floor(cy - half))),
            int(min(w, math.ceil(cx + half))),
            int(min(h, math.ceil(cy + half))),
        )

    def select(self, params: npt.NDArray[np.floating], previous: int | None = None) -> int:
        """The tile to show for ``params``: the nearest (weighted distance; a tile whose jaw is more than
        :data:`JAW_TOLERANCE` off the wanted opening is penalised, so the mouth opens and shuts when the parameters
        do), unless the tile shown last (``previous``) is within :data:`HYSTERESIS` of it and not clearly further
        from the wanted opening (:data:`HOLD_RATIO`, :data:`HOLD_SLACK`).

        The wanted opening is ``jaw_open`` gated by ``lips_closed`` as on a photo avatar (:func:`mouth_shape`): a
        tile's jaw was measured as its visible opening, so a p/b/m or a pause shows a closed mouth even while the
        jaw parameter is still easing down (matched on the raw ``jaw_open``, the last open tile stayed within the
        hysteresis: the two development clips showed 79 and 86 % of their shut frames with the mouth still open)."""
        p = np.clip(np.asarray(params, dtype=np.float32), 0.0, 1.0)
        p[0] = mouth_shape(p).opening
        d = np.sqrt((((self._raw - p) * PARAM_WEIGHTS) ** 2).sum(axis=1))
        off = np.abs(self._raw[:, 0] - p[0])
        d += JAW_PENALTY * np.maximum(off - JAW_TOLERANCE, 0.0)
        best = int(np.argmin(d))
        if (
            previous is not None
            and 0 <= previous < len(d)
            and d[previous] <= d[best] + HYSTERESIS
            and off[previous] <= HOLD_RATIO * off[best] + HOLD_SLACK
        ):
            return previous
        return best

    def paste(self, out: U8, index: int, tile: int) -> None:
        """Draw atlas tile ``tile`` onto ``out`` (loop frame ``index``), in place."""
        gain = np.clip(self._loop_ring[index] / np.maximum(self._tile_ring[tile], 1.0), 0.8, 1.25)
        if np.abs(gain - 1.0).max() > 0.01:
            pixels = np.clip(self._tiles_u8[tile] * gain.astype(np.float32) + 0.5, 0, 255).astype(np.uint8)
        else:
            pixels = self._tiles_u8[tile]
        rgba = np.dstack([pixels, self._alpha])
        h, w = out.shape[:2]
        x0, y0, x1, y1 = self._box(index, w, h)
        a, b, c, d, e, f = self._matrix(index)
        # Shift the map so the output box's origin is (0, 0).
        coeffs = (a, b, c + a * x0 + b * y0, d, e, f + d * x0 + e * y0)
        warped = Image.fromarray(rgba, "RGBA").transform(
            (x1 - x0, y1 - y0), Image.Transform.AFFINE, coeffs, Image.Resampling.BICUBIC
        )
        region = Image.fromarray(out[y0:y1, x0:x1])
        region.paste(warped, (0, 0), warped)
        out[y0:y1, x0:x1] = np.asarray(region)
