"""A player whose output its owner pulls: the gRPC ``Render`` stream's engine, without the wire.

:func:`open_render_stream` builds a :class:`Playout` over the server's shared lip-sync backend (instrumented, its faults
reported to the player's event stream) into an :class:`Outbox`, a :class:`FrameSink` that collects what the client is
to get in order. :meth:`RenderStream.run` runs the player while an input coroutine feeds it and yields what the outbox
collected. The stream reads the player's one event stream (:meth:`Playout.events`): playback events, faults and lag go
into the outbox in the order they happened, the pending ones always before the next frame. What the stream adds to the
player:

- input end: when the input coroutine returns (the client half-closed) the open segment ends and the stream ends once
  everything queued has played; an :class:`AvalumaError` from the input (a message that does not decode) ends it at
  once;
- in-band reports through ``report``: lip-sync backend faults (:class:`Unavailable`, naming the backend and its policy)
  and a realtime stream falling behind its clock (:class:`ResourceExhausted`, at most every
  :data:`LAG_NOTICE_INTERVAL_S`);
- a clear is answered by exactly one event (:meth:`RenderStream.clear`);
- the idle timeout: no input (:meth:`RenderStream.touch`) for ``idle_timeout_s`` while nothing is left to play and the
  client could still send ends the stream with :class:`DeadlineExceeded` (a silent client must not hold a slot);
- :meth:`RenderStream.end` ends it from outside (shutdown, a drain deadline) with the error the client is to see.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Final, Generic, Protocol, TypeVar

from avaluma.core.errors import AvalumaError, DeadlineExceeded, ResourceExhausted, Unavailable
from avaluma.core.live.events import FellBehind, LipSyncFaulted, PlayoutEvent
from avaluma.core.live.playout import (
    FrameSink,
    FrameWatch,
    MonotonicClock,
    Playout,
    PlayoutEvents,
    SharedBackend,
    Unpaced,
)
from avaluma.core.live.telemetry_render import KIND_RENDER, lipsync_instrumentation, stream_telemetry
from avaluma.core.media import RenderOptions
from avaluma.core.tasks import cancel_and_wait
from avaluma.core.telemetry import ATTR_AVATAR_ID, ATTR_FPS, ATTR_REALTIME, Attributes
from avaluma.renderer.engine import PlaybackEvent, RenderedFrame, RenderSession

if TYPE_CHECKING:
    from avaluma.renderer.avatar import Avatar
    from avaluma.renderer.lipsync.base import LipSyncFault

log = logging.getLogger(__name__)

#: A lagging realtime stream tells its client at most this often.
LAG_NOTICE_INTERVAL_S: Final = 5.0

T = TypeVar("T")


class Outbox(FrameSink, Protocol[T]):
    """A sink whose output is pulled: :meth:`take` returns everything ready, in order; ``wake`` is set whenever there
    is something to take (or the owner wants :meth:`RenderStream.run` to look around)."""

    wake: asyncio.Event
    sent: int  #: frames sent so far

    def take(self) -> list[T]: ...

    def memory_bytes(self) -> int: ...


class RenderStream(Generic[T]):
    """One player run for a client that pulls its output (see the module docstring). Built by
    :func:`open_render_stream`."""

    def __init__(
        self,
        sink: Outbox[T],
        *,
        idle_timeout_s: float,
        on_event: Callable[[PlaybackEvent], None],
        report: Callable[[AvalumaError], None],
    ) -> None:
        self.sink = sink
        self.playout: Playout  # set by open_render_stream (the player's sink is this stream's)
        self._on_event = on_event
        self._report = report
        self._idle_timeout_s = idle_timeout_s
        self._loop = asyncio.get_running_loop()
        self._quiet_since = self._loop.time()
        self._last_lag_notice: float | None = None
        self._ended: AvalumaError | None = None

    def touch(self) -> None:
        """The client sent something: the idle clock starts again."""
        self._quiet_since = self._loop.time()

    def clear(self) -> PlaybackEvent:
        """Clear the player; the one event that answers it: the playing segment's ``finished{interrupted}``, else
        that of the first dropped segment or of the last one, at position 0. What happened before the clear goes
        into the outbox first."""
        self.pump()
        playing = self.playout.playing
        events = self.playout.clear()
        return next((e for e in events if e.segment == playing), events[0])

    def pump(self) -> None:
        """Hand the player's pending events to the outbox, in order (before each frame, and whenever the stream looks
        around)."""
        for event in self.playout.events().take_ready():
            self._handle(event)

    def _handle(self, event: PlayoutEvent) -> None:
        if isinstance(event, PlaybackEvent):
            self._on_event(event)
        elif isinstance(event, LipSyncFaulted):
            self.on_fault(event.fault)
        elif isinstance(event, FellBehind):
            self.on_lag(event.lag_s)
        # Cleared: answered by clear() with its one event. PlayoutFailed: run() raises the error itself.

    async def _read_events(self) -> None:
        """Events that come while no frame is pushed (a segment's last ``finished``, a fault): to the outbox now."""
        async for event in self.playout.events():
            self._handle(event)

    def end(self, error: AvalumaError) -> None:
        """End the stream with ``error`` once what is ready has been sent (the first call wins)."""
        if self._ended is None:
            self._ended = error
        self.sink.wake.set()

    def on_fault(self, fault: LipSyncFault) -> None:
        extra = {"event": "lipsync_fault", "url": fault.url, "action": fault.action, "error": fault.error}
        log.warning("lip-sync backend fault reported to the render stream", extra=extra)
        self._report(Unavailable(fault.describe()))

    def on_lag(self, lag_s: float) -> None:
        now = self._loop.time()
        if self._last_lag_notice is not None and now - self._last_lag_notice < LAG_NOTICE_INTERVAL_S:
            return
        self._last_lag_notice = now
        extra = {"lag_s": round(lag_s, 3), "frames_sent": self.sink.sent}
        log.warning("realtime render stream fell behind", extra=extra)
        message = (
            f"the stream fell {lag_s:.2f} s behind real time: the server is short of CPU for its streams; frames "
            "continue from now on (reconnect to another instance if this repeats)"
        )
        self._report(ResourceExhausted(message))

    async def _input(self, feed: Callable[[], Awaitable[None]]) -> None:
        await feed()  # an error here (the input itself is invalid) ends the stream with it
        # Input's end ends an open segment, like closing a LiveKit byte stream does; the stream ends once it has played.
        self.playout.end_segment()
        self.playout.finish()

    async def run(self, feed: Callable[[], Awaitable[None]]) -> AsyncIterator[T]:
        """Play while ``feed()`` (the client's input, calling into :attr:`playout`) runs; yield the outbox's output
        until the player is done. Raises what ended the stream (a render failure, the input's error, the idle
        timeout, :meth:`end`)."""
        reader = asyncio.create_task(self._input(feed), name="avaluma-render-reader")
        player = asyncio.create_task(self.playout.run(), name="avaluma-render-playout")
        events = asyncio.create_task(self._read_events(), name="avaluma-render-events")
        for task in (reader, player):
            task.add_done_callback(lambda _task: self.sink.wake.set())
        try:
            while True:
                self.sink.wake.clear()
                self.pump()
                for item in self.sink.take():
                    yield item
                if player.done():
                    self.pump()
                    for item in self.sink.take():  # what came while the last items were being sent
                        yield item
                    player.result()  # a render failure (lip-sync policy `end`) ends the stream with its error
                    return
                if reader.done() and not reader.cancelled() and reader.exception() is not None:
                    reader.result()
                if self._ended is not None:
                    raise self._ended
                self._check_idle(input_open=not reader.done())
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self._idle_timeout_s / 4):
                        await self.sink.wake.wait()
        finally:
            self.playout.close()
            await cancel_and_wait(reader, player, events)

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


async def open_render_stream(
    sink: Outbox[T],
    avatar: Avatar,
    backend: SharedBackend,
    *,
    options: RenderOptions,
    emotion: str,
    realtime: bool,
    idle_timeout_s: float,
    on_event: Callable[[PlaybackEvent], None],
    report: Callable[[AvalumaError], None],
    attributes: Attributes | None = None,
    watch: FrameWatch | None = None,
) -> RenderStream[T]:
    """A stream rendering ``avatar`` with the server's shared ``backend``: inference spans and metrics, backend faults
    reported in-band, segment spans and frame metrics tagged with ``attributes`` (plus avatar, fps and realtime).
    ``realtime`` paces frames at ``options.fps`` and fills silence with idle frames (:class:`MonotonicClock`), else
    speech frames leave as fast as they render (:class:`Unpaced`). ``on_event`` gets the playback events, ``report``
    the in-band errors; both must not block. ``watch`` is told of every paced frame, late or not (the stream's
    admission slot)."""
    stream = RenderStream(sink, idle_timeout_s=idle_timeout_s, on_event=on_event, report=report)
    events = PlayoutEvents()
    lipsync = await backend.get()
    render = RenderSession(
        avatar,
        lipsync,
        fps=options.fps,
        audio_sample_rate=options.audio_sample_rate,
        seed=options.seed,
        instrumentation=lipsync_instrumentation(lipsync, on_fault=events.fault_from_worker),
        emotion=emotion,
        expressions=options.expressions,
    )
    clock = MonotonicClock() if realtime else Unpaced()
    stream.playout = playout = Playout(render, _EventsFirst(stream), clock=clock, events=events, watch=watch)
    tags: Attributes = {ATTR_AVATAR_ID: avatar.id, ATTR_FPS: options.fps, **(attributes or {}), ATTR_REALTIME: realtime}
    playout.telemetry = stream_telemetry(KIND_RENDER, tags, lambda: playout.memory_bytes() + sink.memory_bytes())
    return stream


class _EventsFirst(Generic[T]):
    """The stream's outbox as its player sees it: the player's pending events go in before each frame, so the client
    gets them in the order they happened (a segment's ``started`` just before its first frame)."""

    def __init__(self, stream: RenderStream[T]) -> None:
        self._stream = stream

    def prepare(self, frame: RenderedFrame) -> None:
        self._stream.sink.prepare(frame)

    async def push(self, frame: RenderedFrame) -> None:
        self._stream.pump()
        await self._stream.sink.push(frame)

    async def clear(self) -> None:
        await self._stream.sink.clear()
