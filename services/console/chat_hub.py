"""Visitors' widgets following their chats, through one watch per console process.

A widget stream per visitor, each holding its own `WatchChats`, would spend the
console key's stream budget on nlp (and a database poll each) on anonymous
visitors, and lock salespeople's inboxes out once enough were open. Instead one
`WatchChats` over every chat feeds every widget stream of this process, by
session. When the watch breaks it resumes after the last message it passed on,
so none is lost; a stream that cannot keep up is ended (its widget reconnects
from the last message it showed).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc

from percept.v1 import nlp_pb2

log = logging.getLogger("percept.console.chat_hub")
QUEUE = 256  # events a widget stream may lag behind before it is ended
RETRY_S = 1.0


class ChatHub:
    def __init__(self, watch: Callable[[int], Any]) -> None:
        """`watch(after_seq)` opens WatchChats over every chat."""
        self._watch = watch
        self._queues: dict[str, set[asyncio.Queue[nlp_pb2.ChatEvent | None]]] = {}
        self._task: asyncio.Task[None] | None = None
        self._open = asyncio.Event()  # the watch is in place: later messages will come
        self._last = 0

    def streams(self, session_id: str) -> int:
        return len(self._queues.get(session_id, ()))

    def subscribe(self, session_id: str) -> asyncio.Queue[nlp_pb2.ChatEvent | None]:
        """The session's events from now on; None when the stream fell too far behind.
        The caller unsubscribes when its stream ends."""
        queue: asyncio.Queue[nlp_pb2.ChatEvent | None] = asyncio.Queue(QUEUE)
        self._queues.setdefault(session_id, set()).add(queue)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="console-chat-hub")
        return queue

    def unsubscribe(self, session_id: str, queue: asyncio.Queue[nlp_pb2.ChatEvent | None]) -> None:
        mine = self._queues.get(session_id, set())
        mine.discard(queue)
        if not mine:
            self._queues.pop(session_id, None)

    async def opened(self, timeout_s: float) -> None:
        await asyncio.wait_for(self._open.wait(), timeout_s)

    async def _run(self) -> None:
        while self._queues:
            stream = self._watch(self._last)
            try:
                await stream.initial_metadata()
                self._open.set()
                async for event in _events(stream):
                    self._pass_on(event)
                    if not self._queues:
                        break
            except grpc.aio.AioRpcError as exc:
                log.warning("chat watch lost; resuming", extra={"code": exc.code().name})
                await asyncio.sleep(RETRY_S)
            finally:
                self._open.clear()
                stream.cancel()

    def _pass_on(self, event: nlp_pb2.ChatEvent) -> None:
        if event.HasField("message"):
            self._last = max(self._last, event.message.seq)
            session = event.message.session_id
        else:
            session = event.chat.session_id
        for queue in list(self._queues.get(session, ())):
            try:
                queue.put_nowait(event)
            except asyncio.QueueFull:  # this stream ends; its widget resumes where it was
                with contextlib.suppress(asyncio.QueueEmpty):
                    queue.get_nowait()
                queue.put_nowait(None)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


async def _events(stream: Any) -> AsyncIterator[nlp_pb2.ChatEvent]:
    async for event in stream:
        yield event
