"""One watch feeds every widget stream of a console: by session, resuming after the last
message when the watch breaks, ending a stream that falls behind."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import pytest

from percept.console import chat_hub
from percept.console.chat_hub import ChatHub
from percept.v1 import nlp_pb2


def message(seq: int, session: str) -> nlp_pb2.ChatEvent:
    return nlp_pb2.ChatEvent(
        message=nlp_pb2.ChatMessage(seq=seq, session_id=session, text=f"m{seq}")
    )


class Broken(grpc.aio.AioRpcError):
    def __init__(self) -> None:
        super().__init__(grpc.StatusCode.UNAVAILABLE, grpc.aio.Metadata(), grpc.aio.Metadata())


class FakeWatch:
    """WatchChats as the hub calls it: the events after `after`, then (once) a break."""

    def __init__(self, events: list[nlp_pb2.ChatEvent], after: int, breaks: bool) -> None:
        self.events = [e for e in events if not e.HasField("message") or e.message.seq > after]
        self.breaks = breaks

    async def initial_metadata(self) -> None:
        return None

    def __aiter__(self) -> AsyncIterator[nlp_pb2.ChatEvent]:
        return self._run()

    async def _run(self) -> AsyncIterator[nlp_pb2.ChatEvent]:
        for event in self.events:
            await asyncio.sleep(0)
            yield event
        if self.breaks:
            raise Broken()
        await asyncio.sleep(3600)

    def cancel(self) -> None:
        return None


async def test_events_go_to_their_session_and_the_watch_resumes_after_a_break(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(chat_hub, "RETRY_S", 0.01)
    first = [message(1, "a"), message(2, "b"), message(3, "a")]
    later = [*first, message(4, "a")]
    opened: list[int] = []

    def watch(after: int) -> FakeWatch:
        opened.append(after)
        return FakeWatch(first if len(opened) == 1 else later, after, breaks=len(opened) == 1)

    hub = ChatHub(watch)
    one, two, other = hub.subscribe("a"), hub.subscribe("a"), hub.subscribe("b")
    await hub.opened(1)
    got = [(await asyncio.wait_for(one.get(), 1)) for _ in range(3)]
    assert [e.message.seq for e in got if e is not None] == [1, 3, 4]
    assert [(await two.get()).message.seq for _ in range(3)] == [1, 3, 4]  # type: ignore[union-attr]
    assert (await other.get()).message.seq == 2  # type: ignore[union-attr]
    assert other.empty()
    assert opened == [0, 3]  # resumed after the last message it passed on
    assert hub.streams("a") == 2
    hub.unsubscribe("a", one)
    hub.unsubscribe("a", two)
    hub.unsubscribe("b", other)
    assert hub.streams("a") == 0
    await hub.close()


async def test_a_stream_that_falls_behind_is_ended(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(chat_hub, "QUEUE", 4)
    events = [message(seq, "a") for seq in range(1, 11)]
    hub = ChatHub(lambda after: FakeWatch(events, after, breaks=False))
    queue = hub.subscribe("a")
    await hub.opened(1)
    for _ in range(50):
        await asyncio.sleep(0)
    drained = [queue.get_nowait() for _ in range(queue.qsize())]
    assert drained[-1] is None  # the end: its widget resumes from what it showed
    hub.unsubscribe("a", queue)
    await hub.close()
