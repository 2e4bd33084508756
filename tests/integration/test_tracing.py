"""One utterance's trace, followed across agent -> server -> model with an in-memory exporter.

The server is the real gRPC server on a free port with the real energy lip-sync backend; the client side uses the
same interceptors the agent's ``AvatarServiceClient`` installs. Telemetry is set up in-process with in-memory
exporters (no ``OTEL_*`` variables), so the spans and metrics can be inspected directly.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import Any

import numpy as np
import pytest

pytest.importorskip("opentelemetry.sdk", reason="needs the otel extra: pip install 'avaluma[otel]'")

import grpc.aio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from livekit.plugins import avaluma
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from avaluma.core import telemetry
from avaluma.core.server.grpc.telemetry import client_interceptors
from avaluma.proto.v1 import avatar_service_pb2, avatar_service_pb2_grpc, render_service_pb2, render_service_pb2_grpc

pytestmark = pytest.mark.integration

RENDER_METHOD = "avaluma.v1.RenderService/Render"
START_METHOD = "avaluma.v1.AvatarService/StartSession"


class Recorded:
    def __init__(self, spans: InMemorySpanExporter, metrics: InMemoryMetricReader) -> None:
        self.spans = spans
        self.metrics = metrics

    async def wait_for(self, predicate: Callable[[Sequence[ReadableSpan]], bool]) -> Sequence[ReadableSpan]:
        """The finished spans once ``predicate`` holds (server spans end after the client saw the last message)."""
        for _ in range(500):
            finished = self.spans.get_finished_spans()
            if predicate(finished):
                return finished
            await asyncio.sleep(0.01)
        raise AssertionError(f"spans never matched; got {[s.name for s in self.spans.get_finished_spans()]}")

    def metric_points(self, name: str) -> list[Any]:
        data = self.metrics.get_metrics_data()
        assert data is not None
        return [
            point
            for rm in data.resource_metrics
            for sm in rm.scope_metrics
            for metric in sm.metrics
            if metric.name == name
            for point in metric.data.data_points
        ]


@pytest.fixture
def recorded() -> Iterator[Recorded]:
    spans, metrics = InMemorySpanExporter(), InMemoryMetricReader()
    telemetry.configure({}, span_exporter=spans, metric_reader=metrics, set_global=False)
    try:
        yield Recorded(spans, metrics)
    finally:
        telemetry.shutdown()


def speech(seconds: float, rate: int = 16_000) -> bytes:
    """Voiced-sounding audio: a 180 Hz tone with syllable-rate loudness changes (the energy backend opens the mouth)."""
    t = np.arange(int(seconds * rate)) / rate
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 4 * t)
    samples = 0.4 * envelope * np.sin(2 * np.pi * 180 * t)
    return (samples * 32767).astype("<i2").tobytes()


async def requests(avatar_id: str) -> AsyncIterator[render_service_pb2.RenderRequest]:
    yield render_service_pb2.RenderRequest(config=render_service_pb2.RenderConfig(avatar_id=avatar_id))
    pcm = speech(0.6)
    for start in range(0, len(pcm), 3200):
        yield render_service_pb2.RenderRequest(
            audio=render_service_pb2.AudioChunk(pcm=pcm[start : start + 3200], sample_rate=16_000, num_channels=1)
        )
    yield render_service_pb2.RenderRequest(segment_end=render_service_pb2.SegmentEnd())


def by_id(spans: Sequence[ReadableSpan]) -> dict[int, ReadableSpan]:
    return {s.context.span_id: s for s in spans}


def ancestors(span: ReadableSpan, index: dict[int, ReadableSpan]) -> list[str]:
    """Names from ``span``'s parent up to the root."""
    names = []
    parent = span.parent
    while parent is not None and parent.span_id in index:
        span = index[parent.span_id]
        names.append(span.name)
        parent = span.parent
    return names


async def test_one_utterance_is_one_trace_from_agent_through_server_into_the_model(
    recorded: Recorded, make_server, auth
) -> None:
    server = await make_server()  # after telemetry is set up: the tracing interceptor is chosen at start
    avatar_id = server.store.ids()[0]
    frames = 0
    async with grpc.aio.insecure_channel(server.address, interceptors=client_interceptors()) as channel:
        stub = render_service_pb2_grpc.RenderServiceStub(channel)
        with telemetry.span(telemetry.SPAN_UTTERANCE) as utterance:
            async for response in stub.Render(requests(avatar_id), metadata=auth):
                frames += response.WhichOneof("response") == "video"
    assert frames > 0

    spans = await recorded.wait_for(
        lambda s: (
            {RENDER_METHOD, telemetry.SPAN_SEGMENT} <= {x.name for x in s if x.kind != SpanKind.CLIENT}
            and any(x.name == RENDER_METHOD and x.kind == SpanKind.CLIENT for x in s)
        )
    )
    trace_id = utterance.get_span_context().trace_id
    assert {s.context.trace_id for s in spans} == {trace_id}, "every span belongs to the utterance's trace"
    index = by_id(spans)

    (client,) = [s for s in spans if s.name == RENDER_METHOD and s.kind == SpanKind.CLIENT]
    (server_span,) = [s for s in spans if s.name == RENDER_METHOD and s.kind == SpanKind.SERVER]
    (segment,) = [s for s in spans if s.name == telemetry.SPAN_SEGMENT]
    inferences = [s for s in spans if s.name == telemetry.SPAN_LIPSYNC_INFER]

    assert ancestors(client, index) == [telemetry.SPAN_UTTERANCE]
    assert ancestors(server_span, index) == [RENDER_METHOD, telemetry.SPAN_UTTERANCE], "context crossed the wire"
    assert ancestors(segment, index) == [RENDER_METHOD, RENDER_METHOD, telemetry.SPAN_UTTERANCE]
    assert inferences, "the model's inference calls are traced"
    for inference in inferences:
        assert telemetry.SPAN_SEGMENT in ancestors(inference, index)
        assert inference.attributes[telemetry.ATTR_LIPSYNC_BACKEND] == "energy"
    assert {s.attributes[telemetry.ATTR_LIPSYNC_OP] for s in inferences} == {"push", "flush"}
    assert sum(s.attributes[telemetry.ATTR_FRAMES] for s in inferences) == frames, "inference made every frame"
    assert any(telemetry.SPAN_RENDER_FRAMES in ancestors(s, index) for s in inferences), "a sampled frame span"

    assert segment.attributes[telemetry.ATTR_AVATAR_ID] == avatar_id
    assert segment.attributes[telemetry.ATTR_INTERRUPTED] is False
    assert server_span.attributes["rpc.grpc.status_code"] == 0
    assert server_span.attributes["rpc.service"] == "avaluma.v1.RenderService"
    assert client.status.status_code == StatusCode.UNSET

    rendered = recorded.metric_points("avaluma.frames.rendered")
    assert sum(p.value for p in rendered if p.attributes[telemetry.ATTR_SPEAKING]) == frames
    (first_frame,) = recorded.metric_points("avaluma.first_frame.latency")
    assert first_frame.count == 1
    (latency,) = recorded.metric_points("avaluma.lipsync.inference.duration")
    assert latency.count == len(inferences)
    (active,) = recorded.metric_points("avaluma.sessions.active")
    assert active.value == 0, "the stream's session count went back down when it ended"


class StandInRoom:
    async def disconnect(self) -> None:
        return None


async def test_the_agents_start_session_call_continues_in_the_servers_span(
    recorded: Recorded, make_server, api_key
) -> None:
    async def connector(url: str, token: str, *, on_disconnected: Callable[[str], None]) -> StandInRoom:
        return StandInRoom()

    server = await make_server(room_connector=connector)
    # The plugin's client with the interceptors `avaluma agent` gives it.
    client = avaluma.GrpcClient(server.address, api_key=api_key, interceptors=client_interceptors())
    token = avaluma.mint_avatar_token(
        api_key="devkey", api_secret="secret-secret-secret-secret-secret", room="demo", identity="avatar-1",
        agent_identity="agent-1",
    )  # fmt: skip
    request = avaluma.StartRequest(
        livekit_url="ws://lk.example:7880", livekit_token=token, avatar_id=server.store.ids()[0]
    )
    try:
        with telemetry.span(telemetry.SPAN_UTTERANCE) as root:
            response = await avaluma.start_with_retries(client, request, retry=avaluma.RetryPolicy(attempts=1))
        await client.stop_session(response.session_id)
    finally:
        await client.aclose()

    spans = await recorded.wait_for(lambda s: sum(x.name == START_METHOD for x in s) == 2)
    index = by_id(spans)
    (client_span,) = [s for s in spans if s.name == START_METHOD and s.kind == SpanKind.CLIENT]
    (server_span,) = [s for s in spans if s.name == START_METHOD and s.kind == SpanKind.SERVER]
    assert client_span.context.trace_id == server_span.context.trace_id == root.get_span_context().trace_id
    assert ancestors(server_span, index) == [START_METHOD, telemetry.SPAN_UTTERANCE]


async def test_failed_calls_carry_their_status_and_health_is_not_traced(recorded: Recorded, make_server) -> None:
    server = await make_server()
    async with grpc.aio.insecure_channel(server.address, interceptors=client_interceptors()) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        assert (await health.Check(health_pb2.HealthCheckRequest())).status == health_pb2.HealthCheckResponse.SERVING
        stub = avatar_service_pb2_grpc.AvatarServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as failed:
            await stub.GetSession(avatar_service_pb2.GetSessionRequest(session_id="nope"))  # no API key
    assert failed.value.code() == grpc.StatusCode.UNAUTHENTICATED

    spans = await recorded.wait_for(lambda s: sum(x.name.endswith("/GetSession") for x in s) == 2)
    assert not [s for s in spans if "Health" in s.name]
    (server_span,) = [s for s in spans if s.kind == SpanKind.SERVER]
    (client_span,) = [s for s in spans if s.kind == SpanKind.CLIENT]
    assert server_span.attributes["rpc.grpc.status_code"] == grpc.StatusCode.UNAUTHENTICATED.value[0]
    # The caller's mistake is not the server's failure; for the caller it is.
    assert server_span.status.status_code == StatusCode.UNSET
    assert client_span.status.status_code == StatusCode.ERROR


async def test_a_livekit_sessions_spans_hang_below_its_start_session_call(
    recorded: Recorded, avatars_dir, api_key
) -> None:
    """The session outlives StartSession; its start span and its segments' spans still join that call's trace."""
    from conftest import server_config

    from avaluma.core.live.avatar_store import AvatarStore
    from avaluma.core.live.livekit_session import LiveSession, build_live_session
    from avaluma.core.media import pcm16_to_mono
    from avaluma.core.server.app import start_server
    from avaluma.renderer.engine import RenderedFrame
    from avaluma.renderer.lipsync.energy import EnergyBackend

    class Sink:
        def prepare(self, frame: RenderedFrame) -> None:
            pass  # nothing to convert ahead of push

        async def push(self, frame: RenderedFrame) -> None:
            return None

        async def clear(self) -> None:
            return None

    runtimes: list[LiveSession] = []
    backend = EnergyBackend()

    async def connector(url: str, token: str, *, on_disconnected: Callable[[str], None]) -> StandInRoom:
        return StandInRoom()

    async def runtime(session, room, avatar, *, end) -> LiveSession:
        async def send_rpc(destination: str, method: str, payload: str) -> str:
            return ""

        built = build_live_session(
            session, avatar, backend, Sink(), fps=25, audio_sample_rate=16_000, send_rpc=send_rpc, end=end
        )
        built.start()
        runtimes.append(built)
        return built

    server = await start_server(
        server_config(avatars_dir), store=AvatarStore.open(avatars_dir), room_connector=connector, runtime=runtime
    )
    client = avaluma.GrpcClient(server.address, api_key=api_key, interceptors=client_interceptors())
    token = avaluma.mint_avatar_token(
        api_key="devkey", api_secret="secret-secret-secret-secret-secret", room="demo", identity="avatar-1",
        agent_identity="agent-1",
    )  # fmt: skip
    request = avaluma.StartRequest(
        livekit_url="ws://lk.example:7880", livekit_token=token, avatar_id=server.store.ids()[0]
    )
    try:
        with telemetry.span(telemetry.SPAN_UTTERANCE) as root:
            response = await avaluma.start_with_retries(client, request, retry=avaluma.RetryPolicy(attempts=1))
        # Outside the call's context: audio arrives later, from the room.
        (session_runtime,) = runtimes
        session_runtime.playout.push_audio(pcm16_to_mono(speech(0.4), 16_000, 1))
        session_runtime.playout.end_segment()
        spans = await recorded.wait_for(lambda s: any(x.name == telemetry.SPAN_SEGMENT for x in s))
        for _ in range(500):  # the segment's first frame is published a few ticks after it was rendered
            if recorded.metric_points("avaluma.first_frame.latency"):
                break
            await asyncio.sleep(0.01)
        await client.stop_session(response.session_id)
    finally:
        await client.aclose()
        await server.stop(0.5)

    index = by_id(spans)
    (server_span,) = [s for s in spans if s.name == START_METHOD and s.kind == SpanKind.SERVER]
    (start_span,) = [s for s in spans if s.name == telemetry.SPAN_SESSION_START]
    (segment,) = [s for s in spans if s.name == telemetry.SPAN_SEGMENT]
    inferences = [s for s in spans if s.name == telemetry.SPAN_LIPSYNC_INFER]
    trace_id = root.get_span_context().trace_id
    assert start_span.context.trace_id == segment.context.trace_id == trace_id
    assert start_span.parent is not None and start_span.parent.span_id == server_span.context.span_id
    assert segment.parent is not None and segment.parent.span_id == server_span.context.span_id
    assert ancestors(segment, index) == [START_METHOD, START_METHOD, telemetry.SPAN_UTTERANCE]
    assert start_span.attributes[telemetry.ATTR_SESSION_ID] == response.session_id
    assert segment.attributes[telemetry.ATTR_INTERRUPTED] is False
    assert inferences and all(telemetry.SPAN_SEGMENT in ancestors(s, index) for s in inferences)
    assert {s.attributes[telemetry.ATTR_LIPSYNC_BACKEND] for s in inferences} == {"energy"}

    kinds = {
        p.attributes[telemetry.ATTR_SESSION_KIND]: p.value for p in recorded.metric_points("avaluma.sessions.active")
    }
    assert kinds == {"livekit": 0}, "the session counted as a livekit session while it lived"
    (first_frame,) = recorded.metric_points("avaluma.first_frame.latency")
    assert first_frame.count == 1
