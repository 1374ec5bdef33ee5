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
