"""Telemetry configured only by OTEL_* variables, exported over real OTLP/gRPC to a receiver started by the test.

The receiver is a small OTLP collector built from opentelemetry-proto's service definitions: it records every
export request. One utterance goes agent-side client -> real Avaluma server -> lip-sync model; after the exporters
flush, the receiver must hold that utterance's whole span tree and the server's metrics.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from concurrent import futures
from typing import Any

import numpy as np
import pytest

pytest.importorskip(
    "opentelemetry.exporter.otlp.proto.grpc", reason="needs the otel extra: pip install 'avaluma[otel]'"
)

import grpc
import grpc.aio
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.trace.v1 import trace_pb2

from avaluma.core import telemetry
from avaluma.core.server.grpc.telemetry import client_interceptors
from avaluma.proto.v1 import render_service_pb2, render_service_pb2_grpc

pytestmark = pytest.mark.integration

RENDER = "avaluma.v1.RenderService/Render"


class Receiver(trace_service_pb2_grpc.TraceServiceServicer, metrics_service_pb2_grpc.MetricsServiceServicer):
    """An OTLP/gRPC collector that keeps what it is sent."""

    def __init__(self) -> None:
        self.traces: list[trace_service_pb2.ExportTraceServiceRequest] = []
        self.metrics: list[metrics_service_pb2.ExportMetricsServiceRequest] = []

    def Export(self, request: Any, context: grpc.ServicerContext) -> Any:
        if isinstance(request, trace_service_pb2.ExportTraceServiceRequest):
            self.traces.append(request)
            return trace_service_pb2.ExportTraceServiceResponse()
        self.metrics.append(request)
        return metrics_service_pb2.ExportMetricsServiceResponse()

    def spans(self) -> list[tuple[dict[str, Any], Any]]:
        """(resource attributes, span) of every span received."""
        return [
            (attributes(rs.resource.attributes), span)
            for request in self.traces
            for rs in request.resource_spans
            for ss in rs.scope_spans
            for span in ss.spans
        ]

    def metric_names(self) -> set[str]:
        return {
            m.name
            for request in self.metrics
            for rm in request.resource_metrics
            for sm in rm.scope_metrics
            for m in sm.metrics
        }


def attributes(kvs: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kv in kvs:
        value = kv.value
        out[kv.key] = getattr(value, value.WhichOneof("value")) if value.WhichOneof("value") else None
    return out


@pytest.fixture
def receiver() -> Iterator[tuple[Receiver, int]]:
    # A thread-pool server, not grpc.aio: exporters flush synchronously and must not wait on the test's event loop.
    servicer = Receiver()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(servicer, server)
    metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield servicer, port
    finally:
        server.stop(0)


@pytest.fixture
def otel_env(receiver: tuple[Receiver, int], monkeypatch: pytest.MonkeyPatch) -> Iterator[Receiver]:
    servicer, port = receiver
    for name, value in {
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}",
        "OTEL_SERVICE_NAME": "avaluma-otlp-test",
        "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=ci",
        "OTEL_TRACES_SAMPLER": "parentbased_always_on",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("OTEL_SDK_DISABLED", raising=False)
    settings = telemetry.configure(set_global=False)  # from os.environ, like a deployed process
    assert settings.traces == ("otlp",) and settings.metrics == ("otlp",)
    try:
        yield servicer
    finally:
        telemetry.shutdown()


async def utterance(avatar_id: str) -> AsyncIterator[render_service_pb2.RenderRequest]:
    yield render_service_pb2.RenderRequest(config=render_service_pb2.RenderConfig(avatar_id=avatar_id))
    t = np.arange(8000) / 16_000
    pcm = (0.4 * np.sin(2 * np.pi * 180 * t) * 32767).astype("<i2").tobytes()
    yield render_service_pb2.RenderRequest(
        audio=render_service_pb2.AudioChunk(pcm=pcm, sample_rate=16_000, num_channels=1)
    )
    yield render_service_pb2.RenderRequest(segment_end=render_service_pb2.SegmentEnd())


async def test_an_utterance_reaches_a_real_otlp_receiver_as_one_span_tree(otel_env: Receiver, make_server, auth):
    server = await make_server()
    async with grpc.aio.insecure_channel(server.address, interceptors=client_interceptors()) as channel:
        stub = render_service_pb2_grpc.RenderServiceStub(channel)
        with telemetry.span(telemetry.SPAN_UTTERANCE):
            frames = [r async for r in stub.Render(utterance(server.store.ids()[0]), metadata=auth)]
    assert any(r.WhichOneof("response") == "video" for r in frames)
    await server.stop(0.5)  # the server span ends with its handler
    await asyncio.to_thread(telemetry.shutdown)  # flushes both exporters over OTLP

    received = otel_env.spans()
    assert received, "the receiver got spans"
    resource = received[0][0]
    assert resource["service.name"] == "avaluma-otlp-test"
    assert resource["deployment.environment"] == "ci"
    spans = [span for _, span in received]
    assert len({span.trace_id for span in spans}) == 1, "one utterance, one trace"
    by_id = {span.span_id: span for span in spans}

    def chain(span: Any) -> list[str]:
        names = [span.name]
        while span.parent_span_id in by_id:
            span = by_id[span.parent_span_id]
            names.append(span.name)
        return names

    inference = next(s for s in spans if s.name == telemetry.SPAN_LIPSYNC_INFER)
    path = chain(inference)
    assert path[0] == telemetry.SPAN_LIPSYNC_INFER and path[-1] == telemetry.SPAN_UTTERANCE
    assert [n for n in path if n != telemetry.SPAN_RENDER_FRAMES] == [
        telemetry.SPAN_LIPSYNC_INFER,
        telemetry.SPAN_SEGMENT,
        RENDER,  # server
        RENDER,  # client
        telemetry.SPAN_UTTERANCE,
    ]
    kinds = {s.kind for s in spans if s.name == RENDER}
    assert kinds == {trace_pb2.Span.SPAN_KIND_SERVER, trace_pb2.Span.SPAN_KIND_CLIENT}

    assert {
        "avaluma.frames.rendered",
        "avaluma.first_frame.latency",
        "avaluma.lipsync.inference.duration",
        "avaluma.sessions.active",
        "avaluma.render.queue.depth",
    } <= otel_env.metric_names()


def test_the_prometheus_endpoint_serves_avalumas_metrics(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("opentelemetry.exporter.prometheus", reason="needs the otel extra: pip install 'avaluma[otel]'")
    import socket
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("OTEL_METRICS_EXPORTER", "prometheus")
    monkeypatch.setenv("OTEL_EXPORTER_PROMETHEUS_HOST", "127.0.0.1")
    monkeypatch.setenv("OTEL_EXPORTER_PROMETHEUS_PORT", str(port))
    for name in ("OTEL_SDK_DISABLED", "OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    settings = telemetry.configure(set_global=False)
    try:
        assert settings.metrics == ("prometheus",) and not telemetry.tracing_enabled()
        telemetry.FRAMES_RENDERED.add(7, {telemetry.ATTR_SPEAKING: True, telemetry.ATTR_SESSION_KIND: "render"})
        telemetry.FIRST_FRAME_LATENCY.record(0.05, {telemetry.ATTR_SESSION_KIND: "render"})
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
            text = response.read().decode()
    finally:
        telemetry.shutdown()
    assert 'avaluma_frames_rendered_total{avaluma_session_kind="render",avaluma_speaking="true"' in text
    assert "avaluma_first_frame_latency_seconds_bucket" in text
