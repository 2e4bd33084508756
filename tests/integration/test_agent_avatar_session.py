"""AvatarSession against the real Avaluma gRPC server on a free port.

There is no LiveKit server here, so the Avaluma server's own room join fails and it answers UNAVAILABLE: the agent
side must retry with backoff and then give one clear error. The success path uses the server with a stand-in room
connector (the only fake: LiveKit itself).
"""

from __future__ import annotations

import json
import socket
from collections.abc import Callable
from typing import Any

import pytest
from livekit import api, rtc
from livekit.agents import AgentSession
from livekit.agents.testing import fake_job_context

from avaluma.agent.avatar_session import (
    AvatarServiceClient,
    AvatarSession,
    RetryPolicy,
    mint_avatar_token,
    start_with_retries,
)
from avaluma.core.errors import NotFound, Unauthenticated, Unavailable

pytestmark = pytest.mark.integration

LK_KEY, LK_SECRET = "devkey", "secret-secret-secret-secret-secret"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RecordingSleep:
    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


def request_for(avatar_id: str, livekit_url: str) -> Any:
    token = mint_avatar_token(
        api_key=LK_KEY, api_secret=LK_SECRET, room="demo", identity="avatar-1", agent_identity="agent-1"
    )
    session = AvatarSession(client=_NoClient(), avatar_id=avatar_id, accepted_senders=["sender-2"])
    return session.build_request(agent_identity="agent-1", livekit_url=livekit_url, token=token)


class _NoClient(AvatarServiceClient):
    def __init__(self) -> None:  # a client that is never called (build_request only)
        self.target = "unused"


def test_avatar_token_publishes_on_behalf_of_the_agent() -> None:
    token = mint_avatar_token(
        api_key=LK_KEY, api_secret=LK_SECRET, room="demo", identity="avatar-1", agent_identity="agent-1"
    )
    claims = api.TokenVerifier(LK_KEY, LK_SECRET).verify(token)
    assert claims.identity == "avatar-1"
    assert claims.attributes == {"lk.publish_on_behalf": "agent-1"}
    assert claims.kind == "agent"
    assert claims.video is not None
    assert (claims.video.room, claims.video.room_join, claims.video.can_publish) == ("demo", True, True)


def test_request_accepts_the_agent_and_extra_senders() -> None:
    request = request_for("astronaut", "ws://lk.example:7880")
    assert list(request.accepted_sender_identities) == ["agent-1", "sender-2"]
    assert request.agent_identity == "agent-1"
    assert request.avatar_id == "astronaut"


async def test_unreachable_livekit_is_retried_with_backoff_then_one_clear_error(server, api_key) -> None:
    client = AvatarServiceClient(server.address, api_key=api_key)
    sleep = RecordingSleep()
    livekit_url = f"ws://127.0.0.1:{free_port()}"
    try:
        with pytest.raises(Unavailable) as err:
            await start_with_retries(
                client,
                request_for(server.store.ids()[0], livekit_url),
                retry=RetryPolicy(attempts=4, base_delay_s=0.5, max_delay_s=1.5),
                sleep=sleep,
            )
    finally:
        await client.aclose()
    assert sleep.delays == [0.5, 1.0, 1.5]
    message = str(err.value)
    assert f"Avaluma server at {server.address} after 4 attempts" in message
    assert livekit_url in message  # the server's own explanation names the LiveKit URL it could not join
    assert server.sessions.list() == []  # failed starts leave nothing behind


async def test_unreachable_avatar_server_is_one_clear_error() -> None:
    target = f"127.0.0.1:{free_port()}"
    client = AvatarServiceClient(target, api_key="k")
    sleep = RecordingSleep()
    try:
        with pytest.raises(Unavailable, match=rf"Avaluma server at {target} after 2 attempts.*avaluma serve"):
            await start_with_retries(
                client, request_for("astronaut", "ws://127.0.0.1:1"), retry=RetryPolicy(attempts=2), sleep=sleep
            )
    finally:
        await client.aclose()
    assert sleep.delays == [0.5]


@pytest.mark.parametrize(
    ("key", "avatar", "error"),
    [("wrong-key", None, Unauthenticated), (None, "no-such-avatar", NotFound)],
)
async def test_errors_that_retrying_cannot_fix_fail_at_once(server, api_key, key, avatar, error) -> None:
    client = AvatarServiceClient(server.address, api_key=key or api_key)
    sleep = RecordingSleep()
    try:
        with pytest.raises(error, match=f"Avaluma server at {server.address} refused"):
            await start_with_retries(
                client,
                request_for(avatar or server.store.ids()[0], "ws://127.0.0.1:1"),
                retry=RetryPolicy(),
                sleep=sleep,
            )
    finally:
        await client.aclose()
    assert sleep.delays == []


class StandInRoom:
    disconnected = False

    async def disconnect(self) -> None:
        self.disconnected = True


async def test_start_then_stop_through_the_server(make_server, api_key) -> None:
    joined: list[tuple[str, dict[str, Any]]] = []
    rooms: list[StandInRoom] = []

    async def connector(url: str, token: str, *, on_disconnected: Callable[[str], None]) -> StandInRoom:
        joined.append((url, json.loads(_claims_json(token))))
        rooms.append(StandInRoom())
        return rooms[-1]

    server = await make_server(room_connector=connector)
    client = AvatarServiceClient(server.address, api_key=api_key)
    try:
        response = await start_with_retries(
            client, request_for(server.store.ids()[0], "ws://lk.example:7880"), retry=RetryPolicy()
        )
        assert response.avatar_participant_identity == "avatar-1"
        ((url, claims),) = joined
        assert url.startswith("ws://lk.example:7880")
        assert claims["attributes"] == {"lk.publish_on_behalf": "agent-1"}
        assert [s.id for s in server.sessions.list()] == [response.session_id]

        await client.stop_session(response.session_id)
        assert server.sessions.list() == []
        assert rooms[0].disconnected
    finally:
        await client.aclose()


def _claims_json(token: str) -> str:
    import base64

    payload = token.split(".")[1]
    return base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)).decode()


async def test_avatar_session_start_reports_unreachable_livekit(server, api_key, monkeypatch) -> None:
    """AvatarSession.start() inside an agent job: mints the token, calls StartSession, retries, then fails clearly."""
    monkeypatch.setenv("LIVEKIT_URL", f"ws://127.0.0.1:{free_port()}")
    monkeypatch.setenv("LIVEKIT_API_KEY", LK_KEY)
    monkeypatch.setenv("LIVEKIT_API_SECRET", LK_SECRET)
    avatar = AvatarSession(
        server=server.address,
        api_key=api_key,
        avatar_id=server.store.ids()[0],
        retry=RetryPolicy(attempts=2, base_delay_s=0.01),
    )
    session: AgentSession = AgentSession()
    room = rtc.Room()
    with fake_job_context(room=room):
        with pytest.raises(Unavailable, match="after 2 attempts"):
            await avatar.start(session, room, agent_identity="agent-1")
        await avatar.aclose()
    assert avatar.session_id is None
    assert server.sessions.list() == []


def test_missing_avaluma_key_names_the_variable(monkeypatch) -> None:
    monkeypatch.delenv("AVALUMA_API_KEY", raising=False)
    from avaluma.core.errors import ConfigError

    with pytest.raises(ConfigError, match="AVALUMA_API_KEY is not set"):
        AvatarSession(server="127.0.0.1:1")
