"""Watching, merging, splitting and forgetting leads over real gRPC."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import grpc
import pytest
from leads_harness import PHONE, Leads, customer_journey, next_change
from leads_signals import signal

from percept.leads import schema
from percept.leads.store import LeadStore
from percept.runtime.settings import Settings
from percept.v1 import common_pb2 as c
from percept.v1 import leads_pb2 as lp
from percept.v1 import leads_pb2_grpc

CT = lp.LeadChange


@pytest.fixture
async def stub(
    make_settings: Callable[..., Settings], database_url: str
) -> AsyncIterator[tuple[leads_pb2_grpc.LeadsAsyncStub, Settings]]:
    settings = make_settings(database_url=database_url)
    running = Leads(settings)
    yield await running.start(), settings
    await running.stop()


async def test_watch_streams_matching_changes_live(
    stub: tuple[leads_pb2_grpc.LeadsAsyncStub, Settings],
) -> None:
    leads, _ = stub
    everything = leads.WatchLeads(lp.WatchLeadsRequest(), timeout=30)
    hot_only = leads.WatchLeads(
        lp.WatchLeadsRequest(filter=lp.LeadFilter(classes=[lp.LEAD_CLASS_HOT])), timeout=30
    )
    for watch in (everything, hot_only):  # the headers come once the watch is in place
        await asyncio.wait_for(watch.initial_metadata(), 10)
    await leads.IngestBatch(
        lp.IngestBatchRequest(
            signals=[
                signal(
                    kind=c.SIGNAL_KIND_ZONE_VISIT,
                    name="entrance",
                    visitor_id="walk-in",
                    source=c.SOURCE_VISION,
                )
            ]
        )
    )
    first = await next_change(everything)
    assert first.type == CT.CHANGE_TYPE_CREATED
    assert first.lead.identity.visitor_id == "walk-in"
    assert first.lead.lead_class == lp.LEAD_CLASS_COLD

    journey = customer_journey()
    await leads.IngestBatch(lp.IngestBatchRequest(signals=journey[:1]))  # a new, warm-ish lead
    await leads.IngestBatch(lp.IngestBatchRequest(signals=journey[1:]))  # ...becomes hot
    created = await next_change(everything)
    assert created.type == CT.CHANGE_TYPE_CREATED
    updated = await next_change(everything)
    assert updated.lead.lead_class == lp.LEAD_CLASS_HOT
    assert updated.previous_class == created.lead.lead_class
    hot = await next_change(hot_only)
    assert hot.lead.lead_id == updated.lead.lead_id  # the cold walk-in was filtered out
    assert hot.lead.lead_class == lp.LEAD_CLASS_HOT
    everything.cancel()
    hot_only.cancel()


async def test_manual_merge_and_split_are_reversible(
    stub: tuple[leads_pb2_grpc.LeadsAsyncStub, Settings],
) -> None:
    leads, settings = stub
    await leads.IngestBatch(
        lp.IngestBatchRequest(
            signals=[
                signal(phone=PHONE, minutes=0),
                signal(
                    source=c.SOURCE_CHAT, name="price_inquiry", chat_session_id="chat-1", minutes=1
                ),
                signal(
                    source=c.SOURCE_CHAT,
                    kind=c.SIGNAL_KIND_QUALIFICATION_SLOT,
                    name="budget",
                    value="900 EUR",
                    chat_session_id="chat-1",
                    minutes=2,
                ),
            ]
        )
    )
    page = (await leads.ListLeads(lp.ListLeadsRequest())).leads
    phone_lead = next(x for x in page if x.identity.phone)
    chat_lead = next(x for x in page if x.identity.chat_session_id)

    merged = await leads.MergeLeads(
        lp.MergeLeadsRequest(lead_ids=[phone_lead.lead_id, chat_lead.lead_id], reason="same voice")
    )
    assert merged.lead_id == phone_lead.lead_id
    assert merged.signal_count == 3
    assert merged.identity.chat_session_id == "chat-1"
    assert merged.qualification["budget"] == "900 EUR"
    assert len((await leads.ListLeads(lp.ListLeadsRequest())).leads) == 1

    store = LeadStore(settings.resolved_database_url)
    with store.engine.connect() as conn:
        merge = conn.execute(schema.merges.select()).mappings().one()
    store.close()
    assert merge["reason"] == "manual: same voice"

    again = leads.MergeLeads(lp.MergeLeadsRequest(lead_ids=[phone_lead.lead_id, chat_lead.lead_id]))
    with pytest.raises(grpc.aio.AioRpcError) as excinfo:
        await again
    assert excinfo.value.code() is grpc.StatusCode.FAILED_PRECONDITION

    split = await leads.SplitLead(
        lp.SplitLeadRequest(lead_id=chat_lead.lead_id, merge_id=merge["merge_id"])
    )
    by_id = {x.lead_id: x for x in split.leads}
    assert by_id[phone_lead.lead_id].signal_count == 1
    assert by_id[chat_lead.lead_id].signal_count == 2
    assert by_id[chat_lead.lead_id].identity.chat_session_id == "chat-1"
    assert not by_id[phone_lead.lead_id].identity.chat_session_id
    assert len((await leads.ListLeads(lp.ListLeadsRequest())).leads) == 2

    undo_twice = leads.SplitLead(
        lp.SplitLeadRequest(lead_id=chat_lead.lead_id, merge_id=merge["merge_id"])
    )
    with pytest.raises(grpc.aio.AioRpcError) as excinfo:
        await undo_twice
    assert excinfo.value.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert "already undone" in (excinfo.value.details() or "")


async def test_split_gives_back_leads_merged_into_the_absorbed_one_earlier(
    stub: tuple[leads_pb2_grpc.LeadsAsyncStub, Settings],
) -> None:
    leads, settings = stub
    # chat-A and visitor-B merge (B into A), then A is merged into the phone lead P.
    await leads.IngestBatch(lp.IngestBatchRequest(signals=[signal(phone=PHONE, minutes=0)]))
    await leads.IngestBatch(
        lp.IngestBatchRequest(
            signals=[signal(source=c.SOURCE_CHAT, chat_session_id="A", minutes=1)]
        )
    )
    await leads.IngestBatch(
        lp.IngestBatchRequest(signals=[signal(source=c.SOURCE_VISION, visitor_id="B", minutes=2)])
    )
    await leads.IngestBatch(
        lp.IngestBatchRequest(
            signals=[
                signal(
                    source=c.SOURCE_CHAT,
                    kind=c.SIGNAL_KIND_CONTACT_CAPTURED,
                    name="",
                    chat_session_id="A",
                    visitor_id="B",
                    minutes=3,
                )
            ]
        )
    )
    await leads.IngestBatch(
        lp.IngestBatchRequest(
            signals=[
                signal(
                    source=c.SOURCE_CHAT,
                    kind=c.SIGNAL_KIND_CONTACT_CAPTURED,
                    name="",
                    chat_session_id="A",
                    phone=PHONE,
                    minutes=4,
                )
            ]
        )
    )
    (only,) = (await leads.ListLeads(lp.ListLeadsRequest())).leads
    assert only.signal_count == 5
    store = LeadStore(settings.resolved_database_url)
    with store.engine.connect() as conn:
        merges = (
            conn.execute(schema.merges.select().order_by(schema.merges.c.created_at))
            .mappings()
            .all()
        )
    store.close()
    last = next(m for m in merges if m["survivor_id"] == only.lead_id)
    split = await leads.SplitLead(
        lp.SplitLeadRequest(lead_id=only.lead_id, merge_id=last["merge_id"])
    )
    counts = sorted(x.signal_count for x in split.leads)
    # A signal stays with the lead it was first attached to: the phone lead keeps its own
    # signal and the A+P link; A comes back with its signal, B's, and the A+B link.
    assert counts == [2, 3]
    restored = next(x for x in split.leads if x.lead_id != only.lead_id)
    assert restored.identity.chat_session_id == "A"
    assert restored.identity.visitor_id == "B"


async def test_forget_erases_everything_and_keeps_only_an_audit_record(
    stub: tuple[leads_pb2_grpc.LeadsAsyncStub, Settings],
) -> None:
    leads, settings = stub
    journey = customer_journey()
    await leads.IngestBatch(lp.IngestBatchRequest(signals=journey))
    await leads.IngestBatch(
        lp.IngestBatchRequest(
            signals=[
                signal(
                    kind=c.SIGNAL_KIND_ZONE_VISIT,
                    name="entrance",
                    visitor_id="someone-else",
                    source=c.SOURCE_VISION,
                )
            ]
        )
    )
    page = (await leads.ListLeads(lp.ListLeadsRequest())).leads
    target = next(x for x in page if x.identity.phone == PHONE)
    watch = leads.WatchLeads(
        lp.WatchLeadsRequest(filter=lp.LeadFilter(classes=[lp.LEAD_CLASS_HOT]))
    )
    await asyncio.wait_for(watch.initial_metadata(), 10)

    erased = await leads.ForgetLead(
        lp.ForgetLeadRequest(lead_id=target.lead_id, reason="GDPR art. 17")
    )
    assert erased.signals_erased == 6
    assert erased.audit_id

    # The lead and the chat lead the journey merged into it are both told as forgotten.
    gone = [await next_change(watch) for _ in range(2)]
    assert {x.type for x in gone} == {CT.CHANGE_TYPE_FORGOTTEN}
    assert target.lead_id in {x.lead.lead_id for x in gone}
    watch.cancel()

    with pytest.raises(grpc.aio.AioRpcError) as excinfo:
        await leads.GetLead(lp.GetLeadRequest(lead_id=target.lead_id))
    assert excinfo.value.code() is grpc.StatusCode.NOT_FOUND
    remaining = (await leads.ListLeads(lp.ListLeadsRequest())).leads
    assert [x.identity.visitor_id for x in remaining] == ["someone-else"]

    store = LeadStore(settings.resolved_database_url)
    with store.engine.connect() as conn:
        dump = "\n".join(
            str(row)
            for table in schema.metadata.sorted_tables
            for row in conn.execute(table.select())
        )
        audit = conn.execute(schema.erasures.select()).mappings().one()
    store.close()
    erased_ids = [x.signal_id for x in journey]  # tombstones keep keyed hashes only
    for personal in (PHONE, "ana@example.com", "chat-9", "v-7", "I want to buy", *erased_ids):
        assert personal not in dump
    assert audit["reason"] == "GDPR art. 17"
    # The journey itself merged the chat lead into the phone lead: both rows go.
    assert (audit["leads_erased"], audit["signals_erased"]) == (2, 6)

    # The senders' outboxes replay the journey (acks lost), and deliver a signal queued
    # before the erasure: dropped as duplicates (never to be sent again), nobody back.
    queued = signal(phone=PHONE, minutes=120)
    replay = await leads.IngestBatch(lp.IngestBatchRequest(signals=[*journey, queued]))
    assert (replay.accepted, replay.duplicates, replay.rejected) == (0, 7, 0)
    remaining = (await leads.ListLeads(lp.ListLeadsRequest())).leads
    assert [x.identity.visitor_id for x in remaining] == ["someone-else"]

    # The same person coming back after the erasure (the scenario's clock: a day after
    # the story) starts a fresh lead: nothing was kept to link it.
    back = signal(phone=PHONE, minutes=24 * 60 + 1)
    await leads.IngestBatch(lp.IngestBatchRequest(signals=[back]))
    fresh = [x for x in (await leads.ListLeads(lp.ListLeadsRequest())).leads if x.identity.phone]
    assert len(fresh) == 1 and fresh[0].lead_id != target.lead_id and fresh[0].signal_count == 1
