"""The server skeleton on a real port: health, reflection, API-key auth on every service, error mapping, shutdown."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import grpc.aio
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from avaluma.core.errors import NotFound
from avaluma.core.server.app import SERVICE_NAMES
from avaluma.core.server.auth import ApiKeyInterceptor, ApiKeys
from avaluma.core.server.grpc.errors import INTERNAL_MESSAGE, ErrorMappingInterceptor
from avaluma.proto.v1 import (
    avatar_registry_pb2,
    avatar_registry_pb2_grpc,
    avatar_service_pb2,
    avatar_service_pb2_grpc,
    render_service_pb2,
    render_service_pb2_grpc,
)

pytestmark = pytest.mark.integration

API_SERVICES = {"avaluma.v1.RenderService", "avaluma.v1.AvatarService", "avaluma.v1.AvatarRegistry"}


async def test_health_is_serving_for_every_service_without_a_key(channel) -> None:
    stub = health_pb2_grpc.HealthStub(channel)
    assert set(SERVICE_NAMES) == API_SERVICES
    for service in ("", *SERVICE_NAMES):
        response = await stub.Check(health_pb2.HealthCheckRequest(service=service))
        assert response.status == health_pb2.HealthCheckResponse.SERVING, service


async def test_reflection_lists_the_services_without_a_key(channel) -> None:
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    call = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
    listed = {s.name async for response in call for s in response.list_services_response.service}
    assert API_SERVICES | {"grpc.health.v1.Health"} <= listed

    call = stub.ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(file_containing_symbol="avaluma.v1.RenderService")])
    )
    files = [response.file_descriptor_response.file_descriptor_proto async for response in call]
    assert files and files[0], "reflection returned no descriptor for the RenderService"


# One call per RPC of the API, each made with the given metadata.
Caller = Callable[[grpc.aio.Channel, Any], Awaitable[object]]


async def _render(channel: grpc.aio.Channel, metadata: Any) -> object:
    call = render_service_pb2_grpc.RenderServiceStub(channel).Render(metadata=metadata)
    await call.write(render_service_pb2.RenderRequest(config=render_service_pb2.RenderConfig(avatar_id="astronaut")))
    return await call.read()


async def _upload(channel: grpc.aio.Channel, metadata: Any) -> object:
    call = avatar_registry_pb2_grpc.AvatarRegistryStub(channel).UploadAvatar(metadata=metadata)
    await call.write(
        avatar_registry_pb2.UploadAvatarRequest(metadata=avatar_registry_pb2.UploadAvatarMetadata(avatar_id="x"))
    )
    return await call


async def _render_silent(channel: grpc.aio.Channel, metadata: Any) -> object:
    # A client that sends nothing is rejected too (after a short wait for its first message).
    return await render_service_pb2_grpc.RenderServiceStub(channel).Render(metadata=metadata).read()


async def _watch(channel: grpc.aio.Channel, metadata: Any) -> object:
    call = avatar_service_pb2_grpc.AvatarServiceStub(channel).WatchSession(
        avatar_service_pb2.WatchSessionRequest(session_id="ses_x"), metadata=metadata
    )
    return await call.read()


def _registry(name: str, request: Any) -> Caller:
    return lambda ch, md: getattr(avatar_registry_pb2_grpc.AvatarRegistryStub(ch), name)(request, metadata=md)


def _sessions(name: str, request: Any) -> Caller:
    return lambda ch, md: getattr(avatar_service_pb2_grpc.AvatarServiceStub(ch), name)(request, metadata=md)


CALLS: dict[str, Caller] = {
    "Render": _render,
    "ListAvatars": _registry("ListAvatars", avatar_registry_pb2.ListAvatarsRequest()),
    "GetAvatar": _registry("GetAvatar", avatar_registry_pb2.GetAvatarRequest(avatar_id="astronaut")),
    "UploadAvatar": _upload,
    "DeleteAvatar": _registry("DeleteAvatar", avatar_registry_pb2.DeleteAvatarRequest(avatar_id="astronaut")),
    "StartSession": _sessions("StartSession", avatar_service_pb2.StartSessionRequest(avatar_id="astronaut")),
    "StopSession": _sessions("StopSession", avatar_service_pb2.StopSessionRequest(session_id="ses_x")),
    "GetSession": _sessions("GetSession", avatar_service_pb2.GetSessionRequest(session_id="ses_x")),
    "ListSessions": _sessions("ListSessions", avatar_service_pb2.ListSessionsRequest()),
    "SetEmotion": _sessions("SetEmotion", avatar_service_pb2.SetEmotionRequest(session_id="ses_x", emotion="happy")),
    "WatchSession": _watch,
    "Render (sending nothing)": _render_silent,
}


def test_every_rpc_of_the_api_is_covered() -> None:
    from avaluma.proto.v1 import avatar_registry_pb2 as reg
    from avaluma.proto.v1 import avatar_service_pb2 as ses
    from avaluma.proto.v1 import render_service_pb2 as ren

    methods = {
        m.name
        for module in (reg, ses, ren)
        for service in module.DESCRIPTOR.services_by_name.values()
        for m in service.methods
    }
    assert methods == set(CALLS) - {"Render (sending nothing)"}


@pytest.mark.parametrize("rpc", sorted(CALLS))
@pytest.mark.parametrize(
    ("metadata", "says"),
    [
        ((), "missing API key: send it in the 'x-api-key'"),
        ((("x-api-key", "wrong"),), "invalid API key"),
        ((("authorization", "Bearer wrong"),), "invalid API key"),
    ],
    ids=["missing", "wrong", "wrong-bearer"],
)
async def test_calls_without_a_valid_key_are_unauthenticated(server, channel, rpc, metadata, says) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await CALLS[rpc](channel, metadata)
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert says in info.value.details()
    # Rejected before reaching the servicer: nothing was deleted, no session was started.
    assert server.store.ids() == ["astronaut"]
    assert server.sessions.list() == []


async def test_a_bearer_key_is_accepted(channel, api_key) -> None:
    stub = avatar_registry_pb2_grpc.AvatarRegistryStub(channel)
    response = await stub.ListAvatars(
        avatar_registry_pb2.ListAvatarsRequest(), metadata=(("authorization", f"Bearer {api_key}"),)
    )
    assert [a.id for a in response.avatars] == ["astronaut"]


async def test_shutdown_reports_not_serving_then_stops(make_server) -> None:
    running = await make_server()
    async with grpc.aio.insecure_channel(running.address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        watch = stub.Watch(health_pb2.HealthCheckRequest(service="avaluma.v1.RenderService"))
        assert (await watch.read()).status == health_pb2.HealthCheckResponse.SERVING
        stopping = asyncio.ensure_future(running.stop(0.5))
        assert (await asyncio.wait_for(watch.read(), 10)).status == health_pb2.HealthCheckResponse.NOT_SERVING
        await asyncio.wait_for(stopping, 10)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.Check(health_pb2.HealthCheckRequest(), timeout=2)
        assert info.value.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)


# --- the error interceptor on its own server ---------------------------------------------------------------------


async def _fails_with(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    if request == b"domain":
        raise NotFound("unknown thing 'x': list the things first")
    if request == b"bug":
        raise RuntimeError("secret internal detail")
    return b"ok:" + request


async def _streams_then_fails(request: bytes, context: grpc.aio.ServicerContext):
    yield b"first"
    raise RuntimeError("boom in a stream")


async def test_error_interceptor_maps_domain_errors_and_hides_bugs(caplog) -> None:
    identity = {"request_deserializer": None, "response_serializer": None}
    handlers = grpc.method_handlers_generic_handler(
        "test.Errors",
        {
            "Unary": grpc.unary_unary_rpc_method_handler(_fails_with, **identity),
            "Stream": grpc.unary_stream_rpc_method_handler(_streams_then_fails, **identity),
        },
    )
    server = grpc.aio.server(interceptors=[ApiKeyInterceptor(ApiKeys(["k"])), ErrorMappingInterceptor()])
    server.add_generic_rpc_handlers([handlers])
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    md = (("x-api-key", "k"),)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            unary = channel.unary_unary("/test.Errors/Unary")
            with pytest.raises(grpc.aio.AioRpcError) as domain:
                await unary(b"domain", metadata=md)
            assert domain.value.code() == grpc.StatusCode.NOT_FOUND
            assert domain.value.details() == "unknown thing 'x': list the things first"

            with (
                caplog.at_level(logging.ERROR, logger="avaluma.core.server.grpc.errors"),
                pytest.raises(grpc.aio.AioRpcError) as bug,
            ):
                await unary(b"bug", metadata=md)
            assert bug.value.code() == grpc.StatusCode.INTERNAL
            assert bug.value.details() == INTERNAL_MESSAGE and "secret" not in bug.value.details()
            logged = [r for r in caplog.records if r.name == "avaluma.core.server.grpc.errors"]
            assert (
                logged and logged[-1].exc_info is not None and "secret internal detail" in str(logged[-1].exc_info[1])
            )

            stream = channel.unary_stream("/test.Errors/Stream")(b"", metadata=md)
            assert await stream.read() == b"first"
            with pytest.raises(grpc.aio.AioRpcError) as streamed:
                await stream.read()
            assert streamed.value.code() == grpc.StatusCode.INTERNAL

            # The server is still up and serving.
            assert await unary(b"again", metadata=md) == b"ok:again"
    finally:
        await server.stop(0)
