"""Ending a client stream with our status, not grpcio's.

When a server ends a call while the client's messages are still in flight, the
grpcio client reports its own failed write as INTERNAL ("Internal error from
Core") instead of the status the server sent. Reading what the client is still
sending, for a moment, before ending the call lets the real reason arrive: a
client that sends its last messages, or stops, in the meantime gets it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any, NoReturn

import grpc

DRAIN_S = 2.0  # how long a refused stream is still read before its status is sent


async def drain(requests: AsyncIterator[Any], seconds: float = DRAIN_S) -> None:
    """Reads and drops the client's messages until it stops sending or `seconds` pass."""

    async def consume() -> None:
        async for _ in requests:
            pass

    with contextlib.suppress(
        TimeoutError, grpc.aio.AioRpcError, asyncio.CancelledError, MalformedMessageError
    ):
        await asyncio.wait_for(consume(), seconds)


class MalformedMessageError(ValueError):
    """A streamed message whose bytes are not a message of its type (raised by the
    runtime's request stream, naming the message's position; answer INVALID_ARGUMENT)."""


async def refuse(
    context: grpc.aio.ServicerContext[Any, Any],
    requests: AsyncIterator[Any],
    code: grpc.StatusCode,
    message: str,
) -> NoReturn:
    """Drains the stream, then ends the call with `code` and `message`."""
    await drain(requests)
    await context.abort(code, message)
    raise AssertionError("abort returned")  # it raises; this tells the type checker
