"""Facial expressions on the face as built: brows and smile as smooth, precomputed displacement fields.

A :class:`FaceWarp` holds, per avatar, the displacement fields of one unit of each expression component of
:class:`~avaluma.renderer.expression.ExpressionPose` (``brow_raise``, ``brow_inner`` up or down, ``smile``) on the
pixels they move, in two groups: the brows and forehead, and the mouth corners, cheeks and lower lids. A frame's
displacement is the fields weighted by the pose (linear: a pose that changes by a small step moves every point by a
small, proportional step). Each group is rendered by backward mapping, bilinearly, from the frame as edited so far:
the smile warps the mouth the lip-sync has already drawn, so the mouth keeps opening and closing on top of a held
smile and its interior moves with the lips instead of tearing.

- ``brow_raise``: both brows lift (0.035 face widths at 1); the skin between brow and eye stretches, the forehead
  above compresses over 0.24 face widths, the eyes stay put.
- ``brow_inner`` > 0 (concerned): the inner ends lift and draw together; < 0 (serious): the brows lower, most at the
  inner ends, draw together, and a faint vertical crease darkens between them.
- ``smile``: the mouth corners move up and out, the cheek apples lift, the lower lids rise a little.

Every field falls to zero with a smooth (smoothstep) edge inside its region, so there are no seams, and pixels outside
the regions never change. Each field's lift is capped where the gap it stretches is short, so the warp never folds.
A pose with all three components zero is skipped entirely (the frame is byte-identical to no expression). Distances
are fractions of the face width (:attr:`FaceRig.face_width`), so the look is the same at any resolution.

Numpy only; read-only after construction, shared by every session rendering the avatar.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from avaluma.renderer.avatar import BrowRig, EyeRig, FaceRig, MouthRig
from avaluma.renderer.expression import ExpressionPose

__all__ = ["FaceWarp"]

F32 = npt.NDArray[np.float32]
U8 = npt.NDArray[np.uint8]

#: Brow lift at ``brow_raise`` = 1 (face widths).
BROW_RAISE = 0.035
#: Height above the brow over which the forehead takes up the lift (face widths).
FOREHEAD = 0.24
#: Inner brow ends at ``brow_inner`` = +1: lift and draw towards the middle (face widths).
INNER_UP, INNER_IN = 0.04, 0.01
#: Brows at ``brow_inner`` = -1: lower (inner ends; the outer ends 40 % of it) and draw together (face widths).
FROWN_DOWN, FROWN_IN = 0.03, 0.018
#: Darkening of the crease between frowning brows at ``brow_inner`` = -1.
FROWN_CREASE = 0.1
#: Mouth corners at ``smile`` = 1: up and out (face widths).
SMILE_UP, SMILE_OUT = 0.035, 0.018
#: Cheek apples and lower lids at ``smile`` = 1 (face widths, up).
CHEEK_UP, LID_UP = 0.018, 0.009
#: Horizontal falloff beyond a brow's ends (face widths).
BROW_FALLOFF = 0.12
#: A field may shift a point at most this fraction of the gap it stretches (smoothstep's slope peaks at 1.5: < 1/1.5
#: keeps the mapping one-to-one even with two fields adding up).
MAX_STRETCH = 0.33
#: Largest region (pixels) a group may cover: a face about 1300 px wide. Beyond it the avatar shows no expressions
#: (the fields would take hundreds of MB per avatar).
MAX_REGION_PIXELS = 1_000_000
#: Components below this are treated as zero.
EPS = 1e-4

_COMPONENTS = ("raise", "inner_up", "frown", "smile")
#: The fixed-point bilinear's lanes: R and B of a packed pixel (uint32 R, G, B, spare) in two 16-bit lanes, G in one;
#: with 8-bit weights a lane holds a sum of products, and the halves round it before the shift by 8.
_RB, _RB_HALF = np.uint32(0x00FF00FF), np.uint32(0x00800080)
_G, _G_HALF = np.uint32(0x0000FF00), np.uint32(0x00008000)
_EIGHT, _BYTE, _FULL = np.uint32(8), np.uint32(255), np.uint32(256)
#: Components whose fields move pixels only vertically.
_VERTICAL = frozenset({"raise"})


def _smooth(t: npt.ArrayLike) -> F32:
    t = np.clip(np.asarray(t, np.float32), 0.0, 1.0)
    out: F32 = t * t * (3.0 - 2.0 * t)
    return out


def _contour(points: tuple[tuple[float, float], ...]) -> tuple[F32, F32]:
    return np.array([p[0] for p in points], np.float32), np.array([p[1] for p in points], np.float32)


@dataclass(frozen=True, slots=True, eq=False)
class _Group:
    """The pixels one group of fields moves: image coordinates, and per component the forward displacement (x, y)
    at one unit of it; ``shade`` darkens (fraction) at one unit of ``frown``."""

    ys: npt.NDArray[np.int32]
    xs: npt.NDArray[np.int32]
    #: The same as float32, and as flat indices ``y * width + x``.
    yf: F32
    xf: F32
    index: npt.NDArray[np.int64]
    fields: dict[str, F32]
    shade: F32 | None
    box: tuple[int, int, int, int]  #: (y0, y1, x0, x1) of the pixels, end exclusive
    #: The fields as rows [2 * len(names), n]: x then y of each of ``names`` (one matrix product weighs, turns and
    #: scales them all); ``peak`` the largest shift (px) of each at one unit; ``shade8`` ``shade`` in 1/256.
    names: tuple[str, ...] = ()
    rows: F32 | None = None
    peak: tuple[float, ...] = ()
    shade8: F32 | None = None


class FaceWarp:
    """Per-avatar expression fields; see the module docstring. ``eyes`` keep the eyes still (the brows' lower edge
    of motion) and give the lower lids; without them the eye line is estimated below the brows and the lids stay."""

    def __init__(self, size: tuple[int, int], face: FaceRig, mouth: MouthRig, eyes: tuple[EyeRig, ...] = ()) -> None:
        self.height, self.width = size
        self.face = face
        self.fw = float(face.face_width)
        self._mouth = mouth
        self._eyes = tuple(sorted(eyes, key=lambda e: e.upper[0][0]))
        fw = self.fw
        # Regions: the brows and forehead; the mouth corners, cheeks and lower lids.
        bx0 = min(b.upper[0][0] for b in face.brows) - BROW_FALLOFF * fw
        bx1 = max(b.upper[-1][0] for b in face.brows) + BROW_FALLOFF * fw
        by0 = min(min(p[1] for p in b.upper) for b in face.brows) - FOREHEAD * fw
        by1 = max(self._eye_line(b, np.array([x for x, _ in b.lower], np.float32)).max() for b in face.brows) + 1
        self._upper = self._group((by0, by1, bx0, bx1), upper=True)
        mw = mouth.mouth_width
        rx, ry = 0.55 * mw, 0.5 * mw
        corners = (mouth.mouth_left, mouth.mouth_right)
        lx0 = min(corners[0][0] - rx, face.cheeks[0][0] - 0.17 * fw, *(e.upper[0][0] for e in self._eyes))
        lx1 = max(corners[1][0] + rx, face.cheeks[1][0] + 0.17 * fw, *(e.upper[-1][0] for e in self._eyes))
        ly0 = min([c[1] - ry for c in corners] + [c[1] - 0.2 * fw for c in face.cheeks]
                  + [min(p[1] for p in e.upper) for e in self._eyes])  # fmt: skip
        ly1 = max(max(c[1] + ry for c in corners), max(c[1] + 0.2 * fw for c in face.cheeks))
        self._lower = self._group((ly0, ly1, lx0, lx1), upper=False)

    # -- fields -------------------------------------------------------------------------------------------------

    def _eye_under(self, brow_x: float) -> EyeRig | None:
        if not self._eyes:
            return None
        return min(self._eyes, key=lambda e: abs((e.upper[0][0] + e.upper[-1][0]) / 2 - brow_x))

    def _eye_line(self, brow: BrowRig, x: F32) -> F32:
        """Where the brows' motion ends below them: the upper lid (or an estimate), at least 2 px below the brow."""
        lx, ly = _contour(brow.lower)
        low = np.interp(x, lx, ly).astype(np.float32)
        eye = self._eye_under(float(lx.mean()))
        if eye is None:
            line = low + 0.08 * self.fw
        else:
            ex, ey = _contour(eye.upper)
            line = np.interp(x, ex, ey).astype(np.float32)
        out: F32 = np.maximum(line, low + 2.0).astype(np.float32)
        return out

    def fields(self, x: F32, y: F32, *, upper: bool | None = None) -> tuple[dict[str, tuple[F32, F32]], F32]:
        """Forward displacement (dx, dy) per component at one unit of it, at the points ``x``, ``y`` (any shape), and
        the frown's crease shading. ``upper``: only the brow group (True), only the lower group (False), or both."""
        zero = np.zeros(np.broadcast(x, y).shape, np.float32)
        out = {name: (zero.copy(), zero.copy()) for name in _COMPONENTS}
        shade = zero.copy()
        if upper is not False:
            self._brow_fields(x, y, out, shade)
        if upper is not True:
            self._smile_fields(x, y, out)
        return out, shade

    def _brow_fields(self, x: F32, y: F32, out: dict[str, tuple[F32, F32]], shade: F32) -> None:
        fw = self.fw
        brows = self.face.brows
        centre = (brows[0].upper[-1][0] + brows[1].upper[0][0]) / 2  # the middle between the inner ends
        r = BROW_FALLOFF * fw
        lifts, ends = [], []
        for brow in brows:
            ux, uy = _contour(brow.upper)
            lx, ly = _contour(brow.lower)
            x0, x1 = float(min(ux[0], lx[0])), float(max(ux[-1], lx[-1]))
            xc = np.clip(x, x0, x1)
            mid = (np.interp(xc, ux, uy) + np.interp(xc, lx, ly)).astype(np.float32) / 2
            eye = self._eye_line(brow, xc)
            top = np.interp(xc, ux, uy).astype(np.float32) - FOREHEAD * fw
            below = _smooth((eye - y) / np.maximum(eye - mid, 1e-3))
            above = _smooth((y - top) / np.maximum(mid - top, 1e-3))
            v = np.where(y >= mid, below, above)
            h = _smooth((x - (x0 - r)) / r) * _smooth(((x1 + r) - x) / r)
            inner_right = abs(x1 - centre) < abs(x0 - centre)
            toward = 1.0 if inner_right else -1.0  # x direction towards the middle
            t = (x - x0) / (x1 - x0) if inner_right else (x1 - x) / (x1 - x0)
            g = _smooth(t.astype(np.float32))
            w = h * v
            cap = MAX_STRETCH * np.maximum(eye - mid, 0.0)  # at most this lift where the lid skin is short
            lifts.append(np.minimum(BROW_RAISE * fw, cap) * v)
            ends.append((x0, x1))
            ix, iy = out["inner_up"]
            iy -= np.minimum(INNER_UP * fw, cap) * g * w
            ix += toward * INNER_IN * fw * g * w
            fx, fy = out["frown"]
            fy += FROWN_DOWN * fw * (0.4 + 0.6 * g) * w
            fx += toward * FROWN_IN * fw * g * w
        # Raised brows lift the skin between them too (the forehead moves as one): one profile from the left brow's
        # outer end to the right one's, blended from one brow's lines to the other's across the gap between them.
        (left_out, left_in), (right_in, right_out) = ends
        to_right = _smooth((x - left_in) / max(right_in - left_in, 1.0))
        outer = _smooth((x - (left_out - r)) / r) * _smooth(((right_out + r) - x) / r)
        _, ry = out["raise"]
        ry -= outer * ((1.0 - to_right) * lifts[0] + to_right * lifts[1])
        # The crease between frowning brows: two faint vertical lines either side of the middle.
        inner_y = (brows[0].upper[-1][1] + brows[1].upper[0][1]) / 2
        sigma = max(1.0, 0.012 * fw)
        lines = sum(np.exp(-(((x - (centre + s * 0.035 * fw)) / sigma) ** 2)) for s in (-1.0, 1.0))
        along = _smooth((y - (inner_y - 0.12 * fw)) / (0.04 * fw)) * _smooth(((inner_y + 0.03 * fw) - y) / (0.03 * fw))
        shade += FROWN_CREASE * np.minimum(lines, 1.0) * along

    def _smile_fields(self, x: F32, y: F32, out: dict[str, tuple[F32, F32]]) -> None:
        fw = self.fw
        mouth = self._mouth
        mw = mouth.mouth_width
        sx, sy = out["smile"]
        for (cx, cy), out_dir in ((mouth.mouth_left, -1.0), (mouth.mouth_right, 1.0)):
            r = np.sqrt(((x - cx) / (0.55 * mw)) ** 2 + ((y - cy) / (0.5 * mw)) ** 2)
            w = 1.0 - _smooth(r.astype(np.float32))
            sx += out_dir * SMILE_OUT * fw * w
            sy -= SMILE_UP * fw * w
        for cx, cy in self.face.cheeks:
            r = np.sqrt(((x - cx) / (0.17 * fw)) ** 2 + ((y - cy) / (0.2 * fw)) ** 2)
            sy -= CHEEK_UP * fw * (1.0 - _smooth(r.astype(np.float32)))
        for eye in self._eyes:
            ux, uy = _contour(eye.upper)
            lx, ly = _contour(eye.lower)
            x0, x1 = float(ux[0]), float(ux[-1])
            xc = np.clip(x, x0, x1)
            up = np.interp(xc, ux, uy).astype(np.float32)
            low = np.maximum(np.interp(xc, lx, ly).astype(np.float32), up + 1e-3)
            h = _smooth(np.minimum(x - x0, x1 - x) / (0.3 * (x1 - x0)))
            v = np.where(
                y <= low,
                _smooth((y - up) / (low - up)),
                1.0 - _smooth((y - low - 0.06 * fw) / (0.14 * fw)),
            )
            sy -= LID_UP * fw * h * v

    def _group(self, box: tuple[float, float, float, float], *, upper: bool) -> _Group:
        y0 = max(0, math.floor(box[0]))
        y1 = min(self.height, math.ceil(box[1]) + 1)
        x0 = max(0, math.floor(box[2]))
        x1 = min(self.width, math.ceil(box[3]) + 1)
        if max(0, y1 - y0) * max(0, x1 - x0) > MAX_REGION_PIXELS:
            # Only a face over ~1300 px wide gets here: no expressions rather than hundreds of MB of fields.
            y1, x1 = y0, x0
        ys, xs = np.mgrid[y0:y1, x0:x1]
        fields, shade = self.fields(xs.astype(np.float32), ys.astype(np.float32), upper=upper)
        names = ("raise", "inner_up", "frown") if upper else ("smile",)
        live = shade > 1e-4 if upper else np.zeros(ys.shape, bool)
        for name in names:
            dx, dy = fields[name]
            live |= np.hypot(dx, dy) > 1e-3
        sel = np.flatnonzero(live)
        gys, gxs = ys.reshape(-1)[sel].astype(np.int32), xs.reshape(-1)[sel].astype(np.int32)
        per = {
            name: np.ascontiguousarray(np.stack([f.reshape(-1)[sel] for f in fields[name]], axis=1), np.float32)
            for name in names
        }
        for a in per.values():
            a.flags.writeable = False
        shaded = shade.reshape(-1)[sel].astype(np.float32) if upper else None
        bounds = (int(gys.min()), int(gys.max()) + 1, int(gxs.min()), int(gxs.max()) + 1) if sel.size else (0, 0, 0, 0)
        index = gys.astype(np.int64) * self.width + gxs
        rows = np.ascontiguousarray(np.concatenate([per[name].T for name in names], axis=0), np.float32)
        rows.flags.writeable = False
        peak = tuple(float(np.hypot(a[:, 0], a[:, 1]).max()) if a.size else 0.0 for a in per.values())
        shade8 = None if shaded is None else (256.0 * shaded).astype(np.float32)
        return _Group(gys, gxs, gys.astype(np.float32), gxs.astype(np.float32), index, per, shaded, bounds,
                      names, rows, peak, shade8)  # fmt: skip

    # -- rendering ----------------------------------------------------------------------------------------------

    @staticmethod
    def components(pose: ExpressionPose) -> dict[str, float]:
        """The non-zero unit weights of ``pose`` (clamped to the documented ranges)."""
        raise_ = min(1.0, max(0.0, pose.brow_raise))
        inner = min(1.0, max(-1.0, pose.brow_inner))
        smile = min(1.0, max(0.0, pose.smile))
        weights = {"raise": raise_, "inner_up": max(0.0, inner), "frown": max(0.0, -inner), "smile": smile}
        return {k: v for k, v in weights.items() if v > EPS}

    def displacement(self, pose: ExpressionPose, points: npt.ArrayLike) -> F32:
        """Forward displacement ``[n, 2]`` (pixels, x right, y down) the warp gives the image points ``[n, 2]``."""
        pts = np.asarray(points, np.float32).reshape(-1, 2)
        fields, _ = self.fields(pts[:, 0], pts[:, 1])
        out = np.zeros_like(pts)
        for name, value in self.components(pose).items():
            out[:, 0] += value * fields[name][0]
            out[:, 1] += value * fields[name][1]
        return out

    @property
    def regions(self) -> tuple[tuple[int, int, int, int], ...]:
        """The boxes (y0, y1, x0, x1) the warp can change; pixels outside them never change."""
        return tuple(g.box for g in (self._upper, self._lower) if g.ys.size)

    def apply(
        self,
        out: U8,
        pose: ExpressionPose,
        *,
        shift: tuple[int, int] = (0, 0),
        scale: float = 1.0,
        turn: float = 0.0,
    ) -> None:
        """Warp the contiguous H x W x 3 frame ``out`` in place to show ``pose``.

        ``shift`` (dy, dx) moves the regions by whole pixels, ``scale`` and ``turn`` (radians) scale and rotate the
        displacements: a video avatar's loop frame whose face sits elsewhere than in the base image.

        The fields are weighed, turned and scaled in one matrix product, and each pixel is gathered as one uint32 and
        mixed in 8-bit fixed point (1/256 px, channels two at a time in 16-bit lanes, sums rounded): within one grey
        level of float arithmetic (tested), at about half the cost (a held smile on a 512x640 video frame, turned and
        scaled by the mouth track: 2.3 -> 1.3 ms on a loaded core).
        """
        weights = self.components(pose)
        if not weights:
            return
        if not out.flags.c_contiguous:
            raise ValueError("the frame must be a contiguous H x W x 3 array")
        h, w = out.shape[:2]
        items = out.reshape(-1, 3).view(np.dtype((np.void, 3))).reshape(-1)  # one 3-byte item per pixel (the writes)
        c, s = scale * math.cos(turn), scale * math.sin(turn)
        for group in (self._upper, self._lower):
            values = [weights.get(name, 0.0) for name in group.names]
            if not any(values) or not group.ys.size or group.rows is None:
                continue
            dy, dx = shift
            # Keep the region on the image (a face at the very edge keeps its expression a little off, not cut).
            y0, y1, x0, x1 = group.box
            dy = min(max(dy, -y0), h - y1)
            dx = min(max(dx, -x0), w - x1)
            # The window the taps can reach: the (shifted) region and the largest shift around it.
            reach = math.ceil(abs(scale) * sum(v * p for v, p in zip(values, group.peak, strict=True))) + 2
            wy0, wy1 = max(0, y0 + dy - reach), min(h, y1 + dy + reach)
            wx0, wx1 = max(0, x0 + dx - reach), min(w, x1 + dx + reach)
            wh, ww = wy1 - wy0, wx1 - wx0
            # Each pixel of the window as one uint32: its R, G, B and the next one's R (never read). Copied as bytes
            # with one spare at the end, then read at 3-byte steps (10x faster than filling 4-byte slots).
            buf = np.empty(wh * ww * 3 + 1, np.uint8)
            buf[:-1].reshape(wh, ww, 3)[...] = out[wy0:wy1, wx0:wx1]
            pf = np.ascontiguousarray(np.ndarray((wh * ww,), np.uint32, buffer=buf.data, strides=(3,)))
            # Backward mapping: the pixel at p shows what was at p - d(p) (d is smooth and small), d the fields
            # weighed by the pose, then turned and scaled: one matrix product gives the source in 1/256 px (rounded).
            horizontal = bool(turn) or any(
                v and name not in _VERTICAL for name, v in zip(group.names, values, strict=True)
            )
            k = np.zeros((2, 2 * len(values)), np.float32)
            for j, v in enumerate(values):
                k[:, 2 * j : 2 * j + 2] = (-256.0 * v) * np.array([[c, -s], [s, c]], np.float32)
            src = k @ group.rows if horizontal else k[1:] @ group.rows
            sy = src[-1]
            sy += group.yf * np.float32(256.0)
            sy += np.float32(256.0 * (dy - wy0) + 0.5)
            np.clip(sy, 0.0, 256.0 * (wh - 1) - 1.0, out=sy)
            iy = sy.astype(np.uint32)
            i = iy >> _EIGHT
            i *= np.uint32(ww)
            iy &= _BYTE
            if horizontal:
                sx = src[0]
                sx += group.xf * np.float32(256.0)
                sx += np.float32(256.0 * (dx - wx0) + 0.5)
                np.clip(sx, 0.0, 256.0 * (ww - 1) - 1.0, out=sx)
                ix = sx.astype(np.uint32)
                i += ix >> _EIGHT
                ix &= _BYTE
                # Bilinear weights in 1/256 that sum to 256 exactly.
                w11 = ix * iy
                w11 += np.uint32(128)
                w11 >>= _EIGHT
                w01 = ix - w11
                w10 = iy - w11
                w00 = _FULL - ix
                w00 -= w10
                taps: tuple[npt.NDArray[np.uint32], ...] = (np.take(pf, i), np.take(pf[1:], i), np.take(pf[ww:], i),
                                                            np.take(pf[ww + 1 :], i))  # fmt: skip
                weights4: tuple[npt.NDArray[np.uint32], ...] = (w00, w01, w10, w11)
            else:
                # Brows lifting alone move pixels straight up: two taps per pixel instead of four.
                i += (group.xs + (dx - wx0)).astype(np.uint32)
                taps = (np.take(pf, i), np.take(pf[ww:], i))
                weights4 = (_FULL - iy, iy)
            frown = weights.get("frown", 0.0)
            shade = None
            if group.shade8 is not None and frown:
                shade = (np.float32(256.5) - np.float32(frown) * group.shade8).astype(np.uint32)
            # Two channels at a time in 16-bit lanes (R and B, then G), every sum of products rounded.
            mixed = None
            for lanes, half in ((_RB, _RB_HALF), (_G, _G_HALF)):
                acc = (taps[0] & lanes) * weights4[0]
                for tap, weight in zip(taps[1:], weights4[1:], strict=True):
                    acc += (tap & lanes) * weight
                acc += half
                acc >>= _EIGHT
                acc &= lanes
                if shade is not None:  # the frown's crease darkens (at most: stays within 0..255)
                    acc *= shade
                    acc += half
                    acc >>= _EIGHT
                    acc &= lanes
                mixed = acc if mixed is None else mixed | acc
            assert mixed is not None
            # To 3-byte pixels: each uint32 written at 3-byte steps in order (its spare byte is overwritten by the
            # next one; 10x faster than copying 3 of every 4 bytes).
            rgb = np.empty(mixed.size * 3 + 1, np.uint8)
            np.ndarray(mixed.shape, np.uint32, buffer=rgb.data, strides=(3,))[...] = mixed
            target = group.index if dy == 0 and dx == 0 else group.index + (dy * w + dx)
            np.put(items, target, rgb[:-1].view(items.dtype))
