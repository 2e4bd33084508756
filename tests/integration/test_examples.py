"""examples/: agent-1 builds its voice pipeline and avatar with fake keys, agent-2 starts an avatar through the real
server's HTTP API and cleans up when LiveKit is unreachable, and the compose file refers to things that exist.

No LiveKit server here: agent-2's room join fails fast at a closed port; the Avaluma server's own LiveKit join is a
stand-in that records it (the only fake)."""

from __future__ import annotations

import importlib.util
import py_compile
import re
import socket
import sys
import wave
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from livekit import api, rtc
from livekit.agents import AgentServer, inference
from livekit.agents.testing import fake_job_context
from livekit.plugins import assemblyai, avaluma, cartesia, openai, silero

from avaluma.core.server.http_api import start_http_api

pytestmark = pytest.mark.integration

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
FAKE_KEYS = {
    "ASSEMBLYAI_API_KEY": "fake-assemblyai",
    "OPENAI_API_KEY": "fake-openai",
    "CARTESIA_API_KEY": "fake-cartesia",
    "AVALUMA_API_KEY": "fake-avaluma",
    "LIVEKIT_URL": "ws://127.0.0.1:1",
    "LIVEKIT_API_KEY": "devkey",
    "LIVEKIT_API_SECRET": "secret-secret-secret-secret-secret",
}


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name.replace("-", "_"), EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the example is executed
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def fake_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in FAKE_KEYS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AVALUMA_API_URL", raising=False)
    monkeypatch.delenv("AVALUMA_AVATAR_ID", raising=False)


@pytest.mark.parametrize("name", ["agent-1", "agent-2"])
def test_examples_compile(name: str, tmp_path: Path) -> None:
    py_compile.compile(str(EXAMPLES / f"{name}.py"), cfile=str(tmp_path / "x.pyc"), doraise=True)


async def test_agent_1_builds_the_products_voice_pipeline_and_the_avatar(fake_keys: None) -> None:
    agent_1 = load("agent-1")
    assert isinstance(agent_1.server, AgentServer)
    assert agent_1.server.setup_fnc is agent_1.prewarm
    with fake_job_context():
        session = agent_1.build_session()
        avatar = agent_1.build_avatar()
        options = agent_1.room_options()
    assert isinstance(session.stt, assemblyai.STT)
    assert isinstance(session.llm, openai.LLM) and session.llm.model == "gpt-4.1-mini"
    assert isinstance(session.tts, cartesia.TTS) and session.tts.model == "sonic-3"
    assert isinstance(session.vad, silero.VAD)
    assert isinstance(session.turn_detection, inference.TurnDetector)
    assert isinstance(avatar, avaluma.AvatarSession)
    assert options.audio_input.noise_cancellation is not None
    await avatar.aclose()


def test_agent_1_without_an_avaluma_key_says_which_variable(fake_keys: None, monkeypatch, tmp_path: Path) -> None:
    monkeypatch.delenv("AVALUMA_API_KEY")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))  # no development key either
    with pytest.raises(avaluma.AvalumaException, match="AVALUMA_API_KEY is not set"):
        load("agent-1").build_avatar()


def test_agent_2_tokens_let_the_avatar_publish_for_the_sender(fake_keys: None) -> None:
    agent_2 = load("agent-2")
    settings = agent_2.Settings.from_env()
    verifier = api.TokenVerifier(FAKE_KEYS["LIVEKIT_API_KEY"], FAKE_KEYS["LIVEKIT_API_SECRET"])
    avatar = verifier.verify(agent_2.token(settings, "demo", "avaluma-avatar", on_behalf_of="wav-sender"))
    sender = verifier.verify(agent_2.token(settings, "demo", "wav-sender"))
    assert avatar.attributes == {"lk.publish_on_behalf": "wav-sender"}
    assert (sender.identity, sender.video.room) == ("wav-sender", "demo")


class StandInRoom:
    disconnected = False

    async def disconnect(self) -> None:
        self.disconnected = True


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_agent_2_starts_the_avatar_over_http_and_stops_it_when_the_room_is_unreachable(
    fake_keys: None, make_server, api_key: str, monkeypatch, tmp_path: Path
) -> None:
    rooms: list[StandInRoom] = []
    tokens: list[str] = []

    async def connector(url: str, token: str, *, on_disconnected: Callable[[str], None]) -> StandInRoom:
        tokens.append(token)
        rooms.append(StandInRoom())
        return rooms[-1]

    server = await make_server(room_connector=connector)
    served = await start_http_api(server.sessions, server.slots, server.keys, host="127.0.0.1", port=0)
    monkeypatch.setenv("AVALUMA_HTTP_URL", f"http://127.0.0.1:{served.port}")
    monkeypatch.setenv("AVALUMA_API_KEY", api_key)
    monkeypatch.setenv("AVALUMA_AVATAR_ID", server.store.ids()[0])
    monkeypatch.setenv("LIVEKIT_URL", f"ws://127.0.0.1:{free_port()}")  # nobody listens: the join fails fast
    wav_path = tmp_path / "hello.wav"
    with wave.open(str(wav_path), "wb") as wav:
        wav.setnchannels(1), wav.setsampwidth(2), wav.setframerate(16_000)
        wav.writeframes(b"\0\0" * 1600)
    agent_2 = load("agent-2")
    try:
        with pytest.raises(rtc.ConnectError):
            await agent_2.main(str(wav_path), "demo", agent_2.Settings.from_env())
    finally:
        await served.stop()
    assert len(rooms) == 1  # the server joined the room for the avatar...
    claims = api.TokenVerifier(FAKE_KEYS["LIVEKIT_API_KEY"], FAKE_KEYS["LIVEKIT_API_SECRET"]).verify(tokens[0])
    assert claims.attributes == {"lk.publish_on_behalf": "wav-sender"}
    assert server.sessions.list() == []  # ...and the example stopped it once its own join failed
    assert rooms[0].disconnected


def test_compose_runs_livekit_the_server_and_agent_1() -> None:
    compose: dict[str, Any] = yaml.safe_load((EXAMPLES / "compose.yaml").read_text())
    services = compose["services"]
    assert set(services) == {"livekit", "avatar-server", "agent"}
    assert "--dev" in services["livekit"]["command"]
    root = EXAMPLES.parent
    for name in ("avatar-server", "agent"):
        build = services[name]["build"]
        assert (EXAMPLES / build["context"] / build["dockerfile"]).resolve().is_file()
    agent = services["agent"]
    source, target, _ = agent["volumes"][0].split(":")
    assert (EXAMPLES / source).is_file() and agent["entrypoint"][-1] == target
    assert agent["env_file"] == ".env"
    # Every variable compose requires or sets is documented in .env.example.
    documented = set(re.findall(r"^([A-Z_]+)=", (EXAMPLES / ".env.example").read_text(), flags=re.MULTILINE))
    required = set(re.findall(r"\$\{([A-Z_]+)", (EXAMPLES / "compose.yaml").read_text()))
    assert required <= documented
    assert set(agent["environment"]) <= documented
    assert root.joinpath("plugins/livekit-plugin/pyproject.toml").is_file()
