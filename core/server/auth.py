"""API-key authentication for the gRPC server: a server interceptor.

Clients send their key in the ``x-api-key`` metadata, or as ``authorization: Bearer <key>`` (what generic gRPC
tooling sends). Health checks and reflection stay open so load balancers and ``grpcurl`` work without a key.
Keys are compared in constant time against every configured key, so timing reveals neither a key nor which one
matched.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

import grpc
import grpc.aio

from avaluma.core.server.grpc.errors import fail

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
        sent = candidate.encode("utf-8")
        # No early exit: every key is compared, so the time taken does not depend on which key matched.
        matched = False
        for key in self._keys:
            matched |= hmac.compare_digest(sent, key)
        return matched


#: How long a rejected streaming-request call waits for the client's first message before failing (see below).
FIRST_MESSAGE_WAIT_S = 1.0


def _rejecting_handler(handler: grpc.RpcMethodHandler[Any, Any], message: str) -> grpc.RpcMethodHandler[Any, Any]:
    """A handler of the same kind as ``handler`` that fails the call with UNAUTHENTICATED."""

    async def reject(_request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        await fail(context, grpc.StatusCode.UNAUTHENTICATED, message)

    async def reject_after_first(requests: AsyncIterator[Any], context: grpc.aio.ServicerContext[Any, Any]) -> None:
        # Clients of streaming-request calls write their first message (Render's config) right away. Failing the
        # call while that write is in flight makes grpc-python's asyncio client report INTERNAL instead of this
        # status (grpc/grpc#36066), so take the first message, briefly, before failing.
        with contextlib.suppress(Exception):
            await asyncio.wait_for(anext(requests, None), FIRST_MESSAGE_WAIT_S)
        await fail(context, grpc.StatusCode.UNAUTHENTICATED, message)

    ser: dict[str, Any] = {
        "request_deserializer": handler.request_deserializer,
        "response_serializer": handler.response_serializer,
    }
    if handler.unary_unary is not None:
        return grpc.unary_unary_rpc_method_handler(reject, **ser)
    if handler.unary_stream is not None:
        return grpc.unary_stream_rpc_method_handler(reject, **ser)
    if handler.stream_unary is not None:
        return grpc.stream_unary_rpc_method_handler(reject_after_first, **ser)
    return grpc.stream_stream_rpc_method_handler(reject_after_first, **ser)


class ApiKeyInterceptor(_ServerInterceptor):
    """Rejects calls without a valid API key with ``UNAUTHENTICATED``; health and reflection are exempt."""

    def __init__(self, keys: ApiKeys) -> None:
        self._keys = keys

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any]]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any]:
        method = handler_call_details.method
        if method.startswith(EXEMPT_SERVICE_PREFIXES):
            return await continuation(handler_call_details)
        sent = extract_api_key(handler_call_details.invocation_metadata)
        if sent is not None and self._keys.is_valid(sent):
            return await continuation(handler_call_details)
        handler = await continuation(handler_call_details)
        if handler is None:  # unknown method: let gRPC answer UNIMPLEMENTED as usual
            return handler
        reason = "missing" if sent is None else "invalid"
        log.warning("rejected call without a valid API key", extra={"rpc_method": method, "reason": reason})
        return _rejecting_handler(handler, MISSING_KEY_MESSAGE if sent is None else WRONG_KEY_MESSAGE)
