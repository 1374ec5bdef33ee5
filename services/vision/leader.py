"""Which vision replica reads the cameras vision pulls itself: exactly one.

Pushed streams and Detect calls go to any replica, but a camera's RTSP stream read
by two replicas would count every person twice. On a shared PostgreSQL (the
footfall store in Kubernetes) the replica holding a session-level advisory lock
reads them; when it goes away its connection closes, the lock is freed, and
another replica takes the cameras within `retry_s`. On SQLite (one machine, one
process) this process is the reader.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from sqlalchemy import create_engine, text
from sqlalchemy.engine import Connection, Engine

log = logging.getLogger("percept.vision")
LOCK_KEY = 0x70657263_65707476  # "perceptv": one key for "reads the pulled cameras"


class SourceLeader:
    def __init__(
        self,
        url: str,
        on_lead: Callable[[], Awaitable[None]],
        on_lose: Callable[[], Awaitable[None]],
        retry_s: float = 5.0,
    ) -> None:
        self.url, self.on_lead, self.on_lose, self.retry_s = url, on_lead, on_lose, retry_s
        self.shared = not url.startswith("sqlite")
        self.engine: Engine | None = create_engine(url) if self.shared else None
        self.connection: Connection | None = None
        self.leading = False

    def _try_lock(self) -> bool:
        assert self.engine is not None
        if self.connection is None:  # autocommit: no transaction is left open for hours
            self.connection = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        locked = self.connection.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": LOCK_KEY})
        return bool(locked.scalar())

    def _still_held(self) -> bool:
        assert self.connection is not None
        self.connection.execute(text("SELECT 1"))
        return True

    def _drop(self) -> None:
        if self.connection is not None:
            with contextlib.suppress(Exception):
                self.connection.close()  # closing the session frees its advisory lock
            self.connection = None

    async def run(self) -> None:
        if not self.shared:
            self.leading = True
            await self.on_lead()
            return
        while True:
            try:
                if not self.leading and await asyncio.to_thread(self._try_lock):
                    self.leading = True
                    log.info("this replica reads the pulled cameras")
                    await self.on_lead()
                elif self.leading:
                    await asyncio.to_thread(self._still_held)
            except Exception as exc:  # the database went away: so did the lock
                await asyncio.to_thread(self._drop)
                if self.leading:
                    self.leading = False
                    log.warning("pulled cameras given up", extra={"error": type(exc).__name__})
                    await self.on_lose()
            await asyncio.sleep(self.retry_s)

    async def close(self) -> None:
        await asyncio.to_thread(self._drop)
        if self.engine is not None:
            self.engine.dispose()
