"""The hosted-service-compatible HTTP API on a real aiohttp server on a free port, over the same session registry
as a real gRPC server (a scripted room connector stands in for LiveKit): start, stop, health, auth, rate limits,
bad bodies, a second start in the same room."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest

from avaluma.core.server.http_api import RunningHttpApi, start_http_api

avaluma = pytest.importorskip("livekit.plugins.avaluma", reason="the LiveKit plugin (agent extra) mints tokens")

pytestmark = pytest.mark.integration


def token(identity: str = "avatar-1", room: str = "room-1") -> str:
    return avaluma.mint_token(
        api_key="devkey",
        api_secret="secret-secret-secret-secret-secret",
        room=room,
        identity=identity,
        on_behalf_of="agent-1",
        ttl_s=600,
    )


class ScriptedRoom:
    def __init__(self) -> None:
        self.disconnected = False

    async def disconnect(self) -> None:
        self.disconnected = True


class ScriptedConnector:
    def __init__(self) -> None:
        self.rooms: list[ScriptedRoom] = []

    async def __call__(self, url: str, token: str, *, on_disconnected: Callable[[str], None]) -> ScriptedRoom:
        self.rooms.append(ScriptedRoom())
        return self.rooms[-1]


@pytest.fixture
async def http(make_server: Any, api_key: str) -> AsyncIterator[tuple[str, ScriptedConnector, Any]]:
    connector = ScriptedConnector()
    running = await make_server(room_connector=connector, max_sessions=2)
    served: RunningHttpApi = await start_http_api(
        running.sessions,
        running.slots,
        running.keys,
        host="127.0.0.1",
        port=0,
        rate_limit_per_minute=6,  # refills too slowly to matter within a test
        rate_limit_burst=12,
    )
    try:
        yield f"http://127.0.0.1:{served.port}", connector, running
    finally:
        await served.stop()


async def post(base: str, path: str, body: Any, key: str | None, raw: bytes | None = None) -> tuple[int, Any]:
    headers = {"api-secret": key} if key else {}
    async with aiohttp.ClientSession() as client:
        kwargs: dict[str, Any] = {"data": raw} if raw is not None else {"json": body}
        async with client.post(base + path, headers=headers, **kwargs) as response:
            return response.status, await response.json()


async def test_start_stop_and_health(http: Any, api_key: str) -> None:
    base, connector, running = http
    status, body = await post(
        base,
        "/v1/livekit/start-avatar",
        {"livekit_url": "wss://lk.example.org", "livekit_token": token(), "avatar_id": "astronaut", "extra": 1},
        api_key,
    )
    assert status == 200 and body["status"] == "success" and body["avatar_participant_identity"] == "avatar-1"
    session_id = body["session_id"]
    assert [s.id for s in running.sessions.list()] == [session_id]

    async with aiohttp.ClientSession() as client, client.get(base + "/health") as response:
        health = await response.json()
    assert response.status == 200 and health["status"] == "ok" and health["active_sessions"] == 1
    assert 1 <= health["max_sessions"] <= 2

    # A second start in the same room with the same identity is refused; the first session is untouched.
    status, body = await post(
        base, "/v1/livekit/start-avatar", {"livekit_url": "wss://lk.example.org", "livekit_token": token()}, api_key
    )
    assert status == 409 and body["code"] == "ALREADY_EXISTS" and session_id in body["message"]

    status, body = await post(base, "/v1/livekit/stop-avatar", {"session_id": session_id}, api_key)
    assert (status, body) == (200, {"status": "success"})
    assert connector.rooms[0].disconnected and running.sessions.list() == []
    status, body = await post(base, "/v1/livekit/stop-avatar", {"session_id": session_id}, api_key)
    assert status == 404 and body["code"] == "NOT_FOUND"


async def test_keys_are_required(http: Any) -> None:
    base, connector, _ = http
    for key in (None, "wrong"):
        status, body = await post(base, "/v1/livekit/start-avatar", {}, key)
        assert status == 401 and body["code"] == "UNAUTHENTICATED" and "api-secret" in body["message"]
    assert connector.rooms == []


async def test_bad_bodies_get_one_clear_error(http: Any, api_key: str) -> None:
    base, connector, running = http
    cases: list[tuple[Any, bytes | None, str]] = [
        (None, b"{not json", "not JSON"),
        (None, b"[1, 2]", "JSON object"),
        ({"livekit_url": "wss://x", "livekit_token": "abc"}, None, "not a JWT"),
        ({"livekit_url": "ftp://x", "livekit_token": token()}, None, "livekit_url"),
        ({"livekit_url": 5, "livekit_token": token()}, None, "livekit_url must be a JSON string"),
        ({"livekit_url": "wss://x", "livekit_token": token(), "idle_timeout_s": -1}, None, "idle_timeout_s"),
        ({"livekit_url": "wss://x", "livekit_token": token(), "accepted_sender_identities": [""]}, None, "array"),
    ]
    for body, raw, says in cases:
        status, answer = await post(base, "/v1/livekit/start-avatar", body, api_key, raw=raw)
        assert status == 400 and answer["code"] == "INVALID_ARGUMENT" and says in answer["message"], answer
    status, answer = await post(
        base,
        "/v1/livekit/start-avatar",
        {"livekit_url": "wss://x", "livekit_token": token(), "avatar_id": "nobody"},
        api_key,
    )
    assert status == 404 and "nobody" in answer["message"]
    status, answer = await post(base, "/v1/livekit/stop-avatar", {}, api_key)
    assert status == 400 and "session_id" in answer["message"]
    assert connector.rooms == [] and running.sessions.list() == []


async def test_rate_limit_per_key(http: Any, api_key: str) -> None:
    base, _, _ = http
    statuses = []
    for _ in range(16):
        status, body = await post(base, "/v1/livekit/stop-avatar", {"session_id": "ses_nope"}, api_key)
        statuses.append(status)
    assert statuses[:12] == [404] * 12  # the burst
    assert 429 in statuses[12:]
    assert body["code"] == "RESOURCE_EXHAUSTED" and "per minute" in body["message"]
