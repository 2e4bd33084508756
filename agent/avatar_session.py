"""``AvatarSession`` for LiveKit Agents: put an Avaluma avatar into the agent's room.

Usage inside an agent job (what ``avaluma agent`` does)::

    avatar = AvatarSession(server="127.0.0.1:8080", avatar_id="astronaut")   # key from AVALUMA_API_KEY
    await avatar.start(session, room=ctx.room)       # before session.start(...)
    await session.start(agent=..., room=ctx.room)

``start`` mints the avatar's LiveKit token (``lk.publish_on_behalf`` = the agent's identity), asks the Avaluma server
to join the room through ``AvatarService.StartSession`` (retrying with backoff while the server or LiveKit is
unavailable), routes the session's audio through LiveKit's ``DataStreamAudioOutput`` (which waits for the avatar's
video track before streaming), and forwards agent state changes (listening/thinking/speaking) to the avatar. The
avatar is stopped when the job ends (``aclose``, registered as a job shutdown callback).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import grpc
import grpc.aio
from livekit import api, rtc
from livekit.agents.job import get_job_context
from livekit.agents.types import ATTRIBUTE_PUBLISH_ON_BEHALF
from livekit.agents.voice.avatar import AvatarSession as _LiveKitAvatarSession
from livekit.agents.voice.avatar import DataStreamAudioOutput

from avaluma.core.errors import AvalumaError, ConfigError, Unavailable
from avaluma.core.server.grpc.telemetry import client_interceptors
from avaluma.proto.v1 import avatar_service_pb2, avatar_service_pb2_grpc, common_pb2

if TYPE_CHECKING:
    from livekit.agents.voice import AgentSession
    from livekit.agents.voice.events import AgentStateChangedEvent

logger = logging.getLogger(__name__)

API_KEY_ENV = "AVALUMA_API_KEY"
#: RPC the hosted avatar API uses for listening/thinking cues; the Avaluma server answers it the same way.
RPC_AGENT_STATE_CHANGED = "agent_state_changed"
#: gRPC codes worth another try: the server (or the LiveKit server behind it) is not reachable right now.
RETRYABLE_CODES = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff: ``attempts`` tries, waiting ``base_delay_s * 2**i`` (at most ``max_delay_s``) between."""

    attempts: int = 4
    base_delay_s: float = 0.5
    max_delay_s: float = 4.0
    #: Deadline of one StartSession call (the server joins the room before answering).
    call_timeout_s: float = 20.0

    def delay(self, attempt: int) -> float:
        return float(min(self.max_delay_s, self.base_delay_s * (2**attempt)))


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
    grants = api.VideoGrants(room_join=True, room=room, can_publish=True, can_subscribe=True, can_publish_data=True)
    return (
        api.AccessToken(api_key, api_secret)
        .with_identity(identity)
        .with_name(name or identity)
        .with_kind("agent")
        .with_grants(grants)
        .with_attributes({ATTRIBUTE_PUBLISH_ON_BEHALF: agent_identity})
        .with_ttl(timedelta(seconds=ttl_s))
        .to_jwt()
    )


class AvatarServiceClient:
    """Thin client of ``avaluma.v1.AvatarService`` sending the API key in ``x-api-key``."""

    def __init__(self, target: str, *, api_key: str, tls: bool = False) -> None:
        self.target = target
        # Trace context travels in the call metadata (no interceptors, no cost, while OTEL_* leaves tracing off).
        interceptors = client_interceptors()
        self._channel = (
            grpc.aio.secure_channel(target, grpc.ssl_channel_credentials(), interceptors=interceptors)
            if tls
            else grpc.aio.insecure_channel(target, interceptors=interceptors)
        )
        self._stub = avatar_service_pb2_grpc.AvatarServiceStub(self._channel)
        self._metadata = (("x-api-key", api_key),)

    async def start_session(
        self, request: avatar_service_pb2.StartSessionRequest, *, deadline_s: float
    ) -> avatar_service_pb2.StartSessionResponse:
        return await self._stub.StartSession(request, metadata=self._metadata, timeout=deadline_s)

    async def stop_session(self, session_id: str, *, deadline_s: float = 5.0) -> None:
        await self._stub.StopSession(
            avatar_service_pb2.StopSessionRequest(session_id=session_id), metadata=self._metadata, timeout=deadline_s
        )

    async def aclose(self) -> None:
        await self._channel.close(None)


async def start_with_retries(
    client: AvatarServiceClient,
    request: avatar_service_pb2.StartSessionRequest,
    *,
    retry: RetryPolicy,
    sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
) -> avatar_service_pb2.StartSessionResponse:
    """Call StartSession, retrying UNAVAILABLE / DEADLINE_EXCEEDED with backoff.

    Raises :class:`Unavailable` after the last attempt, with the server's own explanation; any other gRPC error is
    raised at once as an :class:`AvalumaError` carrying the server's message (it will not get better by retrying).
    """
    last: grpc.aio.AioRpcError | None = None
    for attempt in range(retry.attempts):
        try:
            return await client.start_session(request, deadline_s=retry.call_timeout_s)
        except grpc.aio.AioRpcError as exc:
            if exc.code() not in RETRYABLE_CODES:
                raise _domain_error(exc, client.target) from None
            last = exc
            if attempt + 1 < retry.attempts:
                delay = retry.delay(attempt)
                logger.warning(
                    "avatar server unavailable, retrying",
                    extra={"target": client.target, "attempt": attempt + 1, "retry_in_s": delay},
                )
                await sleep(delay)
    assert last is not None
    raise Unavailable(
        f"could not start the avatar through the Avaluma server at {client.target} after {retry.attempts} attempts: "
        f"{last.details() or last.code().name}. Check that `avaluma serve` is running there and that it can reach "
        "the LiveKit server"
    )


def _domain_error(exc: grpc.aio.AioRpcError, target: str) -> AvalumaError:
    from avaluma.core import errors

    by_code: dict[grpc.StatusCode, type[AvalumaError]] = {
        grpc.StatusCode.INVALID_ARGUMENT: errors.InvalidArgument,
        grpc.StatusCode.NOT_FOUND: errors.NotFound,
        grpc.StatusCode.UNAUTHENTICATED: errors.Unauthenticated,
        grpc.StatusCode.PERMISSION_DENIED: errors.PermissionDenied,
        grpc.StatusCode.RESOURCE_EXHAUSTED: errors.ResourceExhausted,
        grpc.StatusCode.FAILED_PRECONDITION: errors.FailedPrecondition,
    }
    cls = by_code.get(exc.code(), AvalumaError)
    return cls(f"the Avaluma server at {target} refused to start the avatar: {exc.details() or exc.code().name}")


class AvatarSession(_LiveKitAvatarSession[Any]):
    """An Avaluma avatar for a LiveKit ``AgentSession`` (see the module docstring)."""

    def __init__(
        self,
        *,
        server: str = "127.0.0.1:8080",
        avatar_id: str = "",
        api_key: str | None = None,
        tls: bool = False,
        avatar_identity: str = "avaluma-avatar",
        avatar_name: str | None = None,
        sample_rate: int = 24_000,
        accepted_senders: Sequence[str] = (),
        idle_timeout_s: int = 0,
        render: common_pb2.RenderOptions | None = None,
        livekit_url: str | None = None,
        livekit_api_key: str | None = None,
        livekit_api_secret: str | None = None,
        retry: RetryPolicy | None = None,
        client: AvatarServiceClient | None = None,
    ) -> None:
        """``server`` is the Avaluma gRPC address (``host:port``); ``avatar_id`` empty = the server's default
        avatar. Keys come from the environment when not given: ``AVALUMA_API_KEY`` for the Avaluma server,
        ``LIVEKIT_URL`` / ``LIVEKIT_API_KEY`` / ``LIVEKIT_API_SECRET`` to mint the avatar's token.
        ``accepted_senders`` lets external senders (agent-2) talk through the same avatar."""
        super().__init__()
        key = api_key if api_key is not None else os.environ.get(API_KEY_ENV, "")
        if not key and client is None:
            raise ConfigError(
                f"{API_KEY_ENV} is not set: export the Avaluma server's API key (printed by `avaluma serve`)"
            )
        self._client = client if client is not None else AvatarServiceClient(server, api_key=key, tls=tls)
        self._avatar_id = avatar_id
        self._identity = avatar_identity
        self._name = avatar_name
        self._sample_rate = sample_rate
        self._accepted_senders = tuple(accepted_senders)
        self._idle_timeout_s = idle_timeout_s
        self._render = render
        self._lk_url = livekit_url
        self._lk_key = livekit_api_key
        self._lk_secret = livekit_api_secret
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

    def build_request(self, *, agent_identity: str, livekit_url: str, token: str) -> Any:
        """The StartSession request for this avatar (pure; tested without a server). The room is the token's."""
        request = avatar_service_pb2.StartSessionRequest(
            livekit_url=livekit_url,
            livekit_token=token,
            avatar_id=self._avatar_id,
            accepted_sender_identities=[agent_identity, *self._accepted_senders],
            agent_identity=agent_identity,
            idle_timeout_s=self._idle_timeout_s,
        )
        if self._render is not None:
            request.render.CopyFrom(self._render)
        return request

    def _credentials(self) -> tuple[str, str, str]:
        url = self._lk_url or os.environ.get("LIVEKIT_URL", "")
        key = self._lk_key or os.environ.get("LIVEKIT_API_KEY", "")
        secret = self._lk_secret or os.environ.get("LIVEKIT_API_SECRET", "")
        for value, var in ((url, "LIVEKIT_URL"), (key, "LIVEKIT_API_KEY"), (secret, "LIVEKIT_API_SECRET")):
            if not value:
                raise ConfigError(f"{var} is not set: the avatar's LiveKit token is minted from it; export it")
        return url, key, secret

    async def start(
        self, agent_session: AgentSession[Any], room: rtc.Room, *, agent_identity: str | None = None
    ) -> None:
        """Start the avatar in ``room`` for ``agent_session``; call it before ``agent_session.start``.

        ``agent_identity`` (whom the avatar publishes on behalf of) defaults to the job's or the room's local
        participant. Raises :class:`Unavailable` when the Avaluma server cannot start the avatar after retries.
        """
        if self._session_id is not None:
            raise RuntimeError("AvatarSession.start() may be called once; create another AvatarSession")
        url, key, secret = self._credentials()
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

        # LiveKit's stock sender: lk.audio_stream byte streams, clear_buffer / playback_finished RPCs, and it holds
        # audio until the avatar's video track is published, so the first words are not lost.
        agent_session.output.audio = DataStreamAudioOutput(
            room=room,
            destination_identity=self._identity,
            sample_rate=self._sample_rate,
            wait_remote_track=rtc.TrackKind.KIND_VIDEO,
        )
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
                except grpc.aio.AioRpcError as exc:
                    # NOT_FOUND: the server already ended it (room emptied, idle timeout).
                    if exc.code() != grpc.StatusCode.NOT_FOUND:
                        logger.warning(
                            "could not stop the avatar session",
                            extra={"session_id": session_id, "code": exc.code().name},
                        )
            await self._client.aclose()
        finally:
            await super().aclose()
