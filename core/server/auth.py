"""API-key authentication for the gRPC server: a server interceptor.

Clients send their key in the ``x-api-key`` metadata, or as ``authorization: Bearer <key>`` (what generic gRPC
tooling sends). Health checks and reflection stay open so load balancers and ``grpcurl`` work without a key.
Keys are compared in constant time against every configured key, so timing reveals neither a key nor which one
matched.

Failed authentication is throttled per client address (:class:`FailureThrottle`; the HTTP API has its own): after a
burst of failures, further calls from that address without a valid key get ``RESOURCE_EXHAUSTED`` (HTTP 429) until the
bucket refills, so keys cannot be guessed at line rate. A valid key is never throttled: clients behind one proxy share
its address, and one misconfigured client must not lock the others out. Rejections are logged through a
:class:`LogSampler` (one line per interval with the count of those left out), so a flood does not flood the log.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import secrets
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

import grpc
import grpc.aio

from avaluma.core.server.grpc.errors import fail
from avaluma.core.server.grpc.handlers import wrap_behaviour

if TYPE_CHECKING:
    _ServerInterceptor = grpc.aio.ServerInterceptor[Any, Any]
else:  # not subscriptable at run time
    _ServerInterceptor = grpc.aio.ServerInterceptor

log = logging.getLogger(__name__)

API_KEY_METADATA = "x-api-key"
AUTHORIZATION_METADATA = "authorization"

#: Services reachable without a key: health checks (load balancers, orchestrators) and reflection (tooling).
EXEMPT_SERVICE_PREFIXES: tuple[str, ...] = (
    "/grpc.health.v1.Health/",
    "/grpc.reflection.v1alpha.ServerReflection/",
    "/grpc.reflection.v1.ServerReflection/",
)

MISSING_KEY_MESSAGE = (
    f"missing API key: send it in the '{API_KEY_METADATA}' request metadata "
    f"(or as '{AUTHORIZATION_METADATA}: Bearer <key>')"
)
WRONG_KEY_MESSAGE = (
    f"invalid API key: the key sent in '{API_KEY_METADATA}' (or '{AUTHORIZATION_METADATA}: Bearer') is not one of "
    "the server's keys; check AVALUMA_API_KEYS on the server, or the key printed when it started"
)


def generate_api_key() -> str:
    """A fresh random key (URL-safe, 256 bits) for servers started without configured keys."""
    return "avk_" + secrets.token_urlsafe(32)


def extract_api_key(metadata: Iterable[tuple[str, str | bytes]] | None) -> str | None:
    """The key a caller sent: ``x-api-key`` wins over ``authorization: Bearer``; ``None`` when neither is present."""
    bearer: str | None = None
    for raw_key, raw_value in metadata or ():
        key = raw_key.lower()
        value = raw_value.decode("utf-8", "replace") if isinstance(raw_value, bytes) else raw_value
        if key == API_KEY_METADATA:
            return value.strip()
        if key == AUTHORIZATION_METADATA:
            scheme, _, token = value.strip().partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                bearer = token.strip()
    return bearer


class ApiKeys:
    """The set of accepted keys, checked in constant time."""

    def __init__(self, keys: Sequence[str]) -> None:
        cleaned = [k for k in keys if k]
        if not cleaned:
            raise ValueError("at least one API key is required: an open server is never created by accident")
        self._keys = [k.encode("utf-8") for k in cleaned]

    def __len__(self) -> int:
        return len(self._keys)

    def is_valid(self, candidate: str) -> bool:
        # surrogateescape: HTTP servers hand over undecodable header bytes as lone surrogates; such a key is simply
        # wrong, never an error.
        sent = candidate.encode("utf-8", "surrogateescape")
        # No early exit: every key is compared, so the time taken does not depend on which key matched.
        matched = False
        for key in self._keys:
            matched |= hmac.compare_digest(sent, key)
        return matched


#: How long a rejected streaming-request call waits for the client's first message before failing (see below).
FIRST_MESSAGE_WAIT_S = 1.0
#: Failed authentications one client address may make at once, and how many more per minute after that.
AUTH_FAILURE_BURST = 20
AUTH_FAILURES_PER_MINUTE = 30.0
#: Addresses remembered by the throttle (the oldest are forgotten first): bounds its memory under a spread attack.
MAX_TRACKED_CLIENTS = 10_000
#: Rejected calls are logged at most once per this many seconds (with the count of those not logged).
REJECTION_LOG_INTERVAL_S = 10.0


class FailureThrottle:
    """Failed authentications per client address, as token buckets. ``clock`` is injectable for tests."""

    def __init__(
        self,
        burst: int = AUTH_FAILURE_BURST,
        per_minute: float = AUTH_FAILURES_PER_MINUTE,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_clients: int = MAX_TRACKED_CLIENTS,
    ) -> None:
        self.burst = burst
        self.per_minute = per_minute
        self._clock = clock
        self._max_clients = max_clients
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def _tokens(self, client: str, now: float) -> float:
        tokens, last = self._buckets.get(client, (float(self.burst), now))
        return min(float(self.burst), tokens + (now - last) * self.per_minute / 60.0)

    def retry_after(self, client: str) -> float:
        """0 when ``client`` may try (again); else the seconds until it may."""
        tokens = self._tokens(client, self._clock())
        return 0.0 if tokens >= 1.0 else (1.0 - tokens) * 60.0 / self.per_minute

    def failed(self, client: str) -> None:
        now = self._clock()
        self._buckets[client] = (max(0.0, self._tokens(client, now) - 1.0), now)
        self._buckets.move_to_end(client)
        while len(self._buckets) > self._max_clients:
            self._buckets.popitem(last=False)

    def message(self, wait_s: float) -> str:
        return (
            f"too many failed authentication attempts from this address: retry in {max(1, round(wait_s))} s with a "
            "valid API key"
        )


class LogSampler:
    """Lets one log line through per ``interval_s`` and counts the rest (reported with the next line)."""

    def __init__(self, interval_s: float = REJECTION_LOG_INTERVAL_S, clock: Callable[[], float] = time.monotonic):
        self._interval_s = interval_s
        self._clock = clock
        self._next = 0.0
        self._dropped = 0

    def take(self) -> int | None:
        """``None``: do not log now. Else log, and say how many lines were left out since the last one."""
        now = self._clock()
        if now < self._next:
            self._dropped += 1
            return None
        self._next = now + self._interval_s
        dropped, self._dropped = self._dropped, 0
        return dropped


def peer_address(peer: str) -> str:
    """The client address of a grpc peer string (``ipv4:1.2.3.4:5678``, ``ipv6:[::1]:5678``), without the port."""
    kind, _, rest = peer.partition(":")
    if kind == "ipv6" and rest.startswith("["):
        return rest[1 : rest.find("]")] or rest
    if kind == "ipv4":
        return rest.rpartition(":")[0] or rest
    return peer  # unix sockets and others: the whole string names the client


class ApiKeyInterceptor(_ServerInterceptor):
    """Rejects calls without a valid API key with ``UNAUTHENTICATED``; health and reflection are exempt.

    Failures count against the caller's address in ``throttle``; an address over its budget gets
    ``RESOURCE_EXHAUSTED`` for calls without a valid key until the budget refills.
    """

    def __init__(self, keys: ApiKeys, throttle: FailureThrottle | None = None) -> None:
        self._keys = keys
        self.throttle = throttle if throttle is not None else FailureThrottle()
        self._log = LogSampler()

    def _guarded(
        self, handler: grpc.RpcMethodHandler[Any, Any], method: str, sent: str | None
    ) -> grpc.RpcMethodHandler[Any, Any]:
        """``handler`` behind the throttle (the peer is only known inside the call) and the key check."""
        valid = sent is not None and self._keys.is_valid(sent)
        reason = "missing" if sent is None else "invalid"
        throttle = self.throttle
        sampler = self._log

        def verdict(context: grpc.aio.ServicerContext[Any, Any]) -> tuple[grpc.StatusCode, str] | None:
            if valid:
                return None
            client = peer_address(context.peer() or "")
            wait_s = throttle.retry_after(client)
            if wait_s > 0:  # over the budget: refused as rate-limited, neither counted nor logged
                return grpc.StatusCode.RESOURCE_EXHAUSTED, throttle.message(wait_s)
            throttle.failed(client)
            dropped = sampler.take()
            if dropped is not None:
                log.warning(
                    "rejected call without a valid API key",
                    extra={"rpc_method": method, "reason": reason, "not_logged_since_last": dropped},
                )
            return grpc.StatusCode.UNAUTHENTICATED, MISSING_KEY_MESSAGE if sent is None else WRONG_KEY_MESSAGE

        async def refuse(
            request: Any, context: grpc.aio.ServicerContext[Any, Any], code: grpc.StatusCode, message: str
        ) -> None:
            if hasattr(request, "__aiter__"):
                # Clients of streaming-request calls write their first message (Render's config) right away. Failing
                # the call while that write is in flight makes grpc-python's asyncio client report INTERNAL instead
                # of this status (grpc/grpc#36066), so take the first message, briefly, before failing.
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(anext(request, None), FIRST_MESSAGE_WAIT_S)
            await fail(context, code, message)

        def coroutine(behaviour: Any) -> Any:
            async def wrapped(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
                refused = verdict(context)
                if refused is not None:
                    await refuse(request, context, *refused)
                return await behaviour(request, context)

            return wrapped

        def generator(behaviour: Any) -> Any:
            async def wrapped(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[Any]:
                refused = verdict(context)
                if refused is not None:
                    await refuse(request, context, *refused)
                async for response in behaviour(request, context):
                    yield response

            return wrapped

        return wrap_behaviour(handler, coroutine=coroutine, generator=generator)

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any]]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any]:
        method = handler_call_details.method
        if method.startswith(EXEMPT_SERVICE_PREFIXES):
            return await continuation(handler_call_details)
        sent = extract_api_key(handler_call_details.invocation_metadata)
        handler = await continuation(handler_call_details)
        if handler is None:  # unknown method: let gRPC answer UNIMPLEMENTED as usual
            return handler
        guarded: grpc.RpcMethodHandler[Any, Any] = self._guarded(handler, method, sent)
        return guarded
