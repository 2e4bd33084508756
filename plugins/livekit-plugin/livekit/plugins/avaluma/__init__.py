"""Avaluma talking avatars for LiveKit Agents.

``avaluma.AvatarSession(avatar_id=...)`` then ``await avatar.start(session, room=ctx.room)``: the self-hosted
``avaluma serve`` (gRPC) or any server speaking the hosted-service HTTP API renders a lip-synced avatar of the agent's
speech and publishes it into the room. See README.md of the avaluma-livekit-plugin distribution.
"""

from livekit.agents import Plugin

from .api import (
    EMOTIONS,
    AvalumaException,
    AvatarServiceClient,
    GrpcClient,
    HttpClient,
    RetryPolicy,
    ServerAddress,
    ServerPool,
    StartRequest,
    StartResponse,
    start_with_retries,
)
from .avatar import AvatarSession, dev_key_path
from .log import logger
from .tokens import mint_avatar_token, mint_token
from .version import __version__

__all__ = [
    "EMOTIONS",
    "AvalumaException",
    "AvatarServiceClient",
    "AvatarSession",
    "GrpcClient",
    "HttpClient",
    "RetryPolicy",
    "ServerAddress",
    "ServerPool",
    "StartRequest",
    "StartResponse",
    "__version__",
    "dev_key_path",
    "mint_avatar_token",
    "mint_token",
    "start_with_retries",
]


class AvalumaPlugin(Plugin):
    def __init__(self) -> None:
        super().__init__(__name__, __version__, __package__, logger)


Plugin.register_plugin(AvalumaPlugin())
