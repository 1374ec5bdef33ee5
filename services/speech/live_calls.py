"""The calls this speech server is handling, for `WatchCalls`.

Every call (a StreamingRecognize stream or a gateway call) is on the board
from its config to its end; its recognition events are fanned out to the
watchers whose filter they pass. Publishing never waits: a watcher that cannot
keep up is cut off (RESOURCE_EXHAUSTED) instead of slowing a call down.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

from google.protobuf.timestamp_pb2 import Timestamp

from percept.speech.call_analysis import CallAnalysis
from percept.v1 import speech_pb2

Update = speech_pb2.CallUpdate
STARTED = Update.UPDATE_TYPE_STARTED
RECOGNITION = Update.UPDATE_TYPE_RECOGNITION
PAUSED = Update.UPDATE_TYPE_PAUSED
RESUMED = Update.UPDATE_TYPE_RESUMED
ENDED = Update.UPDATE_TYPE_ENDED
PARTIAL = speech_pb2.RecognitionEvent.EVENT_TYPE_PARTIAL
FINAL = speech_pb2.RecognitionEvent.EVENT_TYPE_FINAL
_serial = itertools.count(1)


def _now() -> Timestamp:
    stamp = Timestamp()
    stamp.GetCurrentTime()
    return stamp


@dataclass
class LiveCall:
    """One call on the board. `call_id` may repeat (two streams of one call);
    `serial` does not. Every event goes through `analysis` before it is heard."""

    info: speech_pb2.LiveCall
    board: CallBoard
    analysis: CallAnalysis = field(default_factory=CallAnalysis)
    serial: int = field(default_factory=lambda: next(_serial))
    ended: bool = False

    def recognised(self, event: speech_pb2.RecognitionEvent) -> None:
        self.board.publish(Update(type=RECOGNITION, call=self.info, event=event, time=_now()))

    def paused(self, paused: bool) -> None:
        self.board.publish(Update(type=PAUSED if paused else RESUMED, call=self.info, time=_now()))

    def end(self, reason: str, summary: speech_pb2.CallSummary | None = None) -> None:
        if self.ended:
            return
        self.ended = True
        self.board.calls.pop(self.serial, None)
        update = Update(type=ENDED, call=self.info, end_reason=reason, time=_now())
        if summary is not None:
            update.summary.CopyFrom(summary)
        self.board.publish(update)


def passes(where: speech_pb2.WatchCallsRequest, update: speech_pb2.CallUpdate) -> bool:
    if where.call_id and update.call.call_id != where.call_id:
        return False
    if update.type != RECOGNITION:
        return True
    event = update.event
    if where.role and event.role != where.role:
        return False
    if event.type == PARTIAL and not where.include_partials:
        return False
    if where.intent:
        return event.type == FINAL and any(i.name == where.intent for i in event.intents)
    return True


class WatcherOverflowError(Exception):
    pass


class Watcher:
    def __init__(self, where: speech_pb2.WatchCallsRequest, capacity: int) -> None:
        self.where = where
        self.queue: asyncio.Queue[speech_pb2.CallUpdate | None] = asyncio.Queue(capacity)
        self.overflowed = False

    def offer(self, update: speech_pb2.CallUpdate) -> None:
        if self.overflowed or not passes(self.where, update):
            return
        try:
            self.queue.put_nowait(update)
        except asyncio.QueueFull:
            self.overflowed = True
            self.queue.get_nowait()  # room for the wake-up
            self.queue.put_nowait(None)

    async def updates(self) -> AsyncIterator[speech_pb2.CallUpdate]:
        while True:
            update = await self.queue.get()
            if self.overflowed or update is None:
                raise WatcherOverflowError
            yield update


class CallBoard:
    def __init__(self, capacity: int = 2000) -> None:
        self.capacity = capacity
        self.calls: dict[int, LiveCall] = {}
        self._watchers: set[Watcher] = set()

    def begin(
        self,
        call_id: str,
        source: str,
        roles: Sequence[int] = (),
        campaign_id: str = "",
        analysis: CallAnalysis | None = None,
    ) -> LiveCall:
        info = speech_pb2.LiveCall(
            call_id=call_id,
            source=source,
            channel_roles=list(roles),  # type: ignore[arg-type]
            started_at=_now(),
            campaign_id=campaign_id,
        )
        call = LiveCall(info, self, analysis or CallAnalysis())
        self.calls[call.serial] = call
        self.publish(Update(type=STARTED, call=info, time=info.started_at))
        return call

    def publish(self, update: speech_pb2.CallUpdate) -> None:
        for watcher in list(self._watchers):
            watcher.offer(update)

    def watch(self, where: speech_pb2.WatchCallsRequest) -> Watcher:
        """A watcher that first hears of the calls already live."""
        watcher = Watcher(where, self.capacity)
        for call in self.calls.values():
            watcher.offer(Update(type=STARTED, call=call.info, time=call.info.started_at))
        self._watchers.add(watcher)
        return watcher

    def unwatch(self, watcher: Watcher) -> None:
        self._watchers.discard(watcher)

    @property
    def watchers(self) -> int:
        return len(self._watchers)
