"""What publishing a video track costs the room's WebRTC encoder, stood in for by real encoders (PyAV).

No room is connected when the server measures its session budget (:mod:`.admission`) or when ``bench/session.py``
measures capacity, so LiveKit's encoder never runs there; :class:`Encoder` encodes the same frames at the layers and
bitrates LiveKit publishes the frame size with (:func:`livekit_layers`), and :func:`encoder_cores` times it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from fractions import Fraction
from typing import Any

import numpy as np


@dataclass(frozen=True, slots=True)
class Layer:
    width: int
    height: int
    bitrate: int  #: bits per second
    fps: float


def livekit_layers(width: int, height: int, fps: int, *, simulcast: bool = True) -> list[Layer]:
    """The video layers LiveKit encodes a camera track of ``width`` x ``height`` with when ``TrackPublishOptions``
    set no encoding (the server sets none; the FFI's defaults apply: VP8, simulcast on). The presets and the choice
    are livekit-ffi's (rust-sdks ``livekit/src/room/options.rs``, ``compute_appropriate_encoding`` and
    ``compute_video_encodings``): 512x640 is nearer 4:3 than 16:9 and its long side is 640, so the full layer gets
    the 720x540 preset, 450 kbps at 25 fps, and simulcast adds the 480x360 preset scaled to 360x450, 225 kbps at
    20 fps (a frame's long side of 480 or more gets that one extra layer, 960 or more two)."""
    long, short = max(width, height), min(width, height)
    if abs(long / short - 16 / 9) < abs(long / short - 4 / 3):  # (width, height, bitrate, fps) of each preset
        presets = [
            (160, 90, 90_000, 15),
            (320, 180, 160_000, 15),
            (384, 216, 180_000, 15),
            (640, 360, 450_000, 20),
            (960, 540, 800_000, 25),
            (1280, 720, 1_700_000, 30),
            (1920, 1080, 3_000_000, 30),
        ]
        low, mid = (320, 180, 160_000, 15), (640, 360, 450_000, 20)
    else:
        presets = [
            (160, 120, 80_000, 15),
            (240, 180, 100_000, 15),
            (320, 240, 150_000, 15),
            (480, 360, 225_000, 20),
            (640, 480, 300_000, 20),
            (720, 540, 450_000, 25),
            (960, 720, 1_500_000, 30),
            (1440, 1080, 2_500_000, 30),
        ]
        low, mid = (240, 180, 100_000, 15), (480, 360, 225_000, 20)
    bitrate, max_fps = presets[0][2], presets[0][3]
    for preset in presets:
        bitrate, max_fps = preset[2], preset[3]
        if preset[0] > long:
            break
    layers = [Layer(width, height, bitrate, min(fps, max_fps))]
    extra = ([mid, low] if long >= 960 else [mid] if long >= 480 else []) if simulcast else []
    for w, h, rate, layer_fps in extra:
        scale = max(1.0, short / min(w, h))
        layers.append(Layer(round(width / scale) // 2 * 2, round(height / scale) // 2 * 2, rate, min(fps, layer_fps)))
    return layers


def rgb_to_i420(rgb: np.ndarray) -> np.ndarray:
    """RGB24 -> I420 with libyuv through LiveKit's own converter, as ``rtc.VideoSource.capture_frame`` does."""
    from livekit import rtc

    height, width = rgb.shape[:2]
    frame = rtc.VideoFrame(width, height, rtc.VideoBufferType.RGB24, np.ascontiguousarray(rgb).tobytes())
    i420 = frame.convert(rtc.VideoBufferType.I420)
    return np.frombuffer(i420.data, np.uint8).reshape(height * 3 // 2, width)


class Encoder:
    """What one published video track costs the room's WebRTC encoder per frame, stood in for by PyAV.

    ``codec`` "vp8": libvpx with WebRTC's realtime settings (realtime deadline, cpu-used -6 as WebRTC's x86
    default, no lag, error resilient, CBR at the layer's bitrate); "h264": libx264 ultrafast/zerolatency (WebRTC's
    own software H.264 is OpenH264; x264 ultrafast is the cheap end). One encoder per :func:`livekit_layers` layer,
    each fed the I420 frame scaled to its size and thinned to its fps, one thread each (WebRTC uses one up to
    640x480 and at most two at this size). :meth:`encode` converts RGB to I420 first: capture already does that in
    the FFI (so the no-encoder runs count it too), so the encode-inclusive runs count it twice, erring low.
    """

    def __init__(
        self, codec: str, width: int, height: int, fps: int, *, simulcast: bool = True, max_bitrate: int = 0
    ) -> None:
        import av

        self.codec, self.fps = codec, fps
        self.layers = livekit_layers(width, height, fps, simulcast=simulcast)
        if max_bitrate > 0:  # the session's own bitrate for the full layer (VideoPublishing.max_bitrate)
            self.layers[0] = replace(self.layers[0], bitrate=max_bitrate)
        self._contexts: list[Any] = []
        for layer in self.layers:
            ctx: Any = av.CodecContext.create({"vp8": "libvpx", "h264": "libx264"}[codec], "w")  # a video context
            ctx.width, ctx.height, ctx.pix_fmt = layer.width, layer.height, "yuv420p"
            ctx.time_base, ctx.framerate = Fraction(1, fps), Fraction(fps)
            ctx.bit_rate, ctx.thread_count, ctx.gop_size = layer.bitrate, 1, 3000
            if codec == "vp8":
                ctx.options = {
                    "deadline": "realtime", "cpu-used": "-6", "lag-in-frames": "0", "error-resilient": "1",
                    "static-thresh": "1", "minrate": str(layer.bitrate), "maxrate": str(layer.bitrate),
                    "bufsize": str(layer.bitrate),
                }  # fmt: skip
            else:
                ctx.options = {"preset": "ultrafast", "tune": "zerolatency"}
            ctx.open()
            self._contexts.append(ctx)
        self.frames = 0
        self.bytes = 0

    def encode(self, rgb: np.ndarray) -> None:
        self.encode_i420(rgb_to_i420(rgb))

    def encode_i420(self, i420: np.ndarray) -> None:
        import av

        frame = av.VideoFrame.from_ndarray(i420, format="yuv420p")
        for layer, ctx in zip(self.layers, self._contexts, strict=True):
            # A layer at a lower fps encodes only the frames that fall on its own clock.
            if int((self.frames + 1) * layer.fps / self.fps) == int(self.frames * layer.fps / self.fps):
                continue
            scaled = frame if layer.width == frame.width else frame.reformat(layer.width, layer.height)
            scaled.pts = self.frames
            for packet in ctx.encode(scaled):
                self.bytes += packet.size
        self.frames += 1

    def describe(self) -> str:
        layers = " + ".join(f"{x.width}x{x.height}@{x.fps:g} {x.bitrate // 1000} kbps" for x in self.layers)
        return f"{self.codec.upper()} {layers}"


def encoder_cores(
    rgb: np.ndarray, *, codec: str, fps: int, simulcast: bool = True, max_bitrate: int = 0, frames: int = 25
) -> float:
    """Cores encoding a session's video keeps busy at ``fps``: ``frames`` frames (``rgb`` with a moving patch, so
    the encoder has changes to code, as in speech) through a fresh :class:`Encoder`, this thread's CPU time, the
    first (key) frame not counted."""
    height, width = rgb.shape[:2]
    encoder = Encoder(codec, width, height, fps, simulcast=simulcast, max_bitrate=max_bitrate)
    i420 = rgb_to_i420(rgb)
    encoder.encode_i420(i420)  # the key frame
    patch = (slice(height * 5 // 8, height * 3 // 4), slice(width * 3 // 8, width * 5 // 8))
    start = time.thread_time()
    for i in range(frames):
        moved = i420.copy()
        moved[patch] = (moved[patch].astype(np.int16) + 12 * (i % 5)).clip(0, 255).astype(np.uint8)
        encoder.encode_i420(moved)
    return (time.thread_time() - start) / frames * fps
