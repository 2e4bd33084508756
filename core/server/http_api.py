"""The HTTP API compatible with the hosted avatar service, so an agent written for it can point at this server.

- ``POST /v1/livekit/start-avatar``: JSON ``{livekit_url, livekit_token, avatar_id?, accepted_sender_identities?,
  agent_identity?, idle_timeout_s?, emotion?, publish?: {video_codec?, video_max_bitrate?, simulcast?},
  render?: {width?, height?, fps?}}`` ->
  ``{status: "success", session_id, avatar_participant_identity}``;
- ``POST /v1/livekit/stop-avatar``: JSON ``{session_id}`` -> ``{status: "success"}``;
- ``POST /v1/livekit/set-emotion``: JSON ``{session_id, emotion}`` -> ``{status: "success", session_id, emotion}``
  (from this point of the session's audio on, eased; an unknown name is ``400`` listing the valid ones);
- ``GET /health``: ``{status: "ok", active_sessions, max_sessions, free_sessions, behind, draining, ready}`` (no key
  needed, for load balancers; always 200 while the process serves);
- ``GET /ready``: the same body, ``200`` while the server admits new sessions and ``503`` when it is full, draining,
  or behind (its sessions missing frame deadlines) (a Kubernetes readiness probe: new sessions then go to other
  replicas, running ones go on);
- ``GET /openapi.json``: this API as an OpenAPI 3.1 document, made from the typed models in ``http_models.py``.

The API key goes in the ``api-secret`` header (``x-api-key`` and ``Authorization: Bearer`` work too, as on gRPC).
Each key has a token-bucket rate limit; a refused call gets ``429`` with ``Retry-After``. Failed authentication is
throttled per client address the same way (:class:`~avaluma.core.server.auth.FailureThrottle`; a valid key never
is), and rejections are logged sampled. A connection that has not sent complete request headers within
``http.header_timeout_s`` (or sits idle that long between requests) is closed; a body not received within
``http.body_timeout_s`` is answered ``408``. Errors are JSON ``{status: "error", code, message}`` where ``code`` is
the gRPC status name, so both APIs report the same thing.

A thin adapter: it validates the body's shape and delegates to :class:`~avaluma.core.live.sessions.SessionRegistry`,
exactly like the gRPC ``AvatarService``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Final

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from avaluma.core.errors import AvalumaError, DeadlineExceeded, InvalidArgument, ResourceExhausted, Unauthenticated
from avaluma.core.live.sessions import SessionRegistry, SessionSlots, StartRequest
from avaluma.core.media import EMOTIONS, RenderOptions
from avaluma.core.server.auth import ApiKeys, FailureThrottle, LogSampler
from avaluma.core.server.http_models import (
    HealthResponse,
    SetEmotionResponse,
    StartAvatarResponse,
    StopAvatarResponse,
    openapi,
)

log = logging.getLogger(__name__)

START_PATH: Final = "/v1/livekit/start-avatar"
STOP_PATH: Final = "/v1/livekit/stop-avatar"
SET_EMOTION_PATH: Final = "/v1/livekit/set-emotion"
HEALTH_PATH: Final = "/health"
READY_PATH: Final = "/ready"
#: The OpenAPI 3.1 document of this API (no key needed), made from the models in http_models.py.
OPENAPI_PATH: Final = "/openapi.json"
API_SECRET_HEADER: Final = "api-secret"
MAX_BODY_BYTES: Final = 64 * 1024

#: HTTP status of each domain error code.
HTTP_STATUS: Final[dict[str, int]] = {
    "INVALID_ARGUMENT": 400,
    "DEADLINE_EXCEEDED": 408,
    "UNAUTHENTICATED": 401,
    "PERMISSION_DENIED": 403,
    "NOT_FOUND": 404,
    "ALREADY_EXISTS": 409,
    "FAILED_PRECONDITION": 412,
    "RESOURCE_EXHAUSTED": 503,  # the server is full; rate limits answer 429 themselves
    "UNAVAILABLE": 503,
    "INTERNAL": 500,
}

_START_FIELDS: Final = {
    "livekit_url": str,
    "livekit_token": str,
    "avatar_id": str,
    "accepted_sender_identities": list,
    "agent_identity": str,
    "idle_timeout_s": int,
    "emotion": str,
    "publish": dict,
    "render": dict,
}
_PUBLISH_FIELDS: Final = {"video_codec": str, "video_max_bitrate": int, "simulcast": bool}
_RENDER_FIELDS: Final = ("width", "height", "fps")


@dataclass
class RateLimiter:
    """A token bucket per key: ``per_minute`` sustained, ``burst`` at once. ``clock`` is injectable for tests."""

    per_minute: float
    burst: int
    clock: Callable[[], float] = time.monotonic
    _buckets: dict[str, tuple[float, float]] = field(default_factory=dict)

    def acquire(self, key: str) -> float:
        """Take one token for ``key``; returns 0 when allowed, else the seconds to wait before retrying."""
        now = self.clock()
        rate = self.per_minute / 60.0
        tokens, last = self._buckets.get(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - last) * rate)
        if tokens >= 1.0:
            self._buckets[key] = (tokens - 1.0, now)
            return 0.0
        self._buckets[key] = (tokens, now)
        return (1.0 - tokens) / rate


def _error_response(
    exc: AvalumaError, *, status: int | None = None, headers: dict[str, str] | None = None
) -> web.Response:
    body = {"status": "error", "code": exc.code, "message": exc.message}
    return web.json_response(body, status=status or HTTP_STATUS.get(exc.code, 500), headers=headers)


def _request_key(request: web.Request) -> str | None:
    value = request.headers.get(API_SECRET_HEADER) or request.headers.get("x-api-key")
    if value:
        return value.strip()
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


async def _json_body(request: web.Request, timeout_s: float = 10.0) -> dict[str, Any]:
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        raise InvalidArgument(f"request body is larger than {MAX_BODY_BYTES} bytes: send only the documented fields")
    try:
        raw = await asyncio.wait_for(request.content.read(MAX_BODY_BYTES + 1), timeout_s)
    except TimeoutError:
        raise DeadlineExceeded(
            f"the request body did not arrive within {timeout_s:g} s (http.body_timeout_s): send it right after the "
            "headers"
        ) from None
    if len(raw) > MAX_BODY_BYTES:
        raise InvalidArgument(f"request body is larger than {MAX_BODY_BYTES} bytes: send only the documented fields")
    try:
        body = json.loads(raw or b"{}")
    except (ValueError, RecursionError):  # RecursionError: nested deeper than the parser's stack
        raise InvalidArgument(
            "request body is not JSON: send a JSON object with Content-Type application/json"
        ) from None
    if not isinstance(body, dict):
        raise InvalidArgument("request body must be a JSON object")
    return body


def parse_start_body(body: dict[str, Any], defaults: RenderOptions | None = None) -> StartRequest:
    """Check the types of a start-avatar body and build the registry's request, its ``render`` over ``defaults``
    (the server's). Unknown fields are ignored (other clients of the hosted API send their own), except inside
    ``publish`` and ``render``; wrong types are :class:`InvalidArgument` naming the field."""
    for name, kind in _START_FIELDS.items():
        value = body.get(name)
        if value is None:
            continue
        if kind is int and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
            raise InvalidArgument(f"{name} must be a non-negative whole number of seconds")
        if kind is dict and not isinstance(value, dict):
            fields = _PUBLISH_FIELDS if name == "publish" else _RENDER_FIELDS
            raise InvalidArgument(f"{name} must be a JSON object: {{{', '.join(fields)}}}")
        if kind is not int and not isinstance(value, kind):
            raise InvalidArgument(f"{name} must be a JSON {'string' if kind is str else 'array of strings'}")
    senders = body.get("accepted_sender_identities") or []
    if not all(isinstance(s, str) and s for s in senders):
        raise InvalidArgument("accepted_sender_identities must be an array of non-empty strings")
    publish: dict[str, Any] = body.get("publish") or {}
    unknown = sorted(set(publish) - set(_PUBLISH_FIELDS))
    if unknown:  # a typo here would silently publish with other settings than asked for
        raise InvalidArgument(f"publish has unknown fields {', '.join(unknown)}: use {', '.join(_PUBLISH_FIELDS)}")
    for name, kind in _PUBLISH_FIELDS.items():
        value = publish.get(name)
        if value is None:
            continue
        if (kind is int and (isinstance(value, bool) or not isinstance(value, int) or value < 0)) or (
            kind is not int and not isinstance(value, kind)
        ):
            what = {str: "a string: vp8 or h264", int: "a non-negative whole number of bits per second"}
            raise InvalidArgument(f"publish.{name} must be {what.get(kind, 'true or false')}")
    render: dict[str, Any] = body.get("render") or {}
    unknown = sorted(set(render) - set(_RENDER_FIELDS))
    if unknown:
        raise InvalidArgument(f"render has unknown fields {', '.join(unknown)}: use {', '.join(_RENDER_FIELDS)}")
    for name in _RENDER_FIELDS:
        value = render.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
            raise InvalidArgument(f"render.{name} must be a non-negative whole number (0 = the server's default)")
    options = None
    if render:
        options = (defaults or RenderOptions()).resolve(
            fps=render.get("fps") or 0,
            width=render.get("width") or 0,
            height=render.get("height") or 0,
            field="render",
        )
    return StartRequest(
        livekit_url=body.get("livekit_url") or "",
        livekit_token=body.get("livekit_token") or "",
        avatar_id=body.get("avatar_id") or "",
        render=options,
        accepted_senders=tuple(senders),
        agent_identity=body.get("agent_identity") or None,
        idle_timeout_s=int(body.get("idle_timeout_s") or 0),
        emotion=body.get("emotion") or "",
        video_codec=publish.get("video_codec") or "",
        video_max_bitrate=int(publish.get("video_max_bitrate") or 0),
        simulcast=publish.get("simulcast"),
    )


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class HttpApi:
    """The aiohttp application: auth, rate limits and error mapping around three small handlers."""

    def __init__(
        self,
        sessions: SessionRegistry,
        slots: SessionSlots,
        keys: ApiKeys,
        limiter: RateLimiter,
        *,
        body_timeout_s: float = 10.0,
        throttle: FailureThrottle | None = None,
    ) -> None:
        self._sessions = sessions
        self._slots = slots
        self._keys = keys
        self._limiter = limiter
        self._body_timeout_s = body_timeout_s
        self._throttle = throttle if throttle is not None else FailureThrottle()
        self._log = LogSampler()

    def app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_BODY_BYTES)
        app.router.add_post(START_PATH, self._guarded(self._start))
        app.router.add_post(STOP_PATH, self._guarded(self._stop))
        app.router.add_post(SET_EMOTION_PATH, self._guarded(self._set_emotion))
        app.router.add_get(HEALTH_PATH, self._health)
        app.router.add_get(READY_PATH, self._ready)
        app.router.add_get(OPENAPI_PATH, self._openapi)
        return app

    def _guarded(self, handler: Handler) -> Handler:
        async def guarded(request: web.Request) -> web.StreamResponse:
            key = _request_key(request)
            if key is None or not self._keys.is_valid(key):
                # A valid key is never throttled (clients behind one proxy share its address); failures are.
                client = request.remote or ""
                blocked_s = self._throttle.retry_after(client)
                if blocked_s > 0:
                    return _error_response(
                        ResourceExhausted(self._throttle.message(blocked_s)),
                        status=429,
                        headers={"Retry-After": str(math.ceil(blocked_s))},
                    )
                self._throttle.failed(client)
                dropped = self._log.take()
                if dropped is not None:
                    log.warning(
                        "rejected HTTP call without a valid API key",
                        extra={"path": request.path, "not_logged_since_last": dropped},
                    )
                return _error_response(
                    Unauthenticated(
                        f"missing or invalid API key: send one of the server's keys (AVALUMA_API_KEYS) in the "
                        f"'{API_SECRET_HEADER}' header"
                    )
                )
            wait_s = self._limiter.acquire(key)
            if wait_s > 0:
                return _error_response(
                    ResourceExhausted(
                        f"rate limit of {self._limiter.per_minute:g} requests per minute for this API key reached: "
                        f"retry in {math.ceil(wait_s)} s"
                    ),
                    status=429,
                    headers={"Retry-After": str(math.ceil(wait_s))},
                )
            try:
                return await handler(request)
            except AvalumaError as exc:
                return _error_response(exc)
            except Exception:
                log.exception("HTTP handler failed", extra={"path": request.path})
                response: web.StreamResponse = web.json_response(
                    {"status": "error", "code": "INTERNAL", "message": "internal error; see the server log"},
                    status=500,
                )
                return response

        return guarded

    async def _start(self, request: web.Request) -> web.StreamResponse:
        session = await self._sessions.start(
            parse_start_body(await _json_body(request, self._body_timeout_s), self._sessions.render_defaults)
        )
        body = StartAvatarResponse(session_id=session.id, avatar_participant_identity=session.identity)
        response: web.StreamResponse = web.json_response(body.model_dump())
        return response

    async def _stop(self, request: web.Request) -> web.StreamResponse:
        body = await _json_body(request, self._body_timeout_s)
        session_id = body.get("session_id")
        if not isinstance(session_id, str) or not session_id:
            raise InvalidArgument("session_id is required: pass the id start-avatar returned")
        await self._sessions.stop(session_id)
        return web.json_response(StopAvatarResponse().model_dump())

    async def _set_emotion(self, request: web.Request) -> web.StreamResponse:
        body = await _json_body(request, self._body_timeout_s)
        session_id, emotion = body.get("session_id"), body.get("emotion")
        if not isinstance(session_id, str) or not session_id:
            raise InvalidArgument("session_id is required: pass the id start-avatar returned")
        if not isinstance(emotion, str):
            raise InvalidArgument(f"emotion is required: a JSON string, one of {', '.join(EMOTIONS)}")
        session = self._sessions.set_emotion(session_id, emotion)
        return web.json_response(SetEmotionResponse(session_id=session.id, emotion=session.emotion).model_dump())

    def _load(self) -> HealthResponse:
        free = self._slots.free
        return HealthResponse(
            active_sessions=len(self._sessions.list()),
            max_sessions=self._slots.effective_limit,
            free_sessions=free,
            behind=self._slots.behind,
            draining=self._slots.draining,
            ready=free > 0,
        )

    async def _health(self, _request: web.Request) -> web.StreamResponse:
        response: web.StreamResponse = web.json_response(self._load().model_dump())
        return response

    async def _ready(self, _request: web.Request) -> web.StreamResponse:
        body = self._load()
        response: web.StreamResponse = web.json_response(body.model_dump(), status=200 if body.ready else 503)
        return response

    async def _openapi(self, _request: web.Request) -> web.StreamResponse:
        from importlib.metadata import PackageNotFoundError, version

        try:
            document = openapi(version("avaluma"))
        except PackageNotFoundError:
            document = openapi()
        response: web.StreamResponse = web.json_response(document)
        return response


class _WireLog(logging.LoggerAdapter):  # type: ignore[type-arg]
    """aiohttp's server logger, minus the traceback at ERROR it writes for every malformed request a client sends.

    Such a request is answered 400 by aiohttp and is the client's problem: one sampled INFO line, no traceback. Real
    failures inside aiohttp keep their traceback.
    """

    def __init__(self) -> None:
        super().__init__(logging.getLogger("aiohttp.server"), {})
        self._sampler = LogSampler()

    def exception(self, msg: object, *args: object, exc_info: Any = True, **kwargs: Any) -> None:
        if isinstance(exc_info, HttpProcessingError):
            dropped = self._sampler.take()
            if dropped is not None:
                log.info(
                    "malformed HTTP request answered with 400",
                    extra={"error": exc_info.message[:200], "not_logged_since_last": dropped},
                )
            return
        self.logger.exception(msg, *args, exc_info=exc_info, **kwargs)


@dataclass
class RunningHttpApi:
    runner: web.AppRunner
    host: str
    port: int

    async def stop(self) -> None:
        await self.runner.cleanup()


async def start_http_api(
    sessions: SessionRegistry,
    slots: SessionSlots,
    keys: ApiKeys,
    *,
    host: str,
    port: int,
    rate_limit_per_minute: float = 60,
    rate_limit_burst: int = 10,
    header_timeout_s: float = 10.0,
    body_timeout_s: float = 10.0,
) -> RunningHttpApi:
    """Serve the HTTP API on ``host:port`` (0 = a free port) and return once it listens.

    ``header_timeout_s``: a connection without a complete request (headers) for that long is closed, also between
    keep-alive requests; ``body_timeout_s``: a body that does not arrive in time is answered ``408``.
    """
    api = HttpApi(
        sessions, slots, keys, RateLimiter(rate_limit_per_minute, rate_limit_burst), body_timeout_s=body_timeout_s
    )
    # aiohttp's keep-alive timer runs from the connection's start and closes a connection still waiting for a whole
    # request when it fires: that is the header read timeout (its default, an hour, let half-sent requests pile up).
    runner = web.AppRunner(api.app(), access_log=None, keepalive_timeout=header_timeout_s, logger=_WireLog())
    await runner.setup()
    site = web.TCPSite(runner, host, port, reuse_port=False)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        from avaluma.core.errors import ConfigError

        raise ConfigError(
            # asyncio's own text repeats the address; the errno's is the short "Address already in use".
            f"cannot listen for HTTP on {host}:{port} ({os.strerror(exc.errno) if exc.errno else exc}): is another "
            "process using the port? Pick another with --http-port (or http.port; 0 for any free port)"
        ) from exc
    # aiohttp does not expose the bound port; its server object does (port 0 = a free port).
    server: Any = site._server
    sockets = getattr(server, "sockets", None) or []
    bound = int(sockets[0].getsockname()[1]) if sockets else port
    log.info("HTTP API listening", extra={"host": host, "port": bound})
    return RunningHttpApi(runner=runner, host=host, port=bound)
