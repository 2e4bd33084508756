"""Several avatar servers behind one client: three real servers on loopback, each admitting two sessions,
and the LiveKit plugin's client (``ServerPool``, what ``AvatarSession`` uses) given all three addresses. Sessions
spread, no server over-admits, a full server's refusal sends the start to the next address, and a server that shuts
down mid-session (drain, then stop) ends its sessions with a reason its watchers see while new sessions go to the
other two. A scripted room connector stands in for LiveKit (the only stand-in)."""

from __future__ import annotations

import asyncio
import socket
from collections import Counter
from collections.abc import Callable
from typing import Any

import grpc.aio
import pytest
from livekit import rtc
from livekit.agents import AgentSession
from livekit.agents.testing import fake_job_context

from avaluma.core.server.app import RunningServer
from avaluma.core.server.http_api import start_http_api
from avaluma.proto.v1 import avatar_service_pb2, avatar_service_pb2_grpc

avaluma = pytest.importorskip("livekit.plugins.avaluma", reason="the LiveKit plugin is not installed")

pytestmark = pytest.mark.integration

LIMIT = 2
#: One attempt: a round over every address is what is tested here, not the backoff between rounds.
ONE_ROUND = avaluma.RetryPolicy(attempts=1, call_timeout_s=10.0)


class ScriptedRoom:
    async def disconnect(self) -> None:
        return None


async def connector(url: str, token: str, *, on_disconnected: Callable[[str], None]) -> ScriptedRoom:
    return ScriptedRoom()


def request(identity: str) -> Any:
    token = avaluma.mint_token(
        api_key="devkey",
        api_secret="secret-secret-secret-secret-secret",
        room=f"room-{identity}",
        identity=identity,
        ttl_s=600,
    )
    return avaluma.StartRequest(livekit_url="wss://lk.example.org", livekit_token=token, agent_identity="agent")


def load(servers: list[RunningServer]) -> list[int]:
    return [len(s.sessions.list()) for s in servers]


async def start(pool: Any, identity: str) -> str:
    response = await avaluma.start_with_retries(pool, request(identity), retry=ONE_ROUND)
    return str(response.session_id)


async def test_sessions_spread_never_over_admit_and_leave_a_server_that_shuts_down(
    make_server: Any, api_key: str
) -> None:
    servers: list[RunningServer] = [await make_server(room_connector=connector, max_sessions=LIMIT) for _ in range(3)]
    addresses = [s.address for s in servers]
    pool = avaluma.ServerPool(avaluma.ServerAddress.parse_list(",".join(addresses)), api_key=api_key)
    try:
        # Six starts fill the three servers whatever address each round began with: a full server answers
        # RESOURCE_EXHAUSTED and the start lands on the next one.
        ids = [await start(pool, f"avatar-{i}") for i in range(3 * LIMIT)]
        assert load(servers) == [LIMIT] * 3
        assert Counter(pool.placements.values()) == dict.fromkeys(addresses, LIMIT)
        for server in servers:
            assert {s.id for s in server.sessions.list()} == {i for i in ids if pool.placements[i] == server.address}

        # A seventh is refused by every server; the error names each with its answer.
        with pytest.raises(avaluma.AvalumaException) as full:
            await start(pool, "avatar-extra")
        assert full.value.code == "RESOURCE_EXHAUSTED"
        for address in addresses:
            assert f"{address}: RESOURCE_EXHAUSTED" in str(full.value)
        assert load(servers) == [LIMIT] * 3

        # The first server shuts down mid-session the way `avaluma serve` does on SIGTERM: not serving, drain
        # (nothing admitted, a deadline for the sessions to end by themselves), then stop.
        leaving = servers[0]
        async with grpc.aio.insecure_channel(leaving.address) as channel:
            stub = avatar_service_pb2_grpc.AvatarServiceStub(channel)
            watched = leaving.sessions.list()[0].id
            watch = stub.WatchSession(
                avatar_service_pb2.WatchSessionRequest(session_id=watched), metadata=(("x-api-key", api_key),)
            )
            assert (await watch.read()).WhichOneof("event") == "started"
            await leaving.health.enter_graceful_shutdown()
            drain = asyncio.create_task(leaving.sessions.drain(timeout_s=0.5))
            await asyncio.sleep(0)
            # While it drains it refuses with UNAVAILABLE; the others are still full.
            with pytest.raises(avaluma.AvalumaException) as draining:
                await start(pool, "avatar-during-drain")
            assert draining.value.code == "UNAVAILABLE"
            assert f"{leaving.address}: UNAVAILABLE" in str(draining.value)
            assert "another server instance" in str(draining.value)
            assert await drain == LIMIT  # neither session ended by itself: the deadline ended both
            ended = await asyncio.wait_for(watch.read(), 10)
            assert ended.WhichOneof("event") == "ended"
            assert ended.ended.reason == avatar_service_pb2.END_REASON_SERVER_SHUTDOWN
            assert "drain deadline" in ended.ended.detail and "another server instance" in ended.ended.detail
        await leaving.stop(0.5)
        assert load(servers) == [0, LIMIT, LIMIT]

        # One session ends on each remaining server; the two new sessions go there, past the stopped address.
        for server in servers[1:]:
            await pool.stop_session(server.sessions.list()[0].id)
        moved = [await start(pool, f"avatar-new-{i}") for i in range(2)]
        assert sorted(pool.placements[i] for i in moved) == sorted(addresses[1:])
        assert load(servers) == [0, LIMIT, LIMIT]
    finally:
        await pool.aclose()


async def test_a_name_with_several_addresses_is_tried_address_by_address(make_server: Any, api_key: str) -> None:
    """A gRPC name that resolves to several addresses (a Kubernetes headless Service) counts as one server per
    address. Three servers on 127.0.0.1-3 share one port; the name is served by a resolver that answers it with those
    addresses (everything else, including the lookup of each address, is the system's getaddrinfo)."""
    first = await make_server(room_connector=connector, max_sessions=1, host="127.0.0.1")
    servers = [first] + [
        await make_server(room_connector=connector, max_sessions=1, host=f"127.0.0.{n}", port=first.port)
        for n in (2, 3)
    ]
    ips = [s.host for s in servers]

    async def getaddrinfo(host: str, port: int, **kwargs: Any) -> list[tuple[Any, ...]]:
        loop = asyncio.get_running_loop()
        if host != "avatars.test":
            return await loop.getaddrinfo(host, port, **kwargs)
        return [info for ip in ips for info in await loop.getaddrinfo(ip, port, family=socket.AF_INET, **kwargs)]

    name = f"avatars.test:{first.port}"
    pool = avaluma.ServerPool([avaluma.ServerAddress.parse(name)], api_key=api_key, getaddrinfo=getaddrinfo)
    try:
        assert [a.target for a in await pool.candidates()] == [s.address for s in servers]
        ids = [await start(pool, f"avatar-{i}") for i in range(3)]
        assert load(servers) == [1, 1, 1]
        assert sorted(pool.placements[i] for i in ids) == sorted(s.address for s in servers)
        with pytest.raises(avaluma.AvalumaException, match=f"Avaluma server at {name} refused") as full:
            await start(pool, "avatar-extra")
        assert full.value.code == "RESOURCE_EXHAUSTED"
        assert all(f"{s.address}: RESOURCE_EXHAUSTED" in str(full.value) for s in servers)
    finally:
        await pool.aclose()


@pytest.mark.parametrize("transport", ["grpc", "http"])
async def test_avatar_session_with_a_list_starts_where_there_is_room_and_stops_there(
    transport: str, make_server: Any, api_key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """AVALUMA_API_URL with two servers, the first one full: AvatarSession.start in a (stand-in) agent job lands on
    the second, and the job's end stops the avatar on that server."""
    servers = [await make_server(room_connector=connector, max_sessions=1) for _ in range(2)]
    urls = [s.address for s in servers]
    served = []
    if transport == "http":
        served = [await start_http_api(s.sessions, s.slots, s.keys, host="127.0.0.1", port=0) for s in servers]
        urls = [f"http://127.0.0.1:{h.port}" for h in served]
    try:
        full = avaluma.ServerPool([avaluma.ServerAddress.parse(urls[0])], api_key=api_key)
        await start(full, "avatar-first")
        assert load(servers) == [1, 0]
        for var, value in (("LIVEKIT_URL", "ws://lk.example:7880"), ("LIVEKIT_API_KEY", "devkey")):
            monkeypatch.setenv(var, value)
        monkeypatch.setenv("LIVEKIT_API_SECRET", "secret-secret-secret-secret-secret")
        monkeypatch.setenv("AVALUMA_API_URL", ", ".join(urls))
        avatar = avaluma.AvatarSession(api_key=api_key, avatar_id=servers[0].store.ids()[0])
        room = rtc.Room()
        with fake_job_context(room=room):
            await avatar.start(AgentSession(), room=room, agent_identity="agent-1")
            assert [s.id for s in servers[1].sessions.list()] == [avatar.session_id]
            assert load(servers) == [1, 1]
            await avatar.aclose()
        assert load(servers) == [1, 0]
        await full.aclose()
    finally:
        for http in served:
            await http.stop()


def test_a_comma_separated_api_url_is_several_servers() -> None:
    addresses = avaluma.ServerAddress.parse_list("10.0.0.5:8080, grpcs://avatars.example.com:443,")
    assert [(a.kind, a.target, a.tls) for a in addresses] == [
        ("grpc", "10.0.0.5:8080", False),
        ("grpc", "avatars.example.com:443", True),
    ]
    with pytest.raises(ValueError, match="names no server"):
        avaluma.ServerAddress.parse_list(" , ")
