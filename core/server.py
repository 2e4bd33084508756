"""The gRPC server: wires the services, interceptors, health and reflection, and shuts down in bounded time.

Interceptor order matters: authentication runs first (an unauthenticated call never reaches a servicer), then the
error mapping (the one place domain errors become status codes). Health checks and reflection need no key.

Shutdown: health goes NOT_SERVING first (load balancers stop sending new calls), open render streams and sessions
are told to end, then ``server.stop(grace)`` gives in-flight calls ``grace`` seconds before cancelling them.
"""

from __future__ import annotations

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

from avaluma.core.auth import ApiKeyInterceptor, ApiKeys
from avaluma.core.avatar_registry_service import AvatarRegistryServicer
from avaluma.core.avatar_service import AvatarServiceServicer
from avaluma.core.avatar_store import AvatarStore
from avaluma.core.config import Config
from avaluma.core.errors import ConfigError, Unavailable
from avaluma.core.grpc_errors import ErrorMappingInterceptor
from avaluma.core.render_service import RenderServicer, SharedBackend
from avaluma.core.sessions import RoomConnector, SessionRegistry, SessionSlots, connect_livekit
from avaluma.proto.v1 import (
    avatar_registry_pb2,
    avatar_registry_pb2_grpc,
    avatar_service_pb2,
    avatar_service_pb2_grpc,
    render_service_pb2,
    render_service_pb2_grpc,
)

if TYPE_CHECKING:
    from avaluma.core.plugins import ProviderRegistry
    from avaluma.renderer.lipsync.base import LipSyncBackend

log = logging.getLogger(__name__)

#: Fully qualified names of the API's services, as health and reflection report them.
SERVICE_NAMES: tuple[str, ...] = (
    render_service_pb2.DESCRIPTOR.services_by_name["RenderService"].full_name,
    avatar_service_pb2.DESCRIPTOR.services_by_name["AvatarService"].full_name,
    avatar_registry_pb2.DESCRIPTOR.services_by_name["AvatarRegistry"].full_name,
)


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
    _stopped: bool = field(default=False)

    @property
    def address(self) -> str:
        """``host:port`` to dial (IPv6 hosts in brackets)."""
        return f"{_bracket(self.host)}:{self.port}"

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
        backend: LipSyncBackend = providers.create("lipsync_backend", config.lipsync)
        return backend

    return build


async def start_server(
    config: Config,
    *,
    registry: ProviderRegistry | None = None,
    store: AvatarStore | None = None,
    lipsync_backend: Callable[[], LipSyncBackend] | None = None,
    room_connector: RoomConnector = connect_livekit,
) -> RunningServer:
    """Start serving the v1 API on ``config.server.host:port`` and return once it accepts calls.

    ``registry`` (the plugin provider registry) builds the lip-sync backend named by ``config.lipsync``;
    ``lipsync_backend`` (a factory) overrides it, e.g. for tests. ``store`` defaults to the avatars in
    ``config.avatars_dir``. ``room_connector`` joins LiveKit rooms (tests substitute a fake).
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
    sessions = SessionRegistry(
        store=avatars,
        slots=slots,
        defaults=config.render,
        default_avatar=config.default_avatar,
        connector=room_connector,
    )
    render = RenderServicer(
        store=avatars, backend=backend, slots=slots, defaults=config.render, default_avatar=config.default_avatar
    )

    limit = config.server.max_message_bytes
    options: list[tuple[str, Any]] = [
        ("grpc.max_receive_message_length", limit),
        ("grpc.max_send_message_length", limit),
        # A restarted server must not share its port with a still-running one: fail loudly instead.
        ("grpc.so_reuseport", 0),
    ]
    server = grpc.aio.server(interceptors=[ApiKeyInterceptor(keys), ErrorMappingInterceptor()], options=options)
    render_service_pb2_grpc.add_RenderServiceServicer_to_server(render, server)
    avatar_service_pb2_grpc.add_AvatarServiceServicer_to_server(AvatarServiceServicer(sessions), server)
    avatar_registry_pb2_grpc.add_AvatarRegistryServicer_to_server(AvatarRegistryServicer(avatars), server)

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
    )
