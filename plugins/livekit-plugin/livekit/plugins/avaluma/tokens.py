"""LiveKit access tokens for the participants around an Avaluma avatar: the one place that builds ``AccessToken``.

::

    mint_token(api_key=k, api_secret=s, room="demo", identity="avatar-1", on_behalf_of="agent-1")  # the avatar
    mint_token(api_key=k, api_secret=s, room="demo", identity="sender-1", publish=False, subscribe=False)  # a sender
"""

from __future__ import annotations

from datetime import timedelta
from typing import Literal

from livekit import api
from livekit.agents.types import ATTRIBUTE_PUBLISH_ON_BEHALF

#: The participant kinds a token can set (``AccessToken.with_kind``).
ParticipantKind = Literal["standard", "egress", "ingress", "sip", "agent"]


def mint_token(
    *,
    api_key: str,
    api_secret: str,
    room: str,
    identity: str,
    name: str | None = None,
    publish: bool = True,
    subscribe: bool = True,
    publish_data: bool = True,
    on_behalf_of: str | None = None,
    kind: ParticipantKind | None = None,
    ttl_s: int = 3600,
) -> str:
    """A signed token that joins ``room`` as ``identity`` (shown as ``name``, default the identity).

    ``publish``/``subscribe`` grant media tracks and ``publish_data`` byte streams and RPC. ``on_behalf_of`` names the
    participant whose media this one publishes (an avatar publishes for its agent); ``kind`` sets the participant kind
    (``"agent"``, ...). The token expires after ``ttl_s`` seconds.
    """
    grants = api.VideoGrants(
        room_join=True, room=room, can_publish=publish, can_subscribe=subscribe, can_publish_data=publish_data
    )
    token = api.AccessToken(api_key, api_secret).with_identity(identity).with_name(name or identity).with_grants(grants)
    if kind is not None:
        token = token.with_kind(kind)
    if on_behalf_of is not None:
        token = token.with_attributes({ATTRIBUTE_PUBLISH_ON_BEHALF: on_behalf_of})
    return token.with_ttl(timedelta(seconds=ttl_s)).to_jwt()


def mint_avatar_token(
    *,
    api_key: str,
    api_secret: str,
    room: str,
    identity: str,
    agent_identity: str,
    name: str | None = None,
    ttl_s: int = 6 * 3600,
) -> str:
    """The avatar participant's token: joins ``room`` as ``identity``, publishes on behalf of ``agent_identity``."""
    return mint_token(
        api_key=api_key,
        api_secret=api_secret,
        room=room,
        identity=identity,
        name=name,
        on_behalf_of=agent_identity,
        kind="agent",
        ttl_s=ttl_s,
    )
