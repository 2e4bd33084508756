"""What a live session says about itself, in plain types: its state, why it ended, the events its watchers get, and
the events of its player (:class:`PlayoutEvent`, the one stream :meth:`Playout.events` yields).

The gRPC edge (:mod:`avaluma.core.server.grpc.convert`) turns these into ``avaluma.v1`` messages; nothing in the live
layer knows the wire format.
"""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass, field

from avaluma.core.errors import AvalumaError
from avaluma.renderer.engine import PlaybackEvent
from avaluma.renderer.lipsync.base import LipSyncFault


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
class EmotionChanged:
    emotion: str  #: the emotion shown from now on


@dataclass(frozen=True, slots=True)
class SessionEnded:
    reason: EndReason
    detail: str


#: What happened; ``PlaybackEvent`` (the renderer's) carries ``playback_started`` / ``playback_finished``.
SessionEventBody = SessionStarted | PlaybackEvent | SessionError | SessionStats | EmotionChanged | SessionEnded


@dataclass(frozen=True, slots=True)
class SessionEvent:
    """One event of one session, as recorded for its watchers."""

    session_id: str
    body: SessionEventBody
    time_ns: int = field(default_factory=time.time_ns)  #: wall-clock time, nanoseconds since the Unix epoch


# --- the player's events ----------------------------------------------------------------------------------------


@dataclass(eq=False, slots=True)
class Segment:
    """One segment (utterance) of a player: created once, when its first audio arrives, and carried by reference from
    the queued audio through rendering to its playback events, so it is never renumbered. ``id`` counts the player's
    segments from 0 (the ``segment`` of the wire's playback messages); ``sender`` is who sent it (LiveKit playback
    replies go there; empty where nobody is to be answered)."""

    id: int
    sender: str = ""


@dataclass(frozen=True, slots=True)
class Cleared:
    """A clear interrupted playback. ``finished`` holds the ``finished{interrupted}`` events it answered with (what
    :meth:`Playout.clear` returned to whoever cleared; they are not repeated as separate events)."""

    finished: tuple[PlaybackEvent, ...]


@dataclass(frozen=True, slots=True)
class LipSyncFaulted:
    """The lip-sync backend failed (reported from a render thread, ahead of the render step's own failure)."""

    fault: LipSyncFault


@dataclass(frozen=True, slots=True)
class FellBehind:
    """A paced player fell ``lag_s`` behind its clock (a starved CPU) and restarted the clock."""

    lag_s: float


@dataclass(frozen=True, slots=True)
class PlayoutFailed:
    """Rendering failed and the player stopped (:meth:`Playout.run` raises ``error`` too)."""

    error: Exception


#: What a player says, in order: segments started and finished (``PlaybackEvent``, with the segment's id and sender,
#: just before its first frame and just after its last one is published), clears, lip-sync faults, lag, failure.
PlayoutEvent = PlaybackEvent | Cleared | LipSyncFaulted | FellBehind | PlayoutFailed
