"""Server interceptors shared by every service: API-key auth and call observability."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import Any, TypeAlias

import grpc
from google.protobuf.message import DecodeError
from grpc.aio import ServicerContext
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from percept.runtime.auth import ApiKey, KeyRing, bearer_token, required_scope
from percept.runtime.metrics import GrpcMetrics
from percept.runtime.streams import MalformedMessageError

log = logging.getLogger("percept.calls")

Behavior = Callable[[Any, Any], Any]
# RpcMethodHandler is generic only in the type stubs.
Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"
Continuation: TypeAlias = "Callable[[grpc.HandlerCallDetails], Awaitable[Handler | None]]"
_CODES_BY_VALUE = {code.value[0]: code for code in grpc.StatusCode}


def split_method(full_method: str) -> tuple[str, str]:
    """'/percept.v1.Speech/Recognize' -> ('percept.v1.Speech', 'Recognize')."""
    service, _, method = full_method.lstrip("/").partition("/")
    return service, method


def rpc_type(handler: Handler) -> str:
    if handler.request_streaming and handler.response_streaming:
        return "bidi_stream"
    if handler.request_streaming:
        return "client_stream"
    if handler.response_streaming:
        return "server_stream"
    return "unary"


def _behavior_of(handler: Handler) -> Behavior:
    behavior = {
        "unary": handler.unary_unary,
        "server_stream": handler.unary_stream,
        "client_stream": handler.stream_unary,
        "bidi_stream": handler.stream_stream,
    }[rpc_type(handler)]
    if behavior is None:
        raise TypeError(f"handler of kind {rpc_type(handler)} has no behavior")
    return behavior


async def _response(result: Any) -> Any:
    """A unary or client-streaming behaviour's response: a coroutine's, or returned as is."""
    return await result if asyncio.iscoroutine(result) else result


async def _responses(result: Any) -> AsyncIterator[Any]:
    """A response-streaming behaviour's messages: it is an async generator, or a coroutine
    that writes them itself with context.write()."""
    if hasattr(result, "__aiter__"):
        async for item in result:
            yield item
    else:
        await result


def replace_behavior(
    handler: Handler,
    behavior: Behavior,
    request_deserializer: Callable[[bytes], Any] | None = None,
) -> Handler:
    """A handler of the same streaming kind and serializers that runs `behavior`."""
    factory = {
        "unary": grpc.unary_unary_rpc_method_handler,
        "server_stream": grpc.unary_stream_rpc_method_handler,
        "client_stream": grpc.stream_unary_rpc_method_handler,
        "bidi_stream": grpc.stream_stream_rpc_method_handler,
    }[rpc_type(handler)]
    return factory(
        behavior,
        request_deserializer=request_deserializer or handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )


def status_of(context: ServicerContext[Any, Any]) -> grpc.StatusCode:
    """The status a handler ended with (aio reports either an enum or its integer)."""
    code: Any = context.code()
    if code is None:
        return grpc.StatusCode.OK
    if isinstance(code, grpc.StatusCode):
        return code
    return _CODES_BY_VALUE.get(int(code), grpc.StatusCode.UNKNOWN)


@dataclass(frozen=True)
class _Malformed:
    """What the guarded deserializer returns for bytes that are no message of the type."""

    error: str


class MalformedRequestInterceptor(grpc.aio.ServerInterceptor):
    """Bytes that are no message of the method's request type get INVALID_ARGUMENT naming
    the type (a client stream: MalformedMessageError naming the message's position, which
    the handler answers with INVALID_ARGUMENT). grpcio itself would answer UNKNOWN."""

    async def intercept_service(
        self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> Handler | None:
        handler = await continuation(handler_call_details)
        if handler is None or handler.request_deserializer is None:
            return handler
        parse = handler.request_deserializer
        kind = getattr(getattr(parse, "__self__", None), "DESCRIPTOR", None)
        name = getattr(kind, "name", "request")

        def guarded(data: bytes) -> Any:
            try:
                return parse(data)
            except DecodeError as exc:
                return _Malformed(f"not a {name} message ({exc})")

        behavior = _behavior_of(handler)
        if handler.request_streaming:

            async def checked(requests: AsyncIterator[Any]) -> AsyncIterator[Any]:
                number = 0
                async for request in requests:
                    number += 1
                    if isinstance(request, _Malformed):
                        raise MalformedMessageError(f"message {number}: {request.error}")
                    yield request

            def streamed(requests: Any, context: ServicerContext[Any, Any]) -> Any:
                return behavior(checked(requests), context)

            return replace_behavior(handler, streamed, guarded)

        async def refuse(error: _Malformed, context: ServicerContext[Any, Any]) -> None:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"request: {error.error}")

        if handler.response_streaming:

            async def server_stream(request: Any, context: ServicerContext[Any, Any]) -> Any:
                if isinstance(request, _Malformed):
                    await refuse(request, context)
                async for item in _responses(behavior(request, context)):
                    yield item

            return replace_behavior(handler, server_stream, guarded)

        async def unary(request: Any, context: ServicerContext[Any, Any]) -> Any:
            if isinstance(request, _Malformed):
                await refuse(request, context)
            return await _response(behavior(request, context))

        return replace_behavior(handler, unary, guarded)


class ApiKeyAuthInterceptor(grpc.aio.ServerInterceptor):
    """Refuses calls without `authorization: Bearer <key>` naming a configured key
    (UNAUTHENTICATED), whose key lacks the method's scope (PERMISSION_DENIED), or that
    would open more than `max_streams` streams at once with one key (RESOURCE_EXHAUSTED):
    one leaked or buggy client cannot take every stream a server has."""

    def __init__(self, keys: KeyRing, max_streams: int | None = None) -> None:
        self._keys = keys
        self._max_streams = max_streams
        self._streams: dict[str, int] = {}

    def _key(self, metadata: Sequence[tuple[str, str | bytes]] | None) -> ApiKey | None:
        for name, value in metadata or ():
            if name != "authorization":
                continue
            token = bearer_token(value.decode() if isinstance(value, bytes) else value)
            return self._keys.find(token) if token is not None else None
        return None

    async def intercept_service(
        self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> Handler | None:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        scope = required_scope(method)
        if handler is None or scope is None:
            return handler
        key = self._key(handler_call_details.invocation_metadata)
        if key is not None and scope in key.scopes:
            streaming = handler.request_streaming or handler.response_streaming
            if streaming and self._max_streams is not None:
                return self._counted(handler, key.secret)
            return handler
        if key is None:
            code = grpc.StatusCode.UNAUTHENTICATED
            message = "missing or invalid API key: send metadata 'authorization: Bearer <key>'"
        else:
            code = grpc.StatusCode.PERMISSION_DENIED
            message = (
                f"this API key may not call {method.lstrip('/')}: it needs the {scope!r} scope "
                f"and has {', '.join(sorted(key.scopes))}"
            )

        async def deny(_request: Any, context: ServicerContext[Any, Any]) -> None:
            await context.abort(code, message)

        return replace_behavior(handler, deny)

    def _counted(self, handler: Handler, secret: str) -> Handler:
        """The stream's behaviour, refused when its key has max_streams open already."""
        behavior, limit, open_streams = _behavior_of(handler), self._max_streams, self._streams

        async def refuse(context: ServicerContext[Any, Any]) -> None:
            await context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"this API key has {limit} streams open, the most PERCEPT_MAX_STREAMS_PER_KEY "
                "allows; close one or use another key",
            )

        @contextmanager
        def held() -> Iterator[None]:
            open_streams[secret] = open_streams.get(secret, 0) + 1
            try:
                yield
            finally:
                open_streams[secret] -= 1
                if not open_streams[secret]:
                    del open_streams[secret]

        def full() -> bool:
            return limit is not None and open_streams.get(secret, 0) >= limit

        if handler.response_streaming:

            async def streaming(request: Any, context: ServicerContext[Any, Any]) -> Any:
                if full():
                    await refuse(context)
                with held():
                    async for item in _responses(behavior(request, context)):
                        yield item

            return replace_behavior(handler, streaming)

        async def client_stream(request: Any, context: ServicerContext[Any, Any]) -> Any:
            if full():
                await refuse(context)
            with held():
                return await _response(behavior(request, context))

        return replace_behavior(handler, client_stream)


def database_unreachable(exc: BaseException) -> bool:
    """A lost or refused database connection (not bad SQL, not a constraint)."""
    if isinstance(exc, OperationalError | InterfaceError):
        return True
    return isinstance(exc, DBAPIError) and exc.connection_invalidated


class ObservabilityInterceptor(grpc.aio.ServerInterceptor):
    """Counts, times and logs every call with its final status code."""

    def __init__(self, metrics: GrpcMetrics, service: str) -> None:
        self._metrics = metrics
        self._service = service

    async def intercept_service(
        self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> Handler | None:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        grpc_service, grpc_method = split_method(handler_call_details.method)
        kind = rpc_type(handler)
        behavior = _behavior_of(handler)
        observe = self._observer(grpc_service, grpc_method, kind)

        if handler.response_streaming:

            async def streaming(request: Any, context: ServicerContext[Any, Any]) -> Any:
                async with observe(context):
                    async for item in _responses(behavior(request, context)):
                        yield item

            return replace_behavior(handler, streaming)

        async def unary(request: Any, context: ServicerContext[Any, Any]) -> Any:
            async with observe(context):
                return await _response(behavior(request, context))

        return replace_behavior(handler, unary)

    def _observer(
        self, grpc_service: str, grpc_method: str, kind: str
    ) -> Callable[[ServicerContext[Any, Any]], Any]:
        metrics = self._metrics
        labels = (grpc_service, grpc_method, kind)
        service = self._service

        @asynccontextmanager
        async def observe(context: ServicerContext[Any, Any]) -> AsyncIterator[None]:
            metrics.started.labels(*labels).inc()
            in_flight = metrics.in_flight.labels(grpc_service, grpc_method)
            in_flight.inc()
            start = time.perf_counter()
            # Read now: grpcio segfaults on peer() once a streaming call is cancelled.
            peer = context.peer()
            error: BaseException | None = None
            try:
                yield
            except asyncio.CancelledError as exc:
                error = exc
                remaining = context.time_remaining()
                expired = remaining is not None and remaining <= 0
                context.set_code(
                    grpc.StatusCode.DEADLINE_EXCEEDED if expired else grpc.StatusCode.CANCELLED
                )
                raise
            except grpc.aio.AbortError:
                raise
            except Exception as exc:
                if not database_unreachable(exc):
                    # The answer names no internals (SQL, parameters, anybody's data): the
                    # log has the failure under the reference the caller is given.
                    error = exc
                    reference = uuid.uuid4().hex[:12]
                    log.error(
                        "unexpected failure",
                        extra={"reference": reference, "error": type(exc).__name__},
                    )
                    await context.abort(
                        grpc.StatusCode.INTERNAL,
                        f"internal error (reference {reference}); the service logged it",
                    )
                # A database outage passes: the caller (an outbox, a console) retries.
                log.warning("database unreachable", extra={"error": type(exc).__name__})
                await context.abort(
                    grpc.StatusCode.UNAVAILABLE,
                    f"the database is unreachable or busy ({type(exc).__name__}); retry",
                )
            finally:
                in_flight.dec()
                elapsed = time.perf_counter() - start
                code = status_of(context).name
                metrics.handled.labels(*labels, code).inc()
                metrics.handling_seconds.labels(*labels, code).observe(elapsed)
                log.log(
                    logging.ERROR
                    if error and not isinstance(error, asyncio.CancelledError)
                    else logging.INFO,
                    "rpc finished",
                    exc_info=error if isinstance(error, Exception) else None,
                    extra={
                        "service": service,
                        "method": f"{grpc_service}/{grpc_method}",
                        "rpc_type": kind,
                        "code": code,
                        "duration_ms": round(elapsed * 1000, 3),
                        "peer": peer,
                    },
                )

        return observe
