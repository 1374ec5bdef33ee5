"""Background rounds that outlive their failures.

Retention, erasure and webhook loops run for the life of a pod. One database error
(a PostgreSQL failover, SQLite's busy timeout) must cost one round, not end the loop:
an ended task is silent, and expiry or erasure would stop until the pod restarts.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

log = logging.getLogger("percept.periodic")
T = TypeVar("T")


async def every(
    interval_s: float,
    round_: Callable[[], Awaitable[object]],
    what: str,
    *,
    at_start: bool = False,
) -> None:
    """Runs `round_` every `interval_s` seconds (the first at once with `at_start`, else
    after one interval) until cancelled; a round that fails is logged and the next one
    comes as planned."""
    if at_start:
        await survive(round_, what)
    while True:
        await asyncio.sleep(interval_s)
        await survive(round_, what)


async def survive(round_: Callable[[], Awaitable[T]], what: str) -> T | None:
    """One round; its failure is logged (with `what` failed) and gives None."""
    try:
        return await round_()
    except Exception:
        log.exception("%s failed; tried again on the next round", what)
        return None
