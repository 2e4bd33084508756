"""Telemetry set-up from OTEL_* variables, the free off state, span helpers, metric instruments and render wrappers."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from avaluma.core import telemetry
from avaluma.core.errors import ConfigError
from avaluma.core.live.telemetry_render import (
    KIND_LIVEKIT,
    NOOP_STREAM,
    lipsync_instrumentation,
    stream_telemetry,
)
from avaluma.core.server.grpc.telemetry import client_interceptors, rpc_attributes, server_interceptors
from avaluma.core.telemetry import TelemetrySettings, settings_from_env
from avaluma.renderer.lipsync.base import LipSyncBackend, LipSyncFault, LipSyncStream, MouthFrames
from avaluma.renderer.lipsync.energy import EnergyBackend

# --- settings (pure) ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, TelemetrySettings()),
        ({"OTEL_SERVICE_NAME": "x"}, TelemetrySettings()),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317"}, TelemetrySettings(("otlp",), ("otlp",))),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4317"}, TelemetrySettings(("otlp",), ())),
        ({"OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": "http://c:4317"}, TelemetrySettings((), ("otlp",))),
        ({"OTEL_TRACES_EXPORTER": "console"}, TelemetrySettings(("console",), ())),
        ({"OTEL_TRACES_EXPORTER": "otlp, console,otlp"}, TelemetrySettings(("otlp", "console"), ())),
        ({"OTEL_METRICS_EXPORTER": "prometheus"}, TelemetrySettings((), ("prometheus",))),
        (
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317", "OTEL_METRICS_EXPORTER": "none"},
            TelemetrySettings(("otlp",), ()),
        ),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317", "OTEL_SDK_DISABLED": "true"}, TelemetrySettings()),
        ({"OTEL_TRACES_EXPORTER": "OTLP", "OTEL_SDK_DISABLED": "false"}, TelemetrySettings(("otlp",), ())),
    ],
)
def test_settings_follow_the_standard_variables_and_default_to_off(
    environ: dict[str, str], expected: TelemetrySettings
) -> None:
    assert settings_from_env(environ) == expected
    assert settings_from_env(environ).enabled == bool(expected.traces or expected.metrics)


def test_an_unknown_exporter_fails_at_start_up_naming_the_valid_ones() -> None:
    with pytest.raises(ConfigError, match=r"OTEL_TRACES_EXPORTER='jaeger'.*use otlp, console or none"):
        settings_from_env({"OTEL_TRACES_EXPORTER": "jaeger"})
    with pytest.raises(ConfigError, match=r"\(zipkin\).*otlp, console, prometheus"):
        settings_from_env({"OTEL_METRICS_EXPORTER": "otlp,zipkin"})


def test_user_content_is_tagged_by_its_attribute_name() -> None:
    assert telemetry.user_content("transcript") == "avaluma.user.transcript"
    assert telemetry.user_content("avaluma.user.room") == "avaluma.user.room"
    assert telemetry.ATTR_USER_AGENT_IDENTITY.startswith(telemetry.USER_CONTENT_PREFIX)


def test_rpc_attributes_follow_the_semantic_conventions() -> None:
    assert rpc_attributes("/avaluma.v1.RenderService/Render") == {
        "rpc.system": "grpc",
        "rpc.service": "avaluma.v1.RenderService",
        "rpc.method": "Render",
    }


# --- off: nothing happens, nothing is installed -------------------------------------------------------------------


@pytest.fixture
def off() -> Iterator[None]:
    telemetry.configure({})
    yield
    telemetry.shutdown()


def test_off_by_default_every_helper_is_a_no_op(off: None) -> None:
    assert not telemetry.tracing_enabled() and not telemetry.metrics_enabled()
    assert telemetry.tracer() is None
    with telemetry.span(telemetry.SPAN_SEGMENT, {telemetry.ATTR_FRAMES: 1}) as span:
        span.set_attribute(telemetry.ATTR_FRAMES, 2)
        assert span is telemetry.NOOP_SPAN and not span.is_recording()
    assert telemetry.start_span(telemetry.SPAN_SEGMENT) is telemetry.NOOP_SPAN
    telemetry.FRAMES_RENDERED.add(1)
    telemetry.INFERENCE_LATENCY.record(0.01)
    assert telemetry.inject_headers() == {}
    assert telemetry.current_context() is None
    assert telemetry.extract_context({"traceparent": "00-" + "1" * 32 + "-" + "2" * 16 + "-01"}) is None
    assert server_interceptors() == [] and client_interceptors() == []
    assert not lipsync_instrumentation(EnergyBackend()).traced, "no span around the model while off"
    assert stream_telemetry("render", {}, lambda: 0) is NOOP_STREAM


# --- on: in-memory exporters ----------------------------------------------------------------------------------------


class Recorded:
    def __init__(self) -> None:
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

        self.spans = InMemorySpanExporter()
        self.metrics = InMemoryMetricReader()

    def points(self, name: str) -> list[Any]:
        data = self.metrics.get_metrics_data()
        assert data is not None
        return [
            p
            for rm in data.resource_metrics
            for sm in rm.scope_metrics
            for m in sm.metrics
            if m.name == name
            for p in m.data.data_points
        ]


@pytest.fixture
def recorded() -> Iterator[Recorded]:
    pytest.importorskip("opentelemetry.sdk", reason="needs the otel extra: pip install 'avaluma[otel]'")
    rec = Recorded()
    telemetry.configure(
        {"OTEL_SERVICE_NAME": "test-svc"}, span_exporter=rec.spans, metric_reader=rec.metrics, set_global=False
    )
    yield rec
    telemetry.shutdown()


def test_spans_nest_carry_attributes_and_record_errors(recorded: Recorded) -> None:
    with telemetry.span(telemetry.SPAN_UTTERANCE, {telemetry.ATTR_USER_TRANSCRIPT: "hello"}):
        segment = telemetry.start_span(telemetry.SPAN_SEGMENT, {telemetry.ATTR_SEGMENT: 0})
        with telemetry.activate(segment), telemetry.span(telemetry.SPAN_LIPSYNC_INFER) as inner:
            inner.set_attribute(telemetry.ATTR_FRAMES, 3)
        telemetry.record_error(segment, ValueError("bad"))
        segment.end()
    spans = {s.name: s for s in recorded.spans.get_finished_spans()}
    root, seg, infer = (
        spans[n] for n in (telemetry.SPAN_UTTERANCE, telemetry.SPAN_SEGMENT, telemetry.SPAN_LIPSYNC_INFER)
    )
    assert seg.parent is not None and seg.parent.span_id == root.context.span_id
    assert infer.parent is not None and infer.parent.span_id == seg.context.span_id
    assert infer.attributes == {telemetry.ATTR_FRAMES: 3}
    assert root.attributes == {"avaluma.user.transcript": "hello"}
    assert seg.status.status_code.name == "ERROR" and seg.events[0].name == "exception"
    assert root.resource.attributes["service.name"] == "test-svc"


def test_trace_context_round_trips_through_headers(recorded: Recorded) -> None:
    with telemetry.span(telemetry.SPAN_UTTERANCE) as root:
        headers = telemetry.inject_headers()
    assert headers["traceparent"].split("-")[1] == format(root.get_span_context().trace_id, "032x")
    parent = telemetry.extract_context([*headers.items(), ("x-api-key", "k"), ("bin-bin", b"\x00")])
    with telemetry.span(telemetry.SPAN_SEGMENT, context=parent) as child:
        pass
    assert child.get_span_context().trace_id == root.get_span_context().trace_id


def test_instruments_record_once_configured_and_go_quiet_after_shutdown(recorded: Recorded) -> None:
    telemetry.FRAMES_RENDERED.add(3, {telemetry.ATTR_SPEAKING: True})
    telemetry.FIRST_FRAME_LATENCY.record(0.05)
    telemetry.AV_OFFSET.record(-0.004)
    forget = telemetry.track_session_memory("render-1", "render", lambda: 4096)
    (frames,) = recorded.points("avaluma.frames.rendered")
    assert frames.value == 3
    (latency,) = recorded.points("avaluma.first_frame.latency")
    assert latency.count == 1 and 0.04 in latency.explicit_bounds
    (memory,) = recorded.points(telemetry.SESSION_MEMORY_NAME)
    assert memory.value == 4096 and memory.attributes[telemetry.ATTR_SESSION_ID] == "render-1"
    forget()
    assert recorded.points(telemetry.SESSION_MEMORY_NAME) == []
    telemetry.shutdown()
    telemetry.FRAMES_RENDERED.add(1)  # unbound again: dropped, no error


def test_traced_backend_reports_every_inference_call(recorded: Recorded) -> None:
    backend = EnergyBackend()
    stream = backend.open_stream(fps=25)
    stream.instrumentation = lipsync_instrumentation(backend)
    audio = (0.3 * np.sin(np.arange(16_000) / 16_000 * 2 * np.pi * 200)).astype(np.float32)
    frames = len(stream.push(audio)) + len(stream.flush())
    assert frames == 25
    spans = recorded.spans.get_finished_spans()
    assert [s.attributes[telemetry.ATTR_LIPSYNC_OP] for s in spans] == ["push", "flush"]
    assert sum(s.attributes[telemetry.ATTR_FRAMES] for s in spans) == frames
    (latency,) = recorded.points("avaluma.lipsync.inference.duration")
    assert latency.count == 2 and latency.attributes == {telemetry.ATTR_LIPSYNC_BACKEND: "energy"}


def test_stream_telemetry_counts_sessions_segments_and_first_frames(recorded: Recorded) -> None:
    stream = stream_telemetry("render", {telemetry.ATTR_AVATAR_ID: "a"}, lambda: 10)
    assert stream is not NOOP_STREAM
    stream.audio_received()
    stream.audio_received()  # same segment: one arrival
    with stream.rendering(audio=True, queued_frames=4, segment=0):
        pass
    stream.playback_started_sent()
    stream.segment_end_received()
    with stream.rendering(audio=False, queued_frames=0, segment=0):
        pass
    stream.audio_received()  # a second segment, interrupted before its first frame
    with stream.rendering(audio=True, queued_frames=2, segment=1):
        pass
    stream.cleared()
    stream.playback_started_sent()  # nothing waiting: not a first frame
    stream.frame_late()
    (active,) = recorded.points("avaluma.sessions.active")
    assert active.value == 1
    stream.close()
    segments = [s for s in recorded.spans.get_finished_spans() if s.name == telemetry.SPAN_SEGMENT]
    assert [(s.attributes[telemetry.ATTR_SEGMENT], s.attributes[telemetry.ATTR_INTERRUPTED]) for s in segments] == [
        (0, False),
        (1, True),
    ]
    (first,) = recorded.points("avaluma.first_frame.latency")
    assert first.count == 1
    (late,) = recorded.points("avaluma.frames.late")
    assert late.value == 1
    (depth,) = recorded.points("avaluma.render.queue.depth")
    assert (depth.count, depth.sum) == (3, 6)
    (active,) = recorded.points("avaluma.sessions.active")
    assert active.value == 0


def test_a_missing_sdk_is_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    real_import = builtins.__import__

    def no_sdk(name: str, *args: Any, **kwargs: Any) -> Any:
        if name.startswith("opentelemetry.sdk"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_sdk)
    with pytest.raises(ConfigError, match=r"pip install -e '\.\[otel\]' in the Avaluma checkout"):
        telemetry.configure({"OTEL_TRACES_EXPORTER": "console"})
    assert not telemetry.tracing_enabled()


# --- the LiveKit session path and backend faults --------------------------------------------------------------------


class _FaultingStream(LipSyncStream):
    """Scripted: every push returns no frames; the pushes listed in ``fail_at`` record a new fault."""

    def __init__(self, fail_at: set[int]) -> None:
        self._fail_at = fail_at
        self._pushes = 0

    def _push(self, audio: np.ndarray) -> MouthFrames:
        self._pushes += 1
        if self._pushes in self._fail_at:
            self.fault = LipSyncFault("10.0.0.7:8001", "lipsync", "ConnectionError: gone", "fallback", 0.0, "scripted")
        return MouthFrames.empty()

    def _flush(self) -> MouthFrames:
        return MouthFrames.empty()

    def _reset(self) -> None:
        return None


class _FaultingBackend(LipSyncBackend):
    name = "scripted"

    def __init__(self, fail_at: set[int]) -> None:
        self.fail_at = fail_at

    def open_stream(self, *, fps: float) -> LipSyncStream:
        return _FaultingStream(self.fail_at)


def test_faults_reach_the_instrumentation_once_each_while_traced(recorded: Recorded) -> None:
    seen: list[LipSyncFault] = []
    backend = _FaultingBackend({2, 4})
    stream = backend.open_stream(fps=25)
    stream.instrumentation = lipsync_instrumentation(backend, on_fault=seen.append)
    silence = np.zeros(160, dtype=np.float32)
    for _ in range(5):
        stream.push(silence)
    assert [f.error for f in seen] == ["ConnectionError: gone"] * 2, "one report per new fault, none repeated"
    assert stream.fault is seen[-1]
    assert len(recorded.spans.get_finished_spans()) == 5, "every call traced, the faulting ones too"
    message = seen[0].describe()
    assert "'scripted' at 10.0.0.7:8001" in message and "on_failure: fallback" in message


def test_session_segments_hang_below_a_captured_context(recorded: Recorded) -> None:
    with telemetry.span(telemetry.SPAN_UTTERANCE) as root:
        context = telemetry.current_context()
    stream = stream_telemetry(KIND_LIVEKIT, {}, lambda: 0, context=context)  # later, outside that span
    stream.audio_received()
    with stream.rendering(audio=True, queued_frames=0, segment=0):
        pass
    with stream.rendering(audio=False, queued_frames=0, segment=0):
        pass
    stream.close()
    (segment,) = [s for s in recorded.spans.get_finished_spans() if s.name == telemetry.SPAN_SEGMENT]
    assert segment.parent is not None and segment.parent.span_id == root.get_span_context().span_id
    (active,) = recorded.points("avaluma.sessions.active")
    assert active.attributes == {telemetry.ATTR_SESSION_KIND: KIND_LIVEKIT}


async def test_the_av_sync_step_records_the_audio_video_offset(recorded: Recorded) -> None:
    pytest.importorskip("livekit.rtc", reason="needs the server extra")
    from avaluma.core.live.livekit_session import AVSyncSink
    from avaluma.renderer.engine import RenderedFrame

    sink = AVSyncSink(width=32, height=32, fps=25, sample_rate=16_000)
    try:
        for index in range(2):  # 80 ms: within the audio source's queue, so no push waits for real time
            rgb = np.zeros((32, 32, 3), dtype=np.uint8)
            await sink.push(RenderedFrame(index, index * 40_000, rgb, np.zeros(640, np.float32), speaking=False))
        (offset,) = recorded.points("avaluma.av.offset")
        assert offset.count == 2 and offset.attributes == {telemetry.ATTR_SESSION_KIND: KIND_LIVEKIT}
        # Whatever the timing: audio is somewhere in the 80 ms pushed, video starts at 0 or 40 ms.
        assert -0.04 - 1e-9 <= offset.min <= offset.max <= 0.08 + 1e-9
    finally:
        await sink.aclose()


class _RecordingTritonClient:
    """Stands in for tritonclient's aio client (a third-party edge): records stream headers, then fails the call."""

    def __init__(self) -> None:
        self.headers: list[dict[str, str] | None] = []

    def stream_infer(self, inputs_iterator: Any, headers: dict[str, str] | None = None) -> Any:
        self.headers.append(headers)

        class Responses:
            def __aiter__(self) -> Any:
                return self

            async def __anext__(self) -> Any:
                raise ConnectionError("scripted: no server")

            def cancel(self) -> None:
                return None

        return Responses()

    async def close(self) -> None:
        return None


def _triton_headers_sent() -> dict[str, str] | None:
    pytest.importorskip("tritonclient.grpc.aio", reason="needs the triton extra")
    from avaluma.renderer.lipsync.triton_backend import TritonBackend, TritonOptions

    backend = TritonBackend(TritonOptions(check_on_start=False))
    client = _RecordingTritonClient()
    backend._client = client
    try:
        with telemetry.span(telemetry.SPAN_SEGMENT):
            stream = backend.open_stream(fps=25)
            stream.push(np.zeros(1600, dtype=np.float32))  # fails over to the in-process model
        assert stream.fault is not None and stream.fault.backend == "triton"
    finally:
        backend.close()
    (headers,) = client.headers
    return headers


def test_triton_requests_carry_the_trace_context(recorded: Recorded) -> None:
    headers = _triton_headers_sent()
    assert headers is not None
    (segment,) = [s for s in recorded.spans.get_finished_spans() if s.name == telemetry.SPAN_SEGMENT]
    assert headers["traceparent"].split("-")[1:3] == [
        format(segment.context.trace_id, "032x"),
        format(segment.context.span_id, "016x"),
    ]


def test_triton_requests_carry_no_headers_while_tracing_is_off(off: None) -> None:
    assert _triton_headers_sent() is None


def test_the_console_exporter_sums_up_per_inference_spans_and_prints_one_line_per_other_span() -> None:
    pytest.importorskip("opentelemetry.sdk", reason="needs the otel extra: pip install 'avaluma[otel]'")
    lines: list[str] = []
    now = [0.0]
    exporter = telemetry.console_span_exporter(lines.append, interval_s=5.0, clock=lambda: now[0])
    telemetry.configure({}, span_exporter=exporter, set_global=False)
    try:
        with telemetry.span(telemetry.SPAN_SEGMENT, {telemetry.ATTR_FRAMES: 92}):
            for _ in range(200):
                with telemetry.span(telemetry.SPAN_LIPSYNC_INFER):
                    pass
        assert len(lines) == 1  # the segment; the inferences wait for the summary
        now[0] = 6.0
        with telemetry.span(telemetry.SPAN_RENDER_FRAMES):
            pass
    finally:
        telemetry.shutdown()
    segment, *summaries = lines
    assert segment.startswith(f"[trace] {telemetry.SPAN_SEGMENT} ") and "avaluma.frames=92" in segment
    assert len(summaries) == 2
    assert summaries[0].startswith(f"[trace] {telemetry.SPAN_LIPSYNC_INFER}: 200 spans in 6.0 s, mean ")
    assert summaries[1].startswith(f"[trace] {telemetry.SPAN_RENDER_FRAMES}: 1 spans")


def test_capacity_gauges_follow_the_session_slots(recorded: Recorded) -> None:
    from avaluma.core.live.sessions import SessionSlots

    def gauge(name: str) -> float:  # every SessionSlots alive in this process counts; compare differences
        data = recorded.metrics.get_metrics_data()  # None while nothing at all was recorded
        return 0 if data is None else sum(point.value for point in recorded.points(name))

    limit0, free0 = gauge(telemetry.SESSIONS_LIMIT_NAME), gauge(telemetry.SESSIONS_FREE_NAME)
    slots = SessionSlots(3)
    slot = slots.take("session")
    assert gauge(telemetry.SESSIONS_LIMIT_NAME) - limit0 == 3
    assert gauge(telemetry.SESSIONS_FREE_NAME) - free0 == 2
    slots.drain()
    assert gauge(telemetry.SESSIONS_FREE_NAME) - free0 == 0
    slot.release()
