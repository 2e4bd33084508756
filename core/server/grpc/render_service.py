"""``RenderService.Render``: a thin gRPC adapter over the one player, :class:`~avaluma.core.live.playout.Playout`.

The requests drive a Playout (``audio`` -> ``push_audio``, ``segment_end`` -> ``end_segment``, ``clear`` -> ``clear``,
``set_emotion`` -> ``set_emotion``, half-close -> end the segment and ``finish``) and a :class:`RenderResponseSink`
turns what it publishes into responses.
``realtime=true`` paces frames at ``fps`` and fills silence with idle frames (:class:`MonotonicClock`), like a LiveKit
session; ``false`` sends speech frames as fast as they render (:class:`Unpaced`). Rendering runs in the render pool
that LiveKit sessions use, and a stream holds an admission slot like a session. What is the stream's own:

- in-band errors: a malformed request is answered with ``StreamError`` and the stream goes on; a message that does not
  decode at all ends the call with INVALID_ARGUMENT. Audio beyond the player's backlog bound waits (flow control);
- every ``clear`` is answered at once with exactly one ``playback_finished{interrupted}``: the playing segment's, else
  that of the first dropped segment or of the last one, at position 0;
- lip-sync backend faults are told in-band (UNAVAILABLE, naming the backend and its policy); under ``end`` the call
  then ends UNAVAILABLE. A realtime stream that falls behind its clock says so (RESOURCE_EXHAUSTED), at most every
  :data:`LAG_NOTICE_INTERVAL_S`;
- time limits: no config within ``render.first_message_timeout_s``, or no request for ``render.idle_timeout_s`` while
  nothing is left to play, end the call with DEADLINE_EXCEEDED (a silent client must not hold a slot); at shutdown
  open streams end UNAVAILABLE.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any, Final

import grpc.aio

from avaluma.core.errors import AvalumaError, DeadlineExceeded, InvalidArgument, ResourceExhausted, Unavailable
from avaluma.core.live.avatar_store import AvatarStore
from avaluma.core.live.playout import FaultRelay, MonotonicClock, Playout, SharedBackend, Unpaced
from avaluma.core.live.sessions import SessionSlots
from avaluma.core.live.telemetry_render import KIND_RENDER, lipsync_instrumentation, stream_telemetry
from avaluma.core.media import RenderOptions, pcm16_to_mono
from avaluma.core.server.grpc.render_sink import (
    WIRE_ENCODING,
    RenderResponse,
    RenderResponseSink,
    StreamSettings,
    error_response,
    playback_response,
    stream_settings,
)
from avaluma.core.tasks import cancel_and_wait
from avaluma.core.telemetry import ATTR_AVATAR_ID, ATTR_ENCODING, ATTR_FPS, ATTR_REALTIME, Attributes
from avaluma.proto.v1 import render_service_pb2, render_service_pb2_grpc
from avaluma.renderer.avatar import Avatar
from avaluma.renderer.engine import PlaybackEvent, RenderSession
from avaluma.renderer.lipsync.base import LipSyncFault

log = logging.getLogger(__name__)

RenderRequest = render_service_pb2.RenderRequest
#: A lagging realtime stream tells its client at most this often.
LAG_NOTICE_INTERVAL_S: Final = 5.0
SHUTDOWN_MESSAGE: Final = "the server is shutting down: reconnect (to another instance) and start a new stream"
CONFIG_AGAIN: Final = "config was already sent: it may only be the first message of a stream"
EMPTY_REQUEST: Final = "empty request: set one of config, audio, segment_end, clear or set_emotion"


class _Stream:
    """One Render call after its config: a reader task feeding the player, and the loop that sends the responses."""

    def __init__(self, sink: RenderResponseSink, idle_timeout_s: float) -> None:
        self.sink = sink
        self.playout: Playout  # set by RenderServicer._open (the player needs the sink first)
        self._idle_timeout_s = idle_timeout_s
        self._loop = asyncio.get_running_loop()
        self._quiet_since = self._loop.time()
        self._last_lag_notice: float | None = None

    def on_event(self, event: PlaybackEvent) -> None:
        self.sink.send(playback_response(event))

    def on_fault(self, fault: LipSyncFault) -> None:
        extra = {"event": "lipsync_fault", "url": fault.url, "action": fault.action, "error": fault.error}
        log.warning("lip-sync backend fault reported to the render stream", extra=extra)
        self.sink.send(error_response(Unavailable(fault.describe())))

    def on_lag(self, lag_s: float) -> None:
        now = self._loop.time()
        if self._last_lag_notice is not None and now - self._last_lag_notice < LAG_NOTICE_INTERVAL_S:
            return
        self._last_lag_notice = now
        log.warning(
            "realtime render stream fell behind", extra={"lag_s": round(lag_s, 3), "frames_sent": self.sink.sent}
        )
        message = (
            f"the stream fell {lag_s:.2f} s behind real time: the server is short of CPU for its streams; frames "
            "continue from now on (reconnect to another instance if this repeats)"
        )
        self.sink.send(error_response(ResourceExhausted(message)))

    def clear(self) -> RenderResponse:
        playing = self.playout.playing
        events = self.playout.clear(emit=False)
        return playback_response(next((e for e in events if e.segment == playing), events[0]))

    async def read(self, requests: AsyncIterator[RenderRequest]) -> None:
        playout, sink = self.playout, self.sink
        try:
            async for request in requests:
                self._quiet_since = self._loop.time()
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
                    sink.send(self.clear())
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
        # Half-close ends an open segment, like closing a LiveKit byte stream does; the call ends once it has played.
        playout.end_segment()
        playout.finish()

    async def run(self, requests: AsyncIterator[RenderRequest], closing: Callable[[], bool]) -> AsyncIterator[Any]:
        reader = asyncio.create_task(self.read(requests), name="avaluma-render-reader")
        player = asyncio.create_task(self.playout.run(), name="avaluma-render-playout")
        for task in (reader, player):
            task.add_done_callback(lambda _task: self.sink.wake.set())
        try:
            while True:
                self.sink.wake.clear()
                for response in self.sink.take():
                    yield response
                if player.done():
                    for response in self.sink.take():  # what came while the last responses were being sent
                        yield response
                    player.result()  # a render failure (lip-sync policy `end`) ends the call with its status
                    return
                if reader.done() and not reader.cancelled() and reader.exception() is not None:
                    reader.result()
                if closing():
                    raise Unavailable(SHUTDOWN_MESSAGE)
                self._check_idle(input_open=not reader.done())
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self._idle_timeout_s / 4):
                        await self.sink.wake.wait()
        finally:
            self.playout.close()
            await cancel_and_wait(reader, player)

    def _check_idle(self, *, input_open: bool) -> None:
        """The idle clock runs only while the stream has nothing left to play and its client could still send."""
        now = self._loop.time()
        if self.playout.busy() or not input_open:
            self._quiet_since = max(self._quiet_since, now)
        elif now - self._quiet_since >= self._idle_timeout_s:
            raise DeadlineExceeded(
                f"no request for {self._idle_timeout_s:g} s with nothing left to play: the stream was ended to free "
                "its slot (render.idle_timeout_s); keep a quiet stream open by sending audio (silence counts)"
            )


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
        self._closing = False
        self._streams: set[_Stream] = set()

    def begin_shutdown(self) -> None:
        """Make every open stream end with UNAVAILABLE (called before the server's grace period starts)."""
        self._closing = True
        for stream in self._streams:
            stream.sink.wake.set()

    async def _open(self, settings: StreamSettings, avatar: Avatar) -> _Stream:
        stream = _Stream(RenderResponseSink(settings, avatar.width, avatar.height), self._idle_timeout_s)
        faults = FaultRelay()
        options = settings.options
        backend = await self._backend.get()
        render = RenderSession(
            avatar,
            backend,
            fps=options.fps,
            audio_sample_rate=options.audio_sample_rate,
            seed=options.seed,
            instrumentation=lipsync_instrumentation(backend, on_fault=faults.from_worker),
            emotion=settings.emotion,
        )
        clock = MonotonicClock() if settings.realtime else Unpaced()
        stream.playout = Playout(render, stream.sink, on_event=stream.on_event, clock=clock, on_lag=stream.on_lag)
        attributes: Attributes = {
            ATTR_AVATAR_ID: avatar.id,
            ATTR_FPS: options.fps,
            ATTR_ENCODING: settings.encoding.value,
            ATTR_REALTIME: settings.realtime,
        }
        stream.playout.telemetry = stream_telemetry(
            KIND_RENDER, attributes, lambda: stream.playout.memory_bytes() + stream.sink.memory_bytes()
        )
        faults.listen(stream.on_fault)
        return stream

    async def Render(
        self, request_iterator: AsyncIterator[RenderRequest], context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[RenderResponse]:
        wait_s = self._first_message_timeout_s
        try:
            first = await asyncio.wait_for(anext(request_iterator), wait_s)
        except StopAsyncIteration:
            return
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
        settings = stream_settings(
            first.config, self._defaults, default_avatar=self._default_avatar, default_emotion=self._default_emotion
        )
        avatar = self._store.get(settings.avatar_id)
        options = settings.options
        with self._slots.acquire("render stream"):
            stream = await self._open(settings, avatar)
            extra = {"avatar_id": avatar.id, "fps": options.fps, "encoding": settings.encoding.value}
            log.info("render stream started", extra={**extra, "realtime": settings.realtime})
            yield RenderResponse(
                started=render_service_pb2.RenderStarted(
                    width=avatar.width,
                    height=avatar.height,
                    fps=options.fps,
                    audio_sample_rate=options.audio_sample_rate,
                    encoding=WIRE_ENCODING[settings.encoding],
                    avatar_id=avatar.id,
                )
            )
            self._streams.add(stream)
            try:
                async for response in stream.run(request_iterator, lambda: self._closing):
                    yield response
            finally:
                self._streams.discard(stream)
                log.info("render stream ended", extra={"avatar_id": avatar.id, "frames_sent": stream.sink.sent})
