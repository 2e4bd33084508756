"""The HTTP API and gRPC authentication against hostile clients, over raw sockets where
a well-behaved client library would refuse to send what an attacker sends."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import grpc
import grpc.aio
import pytest
from conftest import API_KEY

from avaluma.core.server.http_api import RunningHttpApi, start_http_api
from avaluma.proto.v1 import avatar_registry_pb2, avatar_registry_pb2_grpc

pytestmark = pytest.mark.integration

#: Hang guard only (not a latency assertion).
READ_TIMEOUT_S = 30.0


@pytest.fixture
async def http(make_server: Any) -> AsyncIterator[tuple[int, Any]]:
    running = await make_server()
    served: RunningHttpApi = await start_http_api(
        running.sessions,
        running.slots,
        running.keys,
        host="127.0.0.1",
        port=0,
        rate_limit_per_minute=600,
        rate_limit_burst=600,
        header_timeout_s=0.5,
        body_timeout_s=0.5,
    )
    try:
        yield served.port, running
    finally:
        await served.stop()


async def raw_http(port: int, request: bytes) -> tuple[int, bytes]:
    """Send ``request`` as is; return the status code and the body of the answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), READ_TIMEOUT_S)
    finally:
        writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


def post(path: str, body: bytes, headers: bytes = b"") -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n".encode()
        + headers
        + b"\r\n"
        + body
    )


# --- defect 8: client errors are 4xx, never 500 -------------------------------------------------------------------


async def test_non_utf8_api_secret_is_401_not_500(http) -> None:
    port, _ = http
    status, body = await raw_http(port, post("/v1/livekit/stop-avatar", b"{}", b"api-secret: \xff\xfe\x80key\r\n"))
    assert status == 401
    assert json.loads(body)["code"] == "UNAUTHENTICATED"


async def test_deeply_nested_json_body_is_400_not_500(http) -> None:
    port, _ = http
    nested = b"[" * 30_000 + b"]" * 30_000
    status, body = await raw_http(port, post("/v1/livekit/stop-avatar", nested, f"api-secret: {API_KEY}\r\n".encode()))
    assert status == 400
    assert "not JSON" in json.loads(body)["message"]


# --- defect 9: slow clients are cut off, failed authentication is throttled and sampled in the log ----------------


async def test_half_sent_request_headers_are_closed_by_the_server(http) -> None:
    port, _ = http
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"POST /v1/livekit/stop-avatar HTTP/1.1\r\nHost: x\r\n")  # ... and never the blank line
    await writer.drain()
    # The server closes the connection (EOF) instead of waiting for the rest forever.
    assert await asyncio.wait_for(reader.read(), READ_TIMEOUT_S) == b""
    writer.close()


async def test_a_body_that_never_comes_is_408(http) -> None:
    port, _ = http
    head = post("/v1/livekit/stop-avatar", b"", f"api-secret: {API_KEY}\r\n".encode())
    head = head.replace(b"Content-Length: 0", b"Content-Length: 40")  # promise a body, send none
    status, body = await raw_http(port, head)
    assert status == 408
    assert "body_timeout_s" in json.loads(body)["message"]


async def test_failed_http_authentication_is_throttled_and_sampled(http, caplog) -> None:
    port, _ = http
    caplog.set_level(logging.WARNING)
    statuses = []
    for i in range(40):
        status, _ = await raw_http(port, post("/v1/livekit/stop-avatar", b"{}", f"api-secret: guess-{i}\r\n".encode()))
        statuses.append(status)
    assert statuses[0] == 401 and statuses[-1] == 429
    assert statuses.count(401) < 40
    # A valid key is never throttled: clients behind one proxy share an address.
    status, body = await raw_http(
        port, post("/v1/livekit/stop-avatar", b'{"session_id": "nope"}', f"api-secret: {API_KEY}\r\n".encode())
    )
    assert status == 404, body
    rejections = [r for r in caplog.records if "without a valid API key" in r.getMessage()]
    assert 1 <= len(rejections) <= 2


async def test_failed_grpc_authentication_is_throttled_and_sampled(channel, caplog) -> None:
    caplog.set_level(logging.WARNING)
    stub = avatar_registry_pb2_grpc.AvatarRegistryStub(channel)
    codes = []
    for i in range(40):
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.ListAvatars(
                avatar_registry_pb2.ListAvatarsRequest(), metadata=(("x-api-key", f"guess-{i}"),), timeout=30
            )
        codes.append(info.value.code())
    assert codes[0] == grpc.StatusCode.UNAUTHENTICATED and codes[-1] == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "too many failed authentication attempts" in info.value.details()
    listed = await stub.ListAvatars(
        avatar_registry_pb2.ListAvatarsRequest(), metadata=(("x-api-key", API_KEY),), timeout=30
    )
    assert [a.id for a in listed.avatars] == ["astronaut"]  # a valid key is never throttled
    rejections = [r for r in caplog.records if "without a valid API key" in r.getMessage()]
    assert 1 <= len(rejections) <= 2
