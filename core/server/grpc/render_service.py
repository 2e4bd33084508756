"""``RenderService.Render``: a thin gRPC adapter over :class:`avaluma.renderer.engine.RenderSession`.

Translation only: protobuf in, engine calls, protobuf out. What lives here is what a *stream* needs and the engine
must not know about:

- ordering: requests are read by a separate task, so a ``clear`` is seen while earlier audio is still being
  rendered; audio queued before a clear is dropped unrendered, which keeps clear latency to one small render step;
- pacing (``realtime=true``): frames leave at ``fps`` on a monotonic clock, idle frames fill silence, at most
  :data:`RENDER_AHEAD_S` of video is rendered ahead;
- off-loop rendering: rendering and encoding run in worker threads (``asyncio.to_thread``) in pieces of
  :data:`PIECE_FRAMES` frames, so one busy stream never stalls the others;
- in-band errors: a malformed request is answered with ``StreamError`` and the stream goes on; a message that is not
  a decodable ``RenderRequest`` at all ends the call with ``INVALID_ARGUMENT`` (the stream's content is lost);
- timeouts (``render.first_message_timeout_s``, ``render.idle_timeout_s``): a client that never sends its config, or
  that sends nothing while the stream has nothing left to play, is ended with ``DEADLINE_EXCEEDED``, so silent
  clients cannot keep the admission slots every stream holds;
- lag: a realtime stream that falls more than :data:`MAX_LAG_S` behind its clock (a starved CPU) tells the client
  with an in-band ``StreamError`` (``RESOURCE_EXHAUSTED``) at most every :data:`LAG_NOTICE_INTERVAL_S`, instead of
  drifting silently;
- backend faults: when the lip-sync backend fails under the stream (Triton died; see :attr:`LipSyncStream.fault`),
  the client gets a ``StreamError`` (``UNAVAILABLE``, naming the backend's address and the policy applied); under
  ``fallback`` frames keep coming, under ``end`` the call then ends with ``UNAVAILABLE``. Other streams go on.

Frame ``index``/``pts_us`` on the wire count the frames *sent* on this stream, so they stay gapless when a clear
drops frames that were rendered ahead but never sent.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from typing import Any, Final

import grpc.aio

from avaluma.core.config import RenderConfig as RenderDefaults
from avaluma.core.errors import AvalumaError, DeadlineExceeded, InvalidArgument, ResourceExhausted, Unavailable
from avaluma.core.live.avatar_store import AvatarStore
from avaluma.core.live.sessions import SessionSlots
from avaluma.core.live.telemetry_render import (
    KIND_RENDER,
    NOOP_STREAM,
    StreamTelemetry,
    instrument_backend,
    stream_telemetry,
)
from avaluma.core.media import AudioChunk, float_to_pcm16, pcm16_to_mono
from avaluma.core.server.grpc.errors import status_number
from avaluma.core.tasks import cancel_and_wait
from avaluma.core.telemetry import ATTR_AVATAR_ID, ATTR_ENCODING, ATTR_FPS, ATTR_REALTIME
from avaluma.proto.v1 import common_pb2, render_service_pb2, render_service_pb2_grpc
from avaluma.renderer.engine import PlaybackEvent, RenderedFrame, RenderSession
from avaluma.renderer.frame_formats import DEFAULT_JPEG_QUALITY, FrameEncoding, encode_frame
from avaluma.renderer.lipsync.base import LipSyncBackend, LipSyncFault, watch_faults

log = logging.getLogger(__name__)

RenderRequest = render_service_pb2.RenderRequest
RenderResponse = render_service_pb2.RenderResponse

#: Audio is rendered in pieces of this many frames: the longest a clear waits for rendering already under way.
PIECE_FRAMES: Final = 2
#: Realtime streams render at most this much video ahead of the clock (bounds memory and work lost on clear).
RENDER_AHEAD_S: Final = 1.0
#: A realtime stream more than this far behind its clock (a starved CPU) restarts its clock instead of bursting.
MAX_LAG_S: Final = 0.5
#: Realtime streams stop reading requests while more than this much audio waits to be rendered (memory bound).
MAX_BACKLOG_S: Final = 30.0
#: Requests buffered between the reader task and the stream; beyond it gRPC flow control pushes back on the client.
INBOX_SIZE: Final = 64
#: A lagging realtime stream tells its client at most this often.
LAG_NOTICE_INTERVAL_S: Final = 5.0

MIN_FPS, MAX_FPS = 1, 60
MIN_OUTPUT_RATE, MAX_OUTPUT_RATE = 8_000, 48_000

_ENCODINGS: dict[int, FrameEncoding] = {
    common_pb2.VIDEO_ENCODING_UNSPECIFIED: FrameEncoding.JPEG,
    common_pb2.VIDEO_ENCODING_JPEG: FrameEncoding.JPEG,
    common_pb2.VIDEO_ENCODING_I420: FrameEncoding.I420,
    common_pb2.VIDEO_ENCODING_RGB24: FrameEncoding.RGB24,
}
_WIRE_ENCODING: dict[FrameEncoding, common_pb2.VideoEncoding] = {
    FrameEncoding.JPEG: common_pb2.VIDEO_ENCODING_JPEG,
    FrameEncoding.I420: common_pb2.VIDEO_ENCODING_I420,
    FrameEncoding.RGB24: common_pb2.VIDEO_ENCODING_RGB24,
}


@dataclass(frozen=True, slots=True)
class StreamSettings:
    """The negotiated parameters of one Render stream (server defaults filled in)."""

    avatar_id: str
    fps: int
    audio_sample_rate: int
    encoding: FrameEncoding
    jpeg_quality: int
    realtime: bool
    seed: int


def stream_settings(
    config: render_service_pb2.RenderConfig, defaults: RenderDefaults, *, default_avatar: str
) -> StreamSettings:
    """Validate a ``RenderConfig`` message; raise :class:`InvalidArgument` naming the field and its valid range."""
    fps = config.fps or defaults.fps
    if not MIN_FPS <= fps <= MAX_FPS:
        raise InvalidArgument(f"config.fps {fps} is out of range: use {MIN_FPS}..{MAX_FPS}, or 0 for the default")
    rate = config.audio_sample_rate or defaults.audio_sample_rate
    if not MIN_OUTPUT_RATE <= rate <= MAX_OUTPUT_RATE:
        raise InvalidArgument(
            f"config.audio_sample_rate {rate} is out of range: use {MIN_OUTPUT_RATE}..{MAX_OUTPUT_RATE} Hz "
            "(16000, 24000 or 48000 are typical), or 0 for the default"
        )
    if rate % fps:
        raise InvalidArgument(
            f"config.audio_sample_rate {rate} Hz is not a whole number of samples per frame at {fps} fps: "
            "pick a rate divisible by the fps (e.g. 16000, 24000 or 48000 at 25 fps)"
        )
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
        fps=fps,
        audio_sample_rate=rate,
        encoding=encoding,
        jpeg_quality=quality,
        realtime=config.realtime,
        seed=config.seed or defaults.seed,
    )


class SharedBackend:
    """One lip-sync backend for every stream of the server, built on first use (model loading is slow)."""

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


@dataclass(frozen=True, slots=True)
class _Frame:
    """A rendered frame, already encoded for the wire (encoding happens in the worker thread too)."""

    data: bytes
    pcm: bytes
    speaking: bool


_Output = _Frame | PlaybackEvent


@dataclass(frozen=True, slots=True)
class _SegmentEndOp:
    pass


_Op = AudioChunk | _SegmentEndOp
_EOF: Final = object()


@dataclass(frozen=True, slots=True)
class _InputFailed:
    """The request stream broke in a way the client must hear about (a message that did not decode)."""

    error: AvalumaError


_SHUTDOWN_MESSAGE: Final = "the server is shutting down: reconnect (to another instance) and start a new stream"


def _error(exc: AvalumaError) -> RenderResponse:
    return RenderResponse(error=common_pb2.StreamError(code=status_number(exc), message=exc.message))


def split_audio(chunk: AudioChunk, fps: int, frames_per_piece: int = PIECE_FRAMES) -> list[AudioChunk]:
    """Cut ``chunk`` into pieces of about ``frames_per_piece`` video frames of audio each."""
    size = max(1, math.ceil(chunk.sample_rate * frames_per_piece / fps))
    samples = chunk.samples
    return [AudioChunk(samples[i : i + size], chunk.sample_rate) for i in range(0, len(samples), size)]


class _RenderStream:
    """The state of one Render call between its config and its end. Owned by :meth:`RenderServicer.Render`."""

    def __init__(
        self,
        session: RenderSession,
        settings: StreamSettings,
        width: int,
        height: int,
        telemetry: StreamTelemetry = NOOP_STREAM,
        faults: list[LipSyncFault] | None = None,
        idle_timeout_s: float = 60.0,
    ) -> None:
        self.session = session
        self.idle_timeout_s = idle_timeout_s
        #: Backend faults not yet told to the client; appended by render worker threads (see :func:`watch_faults`).
        self.faults: list[LipSyncFault] = faults if faults is not None else []
        self.telemetry = telemetry
        self.settings = settings
        self.width = width
        self.height = height
        self.inbox: asyncio.Queue[object] = asyncio.Queue(INBOX_SIZE)
        #: Clears read from the client but not yet handled: work queued before them is dropped unrendered.
        self.clears_pending = 0
        self.ops: deque[_Op] = deque()
        #: Realtime only: rendered outputs waiting for their tick.
        self.pending: deque[_Output] = deque()
        self.sent = 0
        #: The segment the client has seen start but not finish, and how many of its frames it has been sent.
        self.playing: int | None = None
        self.played_frames = 0
        self.last_segment = 0
        self.input_done = False
        self._get: asyncio.Task[object] | None = None
        #: Loop time since which the client has sent nothing and the stream has had nothing to render or send.
        self.quiet_since = asyncio.get_running_loop().time()
        self._last_lag_notice: float | None = None

    def memory_bytes(self) -> int:
        """Bytes this stream buffers (audio waiting to be rendered, frames waiting to be sent), for telemetry."""
        audio = sum(op.samples.nbytes for op in self.ops if isinstance(op, AudioChunk))
        frames = sum(len(o.data) + len(o.pcm) for o in self.pending if isinstance(o, _Frame))
        return audio + frames

    # --- reading -------------------------------------------------------------------------------------------------

    async def read(self, requests: AsyncIterator[RenderRequest]) -> None:
        try:
            async for request in requests:
                if request.WhichOneof("request") == "clear":
                    self.clears_pending += 1  # before the put: the stream may be blocked on a full inbox
                await self.inbox.put(request)
        except AvalumaError as exc:  # a message that did not decode: the stream ends with its status, not OK
            await self.inbox.put(_InputFailed(exc))
            return
        except Exception as exc:  # the call broke (client gone): treat it as the end of the input
            log.debug("render stream input ended with an error", extra={"error_type": type(exc).__name__})
        # Not in a finally: when this task is cancelled the stream is over and nobody waits for the end marker.
        await self.inbox.put(_EOF)

    async def _next_request(self, wait_s: float | None, closing: asyncio.Event) -> object | None:
        """The next request, ``_EOF``, or ``None`` when ``wait_s`` passed first. Raises when the server shuts down."""
        if self._get is None:
            self._get = asyncio.ensure_future(self.inbox.get())
        closed = asyncio.ensure_future(closing.wait())
        try:
            await asyncio.wait({self._get, closed}, timeout=wait_s, return_when=asyncio.FIRST_COMPLETED)
        finally:
            closed.cancel()
        if closing.is_set():
            raise Unavailable(_SHUTDOWN_MESSAGE)
        if not self._get.done():
            return None
        request, self._get = self._get.result(), None
        return request

    def cancel_reading(self) -> None:
        if self._get is not None:
            self._get.cancel()

    # --- the loop ------------------------------------------------------------------------------------------------

    async def run(self, closing: asyncio.Event) -> AsyncIterator[RenderResponse]:
        try:
            async for response in self._run(closing):
                yield response
        except AvalumaError:
            # A fault that ends the stream (policy `end`) is told in-band first, then the status ends the call.
            for response in self._fault_errors():
                yield response
            raise

    def _fault_errors(self) -> list[RenderResponse]:
        responses = []
        while self.faults:
            fault = self.faults.pop(0)
            log.warning(
                "lip-sync backend fault reported to the render stream",
                extra={"event": "lipsync_fault", "url": fault.url, "action": fault.action, "error": fault.error},
            )
            responses.append(_error(Unavailable(fault.describe())))
        return responses

    async def _run(self, closing: asyncio.Event) -> AsyncIterator[RenderResponse]:
        loop = asyncio.get_running_loop()
        frame_s = 1.0 / self.settings.fps
        clock_start = loop.time()
        while True:
            if self.faults:  # every step loops back here, so a fault is told right after the render that hit it
                for response in self._fault_errors():
                    yield response
            if closing.is_set():
                raise Unavailable(_SHUTDOWN_MESSAGE)
            if self.ops or self.pending:  # the client may be waiting for what it sent: not idle
                self.quiet_since = loop.time()
            if self.clears_pending:
                request = await self._next_request(None, closing)
                for response in await self._handle_before_clear(request):
                    yield response
                continue
            if self.settings.realtime:
                now = loop.time()
                due = clock_start + self.sent * frame_s
                if now >= due and not (self.input_done and not self.ops and not self.pending):
                    if now - due > frame_s:
                        self.telemetry.frame_late()
                    if now - due > MAX_LAG_S:
                        clock_start = now - self.sent * frame_s
                        notice = self._lag_notice(now, now - due)
                        if notice is not None:
                            yield notice
                    for response in await self._tick():
                        yield response
                    continue
                if self.ops and len(self.pending) < RENDER_AHEAD_S * self.settings.fps:
                    self.pending.extend(await self._render(self.ops.popleft()))
                    continue
                if self.input_done and not self.ops and not any(isinstance(o, _Frame) for o in self.pending):
                    for response in self._send_all(list(self.pending)):
                        yield response
                    return
                if self.input_done or len(self.ops) > MAX_BACKLOG_S * self.settings.fps / PIECE_FRAMES:
                    # Nothing to read, or enough audio queued: stop reading so flow control slows the client down.
                    await asyncio.sleep(max(0.0, due - now))
                    continue
                timeout: float | None = max(0.0, due - now)
            else:
                if self.ops:
                    for response in self._send_all(await self._render(self.ops.popleft())):
                        yield response
                    continue
                if self.input_done:
                    return
                timeout = None
            remaining = self.quiet_since + self.idle_timeout_s - loop.time()
            if remaining <= 0:
                raise DeadlineExceeded(
                    f"no request for {self.idle_timeout_s:g} s with nothing left to play: the stream was ended to free "
                    "its slot (render.idle_timeout_s); keep a quiet stream open by sending audio (silence counts)"
                )
            request = await self._next_request(remaining if timeout is None else min(timeout, remaining), closing)
            if request is None:
                continue
            self.quiet_since = loop.time()
            for response in self._handle(request):
                yield response

    def _lag_notice(self, now: float, lag_s: float) -> RenderResponse | None:
        """An in-band notice that the stream fell behind real time (at most one per LAG_NOTICE_INTERVAL_S)."""
        if self._last_lag_notice is not None and now - self._last_lag_notice < LAG_NOTICE_INTERVAL_S:
            return None
        self._last_lag_notice = now
        log.warning("realtime render stream fell behind", extra={"lag_s": round(lag_s, 3), "frames_sent": self.sent})
        return _error(
            ResourceExhausted(
                f"the stream fell {lag_s:.2f} s behind real time: the server is short of CPU for its streams; frames "
                "continue from now on (reconnect to another instance if this repeats)"
            )
        )

    # --- requests ------------------------------------------------------------------------------------------------

    def _handle(self, request: object) -> list[RenderResponse]:
        """Queue the work a request asks for; answer control requests right away."""
        if isinstance(request, _InputFailed):
            raise request.error
        if request is _EOF:
            # Half-close ends an open segment, like closing a LiveKit byte stream does.
            self.input_done = True
            self.telemetry.segment_end_received()
            self.ops.append(_SegmentEndOp())
            return []
        assert isinstance(request, RenderRequest)
        kind = request.WhichOneof("request")
        if kind == "audio":
            audio = request.audio
            try:
                chunk = pcm16_to_mono(audio.pcm, audio.sample_rate, audio.num_channels)
            except InvalidArgument as exc:
                return [_error(exc)]
            self.telemetry.audio_received()
            self.ops.extend(split_audio(chunk, self.settings.fps))
            return []
        if kind == "segment_end":
            self.telemetry.segment_end_received()
            self.ops.append(_SegmentEndOp())
            return []
        if kind == "clear":
            return self._clear()
        if kind == "config":
            return [_error(InvalidArgument("config was already sent: it may only be the first message of a stream"))]
        return [_error(InvalidArgument("empty request: set one of config, audio, segment_end or clear"))]

    async def _handle_before_clear(self, request: object) -> list[RenderResponse]:
        # Audio and segment ends that precede a clear would be dropped by it: skip them without rendering.
        if isinstance(request, RenderRequest) and request.WhichOneof("request") in ("audio", "segment_end"):
            return []
        return self._handle(request)

    def _clear(self) -> list[RenderResponse]:
        self.clears_pending = max(0, self.clears_pending - 1)
        self.ops.clear()
        self.pending.clear()
        events = self.session.clear()
        self.telemetry.cleared()
        finished = next((e for e in events if isinstance(e, PlaybackEvent) and e.kind == "finished"), None)
        if self.playing is not None:
            segment, position = self.playing, self.played_frames / self.settings.fps
        elif finished is not None:
            # Rendered but never sent (realtime, still queued): the client saw none of it.
            segment, position = finished.segment, 0.0
        else:
            segment, position = self.last_segment, 0.0
        self.playing = None
        self.played_frames = 0
        log.debug("stream cleared", extra={"segment": segment, "position_s": position})
        return [
            RenderResponse(
                playback_finished=common_pb2.PlaybackFinished(
                    segment=segment, playback_position_s=position, interrupted=True
                )
            )
        ]

    # --- rendering -----------------------------------------------------------------------------------------------

    async def _render(self, op: _Op) -> list[_Output]:
        audio = not isinstance(op, _SegmentEndOp)
        # The worker thread inherits the context, so inference spans become children of the segment's span.
        with self.telemetry.rendering(audio=audio, queued_frames=len(self.ops) * PIECE_FRAMES + len(self.pending)):
            if isinstance(op, _SegmentEndOp):
                out = await asyncio.to_thread(self._encode_all, self.session.end_segment)
            else:
                out = await asyncio.to_thread(self._encode_all, lambda: self.session.push_audio(op))
        self.telemetry.frames_rendered(out)
        return out

    def _encode_all(self, produce: Callable[[], Iterable[RenderedFrame | PlaybackEvent]]) -> list[_Output]:
        # Runs in a worker thread: rendering and encoding are the CPU-heavy part of a stream.
        out: list[_Output] = []
        for item in produce():
            if isinstance(item, PlaybackEvent):
                out.append(item)
            else:
                data = encode_frame(item.rgb, self.settings.encoding, jpeg_quality=self.settings.jpeg_quality)
                out.append(_Frame(data=data, pcm=float_to_pcm16(item.audio), speaking=item.speaking))
        return out

    async def _tick(self) -> list[RenderResponse]:
        """Send what is due now: any events at the head of the queue, then one frame (an idle one if none is ready)."""
        batch: list[_Output] = []
        while self.pending and isinstance(self.pending[0], PlaybackEvent):
            batch.append(self.pending.popleft())
        if self.pending:
            batch.append(self.pending.popleft())
        else:
            idle = await asyncio.to_thread(self._encode_all, lambda: self.session.idle_frames(1))
            self.telemetry.frames_rendered(idle)
            batch.extend(idle)
        return self._send_all(batch)

    def _send_all(self, outputs: Iterable[_Output]) -> list[RenderResponse]:
        responses: list[RenderResponse] = []
        for output in outputs:
            if isinstance(output, _Frame):
                responses.extend(self._frame_responses(output))
            elif output.kind == "started":
                self.playing, self.played_frames, self.last_segment = output.segment, 0, output.segment
                self.telemetry.playback_started_sent()
                responses.append(RenderResponse(playback_started=common_pb2.PlaybackStarted(segment=output.segment)))
            else:
                self.playing = None
                responses.append(
                    RenderResponse(
                        playback_finished=common_pb2.PlaybackFinished(
                            segment=output.segment,
                            playback_position_s=output.position_s,
                            interrupted=output.interrupted,
                        )
                    )
                )
        return responses

    def _frame_responses(self, frame: _Frame) -> tuple[RenderResponse, RenderResponse]:
        index = self.sent
        pts_us = round(index * 1_000_000 / self.settings.fps)
        self.sent += 1
        if frame.speaking and self.playing is not None:
            self.played_frames += 1
        video = render_service_pb2.VideoFrame(
            index=index,
            pts_us=pts_us,
            width=self.width,
            height=self.height,
            encoding=_WIRE_ENCODING[self.settings.encoding],
            data=frame.data,
            speaking=frame.speaking,
        )
        audio = render_service_pb2.AudioFrame(
            index=index, pts_us=pts_us, sample_rate=self.settings.audio_sample_rate, pcm=frame.pcm
        )
        return RenderResponse(video=video), RenderResponse(audio=audio)


class RenderServicer(render_service_pb2_grpc.RenderServiceServicer):
    """``avaluma.v1.RenderService``. Domain errors are raised and mapped to status codes by the error interceptor."""

    def __init__(
        self,
        *,
        store: AvatarStore,
        backend: SharedBackend,
        slots: SessionSlots,
        defaults: RenderDefaults,
        default_avatar: str,
        first_message_timeout_s: float = 10.0,
        idle_timeout_s: float = 60.0,
    ) -> None:
        self._first_message_timeout_s = first_message_timeout_s
        self._idle_timeout_s = idle_timeout_s
        self._store = store
        self._backend = backend
        self._slots = slots
        self._defaults = defaults
        self._default_avatar = default_avatar
        self._closing = asyncio.Event()

    def begin_shutdown(self) -> None:
        """Make every open stream end with UNAVAILABLE (called before the server's grace period starts)."""
        self._closing.set()

    async def Render(
        self,
        request_iterator: AsyncIterator[RenderRequest],
        context: grpc.aio.ServicerContext[Any, Any],
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
        settings = stream_settings(first.config, self._defaults, default_avatar=self._default_avatar)
        avatar = self._store.get(settings.avatar_id)
        with self._slots.acquire("render stream"):
            faults: list[LipSyncFault] = []  # list.append is atomic: safe from the render worker threads
            backend = instrument_backend(watch_faults(await self._backend.get(), faults.append))
            session = RenderSession(
                avatar, backend, fps=settings.fps, audio_sample_rate=settings.audio_sample_rate, seed=settings.seed
            )
            stream = _RenderStream(
                session,
                settings,
                avatar.width,
                avatar.height,
                faults=faults,
                idle_timeout_s=self._idle_timeout_s,
            )
            stream.telemetry = stream_telemetry(
                KIND_RENDER,
                {
                    ATTR_AVATAR_ID: avatar.id,
                    ATTR_FPS: settings.fps,
                    ATTR_ENCODING: settings.encoding.value,
                    ATTR_REALTIME: settings.realtime,
                },
                stream.memory_bytes,
            )
            log.info(
                "render stream started",
                extra={
                    "avatar_id": avatar.id,
                    "fps": settings.fps,
                    "encoding": settings.encoding.value,
                    "realtime": settings.realtime,
                },
            )
            yield RenderResponse(
                started=render_service_pb2.RenderStarted(
                    width=avatar.width,
                    height=avatar.height,
                    fps=settings.fps,
                    audio_sample_rate=settings.audio_sample_rate,
                    encoding=_WIRE_ENCODING[settings.encoding],
                    avatar_id=avatar.id,
                )
            )
            reader = asyncio.create_task(stream.read(request_iterator))
            try:
                async for response in stream.run(self._closing):
                    yield response
            finally:
                stream.telemetry.close()
                stream.cancel_reading()
                await cancel_and_wait(reader)
                log.info("render stream ended", extra={"avatar_id": avatar.id, "frames_sent": stream.sent})
