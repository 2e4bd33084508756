"""The one place that maps Avaluma's domain errors to gRPC status codes: a server interceptor.

Servicers raise :class:`~avaluma.core.errors.AvalumaError` subclasses and never call ``context.abort`` for domain
errors; this interceptor turns them into the status named by the error's ``code`` with its message unchanged (the
messages are written for the caller). Anything else is a bug: it is logged with its traceback and the caller gets
``INTERNAL`` with a generic message (internals never leak), while the server keeps serving.

A request message that does not decode is the caller's error, not a bug: grpc would log a traceback and hand the
behaviour ``None``; here the deserializer is wrapped so the call ends with ``INVALID_ARGUMENT`` and one log line,
whether the bad message is a unary request or any message of a request stream.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

import grpc
import grpc.aio

from avaluma.core.errors import AvalumaError, InvalidArgument
from avaluma.core.server.grpc.handlers import wrap_behaviour

if TYPE_CHECKING:
    _ServerInterceptor = grpc.aio.ServerInterceptor[Any, Any]
else:  # not subscriptable at run time
    _ServerInterceptor = grpc.aio.ServerInterceptor

log = logging.getLogger(__name__)

INTERNAL_MESSAGE = "internal server error: the server logged the details; retry, and report it if it persists"


def status_code(error: AvalumaError) -> grpc.StatusCode:
    """The gRPC status of a domain error (``INTERNAL`` for an unknown code name, which is a bug in the error class)."""
    code: grpc.StatusCode | None = getattr(grpc.StatusCode, error.code, None)
    return code if isinstance(code, grpc.StatusCode) else grpc.StatusCode.INTERNAL


def status_number(error: AvalumaError) -> int:
    """The numeric status (google.rpc.Code) of a domain error, for in-band ``StreamError.code`` fields."""
    number: int = status_code(error).value[0]
    return number


async def fail(context: grpc.aio.ServicerContext[Any, Any], code: grpc.StatusCode, message: str) -> None:
    """End the RPC with ``code``; never returns normally.

    Initial metadata goes out first so the status travels in real trailers: a "trailers-only" error response is
    sometimes turned into a bare end of stream by HTTP/2 reverse proxies (seen with Caddy 2.6), and the client then
    reports UNKNOWN instead of our status and message.
    """
    with contextlib.suppress(Exception):  # already sent: the status will travel in trailers anyway
        await context.send_initial_metadata(())
    await context.abort(code, message)


async def _abort(context: grpc.aio.ServicerContext[Any, Any], method: str, exc: BaseException) -> None:
    """Translate ``exc`` into the RPC's final status; never returns normally."""
    if isinstance(exc, AvalumaError):
        log.info("request failed", extra={"rpc_method": method, "status": exc.code, "error_type": type(exc).__name__})
        await fail(context, status_code(exc), exc.message)
    log.error("unexpected error in RPC handler", exc_info=exc, extra={"rpc_method": method})
    await fail(context, grpc.StatusCode.INTERNAL, INTERNAL_MESSAGE)


class Undecodable:
    """Stands in for a request message that is not valid protobuf of the method's request type."""

    __slots__ = ("error", "type_name")

    def __init__(self, type_name: str, error: Exception) -> None:
        self.type_name = type_name
        self.error = error

    def to_error(self) -> InvalidArgument:
        return InvalidArgument(
            f"a request message could not be decoded as {self.type_name} ({type(self.error).__name__}): send "
            "protobuf-encoded messages of the method's request type (see avaluma/v1/*.proto)"
        )


def tolerant_deserializer(deserializer: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    """``deserializer``, returning :class:`Undecodable` instead of raising (grpc would log and pass ``None``)."""
    if deserializer is None:
        return None
    owner = getattr(deserializer, "__self__", None)
    descriptor = getattr(owner, "DESCRIPTOR", None)
    type_name = str(getattr(descriptor, "full_name", "the request type"))

    def deserialize(raw: bytes) -> Any:
        try:
            return deserializer(raw)
        except Exception as exc:
            return Undecodable(type_name, exc)

    return deserialize


async def checked_requests(requests: AsyncIterator[Any]) -> AsyncIterator[Any]:
    """A request stream that raises :class:`InvalidArgument` at the first message that did not decode."""
    async for request in requests:
        if isinstance(request, Undecodable):
            raise request.to_error()
        yield request


def _checked(request: Any) -> Any:
    """The request a behaviour gets: a decoded message, or a stream of them that raises on an undecodable one."""
    if isinstance(request, Undecodable):
        raise request.to_error()
    if hasattr(request, "__aiter__"):
        return checked_requests(request)
    return request


def _passes_through(exc: BaseException) -> bool:
    # AbortError is how context.abort ends an RPC (it already carries its status); cancellation must propagate.
    return isinstance(exc, grpc.aio.AbortError) or not isinstance(exc, Exception)


def _wrap_coroutine(
    behavior: Callable[[Any, grpc.aio.ServicerContext[Any, Any]], Awaitable[Any]], method: str
) -> Callable[[Any, grpc.aio.ServicerContext[Any, Any]], Awaitable[Any]]:
    async def wrapped(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        try:
            return await behavior(_checked(request), context)
        except BaseException as exc:
            if _passes_through(exc):
                raise
            await _abort(context, method, exc)

    return wrapped


def _wrap_generator(behavior: Callable[..., AsyncIterator[Any]], method: str) -> Callable[..., AsyncIterator[Any]]:
    async def wrapped(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[Any]:
        try:
            async for response in behavior(_checked(request), context):
                yield response
        except BaseException as exc:
            if _passes_through(exc):
                raise
            await _abort(context, method, exc)

    return wrapped


def wrap_handler(handler: grpc.RpcMethodHandler[Any, Any], method: str) -> grpc.RpcMethodHandler[Any, Any]:
    """Return ``handler`` with its behaviour wrapped by the error mapping (same kind, same (de)serializers)."""
    return wrap_behaviour(
        handler,
        coroutine=lambda behavior: _wrap_coroutine(behavior, method),
        generator=lambda behavior: _wrap_generator(behavior, method),
        request_deserializer=tolerant_deserializer(handler.request_deserializer),
    )


class ErrorMappingInterceptor(_ServerInterceptor):
    """Maps :class:`AvalumaError` to its status code and unexpected exceptions to ``INTERNAL`` (logged)."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any]]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any]:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        return wrap_handler(handler, handler_call_details.method)
