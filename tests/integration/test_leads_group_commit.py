"""Batches written together end as if written one after another; each is answered apart."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, cast

import pytest
from leads_harness import Leads
from leads_signals import NOW, signal

from percept.leads.service import LeadsService
from percept.leads.store import LeadFilter, LeadStore
from percept.runtime.settings import Settings
from percept.v1 import common_pb2 as c
from percept.v1 import leads_pb2 as lp


def lead_states(store: LeadStore) -> list[tuple[Any, ...]]:
    """Every live lead by its keys: what it knows and how it is scored."""
    page, _ = store.page(LeadFilter(), 100, "")
    states = []
    for row in store.rows([r["lead_id"] for r in page]):
        keys = tuple(sorted((k.key_type, k.value) for k in row["keys"]))
        states.append(
            (
                keys,
                row["signal_count"],
                round(row["score"], 9),
                row["lead_class"],
                row["stage"],
                row["product_interest"],
            )
        )
    return sorted(states)


def opened(url: str) -> LeadStore:
    store = LeadStore(url, clock=lambda: NOW)
    store.migrate()
    return store


def test_batches_together_equal_batches_in_turn(database_url: str, tmp_path: Path) -> None:
    first = [
        signal(phone="+14155550100", minutes=1),
        signal(name="price_inquiry", chat_session_id="chat-1", phone="+14155550100", minutes=2),
    ]
    tampered = c.Signal()
    tampered.CopyFrom(first[1])
    tampered.confidence = 0.2
    second = [
        first[0],  # a replay of the first batch's signal: a duplicate here
        tampered,  # the same id with other content: refused here
        signal(name="purchase_intent"),  # no identity: refused here
        signal(email="ann@example.com", chat_session_id="chat-1", minutes=3),  # merges in
    ]
    third = [
        signal(
            kind=c.SIGNAL_KIND_QUALIFICATION_SLOT,
            name="budget",
            value="2000 USD",
            email="ann@example.com",
            minutes=4,
        ),
        signal(visitor_id="v-9", minutes=5),  # someone else
    ]
    together = opened(database_url)
    group = together.ingest_together([first, second, third])
    counts = [(r.accepted, r.duplicates, r.rejected) for r in group.results]
    assert counts == [(2, 0, 0), (1, 1, 2), (2, 0, 0)]
    assert "different content" in group.results[1].errors[0][1]
    assert "identity" in group.results[1].errors[1][1]
    assert len({change.lead_id for change in group.changes}) == 2  # Ann, and the visitor

    in_turn = opened(f"sqlite:///{tmp_path}/in_turn.db")
    for one in (first, second, third):
        in_turn.ingest(one)
    assert lead_states(together) == lead_states(in_turn)
    assert sorted(s[1] for s in lead_states(together)) == [1, 4]
    together.close()
    in_turn.close()


@pytest.fixture
async def leads(make_settings: Callable[..., Settings], database_url: str) -> AsyncIterator[Leads]:
    running = Leads(make_settings(database_url=database_url))
    yield running
    await running.stop()


async def test_concurrent_callers_are_each_acknowledged_for_their_own_signals(
    leads: Leads, tmp_path: Path
) -> None:
    rng = random.Random(5)
    people = [f"+1415555{n:04d}" for n in range(40)]
    batches = [
        [
            signal(name=rng.choice(["price_inquiry", "purchase_intent"]), phone=rng.choice(people))
            for _ in range(rng.randrange(20, 80))
        ]
        for _ in range(12)
    ]
    batches[5].append(batches[2][0])  # one signal sent by two callers
    stub = await leads.start()
    watch = stub.WatchLeads(lp.WatchLeadsRequest(), timeout=30)
    await asyncio.sleep(0.2)  # subscribed
    acks = await asyncio.gather(
        *(stub.IngestBatch(lp.IngestBatchRequest(signals=b), timeout=60) for b in batches)
    )
    accepted = [a.accepted for a in acks]
    duplicates = [a.duplicates for a in acks]
    assert sum(accepted) == sum(len(b) for b in batches) - 1
    assert sum(duplicates) == 1 and duplicates[2] + duplicates[5] == 1  # stored once
    for ack, sent in zip(acks, batches, strict=True):
        assert ack.accepted + ack.duplicates == len(sent) and ack.rejected == 0
    assert leads.host is not None
    registry = cast(LeadsService, leads.host.service).registry
    writes = registry.get_sample_value("percept_leads_write_batch_size_count")
    calls = registry.get_sample_value("percept_leads_write_batch_size_sum")
    assert calls == 12 and writes is not None and writes < 12  # some batches shared a commit

    reference = opened(f"sqlite:///{tmp_path}/reference.db")
    for b in batches:
        reference.ingest(b)
    listed = await stub.ListLeads(lp.ListLeadsRequest(page_size=100))
    served = sorted((lead.identity.phone, lead.signal_count) for lead in listed.leads)
    expected = sorted((s[0][0][1], s[1]) for s in lead_states(reference))
    assert served == expected
    reference.close()

    # The watcher heard of every commit, each once: every
    # lead was created once, and its last event shows what the lead holds now.
    heard: list[lp.LeadChange] = []
    while True:
        try:
            change = await asyncio.wait_for(watch.read(), 0.5)
        except TimeoutError:
            break
        assert isinstance(change, lp.LeadChange)
        heard.append(change)
    watch.cancel()
    created = [e.lead.identity.phone for e in heard if e.type == lp.LeadChange.CHANGE_TYPE_CREATED]
    assert sorted(created) == sorted(lead.identity.phone for lead in listed.leads)
    latest = {e.lead.lead_id: e.lead.signal_count for e in heard}
    assert latest == {lead.lead_id: lead.signal_count for lead in listed.leads}
