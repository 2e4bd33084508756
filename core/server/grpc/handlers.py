"""Rebuilding a gRPC method handler around a wrapped behaviour: the mechanics shared by our server interceptors.

A ``grpc.aio`` server interceptor that runs code around a handler (error mapping in
:mod:`avaluma.core.server.grpc.errors`, tracing in :mod:`avaluma.core.server.grpc.telemetry`) must return a new handler
of the same kind with the same (de)serializers; only the wrapper itself differs between interceptors.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import grpc

#: A handler's behaviour as ``grpc.aio`` calls it: ``(request_or_iterator, context)``.
Behaviour = Callable[..., Any]
#: Turns a behaviour into a wrapped one of the same calling convention.
Wrapper = Callable[[Behaviour], Behaviour]


def wrap_behaviour(
    handler: grpc.RpcMethodHandler[Any, Any],
    *,
    coroutine: Wrapper,
    generator: Wrapper,
    request_deserializer: Callable[[bytes], Any] | None = None,
) -> grpc.RpcMethodHandler[Any, Any]:
    """Return ``handler`` with its behaviour wrapped (same kind, same (de)serializers).

    ``coroutine`` wraps coroutine functions: every unary-response behaviour, and response-streaming ones that write
    through ``context.write``. ``generator`` wraps async generator functions (response-streaming behaviours that
    yield). grpc.aio inspects the function it is given to tell the two apart, so a wrapper must keep the kind.
    ``request_deserializer``, when given, replaces the handler's (the error mapping makes undecodable requests
    visible to the behaviour instead of letting grpc log a traceback and pass ``None``).
    """
    ser: dict[str, Any] = {
        "request_deserializer": request_deserializer or handler.request_deserializer,
        "response_serializer": handler.response_serializer,
    }

    def streaming(behaviour: Behaviour) -> Behaviour:
        return generator(behaviour) if inspect.isasyncgenfunction(behaviour) else coroutine(behaviour)

    # The stubs type behaviours as sync callables; on a grpc.aio server they are coroutine/async-generator functions.
    if handler.unary_unary is not None:
        return grpc.unary_unary_rpc_method_handler(coroutine(handler.unary_unary), **ser)
    if handler.unary_stream is not None:
        return grpc.unary_stream_rpc_method_handler(streaming(handler.unary_stream), **ser)
    if handler.stream_unary is not None:
        return grpc.stream_unary_rpc_method_handler(coroutine(handler.stream_unary), **ser)
    if handler.stream_stream is not None:
        return grpc.stream_stream_rpc_method_handler(streaming(handler.stream_stream), **ser)
    return handler
