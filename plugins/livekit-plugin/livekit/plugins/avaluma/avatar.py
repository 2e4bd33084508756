"""``AvatarSession``: an Avaluma talking avatar in a LiveKit agent's room, the way LiveKit's avatar plugins work.

::

    from livekit.plugins import avaluma

    avatar = avaluma.AvatarSession(avatar_id="astronaut", emotion="happy")  # AVALUMA_API_URL, AVALUMA_API_KEY
    await avatar.start(session, room=ctx.room)                              # before session.start(...)
    await avatar.set_emotion("serious")                                     # any time after start

``start`` mints the avatar's LiveKit token (``lk.publish_on_behalf`` = the agent), asks the Avaluma server to join
the room (retrying with backoff while the server or LiveKit is unavailable), routes the session's audio to the avatar
over LiveKit's stock ``lk.audio_stream`` protocol (``DataStreamAudioOutput``, which holds audio until the avatar's
video track is published) and forwards the agent's listening/thinking states. The avatar leaves when the job ends.
:meth:`AvatarSession.set_emotion` changes the avatar's emotion on the server that holds it (docs/expressions.md).
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from livekit import rtc
from livekit.agents.job import get_job_context
from livekit.agents.voice.avatar import AvatarSession as _LiveKitAvatarSession
from livekit.agents.voice.avatar import DataStreamAudioOutput

from .api import (
    AvalumaException,
    AvatarServiceClient,
    RetryPolicy,
    ServerAddress,
    ServerPool,
    StartRequest,
    start_with_retries,
)
from .log import logger
from .tokens import mint_avatar_token

if TYPE_CHECKING:
    from livekit.agents.voice import AgentSession
    from livekit.agents.voice.events import AgentStateChangedEvent

API_URL_ENV = "AVALUMA_API_URL"
API_KEY_ENV = "AVALUMA_API_KEY"
AVATAR_ID_ENV = "AVALUMA_AVATAR_ID"
#: ``avaluma serve`` on this machine: gRPC on port 8080.
DEFAULT_API_URL = "127.0.0.1:8080"
DEFAULT_AVATAR_IDENTITY = "avaluma-avatar"
#: RPC the hosted avatar API uses for listening/thinking cues; the Avaluma server answers it the same way.
RPC_AGENT_STATE_CHANGED = "agent_state_changed"


def dev_key_path() -> Path:
    """Where ``avaluma serve`` keeps the development API key it made (mode 0600) when no keys are configured."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "avaluma" / "dev-api-key"


def _dev_key() -> str:
    try:
        return dev_key_path().read_text(encoding="utf-8").strip()
    except OSError:
        return ""


class AvatarSession(_LiveKitAvatarSession[Any]):
    """An Avaluma avatar for a LiveKit ``AgentSession``."""

    def __init__(
        self,
        *,
        avatar_id: str | None = None,
        api_url: str | None = None,
        api_key: str | None = None,
        avatar_participant_identity: str = DEFAULT_AVATAR_IDENTITY,
        avatar_participant_name: str | None = None,
        accepted_senders: Sequence[str] = (),
        idle_timeout_s: int = 0,
        emotion: str = "",
        video_codec: str = "",
        video_max_bitrate: int = 0,
        simulcast: bool | None = None,
        video_width: int = 0,
        video_height: int = 0,
        video_fps: int = 0,
        sample_rate: int = 24_000,
        retry: RetryPolicy | None = None,
        grpc_interceptors: Sequence[Any] = (),
        client: AvatarServiceClient | None = None,
    ) -> None:
        """``avatar_id``: which avatar (``AVALUMA_AVATAR_ID``; empty = the server's default).
        ``api_url``: the server (``AVALUMA_API_URL``, default ``127.0.0.1:8080``): ``host:port`` or
        ``grpc(s)://host:port`` for gRPC, ``http(s)://...`` for the hosted-service HTTP API. Several servers: a
        comma-separated list, or a gRPC name that resolves to several addresses; a full or draining server's refusal
        sends the start to the next one (:class:`ServerPool`).
        ``api_key``: ``AVALUMA_API_KEY``; for a server on this machine, the development key ``avaluma serve`` printed
        is found by itself. ``accepted_senders``: external senders (agent-2) that may talk through the same avatar.
        ``idle_timeout_s``: end the avatar after this long without audio (0 = the server's default).
        ``emotion``: the emotion it starts with (``neutral``, ``happy``, ``serious``, ``surprised``, ``concerned``;
        empty = the server's default); an unknown name fails :meth:`start` with ``INVALID_ARGUMENT``.
        ``video_codec`` (``vp8``, ``h264``), ``video_max_bitrate`` (bits/s of the full layer) and ``simulcast``: how
        the server publishes this avatar's video (empty / 0 / ``None``: the server's ``sessions.publish``).
        ``video_width`` / ``video_height`` (both or neither; 0: the avatar's own size, same aspect ratio) and
        ``video_fps`` (0: the server's ``render.fps``): the frames it publishes; the server's admission counts a
        smaller or slower session as less of its capacity."""
        super().__init__()
        url = api_url or os.environ.get(API_URL_ENV) or DEFAULT_API_URL
        try:
            self._addresses = ServerAddress.parse_list(url)
        except ValueError as exc:
            raise AvalumaException(str(exc), code="INVALID_ARGUMENT") from None
        if client is None:
            local = all(a.is_local for a in self._addresses)
            key = api_key or os.environ.get(API_KEY_ENV, "") or (_dev_key() if local else "")
            if not key:
                raise AvalumaException(
                    f"{API_KEY_ENV} is not set: export the Avaluma server's API key (`avaluma serve` prints it)",
                    code="INVALID_ARGUMENT",
                )
            client = ServerPool(self._addresses, api_key=key, grpc_interceptors=grpc_interceptors)
        self._client = client
        self._avatar_id = avatar_id if avatar_id is not None else os.environ.get(AVATAR_ID_ENV, "")
        self._identity = avatar_participant_identity
        self._name = avatar_participant_name
        self._sample_rate = sample_rate
        self._accepted_senders = tuple(accepted_senders)
        self._idle_timeout_s = idle_timeout_s
        self._emotion = emotion
        self._video = (video_codec, video_max_bitrate, simulcast)
        self._frames = (video_width, video_height, video_fps)
        self._retry = retry or RetryPolicy()
        self._session_id: str | None = None
        self._state_tasks: set[asyncio.Task[None]] = set()

    @property
    def avatar_identity(self) -> str:
        return self._identity

    @property
    def provider(self) -> str:
        return "avaluma"

    @property
    def session_id(self) -> str | None:
        """The Avaluma session id, once started."""
        return self._session_id

    @property
    def emotion(self) -> str:
        """The emotion asked for last (empty: the server's default, not changed since)."""
        return self._emotion

    async def set_emotion(self, emotion: str, *, timeout_s: float = 5.0) -> None:
        """Show ``emotion`` from this point of the agent's speech on; the face eases into it over about 0.4 s.

        Speech already sent to the avatar keeps the emotion it was sent with, so call it before the reply it is
        for (e.g. from a function tool, or before ``session.say``). It goes to the Avaluma server holding the session
        (gRPC ``SetEmotion`` or HTTP ``set-emotion``). Raises :class:`AvalumaException`: ``INVALID_ARGUMENT`` naming
        the valid emotions for an unknown one (the avatar keeps its emotion), ``NOT_FOUND`` when the session ended.
        """
        if self._session_id is None:
            raise RuntimeError("AvatarSession.set_emotion() needs a started avatar: await start() first")
        self._emotion = await self._client.set_emotion(self._session_id, emotion, timeout_s=timeout_s)

    def build_request(self, *, agent_identity: str, livekit_url: str, token: str) -> StartRequest:
        """The start request for this avatar (pure; tested without a server). The room is the token's."""
        return StartRequest(
            livekit_url=livekit_url,
            livekit_token=token,
            avatar_id=self._avatar_id,
            accepted_sender_identities=(agent_identity, *self._accepted_senders),
            agent_identity=agent_identity,
            idle_timeout_s=self._idle_timeout_s,
            emotion=self._emotion,
            video_codec=self._video[0],
            video_max_bitrate=self._video[1],
            simulcast=self._video[2],
            video_width=self._frames[0],
            video_height=self._frames[1],
            video_fps=self._frames[2],
        )

    async def start(
        self,
        agent_session: AgentSession[Any],
        room: rtc.Room,
        *,
        livekit_url: str | None = None,
        livekit_api_key: str | None = None,
        livekit_api_secret: str | None = None,
        agent_identity: str | None = None,
    ) -> None:
        """Start the avatar in ``room`` for ``agent_session``; call it before ``agent_session.start``.

        LiveKit credentials default to ``LIVEKIT_URL``, ``LIVEKIT_API_KEY`` and ``LIVEKIT_API_SECRET`` (the avatar's
        token is minted from them). ``agent_identity`` (whom the avatar publishes on behalf of) defaults to the room's
        or the job's local participant. Raises :class:`AvalumaException` when the server cannot start the avatar.
        """
        if self._session_id is not None:
            raise RuntimeError("AvatarSession.start() may be called once; create another AvatarSession")
        url = livekit_url or os.environ.get("LIVEKIT_URL", "")
        key = livekit_api_key or os.environ.get("LIVEKIT_API_KEY", "")
        secret = livekit_api_secret or os.environ.get("LIVEKIT_API_SECRET", "")
        for value, var in ((url, "LIVEKIT_URL"), (key, "LIVEKIT_API_KEY"), (secret, "LIVEKIT_API_SECRET")):
            if not value:
                raise AvalumaException(
                    f"{var} is not set: the avatar's LiveKit token is minted from it; export it or pass it to start()",
                    code="INVALID_ARGUMENT",
                )
        await super().start(agent_session, room)

        job_ctx = get_job_context(required=False)
        # Before the room connects its name is empty; the job already knows which room it is for.
        room_name = room.name or (job_ctx.job.room.name if job_ctx is not None else "")
        if agent_identity is None:
            if room.isconnected():
                agent_identity = room.local_participant.identity
            elif job_ctx is not None:
                agent_identity = job_ctx.local_participant_identity
            else:
                raise RuntimeError("AvatarSession.start() needs a connected room, a job context or agent_identity")

        token = mint_avatar_token(
            api_key=key,
            api_secret=secret,
            room=room_name,
            identity=self._identity,
            agent_identity=agent_identity,
            name=self._name,
        )
        request = self.build_request(agent_identity=agent_identity, livekit_url=url, token=token)
        response = await start_with_retries(self._client, request, retry=self._retry)
        self._session_id = response.session_id
        if response.avatar_participant_identity:
            self._identity = response.avatar_participant_identity
        logger.info("avatar session started", extra={"session_id": self._session_id, "room": room_name})

        # LiveKit's stock sender: lk.audio_stream byte streams, clear_buffer / playback_finished RPCs; it holds audio
        # until the avatar's video track is published, so the first words are not lost.
        sink = DataStreamAudioOutput(
            room=room,
            destination_identity=self._identity,
            sample_rate=self._sample_rate,
            wait_remote_track=rtc.TrackKind.KIND_VIDEO,
        )
        output: Any = agent_session.output
        if hasattr(output, "replace_audio_tail"):
            # Keeps wrappers (transcript synchronizer, recorder) in the chain and replaces only where audio ends.
            output.replace_audio_tail(sink)
        else:  # livekit-agents before replace_audio_tail
            output.audio = sink
        agent_session.on("agent_state_changed", self._on_agent_state_changed)

    def _on_agent_state_changed(self, ev: AgentStateChangedEvent) -> None:
        task = asyncio.create_task(self._forward_state(ev.new_state))
        self._state_tasks.add(task)
        task.add_done_callback(self._state_tasks.discard)

    async def _forward_state(self, state: str) -> None:
        room = self._room
        if room is None or not room.isconnected():
            return
        try:
            await room.local_participant.perform_rpc(
                destination_identity=self._identity,
                method=RPC_AGENT_STATE_CHANGED,
                payload=json.dumps({"state": state}),
                response_timeout=2.0,
            )
        except Exception as exc:  # cues are cosmetic: never let them disturb the conversation
            logger.debug("agent state not forwarded", extra={"state": state, "error": str(exc)})

    async def aclose(self) -> None:
        session_id, self._session_id = self._session_id, None
        if self._agent_session is not None:
            self._agent_session.off("agent_state_changed", self._on_agent_state_changed)
        for task in list(self._state_tasks):
            task.cancel()
        try:
            if session_id is not None:
                try:
                    await self._client.stop_session(session_id)
                except AvalumaException as exc:
                    # NOT_FOUND: the server already ended it (room emptied, idle timeout).
                    if exc.code != "NOT_FOUND":
                        logger.warning(
                            "could not stop the avatar session", extra={"session_id": session_id, "code": exc.code}
                        )
            await self._client.aclose()
        finally:
            await super().aclose()
