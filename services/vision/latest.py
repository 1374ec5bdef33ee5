"""Latest wins: a camera that sends faster than we analyse loses frames, not memory.

A reader task drains the client's stream into a one-frame slot; a new frame
replaces one that is still waiting, and the replaced frames are counted so the
next result can say how many were skipped. No queue grows with a slow model.
"""

from __future__ import annotations

import asyncio
from typing import Generic, TypeVar

T = TypeVar("T")


class LatestSlot(Generic[T]):
    def __init__(self) -> None:
        self._item: T | None = None
        self._ready = asyncio.Event()
        self._closed = False
        self._replaced = 0
        self.error: Exception | None = None  # why the input ended early, if it did

    def put(self, item: T) -> None:
        if self._item is not None:
            self._replaced += 1
        self._item = item
        self._ready.set()

    def close(self, error: Exception | None = None) -> None:
        """No more input; a waiting item is still handed out."""
        self._closed = True
        self.error = self.error or error
        self._ready.set()

    async def take(self) -> tuple[T | None, int]:
        """The newest item (None once closed and empty) and how many were skipped before it."""
        while self._item is None and not self._closed:
            self._ready.clear()
            await self._ready.wait()
        item, self._item = self._item, None
        skipped, self._replaced = self._replaced, 0
        return item, skipped
