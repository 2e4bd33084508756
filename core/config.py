"""Typed configuration: defaults < YAML file < environment variables.

Every options model forbids unknown keys, so a typo fails at start-up instead of being silently ignored. Secrets
(API keys, provider credentials) come from the environment, never from the YAML file in the repository.

Environment overrides use the prefix ``AVALUMA_`` and ``__`` between nested keys, e.g. ``AVALUMA_SERVER__PORT=9000``.
``AVALUMA_API_KEYS`` is a comma-separated list. ``AVALUMA_CONFIG`` names the YAML file when ``--config`` is not given.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Closed(BaseModel):
    """Base of every config section: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class ProviderRef(Closed):
    """Picks a provider by its registered name and passes it options (validated by the provider's options model)."""

    name: str
    options: dict[str, Any] = Field(default_factory=dict)


class ServerConfig(Closed):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    #: Seconds given to in-flight RPCs on shutdown before they are cancelled.
    shutdown_grace_s: float = Field(5.0, ge=0)
    #: Largest gRPC message accepted, in bytes.
    max_message_bytes: int = Field(8 * 1024 * 1024, ge=1024)
    max_sessions: int = Field(64, ge=1)


class RenderConfig(Closed):
    fps: int = Field(25, ge=1, le=60)
    audio_sample_rate: int = Field(24_000, ge=8_000, le=48_000)
    seed: int = 0


class AvatarLinkConfig(Closed):
    """Where agent-1 starts its avatar: an Avaluma server's gRPC address. Its API key: ``AVALUMA_API_KEY``."""

    server: str = "127.0.0.1:8080"
    tls: bool = False
    #: Empty = the server's default avatar.
    avatar_id: str = ""
    identity: str = "avaluma-avatar"
    #: Extra participants (agent-2 senders) allowed to send audio to the same avatar.
    accepted_senders: tuple[str, ...] = ()


class AgentConfig(Closed):
    """agent-1 (``avaluma agent``): every stage is a provider picked by name; defaults are the seed's."""

    instructions: str = "You are a friendly, concise voice assistant shown as a talking avatar."
    #: Said (generated from these instructions) when a user joins; empty = wait for the user.
    greeting: str = "Greet the user in one short sentence."
    #: Explicit dispatch name for LiveKit; empty = automatic dispatch to every room.
    agent_name: str = ""
    stt: ProviderRef = ProviderRef(name="assemblyai")
    llm: ProviderRef = ProviderRef(name="openai")
    tts: ProviderRef = ProviderRef(name="cartesia")
    vad: ProviderRef = ProviderRef(name="silero")
    turn_detector: ProviderRef | None = ProviderRef(name="multilingual")
    noise_cancellation: ProviderRef | None = ProviderRef(name="bvc")
    #: ``null`` = voice only, no avatar.
    avatar: AvatarLinkConfig | None = AvatarLinkConfig()


class Config(Closed):
    server: ServerConfig = ServerConfig()
    render: RenderConfig = RenderConfig()
    avatars_dir: Path = Path("assets/avatars")
    default_avatar: str = "astronaut"
    #: API keys accepted in the ``x-api-key`` metadata (gRPC) or ``api-secret`` header (HTTP). Environment only.
    api_keys: tuple[str, ...] = ()
    #: The trained in-process model; "energy" is the loudness baseline.
    lipsync: ProviderRef = ProviderRef(name="onnx")
    tts: ProviderRef = ProviderRef(name="piper")
    stt: ProviderRef | None = None
    llm: ProviderRef | None = None
    vad: ProviderRef | None = None
    agent: AgentConfig = AgentConfig()
