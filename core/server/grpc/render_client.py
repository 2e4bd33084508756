"""A client of the Render stream (``avaluma.v1.RenderService/Render``): audio in, lip-synced video frames out.

What ``avaluma render --server`` runs, and the shape every client follows (examples/render_stream.py is the same
in a few lines, for copying): send ``config`` first and wait for ``started``; send the audio as ``audio`` chunks of a
tenth of a second and ``segment_end``; half-close; read ``video`` and ``audio`` frames (one audio frame per video
frame, same index) until the server ends the call. With ``realtime`` off, frames come as fast as the server renders
them and only the audio produces frames.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field

import grpc
import grpc.aio
import numpy as np

from avaluma.core.errors import AvalumaError, InvalidArgument, NotFound, Unauthenticated, Unavailable
from avaluma.core.media import AudioChunk
from avaluma.proto.v1 import common_pb2, render_service_pb2, render_service_pb2_grpc


@dataclass(frozen=True)
class RemoteFrame:
    index: int
    jpeg: bytes
    #: Mono little-endian int16 PCM, ``audio_sample_rate / fps`` samples.
    pcm: bytes
    speaking: bool


@dataclass
class RemoteRender:
    avatar_id: str
    width: int
    height: int
    fps: int
    audio_sample_rate: int
    frames: list[RemoteFrame] = field(default_factory=list)


def _pcm16(chunk: AudioChunk) -> bytes:
    return (np.clip(chunk.samples, -1.0, 1.0) * 32767).astype("<i2").tobytes()


async def render_remote(
    target: str,
    chunks: Iterable[AudioChunk],
    *,
    api_key: str,
    avatar_id: str = "",
    fps: int = 0,
    tls: bool = False,
    timeout_s: float = 600.0,
    emotion: str = "",
) -> RemoteRender:
    """Render ``chunks`` (one segment) on the server at ``target``, showing ``emotion`` (empty: the server's default);
    the frames come back JPEG-encoded."""
    config = render_service_pb2.RenderConfig(
        avatar_id=avatar_id, fps=fps, encoding=common_pb2.VIDEO_ENCODING_JPEG, realtime=False, emotion=emotion
    )
    started = asyncio.Event()

    async def requests() -> AsyncIterator[render_service_pb2.RenderRequest]:
        yield render_service_pb2.RenderRequest(config=config)
        await started.wait()  # set-up errors then arrive with their own status (see the .proto)
        for chunk in chunks:
            pcm = render_service_pb2.AudioChunk(pcm=_pcm16(chunk), sample_rate=chunk.sample_rate, num_channels=1)
            yield render_service_pb2.RenderRequest(audio=pcm)
        yield render_service_pb2.RenderRequest(segment_end=render_service_pb2.SegmentEnd())

    channel = (
        grpc.aio.secure_channel(target, grpc.ssl_channel_credentials()) if tls else grpc.aio.insecure_channel(target)
    )
    result: RemoteRender | None = None
    pending: dict[int, tuple[bytes, bool]] = {}
    try:
        async with channel:
            stub = render_service_pb2_grpc.RenderServiceStub(channel)
            call = stub.Render(requests(), metadata=(("x-api-key", api_key),), timeout=timeout_s)
            async for response in call:
                kind = response.WhichOneof("response")
                if kind == "started":
                    s = response.started
                    result = RemoteRender(s.avatar_id, s.width, s.height, s.fps, s.audio_sample_rate)
                    started.set()
                elif kind == "video":
                    pending[response.video.index] = (response.video.data, response.video.speaking)
                elif kind == "audio" and result is not None:
                    jpeg, speaking = pending.pop(response.audio.index)
                    result.frames.append(RemoteFrame(response.audio.index, jpeg, response.audio.pcm, speaking))
                elif kind == "error":
                    raise InvalidArgument(f"the server refused part of the audio: {response.error.message}")
    except grpc.aio.AioRpcError as exc:
        raise _error(exc, target) from None
    if result is None:
        raise Unavailable(f"the Render stream at {target} ended before it started")
    return result


def _error(exc: grpc.aio.AioRpcError, target: str) -> AvalumaError:
    by_code: dict[grpc.StatusCode, type[AvalumaError]] = {
        grpc.StatusCode.UNAVAILABLE: Unavailable,
        grpc.StatusCode.UNAUTHENTICATED: Unauthenticated,
        grpc.StatusCode.NOT_FOUND: NotFound,
        grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument,
    }
    message = exc.details() or exc.code().name
    if exc.code() == grpc.StatusCode.UNAVAILABLE:
        message += f". Is `avaluma serve` running at {target}?"
    elif exc.code() == grpc.StatusCode.UNAUTHENTICATED:
        message += " (pass --api-key or set AVALUMA_API_KEY)"
    return by_code.get(exc.code(), AvalumaError)(f"Render stream at {target}: {message}")
