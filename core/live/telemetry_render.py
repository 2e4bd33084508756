"""Telemetry of the render path: lip-sync inference spans and latency, and per-stream segment spans and metrics.

The render engine (:mod:`avaluma.renderer.engine`) stays free of telemetry: a session hands it a
:class:`LipSyncTelemetry` (:func:`lipsync_instrumentation`), which the lip-sync base class calls around every inference,
and reports what a stream does through a :class:`StreamTelemetry`. Both cost one flag check while telemetry is off
(the stream gets :data:`NOOP_STREAM`).

Span tree of one utterance on a ``Render`` stream (``avaluma.v1.RenderService/Render`` is the gRPC server span)::

    avaluma.v1.RenderService/Render
      avaluma.segment                    (first audio .. segment end or clear)
        avaluma.render.frames            (sampled: first piece of the segment, then 1 in FRAME_SPAN_EVERY)
          avaluma.lipsync.infer          (every push / flush of the model)

A LiveKit session outlives its ``StartSession`` call; its spans are parented on the context that call carried::

    avaluma.v1.AvatarService/StartSession
      avaluma.session.start              (joining the room, publishing the tracks)
      avaluma.segment                    (each utterance the session plays, as above)
"""

from __future__ import annotations

import itertools
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Final

from avaluma.core import telemetry
from avaluma.renderer.lipsync.base import LipSyncBackend, LipSyncFault, LipSyncInstrumentation, MouthFrames

KIND_RENDER: Final = "render"
KIND_LIVEKIT: Final = "livekit"


class LipSyncTelemetry(LipSyncInstrumentation):
    """A lip-sync stream's instrumentation in the server: an inference span and a latency record around every call
    while telemetry is on (a plain call while it is off), and each new backend fault handed to ``on_fault``."""

    def __init__(self, backend_name: str, on_fault: Callable[[LipSyncFault], None] | None = None) -> None:
        self._attrs: dict[str, telemetry.AttributeValue] = {telemetry.ATTR_LIPSYNC_BACKEND: backend_name}
        self.traced = telemetry.tracing_enabled() or telemetry.metrics_enabled()
        self._on_fault = on_fault

    def call(self, op: str, samples: int, run: Callable[[], MouthFrames]) -> MouthFrames:
        if not self.traced:
            return run()
        attrs = {**self._attrs, telemetry.ATTR_LIPSYNC_OP: op, telemetry.ATTR_AUDIO_SAMPLES: samples}
        with telemetry.span(telemetry.SPAN_LIPSYNC_INFER, attrs) as span:
            start = time.perf_counter()
            frames = run()
            telemetry.INFERENCE_LATENCY.record(telemetry.elapsed_since(start), self._attrs)
            span.set_attribute(telemetry.ATTR_FRAMES, len(frames))
        return frames

    def faulted(self, fault: LipSyncFault) -> None:
        if self._on_fault is not None:
            self._on_fault(fault)


def lipsync_instrumentation(
    backend: LipSyncBackend, on_fault: Callable[[LipSyncFault], None] | None = None
) -> LipSyncTelemetry:
    """The instrumentation a session hands its ``RenderSession`` for ``backend`` (see :class:`LipSyncTelemetry`)."""
    return LipSyncTelemetry(backend.name or type(backend).__name__, on_fault)


_stream_ids = itertools.count(1)


class StreamTelemetry:
    """What one render stream reports: active-session count, segment spans, first-frame latency, frames rendered and
    late, queue depth and memory. Methods are called from the stream's event-loop task only."""

    def __init__(
        self,
        kind: str,
        attributes: telemetry.Attributes,
        measure_memory: Callable[[], int],
        *,
        context: object | None = None,
    ) -> None:
        self.session_id = f"{kind}-{next(_stream_ids)}"
        #: Parent of the segment spans (a LiveKit session's StartSession call); ``None``: the current span.
        self._context = context
        self._kind = {telemetry.ATTR_SESSION_KIND: kind}
        self._attrs = dict(attributes)
        self._segment: telemetry.Span | None = None
        self._pieces = 0
        #: Arrival times of segments received but not started yet (their first frame not yet sent).
        self._arrivals: deque[float] = deque()
        self._receiving = False
        telemetry.ACTIVE_SESSIONS.add(1, self._kind)
        self._forget_memory = telemetry.track_session_memory(self.session_id, kind, measure_memory)

    # --- input ---------------------------------------------------------------------------------------------------

    def audio_received(self) -> None:
        if not self._receiving:
            self._receiving = True
            self._arrivals.append(time.perf_counter())

    def segment_end_received(self) -> None:
        self._receiving = False

    def cleared(self) -> None:
        # A clear drops everything queued before it: those segments will never start.
        self._arrivals.clear()
        self._receiving = False
        self._end_segment(interrupted=True)

    # --- rendering -----------------------------------------------------------------------------------------------

    @contextmanager
    def rendering(self, *, audio: bool, queued_frames: float, segment: int) -> Iterator[None]:
        """Around one render step of player segment ``segment`` (its id): ``audio`` (else the segment's end). Spans
        started inside (inference) are children of the segment's span; the segment span ends with the step that ends
        the segment."""
        telemetry.QUEUE_DEPTH.record(queued_frames, self._kind)
        if audio and self._segment is None:
            self._segment = telemetry.start_span(
                telemetry.SPAN_SEGMENT,
                {**self._attrs, telemetry.ATTR_SEGMENT: segment},
                context=self._context,
            )
            self._pieces = 0
        span = self._segment
        if span is None:  # a segment end with no audio before it
            yield
            return
        sampled = self._pieces % telemetry.FRAME_SPAN_EVERY == 0
        self._pieces += 1
        with telemetry.activate(span):
            if sampled:
                with telemetry.span(telemetry.SPAN_RENDER_FRAMES, self._attrs):
                    yield
            else:
                yield
        if not audio:
            self._end_segment(interrupted=False)

    def _end_segment(self, *, interrupted: bool) -> None:
        segment, self._segment = self._segment, None
        if segment is None:
            return
        segment.set_attribute(telemetry.ATTR_INTERRUPTED, interrupted)
        segment.end()

    def frames_rendered(self, outputs: Iterable[object]) -> None:
        """Count the frames among ``outputs`` (objects with a ``speaking`` flag; playback events are skipped)."""
        flags = [speaking for o in outputs if (speaking := getattr(o, "speaking", None)) is not None]
        if flags:
            speaking = sum(flags)
            if speaking:
                telemetry.FRAMES_RENDERED.add(speaking, {**self._kind, telemetry.ATTR_SPEAKING: True})
            if len(flags) > speaking:
                telemetry.FRAMES_RENDERED.add(len(flags) - speaking, {**self._kind, telemetry.ATTR_SPEAKING: False})

    # --- output --------------------------------------------------------------------------------------------------

    def playback_started_sent(self) -> None:
        if self._arrivals:
            telemetry.FIRST_FRAME_LATENCY.record(telemetry.elapsed_since(self._arrivals.popleft()), self._kind)

    def frame_late(self) -> None:
        telemetry.FRAMES_LATE.add(1, self._kind)

    def close(self) -> None:
        self._end_segment(interrupted=True)
        self._forget_memory()
        telemetry.ACTIVE_SESSIONS.add(-1, self._kind)


class _NoopStreamTelemetry(StreamTelemetry):
    """The stream telemetry while telemetry is off: every report is dropped at the call."""

    def __init__(self) -> None:
        self.session_id = ""

    def audio_received(self) -> None:
        return None

    def segment_end_received(self) -> None:
        return None

    def cleared(self) -> None:
        return None

    @contextmanager
    def rendering(self, *, audio: bool, queued_frames: float, segment: int) -> Iterator[None]:
        yield

    def frames_rendered(self, outputs: Iterable[object]) -> None:
        return None

    def playback_started_sent(self) -> None:
        return None

    def frame_late(self) -> None:
        return None

    def close(self) -> None:
        return None


NOOP_STREAM: Final[StreamTelemetry] = _NoopStreamTelemetry()


def stream_telemetry(
    kind: str,
    attributes: telemetry.Attributes,
    measure_memory: Callable[[], int],
    *,
    context: object | None = None,
) -> StreamTelemetry:
    """A :class:`StreamTelemetry` for a new stream, or the shared no-op one while telemetry is off.

    ``context`` (:func:`telemetry.current_context` captured earlier) parents the segment spans when the stream's
    work does not run below the call that started it (a LiveKit session lives on after ``StartSession`` returns)."""
    if not (telemetry.tracing_enabled() or telemetry.metrics_enabled()):
        return NOOP_STREAM
    return StreamTelemetry(kind, attributes, measure_memory, context=context)
