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
CALL_TIMEOUT_S = 30.0
MAX_NAME = 100  # a salesperson's name, as visitors see it and follow-ups are owned by
HTTP_STATUS = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.FAILED_PRECONDITION: 409,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
}


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


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
    raw = await request.body()
    if len(raw) > MAX_BODY_BYTES:
        raise ApiError(413, f"request body: {len(raw)} bytes, at most {MAX_BODY_BYTES}")
    try:
        body = json.loads(raw or b"{}")
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"request body: not JSON ({exc})") from exc
    if not isinstance(body, dict):
        raise ApiError(400, "request body: a JSON object is expected")
    return body


def handled(
    handler: Callable[[Request], Awaitable[Response]],
) -> Callable[[Request], Awaitable[Response]]:
    async def run(request: Request) -> Response:
        try:
            return await handler(request)
        except ApiError as exc:
            return JSONResponse({"error": str(exc)}, status_code=exc.status)

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
