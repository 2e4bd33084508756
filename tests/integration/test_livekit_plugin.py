"""avaluma-livekit-plugin (``from livekit.plugins import avaluma``) against the real Avaluma server on free ports.

The agent side is LiveKit's real ``AgentSession`` in a stand-in job (offline). There is no LiveKit server here, so the
Avaluma server's own room join fails and it answers UNAVAILABLE: the plugin must retry with backoff and then give one
clear error. The success paths use the server with a stand-in room connector (the only fake: LiveKit itself), over
gRPC and over the hosted-service HTTP API.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from livekit import api, rtc
from livekit.agents import AgentSession
from livekit.agents.testing import fake_job_context
from livekit.agents.voice.avatar import DataStreamAudioOutput
from livekit.plugins import avaluma

from avaluma.core.server.http_api import start_http_api

pytestmark = pytest.mark.integration

LK_KEY, LK_SECRET = "devkey", "secret-secret-secret-secret-secret"
PLUGIN_SRC = Path(__file__).resolve().parents[2] / "plugins" / "livekit-plugin"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RecordingSleep:
    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


class StandInRoom:
    disconnected = False

    async def disconnect(self) -> None:
        self.disconnected = True


class StandInConnector:
    """Stands in for LiveKit: records each join (URL and token claims) and returns a room that can be left."""

    def __init__(self) -> None:
        self.joins: list[tuple[str, dict[str, Any]]] = []
        self.rooms: list[StandInRoom] = []

    async def __call__(self, url: str, token: str, *, on_disconnected: Callable[[str], None]) -> StandInRoom:
        payload = token.split(".")[1]
        self.joins.append((url, json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))))
        self.rooms.append(StandInRoom())
        return self.rooms[-1]


@pytest.fixture
def livekit_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("LIVEKIT_URL", "ws://lk.example:7880")
    monkeypatch.setenv("LIVEKIT_API_KEY", LK_KEY)
    monkeypatch.setenv("LIVEKIT_API_SECRET", LK_SECRET)
    for var in ("AVALUMA_API_URL", "AVALUMA_API_KEY", "AVALUMA_AVATAR_ID"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))  # no development key unless a test writes one


def request_for(avatar_id: str, livekit_url: str) -> avaluma.StartRequest:
    token = avaluma.mint_avatar_token(
        api_key=LK_KEY, api_secret=LK_SECRET, room="demo", identity="avatar-1", agent_identity="agent-1"
    )
    session = avaluma.AvatarSession(api_key="unused", avatar_id=avatar_id, accepted_senders=["sender-2"])
    return session.build_request(agent_identity="agent-1", livekit_url=livekit_url, token=token)


def test_avatar_token_publishes_on_behalf_of_the_agent() -> None:
    token = avaluma.mint_avatar_token(
        api_key=LK_KEY, api_secret=LK_SECRET, room="demo", identity="avatar-1", agent_identity="agent-1"
    )
    claims = api.TokenVerifier(LK_KEY, LK_SECRET).verify(token)
    assert claims.identity == "avatar-1"
    assert claims.attributes == {"lk.publish_on_behalf": "agent-1"}
    assert claims.kind == "agent"
    assert claims.video is not None
    assert (claims.video.room, claims.video.room_join, claims.video.can_publish) == ("demo", True, True)


def test_an_avatar_session_can_be_built_where_no_event_loop_runs() -> None:
    # After any asyncio.run() the main thread has no current loop; agent code may build its avatar at module level.
    asyncio.run(asyncio.sleep(0))
    session = avaluma.AvatarSession(api_key="key", avatar_id="astronaut", api_url="127.0.0.1:1")
    assert session.build_request(agent_identity="a", livekit_url="ws://x", token="t").avatar_id == "astronaut"


def test_request_accepts_the_agent_and_extra_senders() -> None:
    request = request_for("astronaut", "ws://lk.example:7880")
    assert request.accepted_sender_identities == ("agent-1", "sender-2")
    assert request.agent_identity == "agent-1"
    assert request.avatar_id == "astronaut"


async def test_unreachable_livekit_is_retried_with_backoff_then_one_clear_error(server, api_key) -> None:
    client = avaluma.GrpcClient(server.address, api_key=api_key)
    sleep = RecordingSleep()
    livekit_url = f"ws://127.0.0.1:{free_port()}"
    try:
        with pytest.raises(avaluma.AvalumaException) as err:
            await avaluma.start_with_retries(
                client,
                request_for(server.store.ids()[0], livekit_url),
                retry=avaluma.RetryPolicy(attempts=4, base_delay_s=0.5, max_delay_s=1.5),
                sleep=sleep,
            )
    finally:
        await client.aclose()
    assert sleep.delays == [0.5, 1.0, 1.5]
    assert err.value.code == "UNAVAILABLE"
    message = str(err.value)
    assert f"Avaluma server at {server.address} after 4 attempts" in message
    assert livekit_url in message  # the server's own explanation names the LiveKit URL it could not join
    assert server.sessions.list() == []  # failed starts leave nothing behind


@pytest.mark.parametrize("scheme", ["grpc", "http"])
async def test_unreachable_avatar_server_is_one_clear_error(scheme: str) -> None:
    port = free_port()
    client = avaluma.GrpcClient(f"127.0.0.1:{port}", api_key="k")
    if scheme == "http":
        client = avaluma.HttpClient(f"http://127.0.0.1:{port}", api_key="k")
    sleep = RecordingSleep()
    try:
        with pytest.raises(avaluma.AvalumaException, match=rf"127.0.0.1:{port} after 2 attempts.*avaluma serve"):
            await avaluma.start_with_retries(
                client, request_for("astronaut", "ws://127.0.0.1:1"), retry=avaluma.RetryPolicy(attempts=2), sleep=sleep
            )
    finally:
        await client.aclose()
    assert sleep.delays == [0.5]


@pytest.mark.parametrize(
    ("key", "avatar", "code"),
    [("wrong-key", None, "UNAUTHENTICATED"), (None, "no-such-avatar", "NOT_FOUND")],
)
async def test_errors_that_retrying_cannot_fix_fail_at_once(server, api_key, key, avatar, code) -> None:
    client = avaluma.GrpcClient(server.address, api_key=key or api_key)
    sleep = RecordingSleep()
    try:
        with pytest.raises(avaluma.AvalumaException, match=f"Avaluma server at {server.address} refused") as err:
            await avaluma.start_with_retries(
                client,
                request_for(avatar or server.store.ids()[0], "ws://127.0.0.1:1"),
                retry=avaluma.RetryPolicy(),
                sleep=sleep,
            )
    finally:
        await client.aclose()
    assert err.value.code == code
    assert sleep.delays == []


@pytest.mark.parametrize("transport", ["grpc", "http"])
async def test_agent_session_gets_the_avatar_then_the_job_end_stops_it(
    transport: str, make_server, api_key, livekit_env
) -> None:
    """The three lines of the README in a real AgentSession: the server joins the room with a token for the agent,
    the session's audio goes to the avatar on lk.audio_stream, and aclose (the job's end) stops the avatar."""
    connector = StandInConnector()
    server = await make_server(room_connector=connector)
    served = None
    url = server.address
    if transport == "http":  # the hosted-service HTTP API of the same server, on a free port
        served = await start_http_api(server.sessions, server.slots, server.keys, host="127.0.0.1", port=0)
        url = f"http://127.0.0.1:{served.port}"
    try:
        avatar = avaluma.AvatarSession(api_url=url, api_key=api_key, avatar_id=server.store.ids()[0])
        session: AgentSession = AgentSession()
        room = rtc.Room()
        with fake_job_context(room=room):
            await avatar.start(session, room=room, agent_identity="agent-1")
            assert avatar.session_id is not None
            assert [s.id for s in server.sessions.list()] == [avatar.session_id]
            ((joined_url, claims),) = connector.joins
            assert joined_url.startswith("ws://lk.example:7880")
            assert claims["sub"] == avatar.avatar_identity == "avaluma-avatar"
            assert claims["attributes"] == {"lk.publish_on_behalf": "agent-1"}
            sink = session.output.audio
            assert isinstance(sink, DataStreamAudioOutput)
            assert sink._destination_identity == "avaluma-avatar"
            await avatar.aclose()
        assert avatar.session_id is None
        assert server.sessions.list() == []
        assert connector.rooms[0].disconnected
    finally:
        if served is not None:
            await served.stop()


async def test_avatar_session_start_reports_unreachable_livekit(server, api_key, livekit_env, monkeypatch) -> None:
    """start() inside an agent job: mints the token, calls StartSession, retries, then fails clearly."""
    monkeypatch.setenv("LIVEKIT_URL", f"ws://127.0.0.1:{free_port()}")
    avatar = avaluma.AvatarSession(
        api_url=f"grpc://{server.address}",
        api_key=api_key,
        avatar_id=server.store.ids()[0],
        retry=avaluma.RetryPolicy(attempts=2, base_delay_s=0.01),
    )
    session: AgentSession = AgentSession()
    room = rtc.Room()
    with fake_job_context(room=room):
        with pytest.raises(avaluma.AvalumaException, match="after 2 attempts"):
            await avatar.start(session, room, agent_identity="agent-1")
        await avatar.aclose()
    assert avatar.session_id is None
    assert server.sessions.list() == []


def test_missing_avaluma_key_names_the_variable(livekit_env) -> None:
    with pytest.raises(avaluma.AvalumaException, match="AVALUMA_API_KEY is not set"):
        avaluma.AvatarSession()


async def test_missing_livekit_credentials_name_the_variable(livekit_env, monkeypatch) -> None:
    monkeypatch.delenv("LIVEKIT_API_SECRET")
    avatar = avaluma.AvatarSession(api_key="k")
    try:
        with pytest.raises(avaluma.AvalumaException, match="LIVEKIT_API_SECRET is not set"):
            await avatar.start(AgentSession(), rtc.Room(), agent_identity="agent-1")
    finally:
        await avatar.aclose()


async def test_a_local_server_is_reached_with_the_development_key(make_server, api_key, livekit_env) -> None:
    """No AVALUMA_API_KEY: the key `avaluma serve` stored for this user is used, for servers on this machine only."""
    path = avaluma.dev_key_path()
    path.parent.mkdir(parents=True)
    path.write_text(api_key + "\n")
    with pytest.raises(avaluma.AvalumaException, match="AVALUMA_API_KEY is not set"):
        avaluma.AvatarSession(api_url="https://avatars.example.com")  # never sent elsewhere
    connector = StandInConnector()
    server = await make_server(room_connector=connector)
    avatar = avaluma.AvatarSession(api_url=server.address)
    room = rtc.Room()
    with fake_job_context(room=room):
        await avatar.start(AgentSession(), room=room, agent_identity="agent-1")
        assert [s.id for s in server.sessions.list()] == [avatar.session_id]
        await avatar.aclose()


@pytest.mark.parametrize("bad", ["ftp://x", "grpc://"])
def test_a_bad_api_url_is_refused(bad: str, livekit_env) -> None:
    with pytest.raises(avaluma.AvalumaException, match="api_url"):
        avaluma.AvatarSession(api_url=bad, api_key="k")


def test_the_plugin_imports_nothing_of_the_avaluma_server_package() -> None:
    """A LiveKit agent installs the plugin alone: importing it must not need (or load) the avaluma distribution."""
    code = (
        "import sys; from livekit.plugins import avaluma; avaluma.AvatarSession; "
        "loaded = sorted(m for m in sys.modules if m == 'avaluma' or m.startswith('avaluma.')); print(loaded)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
    sources = list((PLUGIN_SRC / "livekit").rglob("*.py"))
    assert sources
    ours = ("import avaluma", "from avaluma")
    offenders = [str(p) for p in sources if any(line.startswith(ours) for line in p.read_text().splitlines())]
    assert offenders == []


def test_every_package_of_the_plugin_is_in_its_wheel() -> None:
    """A package folder missing from [tool.setuptools] packages would import from the checkout but not from a wheel."""
    import tomllib

    listed = set(tomllib.loads((PLUGIN_SRC / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {
        ".".join(init.parent.relative_to(PLUGIN_SRC).parts) for init in (PLUGIN_SRC / "livekit").rglob("__init__.py")
    }
    assert found == listed


@pytest.mark.parametrize("config_home", ["", "custom"])
def test_the_plugin_reads_the_development_key_where_serve_keeps_it(config_home, monkeypatch, tmp_path) -> None:
    from avaluma.core.server.serve import dev_key_path

    monkeypatch.setenv("HOME", str(tmp_path))
    if config_home:
        monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / config_home))
    else:
        monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    assert avaluma.dev_key_path() == dev_key_path()
    assert dev_key_path().is_relative_to(tmp_path)


async def test_a_refusal_moves_to_the_next_server_with_info_logging_on(make_server, api_key, caplog) -> None:
    """The pool logs each refusal at INFO: its fields must not collide with the LogRecord's own (``message`` did, and
    the failover then raised KeyError in any agent that logs at INFO)."""
    caplog.set_level(logging.INFO, logger="livekit.plugins.avaluma")
    server = await make_server(room_connector=StandInConnector())
    closed = avaluma.ServerAddress.parse(f"127.0.0.1:{free_port()}")
    pool = avaluma.ServerPool([closed, avaluma.ServerAddress.parse(server.address)], api_key=api_key, shuffle=False)
    try:
        response = await pool.start_session(request_for(server.store.ids()[0], "ws://lk.example:7880"), timeout_s=5)
    finally:
        await pool.aclose()
    assert [s.id for s in server.sessions.list()] == [response.session_id]
    assert any("trying the next" in r.getMessage() for r in caplog.records)
