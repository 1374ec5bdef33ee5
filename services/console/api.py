"""What every console API handler shares: errors as HTTP statuses, backend calls with
the console's key, bounded JSON bodies."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import grpc
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

if TYPE_CHECKING:
    from percept.console.gateway import Backends

log = logging.getLogger("percept.console")

MAX_BODY_BYTES = 16 * 1024
# A refused upload of at most this much is left to the server to read and drop (never kept),
# so that its client gets the 413; a larger or chunked one has its connection closed.
DRAIN_BYTES = 1024 * 1024
CALL_TIMEOUT_S = 30.0
MAX_NAME = 100  # a salesperson's name, as visitors see it and follow-ups are owned by
HTTP_STATUS = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.FAILED_PRECONDITION: 409,
    grpc.StatusCode.ABORTED: 409,  # lost to concurrent writes every time: send it again
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
}


class ApiError(Exception):
    def __init__(self, status: int, message: str, *, close: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.close = close  # the connection too: the rest of the request is not wanted


async def call_backend(
    call: Callable[..., Awaitable[Any]], request: Any, backends: Backends
) -> Any:
    try:
        return await call(request, metadata=backends.metadata, timeout=CALL_TIMEOUT_S)
    except grpc.aio.AioRpcError as exc:
        status = HTTP_STATUS.get(exc.code(), 502)
        if status == 502:
            log.warning("console call failed", extra={"code": exc.code().name})
        raise ApiError(status, exc.details() or exc.code().name) from exc


async def json_body(request: Request) -> dict[str, Any]:
    """The request's JSON object: 413 once it is over MAX_BODY_BYTES (declared or sent),
    400 when it is not JSON (nesting past what the parser takes included), not an object,
    or holds a string that is not Unicode (a lone surrogate escape: no protobuf string
    takes one)."""
    raw = await _bounded_body(request)
    try:
        body = json.loads(raw or b"{}")
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"request body: not JSON ({exc})") from exc
    except RecursionError:
        raise ApiError(400, "request body: not JSON (nested too deeply)") from None
    if not isinstance(body, dict):
        raise ApiError(400, "request body: a JSON object is expected")
    _check_values(body)
    return body


async def _bounded_body(request: Request) -> bytes:
    """The body, read a chunk at a time and refused (413) as soon as more than
    MAX_BODY_BYTES is declared or has arrived: a huge upload is never held, nor read on
    past DRAIN_BYTES."""
    declared = request.headers.get("content-length", "")
    if declared.isascii() and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        size = int(declared)
        message = f"request body: {size} bytes, at most {MAX_BODY_BYTES}"
        raise ApiError(413, message, close=size > DRAIN_BYTES)
    chunks: list[bytes] = []
    received = 0
    async for chunk in request.stream():
        received += len(chunk)
        if received > MAX_BODY_BYTES:
            message = f"request body: over {MAX_BODY_BYTES} bytes, the most accepted"
            raise ApiError(413, message, close=True)  # chunked: how much more is unknown
        chunks.append(chunk)
    return b"".join(chunks)


def _check_values(body: dict[str, Any]) -> None:
    """400 naming a string, key or value, that cannot be UTF-8; iterative, so however
    deep the body, the walk cannot exhaust the stack."""
    pending: list[tuple[str, Any]] = [("", body)]
    while pending:
        path, value = pending.pop()
        if isinstance(value, str):
            _check_text(value, path)
        elif isinstance(value, dict):
            for key, item in value.items():
                field = f"{path}.{key}" if path else key
                _check_text(key, field)
                pending.append((field, item))
        elif isinstance(value, list):
            pending.extend((f"{path}[{i}]", item) for i, item in enumerate(value))


def _check_text(text: str, field: str) -> None:
    try:
        text.encode()
    except UnicodeEncodeError as exc:
        bad = text[exc.start].encode("unicode_escape").decode()
        raise ApiError(
            400, f"request body: {field[:100]!r} holds {bad}, a lone surrogate, not Unicode"
        ) from None


def handled(
    handler: Callable[[Request], Awaitable[Response]],
) -> Callable[[Request], Awaitable[Response]]:
    async def run(request: Request) -> Response:
        try:
            return await handler(request)
        except ApiError as exc:
            close = {"Connection": "close"} if exc.close else None
            return JSONResponse({"error": str(exc)}, status_code=exc.status, headers=close)

    return run


def person_name(value: str, field: str) -> str:
    """A salesperson's name from a request, stripped; 400 naming `field` when it is too
    long or holds a control character."""
    if len(value) > MAX_NAME or not value.isprintable():
        raise ApiError(400, f"{field}: at most {MAX_NAME} printable characters")
    return value.strip()


def page_size(request: Request) -> int:
    """`page_size` from the query: 1 to 500, 100 when not given."""
    size = request.query_params.get("page_size", "100")
    if not size.isdigit() or not 1 <= int(size) <= 500:
        raise ApiError(400, f"page_size: {size!r} is not a number from 1 to 500")
    return int(size)
