"""Video frame encodings on the wire: JPEG, raw I420 and raw RGB24, plus their decoders (for clients and tests).

Pure functions over ``H x W x 3`` uint8 RGB arrays. I420 uses BT.601 limited range (what libyuv, LiveKit and most
encoders assume for SD/HD content) with 2x2 box-filtered chroma; odd sizes round the chroma planes up.
"""

from __future__ import annotations

import io
from enum import StrEnum

import numpy as np
import numpy.typing as npt
from PIL import Image

RGB = npt.NDArray[np.uint8]

DEFAULT_JPEG_QUALITY = 85


class FrameEncoding(StrEnum):
    JPEG = "jpeg"
    I420 = "i420"
    RGB24 = "rgb24"


def _check_rgb(rgb: RGB) -> None:
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"expected an H x W x 3 uint8 array, got shape {rgb.shape} dtype {rgb.dtype}")


def i420_size(width: int, height: int) -> int:
    """Bytes of one I420 frame."""
    return width * height + 2 * ((width + 1) // 2) * ((height + 1) // 2)


def rgb_to_i420(rgb: RGB) -> bytes:
    """Planar Y, U, V (BT.601 limited range); chroma planes are ``ceil(w/2) x ceil(h/2)``."""
    _check_rgb(rgb)
    height, width = rgb.shape[:2]
    f = rgb.astype(np.float32)
    r, g, b = f[..., 0], f[..., 1], f[..., 2]
    y = 16.0 + 0.256788 * r + 0.504129 * g + 0.097906 * b
    u = 128.0 - 0.148223 * r - 0.290993 * g + 0.439216 * b
    v = 128.0 + 0.439216 * r - 0.367788 * g - 0.071427 * b
    # Pad odd sizes by repeating the last row/column so every chroma sample averages four real-ish pixels.
    pad = ((0, height % 2), (0, width % 2))
    u = np.pad(u, pad, mode="edge")
    v = np.pad(v, pad, mode="edge")
    ch, cw = u.shape[0] // 2, u.shape[1] // 2
    u = u.reshape(ch, 2, cw, 2).mean(axis=(1, 3))
    v = v.reshape(ch, 2, cw, 2).mean(axis=(1, 3))
    planes = [np.clip(np.rint(p), 0, 255).astype(np.uint8) for p in (y, u, v)]
    return b"".join(p.tobytes() for p in planes)


def i420_to_rgb(data: bytes, width: int, height: int) -> RGB:
    """Inverse of :func:`rgb_to_i420` (chroma upsampled by repetition)."""
    if len(data) != i420_size(width, height):
        raise ValueError(f"I420 frame of {width}x{height} needs {i420_size(width, height)} bytes, got {len(data)}")
    cw, ch = (width + 1) // 2, (height + 1) // 2
    buf = np.frombuffer(data, dtype=np.uint8)
    y = buf[: width * height].reshape(height, width).astype(np.float32)
    u = buf[width * height : width * height + cw * ch].reshape(ch, cw).astype(np.float32)
    v = buf[width * height + cw * ch :].reshape(ch, cw).astype(np.float32)
    u = u.repeat(2, axis=0).repeat(2, axis=1)[:height, :width] - 128.0
    v = v.repeat(2, axis=0).repeat(2, axis=1)[:height, :width] - 128.0
    c = (y - 16.0) * 1.164383
    r = c + 1.596027 * v
    g = c - 0.391762 * u - 0.812968 * v
    b = c + 2.017232 * u
    rgb: RGB = np.clip(np.rint(np.stack([r, g, b], axis=-1)), 0, 255).astype(np.uint8)
    return rgb


def encode_frame(rgb: RGB, encoding: FrameEncoding, *, jpeg_quality: int = DEFAULT_JPEG_QUALITY) -> bytes:
    """Encode one frame for the wire."""
    _check_rgb(rgb)
    if encoding is FrameEncoding.RGB24:
        return np.ascontiguousarray(rgb).tobytes()
    if encoding is FrameEncoding.I420:
        return rgb_to_i420(rgb)
    if not 1 <= jpeg_quality <= 100:
        raise ValueError(f"JPEG quality must be 1..100, got {jpeg_quality}")
    out = io.BytesIO()
    # 4:2:0 subsampling and no optimize pass: the defaults that keep encoding fast enough for real time.
    Image.fromarray(rgb).save(out, format="JPEG", quality=jpeg_quality)
    return out.getvalue()


def decode_frame(data: bytes, encoding: FrameEncoding, width: int, height: int) -> RGB:
    """Decode a frame received from the server into ``H x W x 3`` uint8 RGB."""
    if encoding is FrameEncoding.RGB24:
        if len(data) != width * height * 3:
            raise ValueError(f"RGB24 frame of {width}x{height} needs {width * height * 3} bytes, got {len(data)}")
        return np.frombuffer(data, dtype=np.uint8).reshape(height, width, 3).copy()
    if encoding is FrameEncoding.I420:
        return i420_to_rgb(data, width, height)
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGB"), dtype=np.uint8).copy()
