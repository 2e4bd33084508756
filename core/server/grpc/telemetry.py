"""gRPC trace-context propagation: a server interceptor and client interceptors for ``grpc.aio``.

The client side opens a ``CLIENT`` span per call and puts the trace context (``traceparent``, per
``OTEL_PROPAGATORS``) into the call's metadata; the server side continues that trace in a ``SERVER`` span around the
handler, so an agent's ``StartSession`` or a ``Render`` stream and everything the server does for it share one trace.
Span names and attributes follow OpenTelemetry's RPC conventions (``avaluma.v1.RenderService/Render``,
``rpc.system=grpc``, ``rpc.grpc.status_code``).

Both factories return empty lists while tracing is off, so an untraced process pays nothing::

    server = grpc.aio.server(interceptors=[*server_interceptors(), ...])
    channel = grpc.aio.insecure_channel(target, interceptors=client_interceptors())

Health checks and reflection are not traced: probes every few seconds would bury the traces that matter.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any, Final

import grpc
import grpc.aio

from avaluma.core import telemetry
from avaluma.core.server.grpc.handlers import wrap_behaviour

if TYPE_CHECKING:
    _ServerInterceptor = grpc.aio.ServerInterceptor[Any, Any]
    _UnaryUnaryInterceptor = grpc.aio.UnaryUnaryClientInterceptor[Any, Any]
    _UnaryStreamInterceptor = grpc.aio.UnaryStreamClientInterceptor[Any, Any]
    _StreamUnaryInterceptor = grpc.aio.StreamUnaryClientInterceptor[Any, Any]
    _StreamStreamInterceptor = grpc.aio.StreamStreamClientInterceptor[Any, Any]
else:  # not subscriptable at run time
    _ServerInterceptor = grpc.aio.ServerInterceptor
    _UnaryUnaryInterceptor = grpc.aio.UnaryUnaryClientInterceptor
    _UnaryStreamInterceptor = grpc.aio.UnaryStreamClientInterceptor
    _StreamUnaryInterceptor = grpc.aio.StreamUnaryClientInterceptor
    _StreamStreamInterceptor = grpc.aio.StreamStreamClientInterceptor

#: Method prefixes never traced.
UNTRACED_PREFIXES: Final = ("/grpc.health.v1.Health/", "/grpc.reflection.")

# Server spans are errors only for these codes (the caller's mistakes are not the server's failures).
_SERVER_ERROR_CODES: Final = frozenset(
    {
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.UNIMPLEMENTED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DATA_LOSS,
    }
)


def _method_name(method: str | bytes) -> str:
    return method.decode() if isinstance(method, bytes) else method


def rpc_attributes(method: str) -> dict[str, telemetry.AttributeValue]:
    """``rpc.*`` attributes of a full method name ``/package.Service/Method``."""
    service, _, name = method.lstrip("/").partition("/")
    return {telemetry.ATTR_RPC_SYSTEM: "grpc", telemetry.ATTR_RPC_SERVICE: service, telemetry.ATTR_RPC_METHOD: name}


def _traced(method: str) -> bool:
    return not method.startswith(UNTRACED_PREFIXES)


# --- server ---------------------------------------------------------------------------------------------------------


def _finish_server_span(span: Any, code: grpc.StatusCode | None, exc: BaseException | None = None) -> None:
    code = code or grpc.StatusCode.OK
    span.set_attribute(telemetry.ATTR_RPC_GRPC_STATUS_CODE, code.value[0])
    if code in _SERVER_ERROR_CODES:
        telemetry.record_error(span, exc, description=code.name)
    span.end()


def _status(context: grpc.aio.ServicerContext[Any, Any], exc: BaseException | None) -> grpc.StatusCode | None:
    if isinstance(exc, asyncio.CancelledError):
        return grpc.StatusCode.CANCELLED
    code: Any = context.code()
    if isinstance(code, grpc.StatusCode):
        return code
    if exc is not None and not isinstance(exc, grpc.aio.AbortError):
        return grpc.StatusCode.UNKNOWN
    return None


def _server_span(method: str, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
    from opentelemetry.trace import SpanKind

    tracer = telemetry.tracer()
    assert tracer is not None
    parent: Any = telemetry.extract_context(context.invocation_metadata())
    return tracer.start_span(
        method.lstrip("/"), context=parent, kind=SpanKind.SERVER, attributes=rpc_attributes(method)
    )


def _wrap_coroutine(behavior: Callable[..., Awaitable[Any]], method: str) -> Callable[..., Awaitable[Any]]:
    async def wrapped(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        span = _server_span(method, context)
        error: BaseException | None = None
        try:
            with telemetry.activate(span):
                return await behavior(request, context)
        except BaseException as exc:
            error = exc
            raise
        finally:
            _finish_server_span(span, _status(context, error), error)

    return wrapped


def _wrap_generator(behavior: Callable[..., AsyncIterator[Any]], method: str) -> Callable[..., AsyncIterator[Any]]:
    async def wrapped(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[Any]:
        span = _server_span(method, context)
        error: BaseException | None = None
        try:
            # The handler runs in one task per call: attaching the span's context here and detaching it in the
            # finally happen in the same task, across the yields.
            with telemetry.activate(span):
                async for response in behavior(request, context):
                    yield response
        except BaseException as exc:
            error = exc
            raise
        finally:
            _finish_server_span(span, _status(context, error), error)

    return wrapped


def _wrap_handler(handler: grpc.RpcMethodHandler[Any, Any], method: str) -> grpc.RpcMethodHandler[Any, Any]:
    return wrap_behaviour(
        handler,
        coroutine=lambda behavior: _wrap_coroutine(behavior, method),
        generator=lambda behavior: _wrap_generator(behavior, method),
    )


class TracingServerInterceptor(_ServerInterceptor):
    """Continues the caller's trace (from the call metadata) in a ``SERVER`` span around each handler.

    Put it first in the interceptor list so the span also covers authentication failures and error mapping."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any]]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any]:
        handler = await continuation(handler_call_details)
        method = _method_name(handler_call_details.method)
        if handler is None or not telemetry.tracing_enabled() or not _traced(method):
            return handler
        return _wrap_handler(handler, method)


def server_interceptors() -> list[_ServerInterceptor]:
    """Interceptors to put first on a ``grpc.aio`` server: ``[TracingServerInterceptor()]`` when tracing is on (set up
    from the ``OTEL_*`` variables on first use), else ``[]``."""
    telemetry.ensure_configured(service_name="avaluma-server")
    return [TracingServerInterceptor()] if telemetry.tracing_enabled() else []


# --- client ---------------------------------------------------------------------------------------------------------


def _with_context(details: grpc.aio.ClientCallDetails, span: Any) -> grpc.aio.ClientCallDetails:
    """``details`` with the trace context of ``span`` added to its metadata."""
    from opentelemetry import propagate, trace

    carrier: dict[str, str] = {}
    propagate.inject(carrier, context=trace.set_span_in_context(span))
    metadata = grpc.aio.Metadata(*(tuple(details.metadata) if details.metadata is not None else ()))
    for key, value in carrier.items():
        metadata[key] = value
    return grpc.aio.ClientCallDetails(
        method=details.method,
        timeout=details.timeout,
        metadata=metadata,
        credentials=details.credentials,
        wait_for_ready=details.wait_for_ready,
    )


def _client_span(details: grpc.aio.ClientCallDetails) -> Any:
    from opentelemetry.trace import SpanKind

    tracer = telemetry.tracer()
    assert tracer is not None
    method = _method_name(details.method)
    return tracer.start_span(method.lstrip("/"), kind=SpanKind.CLIENT, attributes=rpc_attributes(method))


def _finish_client_span(span: Any, code: grpc.StatusCode) -> None:
    span.set_attribute(telemetry.ATTR_RPC_GRPC_STATUS_CODE, code.value[0])
    if code != grpc.StatusCode.OK:
        telemetry.record_error(span, description=code.name)
    span.end()


async def _finish_when_done(call: Any, span: Any) -> None:
    try:
        code = await call.code()
    except BaseException:
        code = grpc.StatusCode.UNKNOWN
    _finish_client_span(span, code)


_finishing: set[asyncio.Future[None]] = set()


def _end_on_done(call: Any, span: Any) -> None:
    """End ``span`` when the streaming ``call`` terminates (the caller reads the stream after we return)."""

    def done(_call: Any) -> None:
        # A done callback cannot await ``call.code()``; the call is over, so this task finishes at once.
        task = asyncio.ensure_future(_finish_when_done(call, span))
        _finishing.add(task)
        task.add_done_callback(_finishing.discard)

    call.add_done_callback(done)


class _ClientInterceptorBase:
    def _start(self, details: grpc.aio.ClientCallDetails) -> tuple[Any, grpc.aio.ClientCallDetails]:
        if not telemetry.tracing_enabled() or not _traced(_method_name(details.method)):
            return None, details
        span = _client_span(details)
        return span, _with_context(details, span)

    async def _intercept_streaming(self, continuation: Any, client_call_details: Any, request: Any) -> Any:
        # Every call kind but unary-unary: the caller drives it after we return, so its span ends when it is done.
        span, details = self._start(client_call_details)
        call = await continuation(details, request)
        if span is not None:
            _end_on_done(call, span)
        return call


class _UnaryUnary(_ClientInterceptorBase, _UnaryUnaryInterceptor):
    async def intercept_unary_unary(self, continuation: Any, client_call_details: Any, request: Any) -> Any:
        span, details = self._start(client_call_details)
        call = await continuation(details, request)
        if span is not None:
            # Waiting for the status does not consume the response: the caller still awaits the call for it.
            _finish_client_span(span, await call.code())
        return call


class _UnaryStream(_ClientInterceptorBase, _UnaryStreamInterceptor):
    async def intercept_unary_stream(self, continuation: Any, client_call_details: Any, request: Any) -> Any:
        return await self._intercept_streaming(continuation, client_call_details, request)


class _StreamUnary(_ClientInterceptorBase, _StreamUnaryInterceptor):
    async def intercept_stream_unary(self, continuation: Any, client_call_details: Any, request_iterator: Any) -> Any:
        return await self._intercept_streaming(continuation, client_call_details, request_iterator)


class _StreamStream(_ClientInterceptorBase, _StreamStreamInterceptor):
    async def intercept_stream_stream(self, continuation: Any, client_call_details: Any, request_iterator: Any) -> Any:
        return await self._intercept_streaming(continuation, client_call_details, request_iterator)


def client_interceptors() -> list[Any]:
    """Interceptors for a ``grpc.aio`` channel that carry the current trace to the server (a ``CLIENT`` span per
    call, its context in the metadata) when tracing is on (set up from ``OTEL_*`` on first use); else ``[]``."""
    telemetry.ensure_configured(service_name="avaluma-agent")
    if not telemetry.tracing_enabled():
        return []
    return [_UnaryUnary(), _UnaryStream(), _StreamUnary(), _StreamStream()]
