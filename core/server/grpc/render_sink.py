"""The Render half of the gRPC edge: a ``RenderConfig`` checked into :class:`StreamSettings`, and
:class:`RenderResponseSink`, the :class:`~avaluma.core.live.playout.FrameSink` that turns what a
:class:`~avaluma.core.live.playout.Playout` publishes into ``RenderResponse`` messages.

Frames are encoded (JPEG / I420 / RGB24, float to PCM) in :meth:`RenderResponseSink.prepare`, i.e. in the render
thread, so the event loop only wraps bytes. Frame ``index``/``pts_us`` on the wire count the frames *sent* on the
stream, so they stay gapless when a clear drops frames that were rendered ahead but never sent.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

from avaluma.core.errors import AvalumaError, InvalidArgument
from avaluma.core.media import RenderOptions, check_emotion, float_to_pcm16
from avaluma.core.server.grpc.convert import playback_finished, playback_started, render_options, stream_error
from avaluma.proto.v1 import common_pb2, render_service_pb2
from avaluma.renderer.engine import PlaybackEvent, RenderedFrame
from avaluma.renderer.frame_formats import DEFAULT_JPEG_QUALITY, FrameEncoding, encode_frame

RenderResponse = render_service_pb2.RenderResponse

#: Frames handed to gRPC but not yet sent: beyond this the player waits (gRPC flow control reaches the renderer).
QUEUED_FRAMES: Final = 2

_ENCODINGS: dict[int, FrameEncoding] = {
    common_pb2.VIDEO_ENCODING_UNSPECIFIED: FrameEncoding.JPEG,
    common_pb2.VIDEO_ENCODING_JPEG: FrameEncoding.JPEG,
    common_pb2.VIDEO_ENCODING_I420: FrameEncoding.I420,
    common_pb2.VIDEO_ENCODING_RGB24: FrameEncoding.RGB24,
}
WIRE_ENCODING: dict[FrameEncoding, common_pb2.VideoEncoding] = {
    FrameEncoding.JPEG: common_pb2.VIDEO_ENCODING_JPEG,
    FrameEncoding.I420: common_pb2.VIDEO_ENCODING_I420,
    FrameEncoding.RGB24: common_pb2.VIDEO_ENCODING_RGB24,
}


@dataclass(frozen=True, slots=True)
class StreamSettings:
    """The negotiated parameters of one Render stream (server defaults filled in)."""

    avatar_id: str
    options: RenderOptions
    encoding: FrameEncoding
    jpeg_quality: int
    realtime: bool
    emotion: str = "neutral"


def stream_settings(
    config: render_service_pb2.RenderConfig,
    defaults: RenderOptions,
    *,
    default_avatar: str,
    default_emotion: str = "neutral",
) -> StreamSettings:
    """Validate a ``RenderConfig`` message; raise :class:`InvalidArgument` naming the field and its valid range."""
    options = render_options(config, defaults, field="config")
    encoding = _ENCODINGS.get(config.encoding)
    if encoding is None:
        raise InvalidArgument(
            f"config.encoding {config.encoding} is not a known VideoEncoding: use JPEG, I420 or RGB24"
        )
    quality = config.jpeg_quality or DEFAULT_JPEG_QUALITY
    if not 1 <= quality <= 100:
        raise InvalidArgument(f"config.jpeg_quality {quality} is out of range: use 1..100, or 0 for the default")
    return StreamSettings(
        avatar_id=config.avatar_id or default_avatar,
        options=options,
        encoding=encoding,
        jpeg_quality=quality,
        realtime=config.realtime,
        emotion=check_emotion(config.emotion or default_emotion, field="config.emotion"),
    )


def started_response(settings: StreamSettings, avatar_id: str, width: int, height: int) -> RenderResponse:
    options = settings.options
    started = render_service_pb2.RenderStarted(
        width=width,
        height=height,
        fps=options.fps,
        audio_sample_rate=options.audio_sample_rate,
        encoding=WIRE_ENCODING[settings.encoding],
        avatar_id=avatar_id,
    )
    return RenderResponse(started=started)


def error_response(exc: AvalumaError) -> RenderResponse:
    return RenderResponse(error=stream_error(exc))


def playback_response(event: PlaybackEvent) -> RenderResponse:
    if event.kind == "started":
        return RenderResponse(playback_started=playback_started(event))
    return RenderResponse(playback_finished=playback_finished(event))


def scale_rgb(rgb: npt.NDArray[np.uint8], width: int, height: int) -> npt.NDArray[np.uint8]:
    """``rgb`` scaled to ``width`` x ``height`` (FFmpeg's swscale, fast bilinear, as LiveKit sessions scale)."""
    import av

    source = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
    scaled = source.reformat(width, height, format="rgb24", interpolation="FAST_BILINEAR")
    return np.asarray(scaled.to_ndarray(), dtype=np.uint8)


class RenderResponseSink:
    """Frames, events and in-band errors of one Render stream, in the order the client gets them. Frames are sent at
    ``width`` x ``height``: the rendered ones scaled (in the render thread) when that is not their own size."""

    def __init__(self, settings: StreamSettings, width: int, height: int) -> None:
        self._settings = settings
        self._fps = settings.options.fps
        self._width, self._height = width, height
        #: Encoded media by frame index: written by the render thread, read and pruned on the event loop (single dict
        #: operations are atomic under the GIL, and the two sides never touch the same key at once).
        self._prepared: dict[int, tuple[bytes, bytes]] = {}
        self._out: deque[RenderResponse] = deque()
        self._queued_frames = 0
        self._taken = asyncio.Event()
        #: Set whenever there is something to take (or the stream's owner wants its loop to look around).
        self.wake = asyncio.Event()
        self.sent = 0

    def prepare(self, frame: RenderedFrame) -> None:
        self._prepared[frame.index] = self._encode(frame)

    def _encode(self, frame: RenderedFrame) -> tuple[bytes, bytes]:
        rgb = frame.rgb
        if rgb.shape[:2] != (self._height, self._width):
            rgb = scale_rgb(rgb, self._width, self._height)
        data = encode_frame(rgb, self._settings.encoding, jpeg_quality=self._settings.jpeg_quality)
        return data, float_to_pcm16(frame.audio)

    async def push(self, frame: RenderedFrame) -> None:
        media = self._prepared.pop(frame.index, None)
        data, pcm = media if media is not None else self._encode(frame)
        for index in [i for i in list(self._prepared) if i < frame.index]:  # dropped by a clear: never pushed
            self._prepared.pop(index, None)
        index, pts_us = self.sent, round(self.sent * 1_000_000 / self._fps)
        self.sent += 1
        video = render_service_pb2.VideoFrame(
            index=index,
            pts_us=pts_us,
            width=self._width,
            height=self._height,
            encoding=WIRE_ENCODING[self._settings.encoding],
            data=data,
            speaking=frame.speaking,
        )
        audio = render_service_pb2.AudioFrame(
            index=index, pts_us=pts_us, sample_rate=self._settings.options.audio_sample_rate, pcm=pcm
        )
        # Queued first, then wait: a clear while this push waits is answered after this frame, which it counted.
        self.send(RenderResponse(video=video), RenderResponse(audio=audio))
        self._queued_frames += 1
        while self._queued_frames > QUEUED_FRAMES:
            self._taken.clear()
            await self._taken.wait()

    async def clear(self) -> None:
        """Nothing to drop: what was pushed has been counted as played, so it is sent."""

    def send(self, *responses: RenderResponse) -> None:
        self._out.extend(responses)
        self.wake.set()

    def take(self) -> list[RenderResponse]:
        """Everything ready to send, in order."""
        out = list(self._out)
        self._out.clear()
        self._queued_frames = 0
        self._taken.set()
        return out

    def memory_bytes(self) -> int:
        return sum(len(v[0]) + len(v[1]) for v in list(self._prepared.values()))
