"""agent-1 builds its AgentSession from config through the plugin registry: seed defaults, one message per missing
key, unknown names, and the no-avatar / no-turn-detector variants."""

from __future__ import annotations

import pytest

import avaluma_plugin_assemblyai
import avaluma_plugin_cartesia
import avaluma_plugin_noise
import avaluma_plugin_openai
import avaluma_plugin_silero
import avaluma_plugin_turn_detector
from avaluma.agent import worker
from avaluma.core.config import AgentConfig, Config, ProviderRef
from avaluma.core.errors import ConfigError
from avaluma.core.plugins import ProviderRegistry, load_plugin_manager

KEYS = ("ASSEMBLYAI_API_KEY", "OPENAI_API_KEY", "CARTESIA_API_KEY")


@pytest.fixture
def registry() -> ProviderRegistry:
    # The provider plugins are registered on purpose, not autoloaded from whatever is installed.
    pm = load_plugin_manager(entry_points=False)
    for module in (
        avaluma_plugin_assemblyai,
        avaluma_plugin_openai,
        avaluma_plugin_cartesia,
        avaluma_plugin_silero,
        avaluma_plugin_turn_detector,
        avaluma_plugin_noise,
    ):
        pm.register(module, name=module.__name__)
    return ProviderRegistry.from_plugin_manager(pm)


@pytest.fixture
def offline_hf_cache(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path))


def test_missing_keys_are_reported_together_naming_each_variable(
    registry: ProviderRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key in KEYS:
        monkeypatch.delenv(key, raising=False)
    with pytest.raises(ConfigError) as err:
        worker.preflight(Config(), registry)
    assert str(err.value).splitlines() == [
        "agent.stt: ASSEMBLYAI_API_KEY is not set: export it or pick another stt provider in config",
        "agent.llm: OPENAI_API_KEY is not set: export it or pick another llm provider in config",
        "agent.tts: CARTESIA_API_KEY is not set: export it or pick another tts provider in config",
    ]


async def test_seed_defaults_build_livekit_objects_and_a_session(
    registry: ProviderRegistry, monkeypatch: pytest.MonkeyPatch, offline_hf_cache: None
) -> None:
    from livekit import rtc
    from livekit.agents import AgentSession
    from livekit.agents.inference import TurnDetector
    from livekit.plugins import assemblyai, cartesia, openai, silero

    for key in KEYS:
        monkeypatch.setenv(key, "test-key")
    from livekit.agents.testing import fake_job_context

    with fake_job_context():
        providers = worker.build_providers(AgentConfig(), registry)
        session = worker.build_session(providers)
    assert isinstance(providers.stt, assemblyai.STT)
    assert isinstance(providers.llm, openai.LLM)
    assert providers.llm.model == "gpt-4.1-mini"
    assert isinstance(providers.tts, cartesia.TTS)
    assert providers.tts.model == "sonic-3"
    assert isinstance(providers.vad, silero.VAD)
    assert isinstance(providers.turn_detector, TurnDetector)  # offline: the bundled local model
    assert isinstance(providers.noise_cancellation, rtc.NoiseCancellationOptions)
    assert isinstance(session, AgentSession)
    assert session.stt is providers.stt and session.llm is providers.llm and session.tts is providers.tts
    options = worker.room_options(providers)
    assert options.audio_input.noise_cancellation is providers.noise_cancellation  # type: ignore[union-attr]


def test_unknown_provider_lists_installed_ones(registry: ProviderRegistry, monkeypatch: pytest.MonkeyPatch) -> None:
    for key in KEYS:
        monkeypatch.setenv(key, "k")
    agent = AgentConfig(tts=ProviderRef(name="elevenlabs"), noise_cancellation=ProviderRef(name="webrtc"))
    with pytest.raises(ConfigError, match=r"agent\.tts: unknown tts provider 'elevenlabs'; installed: cartesia"):
        worker.build_providers(agent, registry)


async def test_optional_stages_can_be_switched_off(registry: ProviderRegistry, monkeypatch: pytest.MonkeyPatch) -> None:
    for key in KEYS:
        monkeypatch.setenv(key, "k")
    agent = AgentConfig(turn_detector=None, noise_cancellation=None, avatar=None)
    providers = worker.build_providers(agent, registry)
    assert providers.turn_detector is None and providers.noise_cancellation is None
    session = worker.build_session(providers)
    assert session.turn_detection == "vad"


def test_agent_section_forbids_unknown_keys() -> None:
    with pytest.raises(ValueError, match="instructoins"):
        AgentConfig.model_validate({"instructoins": "x"})


def test_agent_command_stops_at_start_up_with_the_missing_keys(
    registry: ProviderRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    from click.testing import CliRunner

    from avaluma.agent.cli import agent_command

    for key in KEYS:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setattr(worker, "_load", lambda: (Config(), registry))
    result = CliRunner().invoke(agent_command, ["start"])
    assert result.exit_code == 1
    assert "ASSEMBLYAI_API_KEY is not set" in result.output
    assert "CARTESIA_API_KEY is not set" in result.output


@pytest.mark.parametrize("args", [[], ["--help"], ["-h"]])
def test_agent_command_alone_or_with_help_prints_its_help(args: list[str]) -> None:
    from click.testing import CliRunner

    from avaluma.agent.cli import agent_command

    result = CliRunner().invoke(agent_command, args)
    assert result.exit_code == 0
    assert "Run the LiveKit Agents worker (agent-1)" in result.output


def test_agent_command_rejects_an_unknown_mode_with_the_valid_ones() -> None:
    from click.testing import CliRunner

    from avaluma.agent.cli import agent_command

    result = CliRunner().invoke(agent_command, ["strat"])
    assert result.exit_code == 2
    assert "'strat' is not one of 'dev', 'start', 'console', 'download-files'" in result.output


def test_mode_help_is_livekits_and_needs_no_keys(registry: ProviderRegistry, monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from avaluma.agent.cli import agent_command

    for key in KEYS:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setattr(worker, "_load", lambda: (Config(), registry))
    result = CliRunner().invoke(agent_command, ["start", "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output and "--api-secret" in result.output  # LiveKit's options for start
    assert "is not set" not in result.output


def test_console_says_everything_that_is_missing_and_what_to_do_instead(
    registry: ProviderRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    import ctypes.util

    from click.testing import CliRunner

    from avaluma.agent.cli import agent_command

    for key in KEYS:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setattr(worker, "_load", lambda: (Config(), registry))
    result = CliRunner().invoke(agent_command, ["console"])
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert "ASSEMBLYAI_API_KEY is not set" in result.output
    assert ("PortAudio" in result.output) == (ctypes.util.find_library("portaudio") is None)
    assert "avaluma render --text" in result.output
