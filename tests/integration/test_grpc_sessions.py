"""AvatarService on a real server: request validation, a real LiveKit connection attempt to a closed port, and the
session registry (get / list / watch / stop) with a scripted room connector standing in for a LiveKit server."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable

import grpc
import grpc.aio
import pytest

from avaluma.proto.v1 import avatar_service_pb2, avatar_service_pb2_grpc, common_pb2

avaluma = pytest.importorskip("livekit.plugins.avaluma", reason="the LiveKit plugin (agent extra) mints tokens")

pytestmark = pytest.mark.integration

Start = avatar_service_pb2.StartSessionRequest


def token(identity: str = "avatar-1", *, room: str = "room-1", ttl_s: int = 600, agent: str = "agent-1") -> str:
    return avaluma.mint_token(
        api_key="devkey",
        api_secret="secret-secret-secret-secret-secret",
        room=room,
        identity=identity,
        on_behalf_of=agent,
        ttl_s=ttl_s,
    )


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ScriptedRoom:
    def __init__(self, on_disconnected: Callable[[str], None]) -> None:
        self.on_disconnected = on_disconnected
        self.disconnected = False

    async def disconnect(self) -> None:
        self.disconnected = True


class ScriptedConnector:
    """Stands in for a LiveKit server (none can run here): records joins, lets a test drop the connection."""

    def __init__(self) -> None:
        self.rooms: list[ScriptedRoom] = []
        self.tokens: list[str] = []

    async def __call__(self, url: str, token: str, *, on_disconnected: Callable[[str], None]) -> ScriptedRoom:
        self.tokens.append(token)
        room = ScriptedRoom(on_disconnected)
        self.rooms.append(room)
        return room


async def expect_error(awaitable, code: grpc.StatusCode) -> str:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await awaitable
    assert info.value.code() == code, info.value.details()
    return str(info.value.details())


@pytest.fixture
def stub(channel) -> avatar_service_pb2_grpc.AvatarServiceStub:
    return avatar_service_pb2_grpc.AvatarServiceStub(channel)


async def test_start_validates_the_request(stub, auth, server) -> None:
    url = "ws://127.0.0.1:7880"
    unknown = await expect_error(
        stub.StartSession(Start(livekit_url=url, livekit_token=token(), avatar_id="nobody"), metadata=auth),
        grpc.StatusCode.NOT_FOUND,
    )
    assert "nobody" in unknown and "available: astronaut" in unknown

    bad_tokens = {
        "not-a-jwt": "not a JWT",
        "a.b.c": "not a JWT",
        "": "livekit_token is empty",
        token(ttl_s=-60): "expired",
    }
    for bad, says in bad_tokens.items():
        message = await expect_error(
            stub.StartSession(Start(livekit_url=url, livekit_token=bad, avatar_id="astronaut"), metadata=auth),
            grpc.StatusCode.INVALID_ARGUMENT,
        )
        assert says in message and "token" in message

    for bad_url in ("", "ftp://host", "localhost:7880", "ws://"):
        message = await expect_error(
            stub.StartSession(Start(livekit_url=bad_url, livekit_token=token(), avatar_id="astronaut"), metadata=auth),
            grpc.StatusCode.INVALID_ARGUMENT,
        )
        assert "livekit_url" in message

    bad_render = await expect_error(
        stub.StartSession(
            Start(
                livekit_url=url,
                livekit_token=token(),
                avatar_id="astronaut",
                render=common_pb2.RenderOptions(fps=240),
            ),
            metadata=auth,
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert "render.fps 240" in bad_render
    assert server.sessions.list() == []


async def test_unreachable_livekit_is_unavailable_and_the_server_keeps_serving(stub, auth, server) -> None:
    url = f"ws://127.0.0.1:{closed_port()}"
    message = await expect_error(
        stub.StartSession(Start(livekit_url=url, livekit_token=token(), avatar_id="astronaut"), metadata=auth),
        grpc.StatusCode.UNAVAILABLE,
    )
    assert url in message and "Check that the LiveKit server is running" in message
    # No half-started session is left behind and its capacity is free again.
    assert server.sessions.list() == []
    listed = await stub.ListSessions(avatar_service_pb2.ListSessionsRequest(), metadata=auth)
    assert list(listed.sessions) == []


async def test_session_lifecycle_with_a_scripted_room(make_server, auth) -> None:
    connector = ScriptedConnector()
    running = await make_server(room_connector=connector, max_sessions=2)
    async with grpc.aio.insecure_channel(running.address) as channel:
        stub = avatar_service_pb2_grpc.AvatarServiceStub(channel)
        request = Start(
            livekit_url="wss://livekit.example.org",
            livekit_token=token("avatar-7", room="lobby"),
            avatar_id="astronaut",
            accepted_sender_identities=["agent-1", "wav-sender"],
            render=common_pb2.RenderOptions(fps=30, audio_sample_rate=48000),
        )
        started = await stub.StartSession(request, metadata=auth)
        assert started.avatar_participant_identity == "avatar-7"
        assert connector.tokens == [request.livekit_token]

        info = await stub.GetSession(avatar_service_pb2.GetSessionRequest(session_id=started.session_id), metadata=auth)
        assert info.state == avatar_service_pb2.SESSION_STATE_ACTIVE
        assert (info.room_name, info.avatar_id, info.agent_identity) == ("lobby", "astronaut", "agent-1")
        assert (info.render.fps, info.render.audio_sample_rate) == (30, 48000)
        assert abs(info.started_at.seconds - time.time()) < 3600
        listed = await stub.ListSessions(avatar_service_pb2.ListSessionsRequest(), metadata=auth)
        assert [s.session_id for s in listed.sessions] == [started.session_id]

        watch = stub.WatchSession(avatar_service_pb2.WatchSessionRequest(session_id=started.session_id), metadata=auth)
        first = await watch.read()
        assert first.WhichOneof("event") == "started" and first.started.room_name == "lobby"
        assert first.session_id == started.session_id

        # The same avatar identity cannot join the same room twice; the first session is undisturbed.
        twice = await expect_error(stub.StartSession(request, metadata=auth), grpc.StatusCode.ALREADY_EXISTS)
        assert started.session_id in twice and "another identity" in twice
        assert len(connector.rooms) == 1

        # A second session fits, a third exceeds max_sessions=2.
        request_8 = Start(livekit_url=request.livekit_url, livekit_token=token("avatar-8", room="lobby"))
        second = await stub.StartSession(request_8, metadata=auth)
        request_9 = Start(livekit_url=request.livekit_url, livekit_token=token("avatar-9", room="lobby"))
        full = await expect_error(stub.StartSession(request_9, metadata=auth), grpc.StatusCode.RESOURCE_EXHAUSTED)
        assert "limit of 2" in full

        await stub.StopSession(avatar_service_pb2.StopSessionRequest(session_id=started.session_id), metadata=auth)
        ended = await watch.read()
        assert ended.WhichOneof("event") == "ended" and ended.ended.reason == avatar_service_pb2.END_REASON_STOPPED
        assert await watch.read() is grpc.aio.EOF
        assert connector.rooms[0].disconnected
        await expect_error(
            stub.GetSession(avatar_service_pb2.GetSessionRequest(session_id=started.session_id), metadata=auth),
            grpc.StatusCode.NOT_FOUND,
        )
        await expect_error(
            stub.StopSession(avatar_service_pb2.StopSessionRequest(session_id=started.session_id), metadata=auth),
            grpc.StatusCode.NOT_FOUND,
        )

        # Losing the room connection ends the session on its own.
        watch2 = stub.WatchSession(avatar_service_pb2.WatchSessionRequest(session_id=second.session_id), metadata=auth)
        assert (await watch2.read()).WhichOneof("event") == "started"
        connector.rooms[1].on_disconnected("SIGNAL_CLOSE")
        ended2 = await asyncio.wait_for(watch2.read(), 10)
        assert ended2.ended.reason == avatar_service_pb2.END_REASON_DISCONNECTED
        listed = await stub.ListSessions(avatar_service_pb2.ListSessionsRequest(), metadata=auth)
        assert list(listed.sessions) == []

        # Capacity came back: a new session starts, and server shutdown ends it and leaves the room.
        third = await stub.StartSession(Start(livekit_url=request.livekit_url, livekit_token=token()), metadata=auth)
        third_info = await stub.GetSession(
            avatar_service_pb2.GetSessionRequest(session_id=third.session_id), metadata=auth
        )
        assert third_info.avatar_id == "astronaut"  # empty avatar_id = the server's default avatar
        watch3 = stub.WatchSession(avatar_service_pb2.WatchSessionRequest(session_id=third.session_id), metadata=auth)
        assert (await watch3.read()).WhichOneof("event") == "started"
        await running.stop(1.0)
        ended3 = await asyncio.wait_for(watch3.read(), 10)
        assert ended3.ended.reason == avatar_service_pb2.END_REASON_SERVER_SHUTDOWN
        assert connector.rooms[2].disconnected


async def test_watch_unknown_session_is_not_found(stub, auth) -> None:
    watch = stub.WatchSession(avatar_service_pb2.WatchSessionRequest(session_id="ses_nope"), metadata=auth)
    await expect_error(watch.read(), grpc.StatusCode.NOT_FOUND)
