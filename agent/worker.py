"""agent-1: the LiveKit Agents worker behind ``avaluma agent``, built entirely from config through the plugin registry.

``agent:`` in the config names one provider per stage (defaults: AssemblyAI STT, OpenAI gpt-4.1-mini, Cartesia
sonic-3, Silero VAD, the multilingual turn detector, BVC noise cancellation) and the avatar to start. Changing a stage
is a ``pip install`` plus one line of config.

Before the worker accepts jobs, :func:`preflight` builds every provider once in the main process, so a missing API
key or a bad option stops start-up with one message per problem instead of failing the first call. It also imports
the provider modules on the main thread, which LiveKit requires for plugins that run models in the worker's
inference process (the multilingual turn detector).
"""

from __future__ import annotations

import asyncio
import logging
import sys
from dataclasses import dataclass
from typing import Any

from livekit.agents import Agent, AgentServer, AgentSession, JobContext, cli
from livekit.agents.testing import fake_job_context
from livekit.agents.voice.room_io import AudioInputOptions, RoomOptions
from livekit.agents.voice.turn import TurnHandlingOptions

from avaluma.core.config import AgentConfig, Config
from avaluma.core.errors import AvalumaError, ConfigError

logger = logging.getLogger(__name__)

#: ``agent.<field>`` -> provider kind in the registry.
STAGES: dict[str, str] = {
    "stt": "stt",
    "llm": "llm",
    "tts": "tts",
    "vad": "vad",
    "turn_detector": "turn_detector",
    "noise_cancellation": "noise_cancellation",
}


@dataclass
class Providers:
    """The built providers: LiveKit Agents' own objects."""

    stt: Any
    llm: Any
    tts: Any
    vad: Any
    turn_detector: Any | None
    noise_cancellation: Any | None


def build_providers(agent: AgentConfig, registry: Any) -> Providers:
    """Build every stage named in ``agent`` with ``registry.create``. All problems are reported together in one
    :class:`ConfigError`, one line per stage (``agent.stt: ASSEMBLYAI_API_KEY is not set: ...``)."""
    built: dict[str, Any] = {}
    problems: list[str] = []
    for field, kind in STAGES.items():
        ref = getattr(agent, field)
        if ref is None:
            built[field] = None
            continue
        try:
            built[field] = registry.create(kind, ref)
        except AvalumaError as exc:
            problems.append(f"agent.{field}: {exc.message}")
    if problems:
        raise ConfigError("\n".join(problems))
    return Providers(**built)


def build_session(providers: Providers) -> AgentSession[Any]:
    """An ``AgentSession`` from built providers; without a turn detector, turns end on VAD silence."""
    turn_detection: Any = providers.turn_detector if providers.turn_detector is not None else "vad"
    turn_handling: TurnHandlingOptions = {"turn_detection": turn_detection}
    return AgentSession(
        stt=providers.stt,
        llm=providers.llm,
        tts=providers.tts,
        vad=providers.vad,
        turn_handling=turn_handling,
    )


def room_options(providers: Providers) -> RoomOptions:
    return RoomOptions(audio_input=AudioInputOptions(noise_cancellation=providers.noise_cancellation))


def preflight(config: Config, registry: Any) -> None:
    """Build every provider once, in a stand-in job on a short-lived event loop (some constructors need both),
    and drop them."""

    async def build() -> None:
        with fake_job_context():
            build_providers(config.agent, registry)

    asyncio.run(build())


def _load() -> tuple[Config, Any]:
    from avaluma.core.config_loader import load_config
    from avaluma.core.plugins import load_registry

    return load_config(), load_registry()


async def entrypoint(ctx: JobContext) -> None:
    """One job: the conversation in ``ctx.room``. Runs in a job process; the config comes from ``AVALUMA_CONFIG``."""
    config, registry = _load()
    providers = build_providers(config.agent, registry)
    session = build_session(providers)
    await ctx.connect()
    link = config.agent.avatar
    if link is not None:
        # The same AvatarSession any LiveKit agent gets from avaluma-livekit-plugin; ours adds the trace interceptors
        # so one trace spans agent and server.
        from livekit.plugins import avaluma

        from avaluma.core.server.grpc.telemetry import client_interceptors

        avatar = avaluma.AvatarSession(
            # Several servers: comma-separated (each gets the scheme) or a name with several addresses.
            api_url=",".join(f"grpcs://{s.strip()}" for s in link.server.split(",")) if link.tls else link.server,
            avatar_id=link.avatar_id,
            avatar_participant_identity=link.identity,
            accepted_senders=link.accepted_senders,
            emotion=link.emotion,
            grpc_interceptors=client_interceptors(),
        )
        await avatar.start(session, room=ctx.room)
    await session.start(
        agent=Agent(instructions=config.agent.instructions), room=ctx.room, room_options=room_options(providers)
    )
    if config.agent.greeting:
        session.generate_reply(instructions=config.agent.greeting)


def make_server(config: Config) -> AgentServer:
    server = AgentServer()
    server.rtc_session(entrypoint, agent_name=config.agent.agent_name)
    return server


HELP_FLAGS = frozenset({"--help", "-h"})
#: Added to console's problems: what a user without keys or audio devices can do instead.
CONSOLE_ALTERNATIVES = (
    "`avaluma agent console` talks to the configured providers through this machine's microphone and speaker. "
    'Without them: `avaluma render --text "Hello"` (no keys at all), or `avaluma agent dev` in a LiveKit room.'
)


def console_problem() -> str | None:
    """Why ``console`` cannot use this machine's microphone and speaker, or ``None`` when it can."""
    try:
        import sounddevice
    except OSError:  # sounddevice loads libportaudio when imported
        return (
            "console needs the PortAudio library for the microphone and speaker: sudo apt-get install libportaudio2 "
            "(macOS: brew install portaudio)"
        )
    try:
        sounddevice.query_devices(kind="input")
        sounddevice.query_devices(kind="output")
    except Exception as exc:  # PortAudioError or ValueError: no default device
        return f"console found no microphone or speaker on this machine ({exc})"
    return None


def run(mode: str, args: list[str]) -> None:
    """Run LiveKit Agents' CLI (``dev``, ``start``, ``console``, ``download-files``) on the configured worker.

    Before the worker starts, every provider is built once (missing keys are reported together) and ``console``
    checks for PortAudio and audio devices, so problems are one message each instead of a traceback from the job.
    ``<mode> --help`` is LiveKit's own help and needs neither keys nor devices."""
    config, registry = _load()
    if mode != "download-files" and not HELP_FLAGS.intersection(args):
        problems: list[str] = []
        try:
            preflight(config, registry)
        except ConfigError as exc:
            problems.append(exc.message)
        if mode == "console" and (problem := console_problem()) is not None:
            problems.append(problem)
        if problems:
            if mode == "console":
                problems.append(CONSOLE_ALTERNATIVES)
            raise ConfigError("\n".join(problems))
    sys.argv = ["avaluma agent", mode, *args]
    cli.run_app(make_server(config))
