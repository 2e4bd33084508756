"""The clocked core of a live avatar session: audio segments in, one frame (video + its audio) per tick out.

:class:`Playout` is the one player of the server: a LiveKit session runs it between its receiver and its
``rtc.AVSynchronizer``, a gRPC ``Render`` stream between its requests and its responses, each through a
:class:`FrameSink`. With no room or wire in sight it is tested and benchmarked offline. Its :class:`Clock` says how
frames are paced: :class:`MonotonicClock` (real time), :class:`VirtualClock` (tests: hours in seconds) or
:class:`Unpaced` (offline renders: speech frames leave as fast as they are rendered, nothing fills silence). It runs
two tasks:

- the **ticker** publishes one frame per slot of a steady ``fps`` :class:`Clock` and does nothing else: it takes a
  speech frame when one has been rendered, else an idle frame (blinks, breathing, closed mouth) rendered ahead. It
  never renders, so a render step in flight cannot delay a tick; it waits only when the renderer has nothing at all
  ready (a starved CPU, or the first frame after a clear), and that frame counts as late. Every frame carries
  exactly the audio that plays with it, so the sink can never let audio lead video by more than the frame it pushes;
- the **render worker** renders in a thread of :func:`render_pool` (shared by all playouts), with a lock around the
  :class:`~avaluma.renderer.engine.RenderSession`: speech in pieces of :data:`PIECE_FRAMES` frames up to
  :data:`RENDER_AHEAD_S` ahead of the clock, and :data:`IDLE_AHEAD` idle frames for when no speech is ready. The
  sink's ``prepare(frame)`` is called in the same thread right after rendering, so media conversions (RGB to bytes,
  JPEG, float to PCM) stay off the event loop too.

:meth:`Playout.events` is the player's one event stream (:data:`~avaluma.core.live.events.PlayoutEvent`, in order;
one consumer): playback events follow what was *published*, ``started`` just before the first frame of a segment,
``finished`` just after its last one, each carrying the :class:`~avaluma.core.live.events.Segment` that
:meth:`Playout.push_audio` created (its id and sender); then clears, lip-sync faults (from the render threads), lag and
a render failure. :meth:`Playout.clear` answers *at once*: it returns the ``finished`` events (and records them as one
``Cleared`` event; it never calls back), drops everything queued and rendered ahead (speech and idle), and the next
published frame is a freshly rendered idle one: the mouth closes on the next tick.
:meth:`Playout.finish` makes :meth:`Playout.run` return once every queued segment has been published (the end of a
``Render`` stream's input). :meth:`Playout.set_emotion` is queued in order with the audio: speech received before it
keeps its emotion, speech after it shows the new one (eased by the renderer); a clear drops the audio, not the change.

The input methods only queue work and set flags, so they are safe to call from LiveKit callbacks on the event loop.
With a :class:`VirtualClock` the ticker lets the worker finish everything it can do before each slot, so runs are
deterministic whatever the machine's speed.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Final, Protocol

from avaluma.core.errors import ResourceExhausted
from avaluma.core.live.admission import available_cores
from avaluma.core.live.events import Cleared, FellBehind, LipSyncFaulted, PlayoutEvent, PlayoutFailed, Segment
from avaluma.core.live.telemetry_render import NOOP_STREAM, StreamTelemetry
from avaluma.core.media import AudioChunk, check_emotion
from avaluma.core.tasks import cancel_and_wait
from avaluma.renderer.engine import PlaybackEvent, RenderedFrame, RenderSession
from avaluma.renderer.lipsync.base import LipSyncBackend, LipSyncFault

log = logging.getLogger(__name__)

#: Audio is rendered in pieces of this many frames: the longest a clear (or new speech) waits for a step under way.
PIECE_FRAMES: Final = 2
#: Speech is rendered at most this far ahead of the clock (bounds memory and the work a clear throws away).
RENDER_AHEAD_S: Final = 1.0
#: Idle frames rendered ahead, so a tick with no speech ready never waits for rendering. Speech that arrives
#: replaces them (they are dropped, not played first), so they add nothing to the first lip-moving frame's latency.
IDLE_AHEAD: Final = 2
#: Audio waiting to be rendered: beyond this :meth:`Playout.push_audio` refuses more (LiveKit senders, which cannot
#: be slowed down), and :meth:`Playout.wait_for_room` holds back senders that can (a Render stream stops reading, so
#: gRPC flow control slows its client). One bound on a player's memory, whoever feeds it.
MAX_BACKLOG_S: Final = 120.0
#: A frame published more than this fraction of a frame period after its slot counts as late.
LATE_FRACTION: Final = 0.5
#: More than this far behind the clock (a stall, a starved CPU) the clock restarts instead of bursting frames to catch
#: up. No further than a LiveKit session's media queues hold (``MEDIA_QUEUE_MS``): its audio source plays out in real
#: time and takes at most that much ahead, so a larger lag could never be caught up through it and every later frame
#: would count as late, for as long as the session lasts, after one stall (and admission's lateness guard would call
#: the server behind all that time).
MAX_LAG_S: Final = 0.1
#: The "fell behind" warning is logged at most this often per player (each restart is still an event).
LAG_LOG_INTERVAL_S: Final = 10.0
#: Events a player keeps for its consumer; beyond this (nobody reads them) the oldest are dropped.
MAX_PENDING_EVENTS: Final = 4096

#: Agent states (LiveKit's ``AgentState``) and the avatar state each one shows.
AGENT_STATES: Final[dict[str, str]] = {
    "initializing": "idle",
    "idle": "idle",
    "listening": "listening",
    "thinking": "thinking",
    "speaking": "idle",
}


class Clock(Protocol):
    """Time source of a playout: seconds on a monotonic scale."""

    def now(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...


class MonotonicClock:
    """Real time (``time.perf_counter``), the clock of live sessions."""

    def now(self) -> float:
        return time.perf_counter()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))


class VirtualClock:
    """Time that advances only when the playout sleeps: simulates hours of playout in seconds (tests, benchmarks).

    Rendering still takes real time, but none of it is counted, so with this clock no frame is ever late.
    """

    def __init__(self, start: float = 0.0) -> None:
        self._now = start

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        self._now += max(0.0, seconds)

    async def sleep(self, seconds: float) -> None:
        self.advance(seconds)
        await asyncio.sleep(0)


class Unpaced:
    """No pacing: frames are published as soon as they are rendered and silence is not filled with idle frames (the
    offline renders of a ``Render`` stream with ``realtime=false``). Its time is real time, for telemetry only."""

    def now(self) -> float:
        return time.perf_counter()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(0)


class FrameWatch(Protocol):
    """Told of every frame a paced playout publishes, on time or late (the server's admission watches its sessions'
    lateness through their slot: :class:`~avaluma.core.live.lateness.LatenessWatch`)."""

    def frame(self, late: bool) -> None: ...


class FrameSink(Protocol):
    """Where published frames go (``rtc.AVSynchronizer`` in a room, the responses of a Render stream, a recorder in
    tests)."""

    def prepare(self, frame: RenderedFrame) -> None:
        """Called in the render worker thread as soon as ``frame`` is rendered (possibly for frames a clear later
        drops): the place for conversions that would otherwise hold the event loop in :meth:`push`."""
        ...

    async def push(self, frame: RenderedFrame) -> None:
        """Publish one frame and then its audio. May wait (back-pressure from the media queues)."""
        ...

    async def clear(self) -> None:
        """Drop media queued but not yet played (after an interruption)."""
        ...


@dataclass(frozen=True, slots=True)
class PlayoutStats:
    """Counters since the playout started; rates are the caller's business (sample twice, divide)."""

    frames: int  #: frames published (speech and idle)
    late_frames: int  #: frames published later than :data:`LATE_FRACTION` of a frame period after their slot
    queue_depth: int  #: speech frames rendered but not yet published
    backlog_s: float  #: audio received but not yet rendered, in seconds


@dataclass(frozen=True, slots=True)
class _End:
    segment: Segment


@dataclass(frozen=True, slots=True)
class _Audio:
    segment: Segment
    chunk: AudioChunk


@dataclass(frozen=True, slots=True)
class _Emotion:
    name: str


_Op = _Audio | _End | _Emotion
_Ready = RenderedFrame | PlaybackEvent


_render_pool: ThreadPoolExecutor | None = None
_render_pool_lock = threading.Lock()


def render_pool() -> ThreadPoolExecutor:
    """The threads all playouts of the process render in: one per usable core (at least 2).

    Not the event loop's default executor (``asyncio.to_thread``, ``cores + 4`` threads): rendering is Python and
    numpy under the GIL, and more render threads than cores only fight over it. On 2 cores, 6 threads spent a third
    of a core in the kernel handing the GIL around and delayed the event loop until frames came late from about 10
    sessions on; 2 threads sustain 14 (``bench/session.py``). A separate pool also keeps other blocking work of the
    server (``to_thread`` callers) from queueing behind rendering, and the reverse.
    """
    global _render_pool
    with _render_pool_lock:
        if _render_pool is None:
            _render_pool = ThreadPoolExecutor(max(2, available_cores()), thread_name_prefix="avaluma-render")
        return _render_pool


async def run_in_render_pool(job: Callable[[], Sequence[_Ready]]) -> Sequence[_Ready]:
    """``job()`` in :func:`render_pool`, in a copy of the caller's context (like ``asyncio.to_thread``: inference
    spans become children of the caller's segment span)."""
    context = contextvars.copy_context()
    return await asyncio.get_running_loop().run_in_executor(render_pool(), functools.partial(context.run, job))


def split_chunk(chunk: AudioChunk, fps: int, frames_per_piece: int = PIECE_FRAMES) -> list[AudioChunk]:
    """Cut ``chunk`` into pieces of about ``frames_per_piece`` video frames of audio each."""
    size = max(1, math.ceil(chunk.sample_rate * frames_per_piece / fps))
    samples = chunk.samples
    return [AudioChunk(samples[i : i + size], chunk.sample_rate) for i in range(0, len(samples), size)]


class PlayoutEvents:
    """The one event stream of a player (:data:`~avaluma.core.live.events.PlayoutEvent`), in the order things happened.

    One consumer reads it: ``async for event in events`` (ends after the player's :meth:`Playout.run` has returned and
    everything was read), or :meth:`take_ready` for what is there now (without waiting). :meth:`fault_from_worker` is
    the ``on_fault`` of the lip-sync instrumentation
    (:func:`~avaluma.core.live.telemetry_render.lipsync_instrumentation`): give the player the stream its render
    session's instrumentation reports to. Create it on the event loop when faults are to come from threads.
    """

    def __init__(self) -> None:
        try:
            self._loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            self._loop = None
        self._items: deque[PlayoutEvent] = deque(maxlen=MAX_PENDING_EVENTS)
        self._ready = asyncio.Event()
        self._closed = False

    def put(self, event: PlayoutEvent) -> None:
        """Add ``event`` (event loop only)."""
        self._items.append(event)
        self._ready.set()

    def fault_from_worker(self, fault: LipSyncFault) -> None:
        """A lip-sync fault, from a render thread. Called before the failing call returns or raises, so the fault comes
        ahead of the player's own reaction to that call (``call_soon_threadsafe`` keeps order)."""
        if self._loop is None:
            raise RuntimeError("PlayoutEvents created outside an event loop cannot take faults from threads")
        self._loop.call_soon_threadsafe(self.put, LipSyncFaulted(fault))

    def take_ready(self) -> list[PlayoutEvent]:
        """Everything not read yet, without waiting."""
        items = list(self._items)
        self._items.clear()
        return items

    def close(self) -> None:
        """No more events will come (the iteration ends once the rest is read)."""
        self._closed = True
        self._ready.set()

    def __aiter__(self) -> PlayoutEvents:
        return self

    async def __anext__(self) -> PlayoutEvent:
        while not self._items:
            if self._closed:
                raise StopAsyncIteration
            self._ready.clear()
            await self._ready.wait()
        return self._items.popleft()


class SharedBackend:
    """One lip-sync backend for every player of the server, built on first use (model loading is slow)."""

    def __init__(self, factory: Callable[[], LipSyncBackend]) -> None:
        self._factory = factory
        self._backend: LipSyncBackend | None = None
        self._lock = asyncio.Lock()

    async def get(self) -> LipSyncBackend:
        async with self._lock:
            if self._backend is None:
                self._backend = await asyncio.to_thread(self._factory)
            return self._backend

    def close(self) -> None:
        backend, self._backend = self._backend, None
        if backend is not None:
            backend.close()


class Playout:
    """Drive one :class:`RenderSession` on a clock: see the module docstring.

    What happens comes out of :meth:`events`, one stream in order (``events``: the stream to use, when the render
    session's lip-sync instrumentation reports its faults to it). Start with :meth:`run` (one task; it owns the render
    worker) and end it with :meth:`close` (at once) or :meth:`finish` (after what is queued). ``watch`` is told of
    every frame published on the clock, late or not.
    ``telemetry`` receives segment spans and frame metrics
    (:func:`~avaluma.core.live.telemetry_render.stream_telemetry`;
    the default reports nothing); the playout closes it when :meth:`run` ends.
    """

    def __init__(
        self,
        render: RenderSession,
        sink: FrameSink,
        *,
        clock: Clock | None = None,
        render_ahead_s: float = RENDER_AHEAD_S,
        telemetry: StreamTelemetry = NOOP_STREAM,
        events: PlayoutEvents | None = None,
        watch: FrameWatch | None = None,
    ) -> None:
        self._render = render
        self._watch = watch
        self.telemetry = telemetry
        #: Held by whichever thread calls into the RenderSession (it is not thread-safe).
        self._render_lock = threading.Lock()
        self._sink = sink
        self._events = events if events is not None else PlayoutEvents()
        self._clock: Clock = clock or MonotonicClock()
        self._realtime = isinstance(self._clock, MonotonicClock)
        self._paced = not isinstance(self._clock, Unpaced)
        self._fps = render.fps
        self._frame_s = 1.0 / render.fps
        self._ahead = max(1, round(render_ahead_s * render.fps))
        self._ops: deque[_Op] = deque()
        self._backlog_s = 0.0
        #: Speech frames and the events between them, in publishing order.
        self._ready: deque[_Ready] = deque()
        #: Idle frames rendered ahead (after everything in ``_ready``, in the animator's order).
        self._idle: deque[RenderedFrame] = deque()
        #: Segments created by push_audio whose ``finished`` has not been emitted, by id, in order.
        self._open: dict[int, Segment] = {}
        #: The segment receiving audio now (None between an end/clear and the next audio).
        self._receiving: Segment | None = None
        self._next_segment = 0
        self._playing: Segment | None = None
        self._played_frames = 0
        #: Bumped by clear(): a render step that started before it returns stale output, which is dropped.
        self._generation = 0
        self._clear_engine = False
        self._clear_sink = False
        self._state: str | None = None
        #: An emotion to apply before anything else (one queued behind audio that a clear dropped).
        self._emotion: str | None = None
        #: The emotion of the audio received last (what :attr:`emotion` reports).
        self._emotion_now = render.emotion
        self._work = asyncio.Event()  # the worker may have something to do
        self._produced = asyncio.Event()  # the worker added output (or failed)
        self._quiet = asyncio.Event()  # the worker has nothing left to do
        self._failure: BaseException | None = None
        #: What the job :meth:`_next_job` returned last renders: "audio", "end" (of a segment), or None (other work);
        #: for speech, the id of its segment.
        self._speech_job: str | None = None
        self._speech_segment = 0
        #: A speech job is being rendered (its frames are not in ``_ready`` yet).
        self._speech_in_flight = False
        self._room = asyncio.Event()  # the backlog shrank (or the playout closed)
        self._finishing = False
        self._closed = False
        self._frames = 0
        self._late = 0
        self._restarts = 0  # times the clock restarted after falling behind
        self._lag_logged: float | None = None
        self.last_activity = self._clock.now()

    # --- inputs (event loop, never block) -------------------------------------------------------------------

    @property
    def fps(self) -> int:
        return self._fps

    @property
    def clock(self) -> Clock:
        return self._clock

    @property
    def render_session(self) -> RenderSession:
        """The session this playout drives. Read its properties only: the render worker is the one caller."""
        return self._render

    def events(self) -> PlayoutEvents:
        """The player's one event stream (see the module docstring): read it from one place."""
        return self._events

    def push_audio(self, chunk: AudioChunk, *, sender: str = "") -> int:
        """Queue audio of the current segment (creating its :class:`Segment` if none is receiving); returns its id.

        ``sender`` (who sent the segment) is recorded when the segment is created and carried on its playback events.

        Raises :class:`ResourceExhausted` when more than :data:`MAX_BACKLOG_S` of audio already waits.
        """
        if self._backlog_s + chunk.duration_s > MAX_BACKLOG_S:
            raise ResourceExhausted(
                f"more than {MAX_BACKLOG_S:g} s of audio is waiting to be played: send audio at most a little "
                "faster than real time"
            )
        segment = self._receiving
        if segment is None:
            segment = self._receiving = Segment(self._next_segment, sender)
            self._next_segment += 1
            self._open[segment.id] = segment
        self.last_activity = self._clock.now()
        self.telemetry.audio_received()
        if chunk.samples.size:
            for piece in split_chunk(chunk, self._fps):
                self._ops.append(_Audio(segment, piece))
                self._backlog_s += piece.duration_s
            self._wake_worker()
        return segment.id

    def end_segment(self) -> int | None:
        """End the segment receiving audio (its tail is rendered, then ``finished``); its id, ``None`` when none is
        open."""
        segment, self._receiving = self._receiving, None
        self.telemetry.segment_end_received()
        if segment is None:
            return None
        self._ops.append(_End(segment))
        self.last_activity = self._clock.now()
        self._wake_worker()
        return segment.id

    def clear(self) -> list[PlaybackEvent]:
        """Interrupt now: drop queued audio and rendered frames; the next frame published is idle.

        Returns ``finished(interrupted=True)`` for every segment not yet finished (the one playing carries its played
        position, the others 0), or one for the last segment when nothing was open (no sender: the caller answers
        whoever asked): every clear is answered. The same events are recorded in :meth:`events` as one
        :class:`~avaluma.core.live.events.Cleared`; nothing is called back.
        """
        playing = self._playing
        position = self._played_frames / self._fps if playing is not None else 0.0
        if self._open:
            events = [
                PlaybackEvent("finished", s.id, position if s is playing else 0.0, True, s.sender)
                for s in self._open.values()
            ]
        else:  # nothing open: still answered, for the last segment
            events = [PlaybackEvent("finished", max(0, self._next_segment - 1), 0.0, interrupted=True)]
        self._open.clear()
        self._receiving = None
        self._playing = None
        self._played_frames = 0
        # An emotion queued behind the dropped audio was meant for what comes next: it still applies.
        queued = [op.name for op in self._ops if isinstance(op, _Emotion)]
        if queued:
            self._emotion = queued[-1]
        self._ops.clear()
        self._backlog_s = 0.0
        self._ready.clear()
        # Idle frames rendered after the dropped speech show the mouth still closing: a fresh one follows the clear.
        self._idle.clear()
        self._generation += 1
        self._clear_engine = True
        self._clear_sink = True
        self.last_activity = self._clock.now()
        self.telemetry.cleared()
        self._wake_worker()
        self._room.set()
        self._events.put(Cleared(tuple(events)))
        return events

    @property
    def playing(self) -> int | None:
        """The id of the segment whose frames are being published (its ``started`` was emitted, its ``finished`` not
        yet)."""
        return None if self._playing is None else self._playing.id

    @property
    def backlog_s(self) -> float:
        """Seconds of audio received but not yet rendered."""
        return self._backlog_s

    def busy(self) -> bool:
        """Whether speech is queued, being rendered or waiting to be published."""
        return (
            any(not isinstance(op, _Emotion) for op in self._ops) or self._speech_in_flight or self._speech_ready() > 0
        )

    async def wait_for_room(self, seconds: float) -> None:
        """Wait until ``seconds`` more audio fit under :data:`MAX_BACKLOG_S` (or the playout closed): flow control
        for a sender that can be slowed down."""
        while not self._closed and self._backlog_s + seconds > MAX_BACKLOG_S and self._backlog_s > 0:
            self._room.clear()
            await self._room.wait()

    def finish(self) -> None:
        """Make :meth:`run` return once everything queued has been rendered and published (with its events)."""
        self._finishing = True
        self._wake_worker()
        self._produced.set()

    def set_state(self, state: str) -> None:
        """Show an agent state (``listening``, ``thinking``; others mean idle) when the renderer supports states."""
        self._state = AGENT_STATES.get(state, "idle")
        self._wake_worker()

    def set_emotion(self, emotion: str) -> None:
        """Show ``emotion`` from this point of the audio on: speech already received keeps the emotion it came with
        (it is queued in order with the audio; a clear keeps it), and the renderer eases into it. Raises
        :class:`~avaluma.core.errors.InvalidArgument` listing the valid names, and then changes nothing."""
        self._ops.append(_Emotion(check_emotion(emotion)))
        self._emotion_now = emotion
        self._wake_worker()

    @property
    def emotion(self) -> str:
        """The emotion of the latest input (what new audio will be shown with)."""
        return self._emotion_now

    def memory_bytes(self) -> int:
        """Bytes this playout buffers (audio waiting to be rendered, frames rendered ahead), for telemetry."""
        audio = sum(op.chunk.samples.nbytes for op in list(self._ops) if isinstance(op, _Audio))
        frames = [*self._ready, *self._idle]
        return audio + sum(f.rgb.nbytes + f.audio.nbytes for f in frames if isinstance(f, RenderedFrame))

    def stats(self) -> PlayoutStats:
        return PlayoutStats(
            frames=self._frames, late_frames=self._late, queue_depth=self._speech_ready(), backlog_s=self._backlog_s
        )

    def close(self) -> None:
        """Make :meth:`run` return after the frame it is on."""
        self._closed = True
        self._wake_worker()
        self._quiet.set()  # unblock a ticker waiting for the worker
        self._produced.set()
        self._room.set()

    # --- the ticker -----------------------------------------------------------------------------------------

    async def run(self) -> None:
        """Publish frames at ``fps`` until :meth:`close`. Rendering errors propagate (the session ends), after a
        :class:`~avaluma.core.live.events.PlayoutFailed` event; the event stream ends after the last event."""
        worker = asyncio.create_task(self._render_loop(), name="avaluma-playout-render")
        try:
            try:
                await (self._tick_loop() if self._paced else self._unpaced_loop())
            finally:
                await cancel_and_wait(worker, keep_errors=True)
                self.telemetry.close()
        except Exception as exc:
            self._events.put(PlayoutFailed(exc))
            raise
        finally:
            self._events.close()

    async def _tick_loop(self) -> None:
        clock = self._clock
        # The clock starts with the first frame: a session's first render (cold caches, a model's first run) is not
        # lateness, and counted as such it would call a server behind while sessions are starting.
        while not (self._closed or self._ready or self._idle or (self._finishing and not self.busy())):
            self._raise_failure()
            self._produced.clear()
            await self._produced.wait()
        self._raise_failure()
        start = clock.now()
        published = 0
        while not self._closed:
            if self._finishing and not self.busy():
                self._emit_head_events()  # the last segment's finished, when its last frame went out last tick
                return
            due = start + published * self._frame_s
            now = clock.now()
            if now < due:
                await clock.sleep(due - now)
                continue
            if now - due > MAX_LAG_S:
                self._fell_behind(now - due)
                start = now - published * self._frame_s  # this frame still counts as late: ``due`` was missed
            if not self._realtime:
                await self._quiet.wait()  # virtual time: everything renderable by now is rendered
                self._raise_failure()
                if self._closed:
                    break
            await self._tick(due)
            published += 1

    def _fell_behind(self, lag_s: float) -> None:
        self._restarts += 1
        now = self._clock.now()
        if self._lag_logged is None or now - self._lag_logged >= LAG_LOG_INTERVAL_S:
            self._lag_logged = now
            extra = {"lag_s": round(lag_s, 3), "restarts": self._restarts}
            log.warning("playout fell behind its clock; restarting the clock", extra=extra)
        self._events.put(FellBehind(lag_s))

    async def _unpaced_loop(self) -> None:
        """Publish speech frames as soon as they are rendered; never an idle frame."""
        while not self._closed:
            if self._clear_sink:
                self._clear_sink = False
                await self._sink.clear()
            self._emit_head_events()
            frame = self._ready.popleft() if self._ready and isinstance(self._ready[0], RenderedFrame) else None
            if frame is None:
                if self._finishing and not self.busy():
                    return
                self._raise_failure()  # a worker that failed before this wait would never wake it
                self._produced.clear()
                await self._produced.wait()
                self._raise_failure()
                continue
            assert isinstance(frame, RenderedFrame)
            self._wake_worker()  # room to render ahead again
            await self._publish(frame)

    async def _tick(self, due: float) -> None:
        if self._clear_sink:
            self._clear_sink = False
            await self._sink.clear()
        self._emit_head_events()
        frame = self._take_frame()
        while frame is None:
            # Nothing rendered at all: the CPU is starved, or this is the first frame after a clear. Wait for the
            # worker (this frame will be late) rather than publish something stale, such as an open mouth. A worker
            # that failed before this wait would never wake it.
            self._raise_failure()
            self._produced.clear()
            await self._produced.wait()
            self._raise_failure()
            if self._closed:
                return
            self._emit_head_events()
            frame = self._take_frame()
        late = self._clock.now() - due > LATE_FRACTION * self._frame_s
        if late:
            self._late += 1
            self.telemetry.frame_late()
        if self._watch is not None:
            self._watch.frame(late)
        await self._publish(frame)

    async def _publish(self, frame: RenderedFrame) -> None:
        # Counted before the (possibly waiting) push: a clear during the push must include this frame.
        self._frames += 1
        if frame.speaking and self._playing is not None:
            self._played_frames += 1
        await self._sink.push(frame)
        # A segment's ``finished`` goes out with its last frame, not one tick later.
        while self._ready and isinstance(self._ready[0], PlaybackEvent) and self._ready[0].kind == "finished":
            self._emit(self._ready.popleft())  # type: ignore[arg-type]

    def _take_frame(self) -> RenderedFrame | None:
        if self._ready and isinstance(self._ready[0], RenderedFrame):
            frame: RenderedFrame | None = self._ready.popleft()  # type: ignore[assignment]
        elif self._idle:
            frame = self._idle.popleft()
        else:
            return None
        self._wake_worker()  # room to render ahead again
        return frame

    def _emit_head_events(self) -> None:
        while self._ready and isinstance(self._ready[0], PlaybackEvent):
            event = self._ready.popleft()
            assert isinstance(event, PlaybackEvent)
            self._emit(event)

    def _emit(self, event: PlaybackEvent) -> None:
        if event.kind == "started":
            self._playing = self._open.get(event.segment)
            self._played_frames = 0
            self.telemetry.playback_started_sent()
        else:
            self._open.pop(event.segment, None)
            if self._playing is not None and self._playing.id == event.segment:
                self._playing = None
        self._events.put(event)

    def _raise_failure(self) -> None:
        if self._failure is not None:
            raise self._failure

    # --- the render worker ------------------------------------------------------------------------------------

    def _wake_worker(self) -> None:
        self._quiet.clear()
        self._work.set()

    def _speech_ready(self) -> int:
        return sum(1 for item in self._ready if isinstance(item, RenderedFrame))

    async def _render_loop(self) -> None:
        try:
            while not self._closed:
                job = self._next_job()
                if job is None:
                    self._work.clear()
                    self._quiet.set()
                    await self._work.wait()
                    continue
                generation = self._generation
                speech, segment = self._speech_job, self._speech_segment
                if speech is None:
                    outputs = await run_in_render_pool(job)
                else:
                    # The worker thread inherits the context: inference spans become children of the segment's.
                    queued = len(self._ops) * PIECE_FRAMES + self._speech_ready()
                    self._speech_in_flight = True
                    try:
                        with self.telemetry.rendering(audio=speech == "audio", queued_frames=queued, segment=segment):
                            outputs = await run_in_render_pool(job)
                    finally:
                        self._speech_in_flight = False
                self.telemetry.frames_rendered(outputs)
                if generation == self._generation:
                    self._store(outputs)
                if speech is not None:
                    self._produced.set()  # also when it rendered nothing: a finishing playout may be done now
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            self._failure = exc
            self._produced.set()
            self._quiet.set()

    def _next_job(self) -> Callable[[], Sequence[_Ready]] | None:
        """What the worker does next, in order of urgency: a clear or state cue, speech (and the emotion changes
        queued between its pieces), idle frames."""
        self._speech_job, self._speech_segment = None, 0
        if self._clear_engine or self._state is not None or self._emotion is not None:
            clear_engine, self._clear_engine = self._clear_engine, False
            state, self._state = self._state, None
            emotion, self._emotion = self._emotion, None
            return lambda: self._controls(clear_engine, state, emotion)
        head = self._ops[0] if self._ops else None
        if isinstance(head, _Emotion):
            # In order with the audio: applied once the audio before it is rendered, before the audio after it.
            self._ops.popleft()
            return lambda: self._controls(False, None, head.name)
        if self._ops and self._speech_ready() < self._ahead:
            op = self._ops.popleft()
            assert not isinstance(op, _Emotion)
            segment = op.segment
            self._speech_segment = segment.id
            if isinstance(op, _Audio):
                self._backlog_s = max(0.0, self._backlog_s - op.chunk.duration_s)
                self._room.set()
                chunk = op.chunk
                self._speech_job = "audio"
                return lambda: self._rendered(segment, self._render.push_audio, chunk)
            self._speech_job = "end"
            return lambda: self._rendered(segment, self._render.end_segment)
        if self._paced and len(self._idle) < IDLE_AHEAD:
            return lambda: self._rendered(None, self._render.idle_frames, 1)
        return None

    def _controls(self, clear_engine: bool, state: str | None, emotion: str | None = None) -> Sequence[_Ready]:
        with self._render_lock:
            if clear_engine:
                self._render.clear()  # its events were answered by clear() already
            set_state = getattr(self._render, "set_state", None)  # renderers without states ignore the cue
            if state is not None and set_state is not None:
                set_state(state)
            if emotion is not None:
                self._render.set_emotion(emotion)
        return ()

    def _rendered(self, segment: Segment | None, step: Callable[..., Sequence[_Ready]], *args: Any) -> list[_Ready]:
        """Run one render step (worker thread), then let the sink prepare the new frames outside the lock.

        A step renders audio (or the end) of one ``segment`` only, so the engine's playback events belong to it: they
        leave carrying that segment's id and sender (the engine's own count of segments is not used)."""
        with self._render_lock:
            outputs = step(*args)
        stamped: list[_Ready] = []
        for item in outputs:
            if isinstance(item, RenderedFrame):
                self._sink.prepare(item)
                stamped.append(item)
            elif segment is not None:
                stamped.append(PlaybackEvent(item.kind, segment.id, item.position_s, item.interrupted, segment.sender))
        return stamped

    def _store(self, outputs: Sequence[_Ready]) -> None:
        for item in outputs:
            if isinstance(item, RenderedFrame):
                if item.speaking:
                    self._idle.clear()  # rendered before this speech: publishing them now would go back in time
                    self._ready.append(item)
                else:
                    self._idle.append(item)
                continue
            self._ready.append(item)
        if outputs:
            self._produced.set()
