"""A video avatar's idle loop stored as H.264 inside the ``.hvia`` (a few hundred kB instead of tens of MB of PNGs).

Encoded with near-transparent quality (crf 14, every 25th frame a key frame); decoded once at load into one
read-only ``[n, H, W, 3]`` array that every session shares.
"""

from __future__ import annotations

import io
from fractions import Fraction

import av
import numpy as np
import numpy.typing as npt

U8 = npt.NDArray[np.uint8]


def encode_loop(frames: U8, fps: int) -> bytes:
    """H.264 (yuv444p would be larger for little gain on faces: yuv420p) MP4 bytes of ``frames`` ``[n, H, W, 3]``."""
    buf = io.BytesIO()
    n, h, w = frames.shape[:3]
    with av.open(buf, mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps, options={"preset": "medium", "crf": "14", "g": "25"})
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.time_base = Fraction(1, fps)
        for i in range(n):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frames[i]), format="rgb24")
            frame.pts = i
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return buf.getvalue()


def decode_loop(data: bytes, frames: int, width: int, height: int) -> U8:
    """Exactly ``frames`` RGB frames of ``width`` x ``height``; :class:`ValueError` says what is wrong otherwise."""
    out = np.empty((frames, height, width, 3), dtype=np.uint8)
    count = 0
    try:
        with av.open(io.BytesIO(data), mode="r") as container:
            if not container.streams.video:
                raise ValueError("no video stream")
            stream = container.streams.video[0]
            if (stream.codec_context.width, stream.codec_context.height) != (width, height):
                raise ValueError(
                    f"frames are {stream.codec_context.width}x{stream.codec_context.height}, expected {width}x{height}"
                )
            for frame in container.decode(stream):
                if count >= frames:
                    raise ValueError(f"more than the {frames} frames the manifest declares")
                out[count] = frame.to_ndarray(format="rgb24")
                count += 1
    except av.FFmpegError as e:
        raise ValueError(str(e)) from None
    if count != frames:
        raise ValueError(f"{count} frames, but the manifest declares {frames}")
    out.flags.writeable = False
    return out
