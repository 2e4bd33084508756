"""Avatar sessions: the registry behind ``AvatarService`` and the capacity shared with render streams.

A session is the avatar's presence in one LiveKit room. This module validates a start request, takes a slot of the
server's capacity, joins the room (:class:`RoomConnector`), starts what plays in it (:class:`RuntimeFactory`, see
:mod:`avaluma.core.live.livekit_session`) and keeps the session findable (get / list / stop / watch) until it ends: on
``StopSession``, when the runtime asks (idle timeout, room empty), when the connection is lost, or at shutdown.
Every end leaves the room, frees the slot, tells the watchers and calls the ``session_ended`` plugin hook.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import builtins
import contextlib
import json
import logging
import math
import secrets
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Final, Protocol
from urllib.parse import urlsplit

from avaluma.core import telemetry
from avaluma.core.avatar_protocol import PUBLISH_ON_BEHALF_ATTRIBUTE
from avaluma.core.errors import AlreadyExists, InvalidArgument, NotFound, ResourceExhausted, Unavailable
from avaluma.core.live.avatar_store import AvatarStore
from avaluma.core.live.events import (
    EmotionChanged,
    EndReason,
    SessionEnded,
    SessionEvent,
    SessionEventBody,
    SessionStarted,
    SessionState,
)
from avaluma.core.live.lateness import LatenessWatch
from avaluma.core.media import RenderOptions, check_emotion

if TYPE_CHECKING:
    from avaluma.core.live.admission import SessionBudget
    from avaluma.renderer.avatar import Avatar

log = logging.getLogger(__name__)

LIVEKIT_URL_SCHEMES: Final = ("ws", "wss", "http", "https")
#: Events kept per session for watchers that subscribe late.
EVENT_HISTORY: Final = 64
#: Events buffered per watcher; a watcher that falls further behind loses the oldest ones, never stalls the session.
WATCHER_BUFFER: Final = 256
DEFAULT_IDLE_TIMEOUT_S: Final = 300
DEFAULT_CONNECT_TIMEOUT_S: Final = 15.0
MAX_TOKEN_BYTES: Final = 16 * 1024


# --- capacity ---------------------------------------------------------------------------------------------------


class Slot:
    """One unit of the server's capacity; :meth:`release` is idempotent."""

    def __init__(self, owner: SessionSlots, weight: float = 1.0) -> None:
        self._owner: SessionSlots | None = owner
        #: What admission counts this slot as, in measured sessions (:meth:`SessionSlots.weight`).
        self.weight = weight

    def frame(self, late: bool) -> None:
        """The slot's session published a frame, ``late`` or on time (counted by :attr:`SessionSlots.lateness`
        while the slot is held)."""
        if self._owner is not None:
            self._owner.lateness.frame(late, key=self)

    def release(self) -> None:
        owner, self._owner = self._owner, None
        if owner is not None:
            owner.lateness.forget(self)  # an ended session's late frames say nothing about the ones still running
            owner._used -= 1
            owner._load = owner._load - self.weight if owner._used else 0.0  # no float residue once empty


class SessionSlots:
    """Concurrent sessions *and* render streams share one limit (``server.max_sessions``): both cost a CPU share.

    A measured :class:`~avaluma.core.live.admission.SessionBudget` (:meth:`set_budget`) can lower the limit to what the
    machine renders in real time; it never raises it above ``server.max_sessions``. With a budget, each slot counts
    as its :meth:`weight` (measured on the 2-core dev machine, a session publishing 256x320 frames of a 512x640
    avatar costs about 0.85 of one publishing them at 512x640, one at 15 fps about 0.67 of one at 25): the weights
    taken may not exceed the budget's capacity. ``server.max_sessions``
    always counts sessions. Once :meth:`drain` is called (shutdown) no slot is handed out any more. While
    :attr:`measuring` (the server is measuring its budget, a few seconds after start-up) one slot at most is handed out:
    until the budget is known, a burst of starts at boot would be admitted up to ``server.max_sessions``.

    The budget is an estimate that assumes every core is the server's. :attr:`lateness` checks it at run time: while
    the running sessions miss their frame deadlines (other processes taking the CPU), nothing new is admitted.
    """

    def __init__(self, limit: int, lateness: LatenessWatch | None = None) -> None:
        self.limit = limit
        #: Frames of the running sessions, on time or late (reported through their :class:`Slot`).
        self.lateness = lateness or LatenessWatch()
        self._used = 0
        #: Sum of the weights of the slots taken (equal to ``used`` while every slot weighs 1).
        self._load = 0.0
        self.budget: SessionBudget | None = None
        #: Set by :meth:`drain`: the server is shutting down and admits nothing new.
        self.draining = False
        #: The server is measuring its budget: one slot at most until it is known.
        self.measuring = False
        telemetry.track_capacity(self)

    @property
    def used(self) -> int:
        return self._used

    @property
    def effective_limit(self) -> int:
        return self.limit if self.budget is None else min(self.limit, self.budget.max_sessions)

    @property
    def load(self) -> float:
        """The slots taken, each counted as its weight (measured sessions)."""
        return self._load

    @property
    def behind(self) -> bool:
        """The running sessions are missing their frame deadlines (:class:`LatenessWatch`): nothing new fits."""
        return self._used > 0 and self.lateness.behind()

    @property
    def free(self) -> int:
        """Sessions or render streams like the measured one this server would still admit now (0 while draining, and
        while the running ones are :attr:`behind`)."""
        if self.draining or self.behind:
            return 0
        free = self.limit - self._used
        if self.budget is not None:
            fits = math.floor(self.budget.capacity - self._load + 1e-9) if self._used else self.budget.max_sessions
            free = min(free, fits)
        if self.measuring:
            free = min(free, 1 - self._used)
        return max(free, 0)

    def weight(self, *, fps: int, pixels: int) -> float:
        """What a session publishing ``pixels``-pixel frames at ``fps`` counts as (1.0 without a measured budget)."""
        return 1.0 if self.budget is None else self.budget.weight_of(fps=fps, pixels=pixels)

    def set_budget(self, budget: SessionBudget | None) -> None:
        self.budget = budget

    def drain(self) -> None:
        """Admit nothing new from now on (what is running keeps its slot)."""
        self.draining = True

    def take(self, what: str, weight: float = 1.0) -> Slot:
        """Take a slot that counts as ``weight`` (:meth:`weight`) or raise :class:`ResourceExhausted` (full) or
        :class:`Unavailable` (draining). The first slot is always granted, however heavy. Event-loop only: no
        locking needed."""
        if self.draining:
            raise Unavailable(
                f"cannot start a {what}: this server is shutting down and finishing its running sessions; "
                "start it on another server instance"
            )
        if self._used >= self.limit:
            raise ResourceExhausted(
                f"cannot start a {what}: the server is at its limit of {self.limit} concurrent sessions and render "
                "streams; retry later, or raise server.max_sessions (AVALUMA_SERVER__MAX_SESSIONS)"
            )
        if self.behind:
            raise ResourceExhausted(
                f"cannot start a {what}: the server is behind on its {self._used} sessions and render streams "
                f"({self.lateness.describe()}; other work on this machine may be taking the CPU): start the {what} "
                "on another server instance, or retry once it has caught up"
            )
        if self.measuring and self._used:
            raise ResourceExhausted(
                f"cannot start a {what}: the server is still measuring what a session costs on this machine (a few "
                "seconds after start-up) and runs one session until then: retry in a few seconds, or start it on "
                "another server instance"
            )
        budget = self.budget
        if budget is not None and self._used and self._load + weight > budget.capacity + 1e-9:
            cost = "" if weight == 1.0 else f"it counts as {weight:.2f} sessions of that kind and "
            raise ResourceExhausted(
                f"cannot start a {what}: the server renders {budget.max_sessions} concurrent sessions and render "
                f"streams in real time ({budget.describe()}); {cost}{self._load:.2f} are taken; retry later, start "
                "another server instance, or use a smaller avatar, a smaller frame (render.width/height) or a "
                "lower fps"
            )
        self._used += 1
        self._load += weight
        return Slot(self, weight)

    @contextlib.contextmanager
    def acquire(self, what: str, weight: float = 1.0) -> Iterator[Slot]:
        slot = self.take(what, weight)
        try:
            yield slot
        finally:
            slot.release()


# --- request validation (pure) ----------------------------------------------------------------------------------

#: Video codecs a session may publish with (LiveKit's names, lower case).
VIDEO_CODECS: Final = ("vp8", "h264")
#: Bounds of a session's full-layer video bitrate, bits per second (0: LiveKit's choice for the frame size).
MIN_VIDEO_BITRATE: Final = 50_000
MAX_VIDEO_BITRATE: Final = 50_000_000


@dataclass(frozen=True, slots=True)
class VideoPublishing:
    """How ``avatar_video`` is published. The defaults are LiveKit's own: VP8, the bitrate its presets pick for the
    frame size (``max_bitrate`` 0), simulcast on; :mod:`.admission` counts the encoder of these. Validated on
    construction (:class:`InvalidArgument` naming the ``publish.`` field)."""

    codec: str = "vp8"  #: "vp8" or "h264"
    max_bitrate: int = 0  #: bits per second of the full layer; 0 leaves it to LiveKit
    simulcast: bool = True

    def __post_init__(self) -> None:
        if self.codec not in VIDEO_CODECS:
            raise InvalidArgument(
                f"publish.video_codec: video codec must be one of {', '.join(VIDEO_CODECS)}, got {self.codec!r}"
            )
        if self.max_bitrate != 0 and not MIN_VIDEO_BITRATE <= self.max_bitrate <= MAX_VIDEO_BITRATE:
            raise InvalidArgument(
                f"publish.video_max_bitrate {self.max_bitrate} is out of range: use {MIN_VIDEO_BITRATE}.."
                f"{MAX_VIDEO_BITRATE} bits per second, or 0 for LiveKit's choice for the frame size"
            )

    def resolve(self, *, codec: str = "", max_bitrate: int = 0, simulcast: bool | None = None) -> VideoPublishing:
        """These defaults with a request's choices on top (``""``, 0 and ``None``: keep the default)."""
        return VideoPublishing(
            codec or self.codec,
            max_bitrate or self.max_bitrate,
            self.simulcast if simulcast is None else simulcast,
        )

    def track_options(self, *, fps: int) -> Any:
        """The ``rtc.TrackPublishOptions`` of the camera track that publishes frames at ``fps``."""
        from livekit import rtc

        codecs = {"vp8": rtc.VideoCodec.VP8, "h264": rtc.VideoCodec.H264}
        options = rtc.TrackPublishOptions(
            source=rtc.TrackSource.SOURCE_CAMERA, video_codec=codecs[self.codec], simulcast=self.simulcast
        )
        if self.max_bitrate > 0:
            options.video_encoding.max_bitrate = self.max_bitrate
            options.video_encoding.max_framerate = float(fps)
        return options


#: Smallest published frame side, and how much larger than the avatar's own frame a session may publish.
MIN_FRAME_SIDE: Final = 16
MAX_UPSCALE: Final = 2
#: How far a requested frame's aspect ratio may be from the avatar's (relative), so faces are not stretched.
ASPECT_TOLERANCE: Final = 0.02


def output_size(render: RenderOptions, avatar: Avatar, *, field: str = "render") -> tuple[int, int]:
    """The frame size a session publishes: ``render.width`` x ``render.height`` (the avatar's frames scaled), or the
    avatar's own size when they are 0. :class:`InvalidArgument` for a size that would stretch the face, is smaller
    than :data:`MIN_FRAME_SIDE` or more than :data:`MAX_UPSCALE` times the avatar's size (naming ``field``)."""
    native = (avatar.width, avatar.height)
    if not render.width:
        return native
    size = (render.width, render.height)
    example = f"{avatar.width // 2 // 2 * 2}x{avatar.height // 2 // 2 * 2}"
    if abs(render.width * avatar.height / (render.height * avatar.width) - 1) > ASPECT_TOLERANCE:
        raise InvalidArgument(
            f"{field}.width/height {size[0]}x{size[1]} would stretch avatar {avatar.id!r}, whose frames are "
            f"{native[0]}x{native[1]}: keep its aspect ratio (e.g. {example}), or leave both 0 for its own size"
        )
    if min(size) < MIN_FRAME_SIDE or size[0] > MAX_UPSCALE * native[0] or size[1] > MAX_UPSCALE * native[1]:
        raise InvalidArgument(
            f"{field}.width/height {size[0]}x{size[1]} is out of range for avatar {avatar.id!r} ({native[0]}x"
            f"{native[1]}): use {MIN_FRAME_SIDE} px per side up to {MAX_UPSCALE}x its size (e.g. {example})"
        )
    return size


@dataclass(frozen=True, slots=True)
class TokenInfo:
    """What the server reads from a LiveKit token without verifying it (LiveKit verifies it on join)."""

    identity: str
    room: str
    publish_on_behalf: str
    expires_at: int | None


def check_livekit_url(url: str) -> str:
    """Return ``url`` if it is a LiveKit server URL we can dial, else raise :class:`InvalidArgument`."""
    if not url:
        raise InvalidArgument("livekit_url is empty: set it to your LiveKit server, e.g. wss://example.livekit.cloud")
    try:
        parts = urlsplit(url)
        hostname = parts.hostname
    except ValueError:  # e.g. an unclosed IPv6 bracket: "http://[::1"
        hostname = None
    if hostname is None or parts.scheme not in LIVEKIT_URL_SCHEMES:
        raise InvalidArgument(
            "livekit_url must be a ws://, wss://, http:// or https:// URL with a host, "
            "e.g. wss://example.livekit.cloud or ws://localhost:7880"
        )
    return url


def _b64_json(segment: str) -> Any:
    padded = segment + "=" * (-len(segment) % 4)
    return json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))


def parse_livekit_token(token: str, *, now: float | None = None) -> TokenInfo:
    """Check that ``token`` looks like a LiveKit JWT and read its identity, room and agent attribute.

    The signature is not checked here (the avatar server need not hold the API secret); the LiveKit server does that
    when the avatar joins. This catches the common mistakes early with a clear message.
    """
    hint = "pass a LiveKit access token (a JWT) minted for the avatar participant, e.g. with livekit.api.AccessToken"
    if not token:
        raise InvalidArgument(f"livekit_token is empty: {hint}")
    if len(token) > MAX_TOKEN_BYTES:
        raise InvalidArgument(f"livekit_token is {len(token)} characters, more than a LiveKit token has: {hint}")
    parts = token.split(".")
    if len(parts) != 3:
        raise InvalidArgument(f"livekit_token is not a JWT (expected three dot-separated parts): {hint}")
    try:
        header, claims = _b64_json(parts[0]), _b64_json(parts[1])
    except (ValueError, binascii.Error, UnicodeError, RecursionError):  # RecursionError: JSON nested too deep
        raise InvalidArgument(f"livekit_token is not a JWT (its parts are not base64url JSON): {hint}") from None
    if not isinstance(header, dict) or "alg" not in header or not isinstance(claims, dict):
        raise InvalidArgument(f"livekit_token is not a JWT (no header alg or claims object): {hint}")
    identity = claims.get("sub")
    if not isinstance(identity, str) or not identity:
        raise InvalidArgument("livekit_token has no identity (sub claim): mint it with an identity for the avatar")
    video = claims.get("video")
    room = video.get("room", "") if isinstance(video, dict) else ""
    attributes = claims.get("attributes")
    on_behalf = attributes.get(PUBLISH_ON_BEHALF_ATTRIBUTE, "") if isinstance(attributes, dict) else ""
    exp = claims.get("exp")
    expires_at = int(exp) if isinstance(exp, int | float) and math.isfinite(exp) else None
    if expires_at is not None and expires_at <= (time.time() if now is None else now):
        raise InvalidArgument("livekit_token has expired: mint a new token for the avatar")
    return TokenInfo(
        identity=identity,
        room=room if isinstance(room, str) else "",
        publish_on_behalf=on_behalf if isinstance(on_behalf, str) else "",
        expires_at=expires_at,
    )


# --- rooms ------------------------------------------------------------------------------------------------------


class RoomHandle(Protocol):
    """A joined room, as far as the session registry needs it."""

    async def disconnect(self) -> None: ...


class RoomConnector(Protocol):
    """Joins a room. ``on_disconnected`` is called (on the event loop) when the connection is lost."""

    async def __call__(self, url: str, token: str, *, on_disconnected: Callable[[str], None]) -> RoomHandle: ...


class SessionRuntime(Protocol):
    """What plays in a joined room (receiver, playout, media); the registry changes its emotion and closes it."""

    def set_emotion(self, emotion: str) -> None:
        """Show ``emotion`` (already validated) from this point of the session's audio on."""
        ...

    async def aclose(self) -> None: ...


class RuntimeFactory(Protocol):
    """Starts a session's runtime in its joined room. ``end(reason, detail)`` ends the session from inside.

    Returns ``None`` when there is nothing to play in that kind of room (e.g. a test's scripted room).
    """

    async def __call__(
        self, session: Session, room: RoomHandle, avatar: Avatar, *, end: Callable[[EndReason, str], None]
    ) -> SessionRuntime | None: ...


class LiveKitRoom:
    """A ``livekit.rtc.Room`` joined with the avatar's token."""

    def __init__(self, room: Any) -> None:
        self.room = room

    async def disconnect(self) -> None:
        await self.room.disconnect()


async def connect_livekit(url: str, token: str, *, on_disconnected: Callable[[str], None]) -> RoomHandle:
    """The real :class:`RoomConnector`. Raises :class:`Unavailable` naming the URL when the room cannot be joined."""
    from livekit import rtc  # server extra; imported only when a session starts

    room = rtc.Room()
    room.on("disconnected", lambda reason: on_disconnected(str(reason)))
    try:
        await asyncio.wait_for(room.connect(url, token), DEFAULT_CONNECT_TIMEOUT_S)
    except (rtc.ConnectError, TimeoutError, OSError) as exc:
        with contextlib.suppress(Exception):
            await room.disconnect()
        reason = "timed out" if isinstance(exc, TimeoutError) else str(exc)
        raise Unavailable(
            f"could not join the LiveKit room at {url}: {reason}. Check that the LiveKit server is running and "
            "reachable from the avatar server at that URL, and that the token is valid for it"
        ) from exc
    return LiveKitRoom(room)


# --- sessions ---------------------------------------------------------------------------------------------------


@dataclass(eq=False)
class Session:
    """One avatar in one room. Events go to every watcher; a bounded history serves late subscribers."""

    id: str
    avatar_id: str
    livekit_url: str
    room_name: str
    identity: str
    agent_identity: str
    accepted_senders: tuple[str, ...]
    idle_timeout_s: int
    render: RenderOptions
    #: The emotion shown now (one of ``core.media.EMOTIONS``): the start request's, then the last one set.
    emotion: str = "neutral"
    #: How its video is published (the server's ``sessions.publish`` with the request's choices on top).
    video: VideoPublishing = field(default_factory=VideoPublishing)
    #: Wall-clock start, nanoseconds since the Unix epoch.
    started_at_ns: int = field(default_factory=time.time_ns)
    state: SessionState = SessionState.STARTING
    room: RoomHandle | None = None
    slot: Slot | None = None
    runtime: SessionRuntime | None = None
    #: Trace context of the ``StartSession`` call (``None`` while tracing is off): the session's later spans
    #: (segments) are parented on it, since they run long after that call returned.
    trace_context: object | None = None
    _history: deque[SessionEvent] = field(default_factory=lambda: deque(maxlen=EVENT_HISTORY))
    _watchers: set[asyncio.Queue[SessionEvent | None]] = field(default_factory=set)

    @property
    def ended(self) -> bool:
        return self.state == SessionState.ENDED

    def publish(self, body: SessionEventBody) -> None:
        """Record an event and hand it to every watcher (never blocks: slow watchers lose their oldest events)."""
        event = SessionEvent(self.id, body)
        self._history.append(event)
        for queue in self._watchers:
            _put_dropping_oldest(queue, event)

    def show_emotion(self, emotion: str) -> None:
        """Record the emotion shown from now on; watchers hear of a change (:class:`EmotionChanged`)."""
        if emotion != self.emotion:
            self.emotion = emotion
            self.publish(EmotionChanged(emotion))

    async def watch(self) -> AsyncIterator[SessionEvent]:
        """The history, then live events, until the session ends (its ``ended`` event is the last one)."""
        queue: asyncio.Queue[SessionEvent | None] = asyncio.Queue(WATCHER_BUFFER)
        for event in self._history:
            _put_dropping_oldest(queue, event)
        if self.ended:
            _put_dropping_oldest(queue, None)
        self._watchers.add(queue)
        try:
            while True:
                item = await queue.get()
                if item is None:
                    return
                yield item
        finally:
            self._watchers.discard(queue)

    def _close_watchers(self) -> None:
        for queue in self._watchers:
            _put_dropping_oldest(queue, None)


def _put_dropping_oldest(queue: asyncio.Queue[SessionEvent | None], item: SessionEvent | None) -> None:
    if queue.full():
        queue.get_nowait()
    queue.put_nowait(item)


@dataclass(frozen=True, slots=True)
class StartRequest:
    """A start request from either front door, in plain types; ``render`` is ``None`` for the server's defaults
    (a front door that lets clients override them resolves them with :attr:`SessionRegistry.render_defaults`)."""

    livekit_url: str
    livekit_token: str
    avatar_id: str
    render: RenderOptions | None = None
    accepted_senders: tuple[str, ...] = ()
    agent_identity: str | None = None
    idle_timeout_s: int = 0
    #: Empty: the server's default (``render.emotion``).
    emotion: str = ""
    #: Publishing choices of the request, applied over the server's (``""`` / 0 / ``None``: the server's).
    video_codec: str = ""
    video_max_bitrate: int = 0
    simulcast: bool | None = None


class SessionRegistry:
    """Live sessions by id. Lives on the server's event loop (not thread-safe)."""

    def __init__(
        self,
        *,
        store: AvatarStore,
        slots: SessionSlots,
        defaults: RenderOptions,
        default_avatar: str,
        connector: RoomConnector = connect_livekit,
        runtime: RuntimeFactory | None = None,
        hooks: Any = None,
        idle_timeout_s: int = DEFAULT_IDLE_TIMEOUT_S,
        accepted_senders: tuple[str, ...] = (),
        default_emotion: str = "neutral",
        publish_defaults: VideoPublishing | None = None,
    ) -> None:
        """``runtime`` starts what plays in a joined room (none: sessions only hold the room); ``hooks`` is a pluggy
        hook relay (``pm.hook``) whose ``session_started`` / ``session_ended`` are called. ``default_emotion``: the
        emotion of sessions whose request names none; ``publish_defaults``: how sessions publish their video unless
        the request says otherwise (``sessions.publish``)."""
        self.publish_defaults = publish_defaults or VideoPublishing()
        self._default_avatar = default_avatar
        self._default_emotion = check_emotion(default_emotion, field="render.emotion")
        self._store = store
        self._slots = slots
        #: The render options of a session whose request leaves them at 0 (the server's ``render`` config).
        self.render_defaults = defaults
        self._connector = connector
        self._runtime = runtime
        self._hooks = hooks
        self._idle_timeout_s = idle_timeout_s
        self._accepted_senders = accepted_senders
        self._sessions: dict[str, Session] = {}
        #: Set whenever the last session is removed (what :meth:`drain` waits for).
        self._emptied = asyncio.Event()
        #: Strong references to clean-up tasks started from LiveKit callbacks, so they are not garbage-collected.
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self, request: StartRequest) -> Session:
        url = check_livekit_url(request.livekit_url)
        token = parse_livekit_token(request.livekit_token)
        emotion = check_emotion(request.emotion or self._default_emotion)
        publish = self.publish_defaults.resolve(
            codec=request.video_codec, max_bitrate=request.video_max_bitrate, simulcast=request.simulcast
        )
        avatar = self._store.get(request.avatar_id or self._default_avatar)
        render = request.render or self.render_defaults
        for other in self._sessions.values():
            if (other.livekit_url, other.room_name, other.identity) == (url, token.room, token.identity):
                raise AlreadyExists(
                    f"an avatar with this identity is already in this room (session {other.id}): stop that session "
                    "first, or mint the new token with another identity"
                )
        width, height = output_size(render, avatar)
        slot = self._slots.take("session", self._slots.weight(fps=render.fps, pixels=width * height))
        session = Session(
            id="ses_" + secrets.token_hex(8),
            avatar_id=avatar.id,
            livekit_url=url,
            room_name=token.room,
            identity=token.identity,
            agent_identity=request.agent_identity or token.publish_on_behalf,
            accepted_senders=tuple(dict.fromkeys((*request.accepted_senders, *self._accepted_senders))),
            idle_timeout_s=request.idle_timeout_s or self._idle_timeout_s,
            render=replace(render, width=width, height=height),  # the size it publishes, also when 0 asked for native
            emotion=emotion,
            video=publish,
            slot=slot,
            trace_context=telemetry.current_context(),
        )
        self._sessions[session.id] = session
        try:
            attrs = {telemetry.ATTR_SESSION_ID: session.id, telemetry.ATTR_AVATAR_ID: avatar.id}
            with telemetry.span(telemetry.SPAN_SESSION_START, attrs, context=session.trace_context):
                session.room = await self._connector(
                    url, request.livekit_token, on_disconnected=lambda reason: self._on_disconnected(session, reason)
                )
                if self._runtime is not None:
                    session.runtime = await self._runtime(
                        session,
                        session.room,
                        avatar,
                        end=lambda reason, detail: self._end_soon(session, reason, detail),
                    )
        except BaseException:
            self._sessions.pop(session.id, None)
            self._note_removed()
            room, session.room = session.room, None
            if room is not None:
                with contextlib.suppress(Exception):
                    await room.disconnect()
            slot.release()
            raise
        session.state = SessionState.ACTIVE
        session.publish(SessionStarted(room_name=session.room_name, avatar_participant_identity=session.identity))
        log.info("session started", extra={"session_id": session.id, "avatar_id": avatar.id})
        self._call_hook("session_started", session_id=session.id, avatar_id=avatar.id)
        return session

    def get(self, session_id: str) -> Session:
        session = self._sessions.get(session_id)
        if session is None:
            raise NotFound("unknown session id: it never existed or has ended; ListSessions shows the live ones")
        return session

    def set_emotion(self, session_id: str, emotion: str) -> Session:
        """Show ``emotion`` in the session from this point of its audio on. :class:`InvalidArgument` (listing the
        valid names) or :class:`NotFound` leave every session as it was."""
        name = check_emotion(emotion)
        session = self.get(session_id)
        if session.runtime is not None:
            session.runtime.set_emotion(name)
        session.show_emotion(name)
        log.info("session emotion set", extra={"session_id": session.id, "emotion": name})
        return session

    def list(self) -> builtins.list[Session]:
        return sorted(self._sessions.values(), key=lambda s: (s.started_at_ns, s.id))

    async def stop(self, session_id: str, reason: EndReason = EndReason.STOPPED, detail: str = "") -> None:
        """End the session: leave the room, free its slot, tell watchers. :class:`NotFound` when unknown."""
        session = self.get(session_id)
        await self._end(session, reason, detail)

    async def drain(self, *, timeout_s: float) -> int:
        """Graceful drain before shutdown: admit nothing new (:meth:`SessionSlots.drain`), give the running sessions
        up to ``timeout_s`` to end by themselves, then end the rest with reason ``SERVER_SHUTDOWN`` and a detail that
        says so. Returns how many sessions the deadline ended."""
        self._slots.drain()
        if self._sessions:
            log.info("draining sessions", extra={"count": len(self._sessions), "timeout_s": timeout_s})
            self._emptied.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._emptied.wait(), timeout_s)
        left = list(self._sessions.values())
        detail = (
            f"the server is shutting down and the session did not end within its drain deadline of {timeout_s:g} s: "
            "start a new session, it will be placed on another server instance"
        )
        await asyncio.gather(
            *(self._end(s, EndReason.SERVER_SHUTDOWN, detail, timeout_s=5.0) for s in left), return_exceptions=True
        )
        return len(left)

    def _note_removed(self) -> None:
        if not self._sessions:
            self._emptied.set()

    async def close_all(self, *, timeout_s: float = 5.0) -> None:
        """End every session (server shutdown), each bounded so a hung room cannot hold the server up."""
        sessions = list(self._sessions.values())
        await asyncio.gather(
            *(self._end(s, EndReason.SERVER_SHUTDOWN, "server shutdown", timeout_s=timeout_s) for s in sessions),
            return_exceptions=True,
        )

    async def _end(self, session: Session, reason: EndReason, detail: str, *, timeout_s: float = 5.0) -> None:
        if self._sessions.pop(session.id, None) is None:
            return  # already ending
        self._note_removed()
        session.state = SessionState.ENDING
        runtime, session.runtime = session.runtime, None
        if runtime is not None:
            try:
                await asyncio.wait_for(runtime.aclose(), timeout_s)
            except Exception as exc:  # the room and the slot must be freed regardless
                log.warning(
                    "closing the session runtime failed",
                    extra={"session_id": session.id, "error_type": type(exc).__name__},
                )
        room, session.room = session.room, None
        if room is not None:
            try:
                await asyncio.wait_for(room.disconnect(), timeout_s)
            except Exception as exc:  # leaving is best effort; the slot must be freed regardless
                log.warning(
                    "leaving the room failed", extra={"session_id": session.id, "error_type": type(exc).__name__}
                )
        if session.slot is not None:
            session.slot.release()
        session.state = SessionState.ENDED
        session.publish(SessionEnded(reason, detail))
        session._close_watchers()
        log.info("session ended", extra={"session_id": session.id, "reason": reason.value})
        self._call_hook("session_ended", session_id=session.id, reason=reason.value)

    def _call_hook(self, name: str, **kwargs: str) -> None:
        if self._hooks is None:
            return
        try:
            getattr(self._hooks, name)(**kwargs)
        except Exception as exc:  # a broken plugin must not break sessions
            log.warning("plugin hook failed", extra={"hook": name, "error_type": type(exc).__name__})

    def _end_soon(self, session: Session, reason: EndReason, detail: str) -> None:
        """End ``session`` from a callback (the runtime, LiveKit events) without awaiting there."""
        if session.id not in self._sessions:
            return
        task = asyncio.ensure_future(self._end(session, reason, detail))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _on_disconnected(self, session: Session, reason: str) -> None:
        if session.state == SessionState.ACTIVE:
            self._end_soon(session, EndReason.DISCONNECTED, f"disconnected from the room: {reason}")
