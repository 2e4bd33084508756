"""What a live session says about itself, in plain types: its state, why it ended, and the events its watchers get.

The gRPC edge (:mod:`avaluma.core.server.grpc.convert`) turns these into ``avaluma.v1`` messages; nothing in the live
layer knows the wire format.
"""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass, field

from avaluma.core.errors import AvalumaError
from avaluma.renderer.engine import PlaybackEvent


class SessionState(enum.Enum):
    STARTING = "starting"  #: joining the room
    ACTIVE = "active"  #: in the room, publishing video
    ENDING = "ending"  #: leaving the room
    ENDED = "ended"  #: gone; only seen in the last events of a watch


class EndReason(enum.Enum):
    """Why a session ended. The value is the word the ``session_ended`` plugin hook receives."""

    STOPPED = "stopped"  #: StopSession (or the HTTP stop-avatar) was called
    IDLE_TIMEOUT = "idle_timeout"  #: no audio arrived within the idle timeout
    ROOM_EMPTY = "room_empty"  #: everyone else left the room
    DISCONNECTED = "disconnected"  #: the connection to the room was lost
    ERROR = "error"  #: an unrecoverable error; an ``error`` event precedes it
    SERVER_SHUTDOWN = "server_shutdown"
    LIPSYNC_UNAVAILABLE = "lipsync_unavailable"  #: the lip-sync backend failed under its ``end`` policy


@dataclass(frozen=True, slots=True)
class SessionStarted:
    room_name: str
    avatar_participant_identity: str


@dataclass(frozen=True, slots=True)
class SessionError:
    """Something went wrong; the session goes on unless :class:`SessionEnded` follows. ``code`` is a domain error
    code name (``AvalumaError.code``, e.g. ``UNAVAILABLE``), turned into a status number at the edge."""

    code: str
    message: str

    @classmethod
    def of(cls, exc: AvalumaError) -> SessionError:
        return cls(exc.code, exc.message)


@dataclass(frozen=True, slots=True)
class SessionStats:
    fps: float  #: frames per second published over the last interval
    late_frames: int  #: frames published late since the session started
    queue_depth: int  #: speech frames rendered but not yet published


@dataclass(frozen=True, slots=True)
class SessionEnded:
    reason: EndReason
    detail: str


#: What happened; ``PlaybackEvent`` (the renderer's) carries ``playback_started`` / ``playback_finished``.
SessionEventBody = SessionStarted | PlaybackEvent | SessionError | SessionStats | SessionEnded


@dataclass(frozen=True, slots=True)
class SessionEvent:
    """One event of one session, as recorded for its watchers."""

    session_id: str
    body: SessionEventBody
    time_ns: int = field(default_factory=time.time_ns)  #: wall-clock time, nanoseconds since the Unix epoch
