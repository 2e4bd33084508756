"""A recording stand-in for a connected LiveKit room (no LiveKit server runs here), shared by the tests that start
sessions on a real server: the room connector, the parts of ``rtc.Room`` a session uses, and agent tokens.

Importable from any test (``tests/`` is on ``sys.path`` through its conftest): ``from recording_room import ...``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from livekit.plugins.avaluma import mint_token

from avaluma.core.live.livekit_session import VIDEO_TRACK_NAME
from avaluma.core.live.sessions import LiveKitRoom

LK_KEY, LK_SECRET = "devkey", "secret-secret-secret-secret-secret"


def token(identity: str) -> str:
    return mint_token(
        api_key=LK_KEY, api_secret=LK_SECRET, room="room-1", identity=identity, on_behalf_of="agent-1", ttl_s=600
    )


class Participant:
    """The parts of ``rtc.LocalParticipant`` a session uses; records the options each track is published with."""

    def __init__(self) -> None:
        self.published: dict[str, Any] = {}

    async def publish_track(self, track: Any, options: Any) -> None:
        self.published[track.name] = options

    def register_rpc_method(self, _method: str, _handler: Any) -> None:
        pass

    async def perform_rpc(self, **_kwargs: Any) -> str:
        return ""


class Room:
    """The parts of a connected ``rtc.Room`` a session uses."""

    def __init__(self) -> None:
        self.local_participant = Participant()
        self.remote_participants: dict[str, Any] = {}

    def register_byte_stream_handler(self, _topic: str, _handler: Any) -> None:
        pass

    def on(self, _event: str, _handler: Any) -> None:
        pass

    def off(self, _event: str, _handler: Any) -> None:
        pass

    async def disconnect(self) -> None:
        pass


class Rooms:
    """The room connector: every join gets a recording room, played in by the server's own LiveKit runtime."""

    def __init__(self) -> None:
        self.rooms: list[Room] = []

    async def __call__(self, url: str, token: str, *, on_disconnected: Callable[[str], None]) -> LiveKitRoom:
        self.rooms.append(Room())
        return LiveKitRoom(self.rooms[-1])

    def video(self, index: int = -1) -> Any:
        return self.rooms[index].local_participant.published[VIDEO_TRACK_NAME]
