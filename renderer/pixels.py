"""Frames in the pixel formats LiveKit and encoders take: RGB24, RGBA and I420 (BT.601 limited range).

``rtc.VideoFrame(width, height, VideoBufferType.RGBA | I420, data)`` accepts :func:`convert`'s output as is.
"""

from __future__ import annotations

from typing import Literal, get_args

import numpy as np
import numpy.typing as npt

from avaluma.core.errors import InvalidArgument
from avaluma.renderer.frame_formats import rgb_to_i420

PixelFormat = Literal["rgb", "rgba", "i420"]
PIXEL_FORMATS: tuple[str, ...] = get_args(PixelFormat)

U8 = npt.NDArray[np.uint8]


def convert(rgb: U8, fmt: str) -> U8:
    """``rgb`` (H x W x 3 uint8) as ``rgb`` (unchanged), ``rgba`` (H x W x 4, opaque) or ``i420`` (flat planes Y, U,
    V; chroma ``ceil(W/2) x ceil(H/2)``)."""
    if fmt == "rgb":
        return rgb
    if fmt == "rgba":
        out = np.empty((*rgb.shape[:2], 4), dtype=np.uint8)
        out[..., :3] = rgb
        out[..., 3] = 255
        return out
    if fmt == "i420":
        return np.frombuffer(rgb_to_i420(rgb), dtype=np.uint8)
    raise InvalidArgument(f"unknown pixel format {fmt!r}: use one of {', '.join(PIXEL_FORMATS)}")
