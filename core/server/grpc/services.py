"""The ``avaluma.v1`` services on a ``grpc.aio`` server: their names (for health and reflection) and registration."""

from __future__ import annotations

import grpc.aio

from avaluma.core.live.avatar_store import AvatarStore
from avaluma.core.live.sessions import SessionRegistry
from avaluma.core.server.grpc.avatar_registry_service import AvatarRegistryServicer
from avaluma.core.server.grpc.avatar_service import AvatarServiceServicer
from avaluma.core.server.grpc.render_service import RenderServicer
from avaluma.proto.v1 import (
    avatar_registry_pb2,
    avatar_registry_pb2_grpc,
    avatar_service_pb2,
    avatar_service_pb2_grpc,
    render_service_pb2,
    render_service_pb2_grpc,
)

#: Fully qualified names of the API's services, as health and reflection report them.
SERVICE_NAMES: tuple[str, ...] = (
    render_service_pb2.DESCRIPTOR.services_by_name["RenderService"].full_name,
    avatar_service_pb2.DESCRIPTOR.services_by_name["AvatarService"].full_name,
    avatar_registry_pb2.DESCRIPTOR.services_by_name["AvatarRegistry"].full_name,
)


def add_services(
    server: grpc.aio.Server, *, render: RenderServicer, sessions: SessionRegistry, avatars: AvatarStore
) -> None:
    render_service_pb2_grpc.add_RenderServiceServicer_to_server(render, server)
    avatar_service_pb2_grpc.add_AvatarServiceServicer_to_server(AvatarServiceServicer(sessions), server)
    avatar_registry_pb2_grpc.add_AvatarRegistryServicer_to_server(AvatarRegistryServicer(avatars), server)
