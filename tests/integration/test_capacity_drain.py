"""What a server behind a load balancer reports and how it leaves: free capacity on /health and /ready,
refusals once full, and a graceful drain that admits nothing new, lets running sessions end by themselves, and ends
the rest at the deadline with a reason that says so. Real server and HTTP API on free ports; a scripted room
connector stands in for LiveKit."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest

from avaluma.core.live.events import EndReason, SessionEnded
from avaluma.core.live.sessions import Session
from avaluma.core.server.http_api import RunningHttpApi, start_http_api

avaluma = pytest.importorskip("livekit.plugins.avaluma", reason="the LiveKit plugin (agent extra) mints tokens")

pytestmark = pytest.mark.integration


def token(identity: str) -> str:
    return avaluma.mint_token(
        api_key="devkey", api_secret="secret-secret-secret-secret-secret", room="room-1", identity=identity, ttl_s=600
    )


class ScriptedRoom:
    async def disconnect(self) -> None:
        return None


async def connector(url: str, token: str, *, on_disconnected: Callable[[str], None]) -> ScriptedRoom:
    return ScriptedRoom()


@pytest.fixture
async def http(make_server: Any) -> AsyncIterator[tuple[str, Any]]:
    running = await make_server(room_connector=connector, max_sessions=2)
    served: RunningHttpApi = await start_http_api(
        running.sessions, running.slots, running.keys, host="127.0.0.1", port=0
    )
    try:
        yield f"http://127.0.0.1:{served.port}", running
    finally:
        await served.stop()


async def get(base: str, path: str) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as client, client.get(base + path) as response:
        return response.status, await response.json()


async def start(base: str, key: str, identity: str) -> tuple[int, Any]:
    body = {"livekit_url": "wss://lk.example.org", "livekit_token": token(identity), "avatar_id": "astronaut"}
    async with (
        aiohttp.ClientSession() as client,
        client.post(base + "/v1/livekit/start-avatar", json=body, headers={"api-secret": key}) as response,
    ):
        return response.status, await response.json()


async def end_of(session: Session) -> SessionEnded:
    ended = [e.body async for e in session.watch() if isinstance(e.body, SessionEnded)]
    assert len(ended) == 1
    return ended[0]


async def fill(base: str, key: str) -> list[str]:
    """Start sessions until the server refuses one; return the started ids."""
    ids: list[str] = []
    for i in range(3):
        status, body = await start(base, key, f"avatar-{i}")
        if status != 200:
            assert status == 503 and body["code"] == "RESOURCE_EXHAUSTED", body
            return ids
        ids.append(body["session_id"])
    raise AssertionError("a server limited to 2 sessions admitted 3")


async def test_free_capacity_and_readiness_follow_the_load(http: Any, api_key: str) -> None:
    base, running = http
    status, health = await get(base, "/health")
    assert status == 200 and health["active_sessions"] == 0 and health["draining"] is False
    assert health["free_sessions"] == health["max_sessions"] >= 1 and health["ready"] is True
    assert (await get(base, "/ready"))[0] == 200

    ids = await fill(base, api_key)
    status, health = await get(base, "/health")
    assert status == 200 and health["active_sessions"] == len(ids) and health["free_sessions"] == 0
    status, ready = await get(base, "/ready")
    assert status == 503 and ready["ready"] is False and ready["draining"] is False

    await running.sessions.stop(ids[0])  # one ends: the server admits again
    status, ready = await get(base, "/ready")
    assert status == 200 and ready["free_sessions"] == 1


async def test_drain_stops_admitting_and_ends_what_outlives_the_deadline(http: Any, api_key: str) -> None:
    base, running = http
    ids = await fill(base, api_key)
    assert len(ids) == 2
    finishing, lingering = (running.sessions.get(i) for i in ids)

    drain = asyncio.create_task(running.sessions.drain(timeout_s=1.0))
    await asyncio.sleep(0)  # the drain has begun: nothing new is admitted
    status, body = await start(base, api_key, "avatar-late")
    assert status == 503 and body["code"] == "UNAVAILABLE" and "another server instance" in body["message"]
    status, ready = await get(base, "/ready")
    assert status == 503 and ready["draining"] is True and ready["free_sessions"] == 0

    await running.sessions.stop(finishing.id)  # this one ends by itself during the drain
    assert await drain == 1  # the other one was still running at the deadline
    assert running.sessions.list() == []
    assert (await end_of(finishing)).reason is EndReason.STOPPED
    ended = await end_of(lingering)
    assert ended.reason is EndReason.SERVER_SHUTDOWN and "drain deadline of 1 s" in ended.detail


async def test_drain_returns_as_soon_as_the_last_session_ends(http: Any, api_key: str) -> None:
    base, running = http
    await fill(base, api_key)
    sessions = running.sessions.list()
    loop = asyncio.get_running_loop()
    _ = [loop.call_later(0.05, asyncio.ensure_future, running.sessions.stop(s.id)) for s in sessions]
    # A deadline no test would wait for: returning at all shows the drain ended with the sessions, not the clock.
    assert await asyncio.wait_for(running.sessions.drain(timeout_s=3600), 30) == 0
    for session in sessions:
        assert (await end_of(session)).reason is EndReason.STOPPED
