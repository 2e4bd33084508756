"""Typed configuration: defaults < YAML file < environment variables.

Every options model forbids unknown keys, so a typo fails at start-up instead of being silently ignored. Secrets
(API keys, provider credentials) come from the environment, never from the YAML file in the repository.

Environment overrides use the prefix ``AVALUMA_`` and ``__`` between nested keys, e.g. ``AVALUMA_SERVER__PORT=9000``.
``AVALUMA_API_KEYS`` is a comma-separated list. ``AVALUMA_CONFIG`` names the YAML file when ``--config`` is not given.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from avaluma.core.errors import InvalidArgument
from avaluma.core.media import RenderOptions, check_emotion


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
    #: Seconds a stopping server (SIGTERM) waits for its sessions and Render streams to end by themselves, admitting
    #: none, before it ends the rest and stops; 0 ends them at once. Kubernetes: terminationGracePeriodSeconds above
    #: drain_timeout_s + shutdown_grace_s.
    drain_timeout_s: float = Field(0.0, ge=0)
    #: Largest gRPC message accepted, in bytes.
    max_message_bytes: int = Field(8 * 1024 * 1024, ge=1024)
    max_sessions: int = Field(64, ge=1)


class PublishConfig(Closed):
    """How LiveKit sessions publish ``avatar_video``; docs/livekit.md "Capacity" gives what each choice costs."""

    #: ``vp8`` (LiveKit's default) or ``h264`` (x264 ultrafast measured about 40 % cheaper per frame); admission
    #: measures the encoder of the codec and layers chosen here at start-up.
    video_codec: Literal["vp8", "h264"] = "vp8"
    #: Bits per second of the full video layer; 0 keeps LiveKit's choice for the frame size (450 kbps at 512x640).
    video_max_bitrate: int = Field(0, ge=0)
    #: Also publish a lower layer (LiveKit's default) for subscribers with less bandwidth. Off saves encoding.
    simulcast: bool = True


class SessionsConfig(Closed):
    """LiveKit avatar sessions (``AvatarService`` and the HTTP API)."""

    #: End a session after this many seconds without audio (a start request may ask for another value).
    idle_timeout_s: int = Field(300, ge=1)
    #: Identities accepted as audio senders in every session, besides the agent and the request's own list.
    accepted_senders: tuple[str, ...] = ()
    #: Measure the CPU cost of a session at start-up and admit only as many as the machine renders in real time.
    measure_budget: bool = True
    #: Fraction of the CPU cores that sessions may fill when the budget is measured.
    target_utilization: float = Field(0.8, gt=0, le=1)
    #: How the avatar's video is published (codec, bitrate, simulcast).
    publish: PublishConfig = Field(default_factory=PublishConfig)


class HttpConfig(Closed):
    """The HTTP API compatible with the hosted service (``POST /v1/livekit/start-avatar`` ...)."""

    enabled: bool = True
    #: Port of the HTTP API (on ``server.host``); 0 picks a free one.
    port: int = Field(8081, ge=0, le=65535)
    #: Requests per minute per API key (a token bucket that allows short bursts of ``rate_limit_burst``).
    rate_limit_per_minute: float = Field(60, gt=0)
    rate_limit_burst: int = Field(10, ge=1)
    #: Seconds a connection may take to send a complete request's headers (and may sit idle between requests).
    header_timeout_s: float = Field(10.0, gt=0)
    #: Seconds a request body may take to arrive after its headers (then ``408``).
    body_timeout_s: float = Field(10.0, gt=0)


class RenderConfig(Closed):
    fps: int = Field(25, ge=1, le=60)
    audio_sample_rate: int = Field(24_000, ge=8_000, le=48_000)
    seed: int = 0
    #: The emotion of sessions and ``Render`` streams whose request names none (one of ``core.media.EMOTIONS``).
    emotion: str = "neutral"
    #: Facial expressions in every session and ``Render`` stream (prosody-driven brows, nods, tilts and glances, and
    #: the emotion's face); false renders the face exactly as without them (emotions are still accepted).
    expressions: bool = True
    #: ``Render`` streams: seconds the client has to send its first message (the config) before the stream is ended
    #: with DEADLINE_EXCEEDED. Every open stream holds an admission slot, so a silent one must not hold it for long.
    first_message_timeout_s: float = Field(10.0, gt=0)
    #: ``Render`` streams: seconds without any request while the stream has nothing left to render or send, after
    #: which it ends with DEADLINE_EXCEEDED. A quiet realtime stream stays open by sending audio (silence counts).
    idle_timeout_s: float = Field(60.0, gt=0)

    @model_validator(mode="after")
    def _renderable(self) -> RenderConfig:
        try:
            self.options()
            check_emotion(self.emotion, field="render.emotion")
        except InvalidArgument as exc:  # e.g. a rate that is not a whole number of samples per frame
            raise ValueError(exc.message) from None
        return self

    def options(self) -> RenderOptions:
        """The server's default render options as the one validated value the rest of the server uses."""
        return RenderOptions(
            fps=self.fps, audio_sample_rate=self.audio_sample_rate, seed=self.seed, expressions=self.expressions
        )


class AvatarLinkConfig(Closed):
    """Where agent-1 starts its avatar: an Avaluma server's gRPC address. Its API key: ``AVALUMA_API_KEY``."""

    #: ``host:port``; several servers (replicas) comma-separated or as a name resolving to several addresses: a
    #: full or draining server's refusal sends the start to the next (livekit-plugin README, "Several servers").
    server: str = "127.0.0.1:8080"
    tls: bool = False
    #: Empty = the server's default avatar.
    avatar_id: str = ""
    identity: str = "avaluma-avatar"
    #: Extra participants (agent-2 senders) allowed to send audio to the same avatar.
    accepted_senders: tuple[str, ...] = ()
    #: The avatar's emotion at start (``core.media.EMOTIONS``); empty = the server's default (``render.emotion``).
    emotion: str = ""

    @model_validator(mode="after")
    def _known_emotion(self) -> AvatarLinkConfig:
        if self.emotion:
            try:
                check_emotion(self.emotion, field="agent.avatar.emotion")
            except InvalidArgument as exc:
                raise ValueError(exc.message) from None
        return self


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


class TritonConfig(Closed):
    """NVIDIA Triton: where the lip-sync model is served (``avaluma triton start``, ``avaluma models push``) and how
    the ``triton`` lip-sync backend talks to it. With ``lipsync: {name: triton}`` the client fields below become the
    backend's options (``lipsync.options`` given explicitly win)."""

    #: gRPC address, ``host:port``: the server binds it (``avaluma triton start``), clients connect to it.
    url: str = "127.0.0.1:8001"
    model: str = "lipsync"
    #: Longest wait for one answer before it counts as a fault (then ``on_failure`` applies).
    timeout_s: float = Field(1.0, gt=0, le=60)
    #: Triton failing mid-session: ``fallback`` continues in-process, ``end`` ends the session.
    on_failure: Literal["fallback", "end"] = "fallback"
    #: The model repository ``avaluma triton start`` serves and ``avaluma models push`` writes to.
    repository: Path = Path("deploy/triton/model_repository")
    http_port: int = Field(8000, ge=0, le=65535)
    #: ``explicit``: models are loaded through the API (``models push`` does); ``poll``: new versions are picked up
    #: from the repository every ``poll_interval_s`` seconds.
    control_mode: Literal["explicit", "poll"] = "explicit"
    poll_interval_s: int = Field(2, ge=1)

    def client_options(self) -> dict[str, Any]:
        """The ``triton`` lip-sync backend's options these settings imply."""
        return {"url": self.url, "model": self.model, "timeout_s": self.timeout_s, "on_failure": self.on_failure}


class Config(Closed):
    server: ServerConfig = ServerConfig()
    render: RenderConfig = RenderConfig()
    avatars_dir: Path = Path("assets/avatars")
    default_avatar: str = "astronaut"
    #: API keys accepted in the ``x-api-key`` metadata (gRPC) or ``api-secret`` header (HTTP). Environment only.
    api_keys: tuple[str, ...] = ()
    #: The trained in-process model; "energy" is the loudness baseline, "triton" serves the model from Triton.
    lipsync: ProviderRef = ProviderRef(name="onnx")
    tts: ProviderRef = ProviderRef(name="piper")
    stt: ProviderRef | None = None
    llm: ProviderRef | None = None
    vad: ProviderRef | None = None
    agent: AgentConfig = AgentConfig()
    sessions: SessionsConfig = SessionsConfig()
    http: HttpConfig = HttpConfig()
    triton: TritonConfig = TritonConfig()

    @model_validator(mode="after")
    def _triton_backend_options(self) -> Config:
        # One place to configure Triton: the `triton:` section feeds the backend unless lipsync.options says otherwise.
        if self.lipsync.name != "triton":
            return self
        merged = {**self.triton.client_options(), **self.lipsync.options}
        if merged == self.lipsync.options:
            return self
        return self.model_copy(update={"lipsync": ProviderRef(name="triton", options=merged)})
