"""The gRPC server: wires the services, interceptors, health and reflection, and shuts down in bounded time.

Interceptor order matters: authentication runs first (an unauthenticated call never reaches a servicer), then the
error mapping (the one place domain errors become status codes). Health checks and reflection need no key.

Shutdown: health goes NOT_SERVING first (load balancers stop sending new calls), open render streams and sessions
are told to end, then ``server.stop(grace)`` gives in-flight calls ``grace`` seconds before cancelling them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import grpc
import grpc.aio
from grpc_health.v1 import health_pb2, health_pb2_grpc

# Public as grpc_health.v1.health.aio, an attribute set at import time that type checkers cannot see.
from grpc_health.v1._async import HealthServicer as AsyncHealthServicer
from grpc_reflection.v1alpha import reflection

from avaluma.core.config import Config, PublishConfig
from avaluma.core.errors import ConfigError, Unavailable
from avaluma.core.live.avatar_store import AvatarStore
from avaluma.core.live.events import EndReason
from avaluma.core.live.playout import SharedBackend
from avaluma.core.live.sessions import (
    LiveKitRoom,
    RoomConnector,
    RoomHandle,
    RuntimeFactory,
    Session,
    SessionRegistry,
    SessionRuntime,
    SessionSlots,
    VideoPublishing,
    connect_livekit,
)
from avaluma.core.server.auth import ApiKeyInterceptor, ApiKeys
from avaluma.core.server.grpc.errors import ErrorMappingInterceptor
from avaluma.core.server.grpc.render_service import RenderServicer
from avaluma.core.server.grpc.services import SERVICE_NAMES, add_services
from avaluma.core.server.grpc.telemetry import server_interceptors
from avaluma.core.tasks import cancel_and_wait

if TYPE_CHECKING:
    from avaluma.core.plugins import ProviderRegistry
    from avaluma.renderer.avatar import Avatar
    from avaluma.renderer.lipsync.base import LipSyncBackend

log = logging.getLogger(__name__)

__all__ = ["SERVICE_NAMES", "RunningServer", "livekit_runtime_factory", "start_server"]


@dataclass
class RunningServer:
    """A started server. ``port`` is the bound port (the real one when the config asked for port 0)."""

    server: grpc.aio.Server
    host: str
    port: int
    store: AvatarStore
    sessions: SessionRegistry
    health: AsyncHealthServicer
    _render: RenderServicer
    _backend: SharedBackend
    _grace_s: float
    _budget_task: asyncio.Task[None] | None = None
    _stopped: bool = field(default=False)
    #: The capacity shared by sessions and render streams (the HTTP API reports it).
    slots: SessionSlots | None = None
    #: The accepted API keys (the HTTP API checks the same ones).
    keys: ApiKeys | None = None

    @property
    def address(self) -> str:
        """``host:port`` to dial (IPv6 hosts in brackets)."""
        return f"{_bracket(self.host)}:{self.port}"

    async def drain(self, *, timeout_s: float) -> tuple[int, int]:
        """Graceful drain before shutdown: admit nothing new (sessions and render streams are refused UNAVAILABLE,
        start it on another server instance), health NOT_SERVING, give running sessions and render streams up to
        ``timeout_s`` to end by themselves, then end the rest with a reason that says so. Returns how many sessions
        and how many render streams the deadline ended."""
        if self.slots is not None:
            self.slots.drain()
        await self.health.enter_graceful_shutdown()
        sessions, streams = await asyncio.gather(
            self.sessions.drain(timeout_s=timeout_s), self._render.drain(timeout_s=timeout_s)
        )
        return sessions, streams

    async def stop(self, grace: float | None = None) -> None:
        """Graceful, bounded shutdown: NOT_SERVING, end streams and sessions, then ``server.stop(grace)``.

        ``grace`` defaults to ``server.shutdown_grace_s`` from the config. Safe to call twice.
        """
        if self._stopped:
            return
        self._stopped = True
        grace_s = self._grace_s if grace is None else grace
        log.info("server stopping", extra={"grace_s": grace_s})
        await self.health.enter_graceful_shutdown()
        await cancel_and_wait(self._budget_task)
        self._render.begin_shutdown()
        await self.sessions.close_all(timeout_s=max(grace_s, 0.1))
        await self.server.stop(grace_s)
        self._backend.close()
        log.info("server stopped")

    async def wait_for_termination(self) -> None:
        await self.server.wait_for_termination()


def _bracket(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def _backend_factory(config: Config, registry: ProviderRegistry | None) -> Callable[[], LipSyncBackend]:
    """Build the configured lip-sync backend through the provider registry (validated now, built on first use)."""
    from avaluma.core.plugins import load_registry

    providers = registry if registry is not None else load_registry()
    providers.validate(config, kinds=["lipsync_backend"])  # unknown name / bad options fail at start-up

    def build() -> LipSyncBackend:
        from avaluma.renderer.lipsync.base import LipSyncBackend

        # mypy refuses an abstract class for type[T] (python/mypy#4717); the isinstance check is what is wanted.
        return providers.create_as("lipsync_backend", config.lipsync, LipSyncBackend)  # type: ignore[type-abstract]

    return build


def livekit_runtime_factory(backend: SharedBackend) -> RuntimeFactory:
    """Sessions in real LiveKit rooms render with the shared backend and publish through ``AVSynchronizer``, the
    video as the session's ``video`` says (``sessions.publish`` with the start request's choices on top)."""

    async def start(
        session: Session, room: RoomHandle, avatar: Avatar, *, end: Callable[[EndReason, str], None]
    ) -> SessionRuntime | None:
        if not isinstance(room, LiveKitRoom):
            return None  # a scripted room (tests): nothing to play in
        from avaluma.core.live.livekit_session import start_livekit_runtime

        return await start_livekit_runtime(
            session,
            room.room,
            avatar,
            await backend.get(),
            fps=session.render.fps,
            audio_sample_rate=session.render.audio_sample_rate,
            end=end,
            video=session.video,
        )

    return start


def _publishing(publish: PublishConfig) -> VideoPublishing:
    return VideoPublishing(publish.video_codec, publish.video_max_bitrate, publish.simulcast)


async def _measure_budget(slots: SessionSlots, store: AvatarStore, backend: SharedBackend, config: Config) -> None:
    """Measure what one session costs on this machine and cap admissions to what it renders in real time."""
    from avaluma.core.live.admission import measure_budget
    from avaluma.renderer.engine import RenderSession

    try:
        avatar = store.get(config.default_avatar if config.default_avatar in store.ids() else store.ids()[0])
        lipsync = await backend.get()
        budget = await measure_budget(
            lambda: RenderSession(
                avatar,
                lipsync,
                fps=config.render.fps,
                audio_sample_rate=config.render.audio_sample_rate,
                expressions=config.render.expressions,
            ),
            publishing=_publishing(config.sessions.publish),
            target_utilization=config.sessions.target_utilization,
        )
    except Exception as exc:  # admission falls back to server.max_sessions
        details = {"error_type": type(exc).__name__, "error": str(exc)[:300]}
        log.warning("could not measure the session budget; admitting up to server.max_sessions", extra=details)
        return
    finally:
        slots.measuring = False
    slots.set_budget(budget)
    extra = {
        "cpu_per_session": round(budget.cpu_per_session, 4),
        "publish_cost": round(budget.publish_cost, 4),
        "parallelism": round(budget.parallelism or budget.cores, 2),
        "max_sessions": budget.max_sessions,
    }
    log.info("session budget measured", extra=extra)


async def start_server(
    config: Config,
    *,
    registry: ProviderRegistry | None = None,
    store: AvatarStore | None = None,
    lipsync_backend: Callable[[], LipSyncBackend] | None = None,
    room_connector: RoomConnector = connect_livekit,
    runtime: RuntimeFactory | None = None,
    hooks: Any = None,
) -> RunningServer:
    """Start serving the v1 API on ``config.server.host:port`` and return once it accepts calls.

    ``registry`` (the plugin provider registry) builds the lip-sync backend named by ``config.lipsync``;
    ``lipsync_backend`` (a factory) overrides it, e.g. for tests. ``store`` defaults to the avatars in
    ``config.avatars_dir``. ``room_connector`` joins LiveKit rooms (tests substitute a fake); ``runtime`` starts what
    plays in a joined room (default: :func:`livekit_runtime_factory`, which plays in real LiveKit rooms only).
    ``hooks`` is the plugin manager's hook relay (``pm.hook``) for the session lifecycle hooks.
    Raises :class:`ConfigError` when no API key is configured or the address cannot be bound.
    """
    if not config.api_keys:
        raise ConfigError(
            "no API keys configured: set AVALUMA_API_KEYS (comma-separated); `avaluma serve` generates one when unset"
        )
    keys = ApiKeys(config.api_keys)
    avatars = store if store is not None else AvatarStore.open(config.avatars_dir)
    backend = SharedBackend(lipsync_backend if lipsync_backend is not None else _backend_factory(config, registry))
    slots = SessionSlots(config.server.max_sessions)
    defaults = config.render.options()
    sessions = SessionRegistry(
        store=avatars,
        slots=slots,
        defaults=defaults,
        default_avatar=config.default_avatar,
        connector=room_connector,
        runtime=runtime if runtime is not None else livekit_runtime_factory(backend),
        hooks=hooks,
        idle_timeout_s=config.sessions.idle_timeout_s,
        accepted_senders=config.sessions.accepted_senders,
        default_emotion=config.render.emotion,
        publish_defaults=_publishing(config.sessions.publish),
    )
    render = RenderServicer(
        store=avatars,
        backend=backend,
        slots=slots,
        defaults=defaults,
        default_avatar=config.default_avatar,
        first_message_timeout_s=config.render.first_message_timeout_s,
        idle_timeout_s=config.render.idle_timeout_s,
        default_emotion=config.render.emotion,
    )

    limit = config.server.max_message_bytes
    options: list[tuple[str, Any]] = [
        ("grpc.max_receive_message_length", limit),
        ("grpc.max_send_message_length", limit),
        # A restarted server must not share its port with a still-running one: fail loudly instead.
        ("grpc.so_reuseport", 0),
    ]
    # Tracing first (when OTEL_* enables it): its span also covers rejected keys and mapped errors.
    interceptors = [*server_interceptors(), ApiKeyInterceptor(keys), ErrorMappingInterceptor()]
    server = grpc.aio.server(interceptors=interceptors, options=options)
    add_services(server, render=render, sessions=sessions, avatars=avatars)

    health_servicer = AsyncHealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (*SERVICE_NAMES, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME),
        server,
    )

    host = config.server.host
    try:
        port = server.add_insecure_port(f"{_bracket(host)}:{config.server.port}")
    except RuntimeError as exc:
        raise ConfigError(
            f"cannot listen on {_bracket(host)}:{config.server.port} ({str(exc).split(';')[0]}): is another process "
            "using the port? Pick another with --port (or 0 for any free port)"
        ) from exc
    if port == 0:
        raise ConfigError(f"cannot listen on {_bracket(host)}:{config.server.port}: pick another host or port")
    try:
        await server.start()
    except Exception as exc:
        raise Unavailable(f"the gRPC server failed to start: {exc}") from exc
    for name in ("", *SERVICE_NAMES):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    budget_task = None
    if config.sessions.measure_budget and avatars.ids():
        slots.measuring = True  # one session at most until the budget is known
        measuring = _measure_budget(slots, avatars, backend, config)
        budget_task = asyncio.create_task(measuring, name="avaluma-measure-budget")
    log.info(
        "gRPC server listening",
        extra={"host": host, "port": port, "avatar_ids": avatars.ids(), "max_sessions": config.server.max_sessions},
    )
    return RunningServer(
        server=server,
        host=host,
        port=port,
        store=avatars,
        sessions=sessions,
        health=health_servicer,
        _render=render,
        _backend=backend,
        _grace_s=config.server.shutdown_grace_s,
        _budget_task=budget_task,
        slots=slots,
        keys=keys,
    )
