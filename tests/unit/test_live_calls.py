"""The board of live calls behind WatchCalls: filters, late watchers, slow watchers."""

from __future__ import annotations

import asyncio

import pytest

from percept.speech.live_calls import CallBoard, WatcherOverflowError
from percept.v1 import common_pb2
from percept.v1 import speech_pb2 as sp

Event = sp.RecognitionEvent
Update = sp.CallUpdate
AGENT, CUSTOMER = sp.CHANNEL_ROLE_AGENT, sp.CHANNEL_ROLE_CUSTOMER


def final(role: int, text: str, intent: str = "") -> Event:
    intents = [common_pb2.Intent(name=intent, confidence=0.9)] if intent else []
    return Event(type=Event.EVENT_TYPE_FINAL, transcript=text, role=role, intents=intents)  # type: ignore[arg-type]


def drain(queue: asyncio.Queue[Update | None]) -> list[Update | None]:
    out = []
    while not queue.empty():
        out.append(queue.get_nowait())
    return out


async def test_a_watcher_hears_live_calls_first_then_what_passes_its_filter() -> None:
    board = CallBoard()
    before = board.begin("CA1", "twilio", [CUSTOMER, AGENT], "spring")
    watcher = board.watch(sp.WatchCallsRequest(role=CUSTOMER, intent="purchase_intent"))
    other = board.begin("CA2", "audiosocket")
    before.recognised(final(CUSTOMER, "I want two phones", "purchase_intent"))
    before.recognised(final(AGENT, "we sell phones", "purchase_intent"))  # wrong role
    before.recognised(final(CUSTOMER, "hello"))  # no intent
    partial = Event(type=Event.EVENT_TYPE_PARTIAL, transcript="I want", role=CUSTOMER)
    before.recognised(partial)
    other.end("hangup")
    got = drain(watcher.queue)
    assert [(u.type, u.call.call_id) for u in got if u is not None] == [
        (Update.UPDATE_TYPE_STARTED, "CA1"),
        (Update.UPDATE_TYPE_STARTED, "CA2"),
        (Update.UPDATE_TYPE_RECOGNITION, "CA1"),
        (Update.UPDATE_TYPE_ENDED, "CA2"),
    ]
    assert got[0] is not None and list(got[0].call.channel_roles) == [CUSTOMER, AGENT]
    assert got[0].call.campaign_id == "spring"
    assert got[2] is not None and got[2].event.transcript == "I want two phones"
    assert got[3] is not None and got[3].end_reason == "hangup"
    assert [c.info.call_id for c in board.calls.values()] == ["CA1"]


async def test_partials_and_one_call_only_on_request() -> None:
    board = CallBoard()
    watcher = board.watch(sp.WatchCallsRequest(call_id="CA9", include_partials=True))
    mine, theirs = board.begin("CA9", "grpc"), board.begin("CA8", "grpc")
    theirs.recognised(final(CUSTOMER, "not mine"))
    mine.recognised(Event(type=Event.EVENT_TYPE_PARTIAL, transcript="hel"))
    mine.paused(True)
    mine.end("completed")
    mine.end("completed")  # once only
    kinds = [u.type for u in drain(watcher.queue) if u is not None]
    assert kinds == [
        Update.UPDATE_TYPE_STARTED,
        Update.UPDATE_TYPE_RECOGNITION,
        Update.UPDATE_TYPE_PAUSED,
        Update.UPDATE_TYPE_ENDED,
    ]


async def test_a_watcher_that_falls_behind_is_cut_off_and_the_call_goes_on() -> None:
    board = CallBoard(capacity=3)
    watcher = board.watch(sp.WatchCallsRequest())
    call = board.begin("CA1", "grpc")
    for n in range(10):
        call.recognised(final(CUSTOMER, f"utterance {n}"))  # never blocks
    with pytest.raises(WatcherOverflowError):
        async for _ in watcher.updates():
            pass
    board.unwatch(watcher)
    assert board.watchers == 0
