"""The WatchLeads fan-out: a watcher that cannot keep up is cut off, others go on."""

from __future__ import annotations

import pytest

from percept.leads.store import LeadFilter
from percept.leads.watch import ChangeFeed, Event, WatcherOverflowError
from percept.v1 import leads_pb2


def _change(lead_id: str, lead_class: int = leads_pb2.LEAD_CLASS_HOT) -> leads_pb2.LeadChange:
    return leads_pb2.LeadChange(
        type=leads_pb2.LeadChange.CHANGE_TYPE_UPDATED,
        lead=leads_pb2.Lead(lead_id=lead_id, lead_class=lead_class),  # type: ignore[arg-type]
    )


async def test_a_watcher_that_falls_behind_is_cut_off_and_others_go_on() -> None:
    feed = ChangeFeed(capacity=2)
    slow = feed.subscribe(LeadFilter())
    hot_only = feed.subscribe(LeadFilter(classes=(leads_pb2.LEAD_CLASS_HOT,)))
    feed.publish([_change("a"), _change("b", leads_pb2.LEAD_CLASS_COLD)])
    assert [w.overflowed for w in (slow, hot_only)] == [False, False]
    feed.publish([_change("c")])  # a third change for a queue of two
    assert [w.overflowed for w in (slow, hot_only)] == [True, False]  # b was not hot_only's
    with pytest.raises(WatcherOverflowError):
        async for _ in slow.changes():
            pass
    seen = []
    async for change in hot_only.changes():
        seen.append(change.lead.lead_id)
        if len(seen) == 2:
            break
    assert seen == ["a", "c"]


async def test_a_segment_filter_lets_only_that_segments_leads_through() -> None:
    feed = ChangeFeed(capacity=10)
    watcher = feed.subscribe(LeadFilter(segment="seg-1"))
    forgotten = leads_pb2.LeadChange(
        type=leads_pb2.LeadChange.CHANGE_TYPE_FORGOTTEN, lead=leads_pb2.Lead(lead_id="d")
    )
    feed.publish(
        [
            Event(_change("a"), "seg-1"),
            Event(_change("b"), "seg-2"),
            Event(_change("c")),  # in no segment
            forgotten,  # a lead gone is told whatever the filter: the watcher may hold it
        ]
    )
    seen = []
    async for change in watcher.changes():
        seen.append(change.lead.lead_id)
        if watcher.queue.empty():
            break
    assert seen == ["a", "d"]
