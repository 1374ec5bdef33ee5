"""Fan-out of lead changes to `WatchLeads` streams.

A leads replica alone (SQLite) tells its watchers of the writes it made; replicas
sharing PostgreSQL hear every replica's writes through LISTEN (listen.py). A
watcher that cannot keep up, or whose replica lost changes, is cut off
(RESOURCE_EXHAUSTED) instead of growing an unbounded queue; it resumes with
ListLeads(updated_since). A watch's filter selects leads as ListLeads does (its
segment too); a FORGOTTEN change (a lead erased, purged, or merged into another)
reaches every watcher.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from typing import NamedTuple

from percept.leads.store import LeadFilter
from percept.v1 import leads_pb2

FORGOTTEN = leads_pb2.LeadChange.CHANGE_TYPE_FORGOTTEN


class Event(NamedTuple):
    """A change as watchers get it, with what a filter needs that the message lacks."""

    change: leads_pb2.LeadChange
    segment: str = ""  # the lead's segment_id ('' when in none): filter.segment


def matches(where: LeadFilter, lead: leads_pb2.Lead, segment: str = "") -> bool:
    """Whether a lead (in `segment`) passes a filter, as ListLeads would select it."""
    if where.segment and segment != where.segment:
        return False
    if where.classes and lead.lead_class not in where.classes:
        return False
    if where.stages and lead.stage not in where.stages:
        return False
    if where.product_interest and lead.product_interest != where.product_interest.lower():
        return False
    if where.min_score and lead.score < where.min_score:
        return False
    if where.max_score and lead.score > where.max_score:
        return False
    return not (
        where.updated_since
        and lead.updated_at.ToDatetime() < where.updated_since.replace(tzinfo=None)
    )


class WatcherOverflowError(Exception):
    pass


class Watcher:
    def __init__(self, where: LeadFilter, capacity: int) -> None:
        self.where = where
        self.queue: asyncio.Queue[leads_pb2.LeadChange] = asyncio.Queue(capacity)
        self.overflowed = False

    def offer(self, change: leads_pb2.LeadChange, segment: str = "") -> None:
        """Queues a change that passes the filter; every FORGOTTEN one (a lead that is no
        longer one: erased, purged, merged into another) whatever the filter says, since
        the watcher may hold it from before."""
        if self.overflowed:
            return
        if change.type != FORGOTTEN and not matches(self.where, change.lead, segment):
            return
        try:
            self.queue.put_nowait(change)
        except asyncio.QueueFull:
            self.cut_off()

    def cut_off(self) -> None:
        if self.overflowed:
            return
        self.overflowed = True
        if self.queue.full():  # wake the stream so it notices at once
            self.queue.get_nowait()
        self.queue.put_nowait(leads_pb2.LeadChange())

    async def changes(self) -> AsyncIterator[leads_pb2.LeadChange]:
        while True:
            change = await self.queue.get()
            if self.overflowed:
                raise WatcherOverflowError
            yield change


class ChangeFeed:
    def __init__(self, capacity: int = 1000) -> None:
        self.capacity = capacity
        self._watchers: set[Watcher] = set()

    @property
    def watchers(self) -> int:
        return len(self._watchers)

    def subscribe(self, where: LeadFilter) -> Watcher:
        watcher = Watcher(where, self.capacity)
        self._watchers.add(watcher)
        return watcher

    def unsubscribe(self, watcher: Watcher) -> None:
        self._watchers.discard(watcher)

    def reset(self) -> None:
        """Changes were missed (the replicas' notifications were lost): every watcher is
        cut off and reloads with ListLeads, as one that fell behind does."""
        for watcher in list(self._watchers):
            watcher.cut_off()

    def publish(self, changes: Iterable[Event | leads_pb2.LeadChange]) -> None:
        for item in changes:
            event = item if isinstance(item, Event) else Event(item)
            for watcher in list(self._watchers):
                watcher.offer(event.change, event.segment)
