"""Clients of an Avaluma server's session API: gRPC (``avaluma serve``, port 8080) or the hosted-service HTTP API.

Both speak the same calls, start and stop an avatar session and change its emotion, and report failures as
:class:`AvalumaException` with the gRPC status name in ``code`` (the HTTP API returns the same names in its error
bodies).
"""

from __future__ import annotations

import asyncio
import json
import random
import socket
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import grpc
import grpc.aio

from ._proto import avatar_service_pb2, avatar_service_pb2_grpc
from .log import logger

#: Failures worth another try: the server (or the LiveKit server behind it) is not reachable right now.
RETRYABLE_CODES = frozenset({"UNAVAILABLE", "DEADLINE_EXCEEDED"})
#: A start refused with these goes to the next server address: this one is full (``RESOURCE_EXHAUSTED``), draining
#: before shutdown or out of reach (``UNAVAILABLE``).
NEXT_SERVER_CODES = frozenset({"RESOURCE_EXHAUSTED", "UNAVAILABLE"})
START_PATH = "/v1/livekit/start-avatar"
STOP_PATH = "/v1/livekit/stop-avatar"
SET_EMOTION_PATH = "/v1/livekit/set-emotion"
#: The emotions an Avaluma avatar shows (the server checks the name and lists these when it does not know one).
EMOTIONS = ("neutral", "happy", "serious", "surprised", "concerned")


class AvalumaException(Exception):
    """An Avaluma server refused or could not be reached. ``code`` is the gRPC status name (``UNAVAILABLE``,
    ``NOT_FOUND``, ``UNAUTHENTICATED``, ...), also for the HTTP API."""

    def __init__(self, message: str, *, code: str = "UNKNOWN") -> None:
        super().__init__(message)
        self.code = code

    @property
    def retryable(self) -> bool:
        return self.code in RETRYABLE_CODES


@dataclass(frozen=True)
class StartRequest:
    """What a session start sends; the room is the one the token grants."""

    livekit_url: str
    livekit_token: str
    avatar_id: str = ""
    accepted_sender_identities: tuple[str, ...] = ()
    agent_identity: str | None = None
    idle_timeout_s: int = 0
    #: Empty: the server's default (neutral).
    emotion: str = ""
    #: How the avatar's video is published: "vp8" / "h264", full-layer bits/s, simulcast; ""/0/None: the server's.
    video_codec: str = ""
    video_max_bitrate: int = 0
    simulcast: bool | None = None
    #: Published frame size (both or neither; 0: the avatar's own) and frames per second (0: the server's).
    video_width: int = 0
    video_height: int = 0
    video_fps: int = 0


@dataclass(frozen=True)
class StartResponse:
    session_id: str
    avatar_participant_identity: str = ""


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff: ``attempts`` tries, waiting ``base_delay_s * 2**i`` (at most ``max_delay_s``) between."""

    attempts: int = 4
    base_delay_s: float = 0.5
    max_delay_s: float = 4.0
    #: Deadline of one start call (the server joins the room before answering).
    call_timeout_s: float = 20.0

    def delay(self, attempt: int) -> float:
        return float(min(self.max_delay_s, self.base_delay_s * (2**attempt)))


class AvatarServiceClient:
    """Start and stop avatar sessions on one Avaluma server. Subclasses: :class:`GrpcClient`, :class:`HttpClient`."""

    target: str

    async def start_session(self, request: StartRequest, *, timeout_s: float) -> StartResponse:
        raise NotImplementedError

    async def stop_session(self, session_id: str, *, timeout_s: float = 5.0) -> None:
        raise NotImplementedError

    async def set_emotion(self, session_id: str, emotion: str, *, timeout_s: float = 5.0) -> str:
        """Change a running session's emotion; returns the emotion it shows from now on."""
        raise NotImplementedError

    async def aclose(self) -> None:
        pass


class GrpcClient(AvatarServiceClient):
    """``avaluma.v1.AvatarService`` over gRPC, the API key in ``x-api-key``. ``interceptors`` are handed to the
    channel (the avaluma agent passes its OpenTelemetry ones, so one trace spans agent and server)."""

    def __init__(
        self,
        target: str,
        *,
        api_key: str,
        tls: bool = False,
        interceptors: Sequence[Any] = (),
        options: Sequence[tuple[str, Any]] = (),
    ) -> None:
        self.target = target
        self._tls = tls
        self._interceptors = list(interceptors) or None
        self._options = list(options) or None
        # The channel binds to the running event loop, so it is made on first use: an AvatarSession may be built
        # where no loop runs yet (module level, a sync test).
        self._channel: grpc.aio.Channel | None = None
        self._metadata = (("x-api-key", api_key),)

    @property
    def _stub(self) -> avatar_service_pb2_grpc.AvatarServiceStub:
        if self._channel is None:
            self._channel = (
                grpc.aio.secure_channel(
                    self.target, grpc.ssl_channel_credentials(), options=self._options, interceptors=self._interceptors
                )
                if self._tls
                else grpc.aio.insecure_channel(self.target, options=self._options, interceptors=self._interceptors)
            )
        return avatar_service_pb2_grpc.AvatarServiceStub(self._channel)

    async def start_session(self, request: StartRequest, *, timeout_s: float) -> StartResponse:
        message = avatar_service_pb2.StartSessionRequest(
            livekit_url=request.livekit_url,
            livekit_token=request.livekit_token,
            avatar_id=request.avatar_id,
            accepted_sender_identities=list(request.accepted_sender_identities),
            idle_timeout_s=request.idle_timeout_s,
            emotion=request.emotion,
        )
        if request.agent_identity is not None:
            message.agent_identity = request.agent_identity
        if request.video_codec:
            codecs = {"vp8": avatar_service_pb2.VIDEO_CODEC_VP8, "h264": avatar_service_pb2.VIDEO_CODEC_H264}
            if request.video_codec not in codecs:
                raise AvalumaException(
                    f"video_codec must be one of {', '.join(codecs)}, got {request.video_codec!r}",
                    code="INVALID_ARGUMENT",
                )
            message.publish.video_codec = codecs[request.video_codec]
        message.publish.video_max_bitrate = request.video_max_bitrate
        if request.simulcast is not None:
            message.publish.simulcast = request.simulcast
        message.render.width, message.render.height = request.video_width, request.video_height
        message.render.fps = request.video_fps
        try:
            response = await self._stub.StartSession(message, metadata=self._metadata, timeout=timeout_s)
        except grpc.aio.AioRpcError as exc:
            raise _from_grpc(exc) from None
        return StartResponse(response.session_id, response.avatar_participant_identity)

    async def stop_session(self, session_id: str, *, timeout_s: float = 5.0) -> None:
        try:
            await self._stub.StopSession(
                avatar_service_pb2.StopSessionRequest(session_id=session_id), metadata=self._metadata, timeout=timeout_s
            )
        except grpc.aio.AioRpcError as exc:
            raise _from_grpc(exc) from None

    async def set_emotion(self, session_id: str, emotion: str, *, timeout_s: float = 5.0) -> str:
        try:
            response = await self._stub.SetEmotion(
                avatar_service_pb2.SetEmotionRequest(session_id=session_id, emotion=emotion),
                metadata=self._metadata,
                timeout=timeout_s,
            )
        except grpc.aio.AioRpcError as exc:
            raise _from_grpc(exc) from None
        return str(response.emotion)

    async def aclose(self) -> None:
        if self._channel is not None:
            await self._channel.close(None)


def _from_grpc(exc: grpc.aio.AioRpcError) -> AvalumaException:
    return AvalumaException(exc.details() or exc.code().name, code=exc.code().name)


class HttpClient(AvatarServiceClient):
    """The hosted service's HTTP API (``POST /v1/livekit/start-avatar`` and ``stop-avatar``, key in ``api-secret``),
    which ``avaluma serve`` also answers on its HTTP port (8081)."""

    def __init__(self, base_url: str, *, api_key: str) -> None:
        self.target = base_url.rstrip("/")
        self._api_key = api_key
        self._http: aiohttp.ClientSession | None = None

    async def _post(self, path: str, body: dict[str, Any], *, timeout_s: float) -> dict[str, Any]:
        if self._http is None:
            self._http = aiohttp.ClientSession()
        try:
            async with self._http.post(
                self.target + path,
                json=body,
                headers={"api-secret": self._api_key},
                timeout=aiohttp.ClientTimeout(total=timeout_s),
            ) as response:
                text = await response.text()
                status = response.status
        except (aiohttp.ClientConnectionError, TimeoutError) as exc:
            raise AvalumaException(f"{type(exc).__name__}: {exc}".rstrip(": "), code="UNAVAILABLE") from None
        try:
            payload = json.loads(text) if text else {}
        except ValueError:
            payload = {}
        if not isinstance(payload, dict):
            payload = {}
        if status >= 400 or payload.get("status") == "error":
            code = str(payload.get("code") or _HTTP_CODES.get(status, "UNKNOWN"))
            raise AvalumaException(str(payload.get("message") or f"HTTP {status}: {text[:200]}"), code=code)
        return payload

    async def start_session(self, request: StartRequest, *, timeout_s: float) -> StartResponse:
        body: dict[str, Any] = {
            "livekit_url": request.livekit_url,
            "livekit_token": request.livekit_token,
            "accepted_sender_identities": list(request.accepted_sender_identities),
            "idle_timeout_s": request.idle_timeout_s,
        }
        if request.avatar_id:
            body["avatar_id"] = request.avatar_id
        if request.agent_identity is not None:
            body["agent_identity"] = request.agent_identity
        if request.emotion:
            body["emotion"] = request.emotion
        publish: dict[str, Any] = {}
        if request.video_codec:
            publish["video_codec"] = request.video_codec
        if request.video_max_bitrate:
            publish["video_max_bitrate"] = request.video_max_bitrate
        if request.simulcast is not None:
            publish["simulcast"] = request.simulcast
        if publish:
            body["publish"] = publish
        render = {"width": request.video_width, "height": request.video_height, "fps": request.video_fps}
        if any(render.values()):
            body["render"] = {name: value for name, value in render.items() if value}
        payload = await self._post(START_PATH, body, timeout_s=timeout_s)
        session_id = payload.get("session_id")
        if not isinstance(session_id, str) or not session_id:
            raise AvalumaException(f"{self.target}{START_PATH} answered without a session_id", code="INTERNAL")
        return StartResponse(session_id, str(payload.get("avatar_participant_identity") or ""))

    async def stop_session(self, session_id: str, *, timeout_s: float = 5.0) -> None:
        await self._post(STOP_PATH, {"session_id": session_id}, timeout_s=timeout_s)

    async def set_emotion(self, session_id: str, emotion: str, *, timeout_s: float = 5.0) -> str:
        body = {"session_id": session_id, "emotion": emotion}
        payload = await self._post(SET_EMOTION_PATH, body, timeout_s=timeout_s)
        return str(payload.get("emotion") or emotion)

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None


_HTTP_CODES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ALREADY_EXISTS",
    412: "FAILED_PRECONDITION",
    429: "RESOURCE_EXHAUSTED",
    502: "UNAVAILABLE",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


@dataclass(frozen=True)
class ServerAddress:
    """Where the avatar server is, from ``api_url``: ``http(s)://...`` is the HTTP API; ``grpc://host:port``,
    ``grpcs://host:port`` (TLS) or a bare ``host:port`` is gRPC."""

    kind: str  # "grpc" | "http"
    target: str
    tls: bool = False
    #: The name TLS checks the certificate against when ``target`` is one of that name's IP addresses.
    server_name: str = ""

    @classmethod
    def parse(cls, api_url: str) -> ServerAddress:
        url = api_url.strip()
        if "://" not in url:
            return cls("grpc", url)
        parts = urlsplit(url)
        if parts.scheme in ("http", "https"):
            return cls("http", url.rstrip("/"))
        if parts.scheme in ("grpc", "grpcs"):
            if not parts.netloc:
                raise ValueError(f"api_url {api_url!r} has no host:port")
            return cls("grpc", parts.netloc, tls=parts.scheme == "grpcs")
        raise ValueError(f"api_url {api_url!r}: use http(s):// for the HTTP API, grpc(s)://host:port or host:port")

    @classmethod
    def parse_list(cls, api_url: str) -> tuple[ServerAddress, ...]:
        """Several servers (replicas) separated by commas: ``"10.0.0.5:8080, 10.0.0.6:8080"``."""
        addresses = tuple(cls.parse(part) for part in api_url.split(",") if part.strip())
        if not addresses:
            raise ValueError(f"api_url {api_url!r} names no server")
        return addresses

    @property
    def is_local(self) -> bool:
        """Whether the server runs on this machine (only then is the development key file worth reading)."""
        netloc = urlsplit(self.target).netloc if self.kind == "http" else self.target
        host = netloc.rsplit("@", 1)[-1]
        host = host[1:].split("]")[0] if host.startswith("[") else host.rsplit(":", 1)[0]
        return host in ("localhost", "127.0.0.1", "::1", "0.0.0.0", "")

    def client(self, *, api_key: str, grpc_interceptors: Sequence[Any] = ()) -> AvatarServiceClient:
        if self.kind == "http":
            return HttpClient(self.target, api_key=api_key)
        options = (
            [("grpc.ssl_target_name_override", self.server_name), ("grpc.default_authority", self.server_name)]
            if self.server_name
            else []
        )
        return GrpcClient(self.target, api_key=api_key, tls=self.tls, interceptors=grpc_interceptors, options=options)

    async def resolve(self, getaddrinfo: GetAddrInfo | None = None) -> tuple[ServerAddress, ...]:
        """A gRPC ``host:port`` whose name resolves to several IP addresses (a Kubernetes headless Service, DNS
        round robin) as one address per IP, in the resolver's order; with TLS the certificate is still checked against
        the name. HTTP URLs, names on this machine, IP addresses and names that resolve to one address (or not at all:
        the call then says so) stay as they are."""
        if self.kind != "grpc" or self.is_local:
            return (self,)
        host, _, port = self.target.rpartition(":")
        host = host[1:-1] if host.startswith("[") else host
        if not host or not port.isdigit():
            return (self,)
        lookup = getaddrinfo or asyncio.get_running_loop().getaddrinfo
        try:
            infos = await lookup(host, int(port), type=socket.SOCK_STREAM)
        except OSError:
            return (self,)
        ips = list(dict.fromkeys(str(info[4][0]) for info in infos))
        if len(ips) <= 1:
            return (self,)
        return tuple(
            ServerAddress(
                "grpc",
                f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}",
                tls=self.tls,
                server_name=host if self.tls else "",
            )
            for ip in ips
        )


#: ``loop.getaddrinfo``'s signature (``ServerPool`` takes another resolver, e.g. for names a test serves).
GetAddrInfo = Callable[..., Awaitable[list[tuple[Any, ...]]]]


class ServerPool(AvatarServiceClient):
    """Several Avaluma servers (replicas) as one client. A start tries the addresses in turn, beginning at a random
    one so that agents spread their sessions, and moves on to the next address while a server answers
    ``RESOURCE_EXHAUSTED`` (full) or ``UNAVAILABLE`` (draining before shutdown, or unreachable); other refusals
    (a wrong key, an unknown avatar) end the round at once. Names are resolved at every start (:meth:`ServerAddress.
    resolve`), so replicas that came or went are seen. A session is stopped on the server that started it.

    When every address refused, the error names each address with its answer; its code is ``RESOURCE_EXHAUSTED`` when
    all were full, else ``UNAVAILABLE`` (which :func:`start_with_retries` retries with backoff). With one address the
    server's own error is raised unchanged, as :class:`GrpcClient` / :class:`HttpClient` would."""

    def __init__(
        self,
        addresses: Sequence[ServerAddress],
        *,
        api_key: str,
        grpc_interceptors: Sequence[Any] = (),
        getaddrinfo: GetAddrInfo | None = None,
        shuffle: bool = True,
    ) -> None:
        if not addresses:
            raise ValueError("ServerPool needs at least one address")
        self.addresses = tuple(addresses)
        self.target = ", ".join(a.target for a in self.addresses)
        self._api_key = api_key
        self._interceptors = tuple(grpc_interceptors)
        self._getaddrinfo = getaddrinfo
        self._shuffle = shuffle
        self._clients: dict[ServerAddress, AvatarServiceClient] = {}
        self._started: dict[str, AvatarServiceClient] = {}
        #: Where each started session runs (session id -> server address), for logs and tests.
        self.placements: dict[str, str] = {}

    async def candidates(self) -> list[ServerAddress]:
        """Every address to try, names resolved, without duplicates, in the configured order."""
        found: dict[ServerAddress, None] = {}
        for address in self.addresses:
            for resolved in await address.resolve(self._getaddrinfo):
                found.setdefault(resolved, None)
        return list(found)

    def _client(self, address: ServerAddress) -> AvatarServiceClient:
        client = self._clients.get(address)
        if client is None:
            client = self._clients[address] = address.client(
                api_key=self._api_key, grpc_interceptors=self._interceptors
            )
        return client

    async def start_session(self, request: StartRequest, *, timeout_s: float) -> StartResponse:
        candidates = await self.candidates()
        if self._shuffle and len(candidates) > 1:
            first = random.randrange(len(candidates))
            candidates = candidates[first:] + candidates[:first]
        refusals: list[tuple[str, AvalumaException]] = []
        for address in candidates:
            client = self._client(address)
            try:
                response = await client.start_session(request, timeout_s=timeout_s)
            except AvalumaException as exc:
                if len(candidates) == 1:
                    raise
                if exc.code not in NEXT_SERVER_CODES:
                    raise AvalumaException(f"{client.target}: {exc}", code=exc.code) from None
                refusals.append((client.target, exc))
                logger.info(
                    "avatar server refused the session, trying the next",
                    extra={"target": client.target, "code": exc.code, "error": str(exc)},
                )
                continue
            self._started[response.session_id] = client
            self.placements[response.session_id] = client.target
            return response
        code = "RESOURCE_EXHAUSTED" if all(e.code == "RESOURCE_EXHAUSTED" for _, e in refusals) else "UNAVAILABLE"
        answers = "; ".join(f"{target}: {exc.code} {exc}" for target, exc in refusals)
        raise AvalumaException(f"all {len(refusals)} servers refused: {answers}", code=code)

    async def stop_session(self, session_id: str, *, timeout_s: float = 5.0) -> None:
        client = self._started.pop(session_id, None)
        self.placements.pop(session_id, None)
        if client is None:
            raise AvalumaException(f"session {session_id} was not started through this client", code="NOT_FOUND")
        await client.stop_session(session_id, timeout_s=timeout_s)

    async def set_emotion(self, session_id: str, emotion: str, *, timeout_s: float = 5.0) -> str:
        """On the server that started the session."""
        client = self._started.get(session_id)
        if client is None:
            raise AvalumaException(f"session {session_id} was not started through this client", code="NOT_FOUND")
        return await client.set_emotion(session_id, emotion, timeout_s=timeout_s)

    async def aclose(self) -> None:
        clients, self._clients = list(self._clients.values()), {}
        await asyncio.gather(*(c.aclose() for c in clients), return_exceptions=True)


async def start_with_retries(
    client: AvatarServiceClient,
    request: StartRequest,
    *,
    retry: RetryPolicy,
    sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
) -> StartResponse:
    """Start a session, retrying ``UNAVAILABLE`` / ``DEADLINE_EXCEEDED`` with backoff.

    After the last attempt the :class:`AvalumaException` (code ``UNAVAILABLE``) carries the server's own explanation;
    any other failure is raised at once (it will not get better by retrying), naming the server. A
    :class:`ServerPool` tries every address before an attempt counts as failed.
    """
    where = ("servers at " if "," in client.target else "server at ") + client.target
    last: AvalumaException | None = None
    for attempt in range(retry.attempts):
        try:
            return await client.start_session(request, timeout_s=retry.call_timeout_s)
        except AvalumaException as exc:
            if not exc.retryable:
                raise AvalumaException(
                    f"the Avaluma {where} refused to start the avatar: {exc}", code=exc.code
                ) from None
            last = exc
            if attempt + 1 < retry.attempts:
                delay = retry.delay(attempt)
                logger.warning(
                    "avatar server unavailable, retrying",
                    extra={"target": client.target, "attempt": attempt + 1, "retry_in_s": delay},
                )
                await sleep(delay)
    assert last is not None
    raise AvalumaException(
        f"could not start the avatar through the Avaluma {where} after {retry.attempts} attempts: "
        f"{last}. Check that `avaluma serve` is running there and that it can reach the LiveKit server",
        code="UNAVAILABLE",
    )
