"""``RenderService.Render``: a thin gRPC adapter over the one player (:mod:`avaluma.core.live.render_stream`).

The first request is checked into :class:`StreamSettings` (``render_sink``); the rest drive a
:class:`~avaluma.core.live.render_stream.RenderStream` (``audio`` -> ``push_audio``, ``segment_end`` ->
``end_segment``, ``clear`` -> ``clear``, ``set_emotion`` -> ``set_emotion``, half-close -> end the segment and finish)
and a :class:`RenderResponseSink` turns what it plays into responses. ``realtime=true`` paces frames at ``fps`` and
fills silence with idle frames, like a LiveKit session; ``false`` sends speech frames as fast as they render. A stream
holds an admission slot like a session. On the wire:

- a malformed request is answered in-band with ``StreamError`` and the stream goes on; a message that does not decode
  at all ends the call with INVALID_ARGUMENT. Audio beyond the player's backlog bound waits (flow control);
- every ``clear`` is answered at once with exactly one ``playback_finished{interrupted}``;
- lip-sync backend faults are told in-band (UNAVAILABLE); under the backend's ``end`` policy the call then ends
  UNAVAILABLE. A realtime stream that falls behind its clock says so in-band (RESOURCE_EXHAUSTED);
- no config within ``render.first_message_timeout_s``, or no request for ``render.idle_timeout_s`` while nothing is
  left to play, end the call with DEADLINE_EXCEEDED (a silent client must not hold a slot);
- a draining server refuses new streams (UNAVAILABLE: start it on another instance) and gives open ones until the
  drain deadline (:meth:`RenderServicer.drain`); at shutdown, open streams end UNAVAILABLE.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncIterator
from typing import Any, Final

import grpc.aio

from avaluma.core.errors import AvalumaError, DeadlineExceeded, InvalidArgument, Unavailable
from avaluma.core.live.avatar_store import AvatarStore
from avaluma.core.live.playout import SharedBackend
from avaluma.core.live.render_stream import RenderStream, open_render_stream
from avaluma.core.live.sessions import SessionSlots, output_size
from avaluma.core.media import RenderOptions, pcm16_to_mono
from avaluma.core.server.grpc.render_sink import (
    RenderResponse,
    RenderResponseSink,
    StreamSettings,
    error_response,
    playback_response,
    started_response,
    stream_settings,
)
from avaluma.core.telemetry import ATTR_ENCODING
from avaluma.proto.v1 import render_service_pb2, render_service_pb2_grpc

log = logging.getLogger(__name__)

RenderRequest = render_service_pb2.RenderRequest
SHUTDOWN_MESSAGE: Final = "the server is shutting down: reconnect (to another instance) and start a new stream"
DRAIN_MESSAGE: Final = (
    "the server is shutting down and the stream did not end within its drain deadline of {timeout_s:g} s: reconnect "
    "(to another instance) and start a new stream"
)
CONFIG_AGAIN: Final = "config was already sent: it may only be the first message of a stream"
EMPTY_REQUEST: Final = "empty request: set one of config, audio, segment_end, clear or set_emotion"


async def _feed(
    stream: RenderStream[RenderResponse], sink: RenderResponseSink, requests: AsyncIterator[RenderRequest]
) -> None:
    """Requests after the config, mapped onto the stream's player; in-band errors for what is malformed."""
    playout = stream.playout
    try:
        async for request in requests:
            stream.touch()
            kind = request.WhichOneof("request")
            if kind == "audio":
                audio = request.audio
                try:
                    chunk = pcm16_to_mono(audio.pcm, audio.sample_rate, audio.num_channels)
                except InvalidArgument as exc:
                    sink.send(error_response(exc))
                    continue
                await playout.wait_for_room(chunk.duration_s)
                playout.push_audio(chunk)
            elif kind == "segment_end":
                playout.end_segment()
            elif kind == "clear":
                sink.send(playback_response(stream.clear()))
            elif kind == "set_emotion":
                try:
                    playout.set_emotion(request.set_emotion.emotion)
                except InvalidArgument as exc:
                    sink.send(error_response(exc))
            else:
                sink.send(error_response(InvalidArgument(CONFIG_AGAIN if kind == "config" else EMPTY_REQUEST)))
    except AvalumaError:
        raise  # the request stream itself is invalid (a message that does not decode): the call ends with it
    except Exception as exc:  # the call broke (client gone): treat it as the end of the input
        log.debug("render stream input ended with an error", extra={"error_type": type(exc).__name__})


class RenderServicer(render_service_pb2_grpc.RenderServiceServicer):
    """``avaluma.v1.RenderService``. Domain errors are raised and mapped to status codes by the error interceptor."""

    def __init__(
        self,
        *,
        store: AvatarStore,
        backend: SharedBackend,
        slots: SessionSlots,
        defaults: RenderOptions,
        default_avatar: str,
        first_message_timeout_s: float = 10.0,
        idle_timeout_s: float = 60.0,
        default_emotion: str = "neutral",
    ) -> None:
        self._store = store
        self._default_emotion = default_emotion
        self._backend = backend
        self._slots = slots
        self._defaults = defaults
        self._default_avatar = default_avatar
        self._first_message_timeout_s = first_message_timeout_s
        self._idle_timeout_s = idle_timeout_s
        #: Set by :meth:`begin_shutdown`: what every stream, also one opened from now on, ends with.
        self._closing: AvalumaError | None = None
        self._streams: set[RenderStream[RenderResponse]] = set()
        #: Set whenever the last stream ends (what :meth:`drain` waits for).
        self._emptied = asyncio.Event()

    def begin_shutdown(self) -> None:
        """Make every open stream end with UNAVAILABLE (called before the server's grace period starts)."""
        self._closing = Unavailable(SHUTDOWN_MESSAGE)
        for stream in self._streams:
            stream.end(self._closing)

    async def drain(self, *, timeout_s: float) -> int:
        """Graceful drain before shutdown: give the open streams up to ``timeout_s`` to end by themselves, then end the
        rest with UNAVAILABLE saying so; returns how many the deadline ended. New streams are refused meanwhile by the
        drained :class:`SessionSlots` (UNAVAILABLE: start it on another server instance)."""
        if self._streams:
            log.info("draining render streams", extra={"count": len(self._streams), "timeout_s": timeout_s})
            self._emptied.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._emptied.wait(), timeout_s)
        left = list(self._streams)
        for stream in left:
            stream.end(Unavailable(DRAIN_MESSAGE.format(timeout_s=timeout_s)))
        return len(left)

    async def _settings(self, requests: AsyncIterator[RenderRequest]) -> StreamSettings | None:
        """The stream's first message, checked: a ``RenderConfig``, in time; None when the client sent nothing."""
        wait_s = self._first_message_timeout_s
        try:
            first = await asyncio.wait_for(anext(requests), wait_s)
        except StopAsyncIteration:
            return None
        except TimeoutError:
            raise DeadlineExceeded(
                f"no config within {wait_s:g} s of opening the Render stream (render.first_message_timeout_s): send "
                "the RenderConfig as the first message right away"
            ) from None
        if first.WhichOneof("request") != "config":
            raise InvalidArgument(
                "the first message of a Render stream must be `config` (a RenderConfig); "
                f"got {first.WhichOneof('request') or 'an empty request'}"
            )
        return stream_settings(
            first.config, self._defaults, default_avatar=self._default_avatar, default_emotion=self._default_emotion
        )

    async def Render(
        self, request_iterator: AsyncIterator[RenderRequest], context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[RenderResponse]:
        settings = await self._settings(request_iterator)
        if settings is None:
            return
        avatar = self._store.get(settings.avatar_id)
        options = settings.options
        width, height = output_size(options, avatar, field="config")
        # Counted like a LiveKit session of the same frame size and fps.
        weight = self._slots.weight(fps=options.fps, pixels=width * height)
        with self._slots.acquire("render stream", weight) as slot:
            sink = RenderResponseSink(settings, width, height)
            stream = await open_render_stream(
                sink,
                avatar,
                self._backend,
                options=options,
                emotion=settings.emotion,
                realtime=settings.realtime,
                idle_timeout_s=self._idle_timeout_s,
                on_event=lambda event: sink.send(playback_response(event)),
                report=lambda exc: sink.send(error_response(exc)),
                attributes={ATTR_ENCODING: settings.encoding.value},
                watch=slot,
            )
            extra = {"avatar_id": avatar.id, "fps": options.fps, "encoding": settings.encoding.value}
            log.info("render stream started", extra={**extra, "realtime": settings.realtime})
            yield started_response(settings, avatar.id, width, height)
            self._streams.add(stream)
            if self._closing is not None:
                stream.end(self._closing)
            try:
                async for response in stream.run(functools.partial(_feed, stream, sink, request_iterator)):
                    yield response
            finally:
                self._streams.discard(stream)
                if not self._streams:
                    self._emptied.set()
                log.info("render stream ended", extra={"avatar_id": avatar.id, "frames_sent": sink.sent})
