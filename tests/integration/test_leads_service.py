"""The leads service over real gRPC on loopback, backed by a real SQLite file."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import cast

import grpc
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from google.protobuf.timestamp_pb2 import Timestamp
from leads_harness import EMAIL, PHONE, Leads, code_of, customer_journey
from leads_signals import signal
from local_servers import local_settings
from pg_cluster import ThrowawayCluster

from percept.leads import schema
from percept.leads.store import LeadStore
from percept.runtime.settings import Settings
from percept.v1 import common_pb2 as c
from percept.v1 import leads_pb2 as lp


@pytest.fixture
async def leads(make_settings: Callable[..., Settings], database_url: str) -> AsyncIterator[Leads]:
    settings = make_settings(database_url=database_url)
    running = Leads(settings)
    yield running
    await running.stop()


async def test_three_channels_fuse_into_one_hot_explained_lead(leads: Leads) -> None:
    stub = await leads.start()
    ack = await stub.IngestBatch(lp.IngestBatchRequest(signals=customer_journey()), timeout=10)
    assert (ack.accepted, ack.duplicates, ack.rejected) == (6, 0, 0)

    page = await stub.ListLeads(lp.ListLeadsRequest(), timeout=10)
    assert len(page.leads) == 1, [lead.identity for lead in page.leads]
    lead = page.leads[0]
    assert lead.identity.phone == PHONE
    assert lead.identity.email == EMAIL
    assert lead.identity.chat_session_id == "chat-9"
    assert lead.identity.visitor_id == "v-7"
    assert lead.lead_class == lp.LEAD_CLASS_HOT
    assert lead.stage == lp.LEAD_STAGE_OPPORTUNITY
    assert lead.product_interest == "phone"
    assert set(lead.channels) == {c.SOURCE_SPEECH, c.SOURCE_CHAT, c.SOURCE_VISION}
    assert dict(lead.qualification) == {"budget": "1500 USD", "product": "phone"}
    assert lead.signal_count == 6

    full = await stub.GetLead(lp.GetLeadRequest(lead_id=lead.lead_id, include_timeline=True))
    times = [e.occurred_at.ToDatetime() for e in full.timeline]
    assert times == sorted(times)
    assert sum(bool(e.signal_id) for e in full.timeline) == 6
    assert full.timeline[0].summary == "phone call: intent purchase_intent"
    # the follow-up the hot lead got is a step of its timeline too
    (step,) = [e for e in full.timeline if e.follow_up_id]
    assert step.follow_up_id == full.next_follow_up_id
    assert step.summary.startswith("follow-up call created: call by ")

    explained = await stub.ExplainScore(lp.ExplainScoreRequest(lead_id=lead.lead_id))
    assert explained.model == "prior"
    assert explained.lead_class == lp.LEAD_CLASS_HOT
    words = " | ".join(x.description for x in explained.contributions)
    assert "phone call, store visit, website chat" in words
    assert "wants to buy" in words
    assert "lingered 240 s at the phone display" in words
    effects = [abs(x.contribution) for x in explained.contributions]
    assert effects == sorted(effects, reverse=True)


async def test_merge_is_recorded_and_absorbed_lead_points_to_survivor(leads: Leads) -> None:
    stub = await leads.start()
    # Two separate leads first: one by phone, one by chat session.
    first = [signal(phone=PHONE, minutes=0)]
    second = [
        signal(source=c.SOURCE_CHAT, name="price_inquiry", chat_session_id="chat-1", minutes=5)
    ]
    await stub.IngestBatch(lp.IngestBatchRequest(signals=first))
    await stub.IngestBatch(lp.IngestBatchRequest(signals=second))
    before = (await stub.ListLeads(lp.ListLeadsRequest())).leads
    assert len(before) == 2
    by_key = {("phone" if lead.identity.phone else "chat"): lead.lead_id for lead in before}
    # Then a chat turn gives the phone number: the two leads are one person.
    link = [
        signal(
            source=c.SOURCE_CHAT,
            kind=c.SIGNAL_KIND_CONTACT_CAPTURED,
            name="",
            chat_session_id="chat-1",
            phone=PHONE,
            minutes=6,
        )
    ]
    await stub.IngestBatch(lp.IngestBatchRequest(signals=link))
    after = (await stub.ListLeads(lp.ListLeadsRequest())).leads
    assert [lead.lead_id for lead in after] == [by_key["phone"]]  # the older lead survives
    absorbed = await stub.GetLead(lp.GetLeadRequest(lead_id=by_key["chat"]))
    assert absorbed.lead_id == by_key["phone"]
    assert absorbed.signal_count == 3
    store = LeadStore(leads.settings.resolved_database_url)
    with store.engine.connect() as conn:
        merges = conn.execute(schema.merges.select()).mappings().all()
    store.close()
    assert [(m["survivor_id"], m["absorbed_id"]) for m in merges] == [
        (by_key["phone"], by_key["chat"])
    ]
    assert merges[0]["evidence_signal_id"] == link[0].signal_id


async def test_replays_change_nothing_and_conflicts_keep_the_original(leads: Leads) -> None:
    stub = await leads.start()
    journey = customer_journey()
    await stub.IngestBatch(lp.IngestBatchRequest(signals=journey))
    lead_before = (await stub.ListLeads(lp.ListLeadsRequest())).leads[0]

    replay = await stub.IngestBatch(lp.IngestBatchRequest(signals=journey))
    assert (replay.accepted, replay.duplicates, replay.rejected) == (0, 6, 0)

    tampered = c.Signal()
    tampered.CopyFrom(journey[0])
    tampered.confidence = 0.1
    fresh = signal(name="price_inquiry", phone=PHONE, minutes=5)
    mixed = await stub.IngestBatch(lp.IngestBatchRequest(signals=[tampered, fresh]))
    assert (mixed.accepted, mixed.duplicates, mixed.rejected) == (1, 0, 1)
    assert mixed.errors[0].signal_id == tampered.signal_id
    assert "different content; original kept" in mixed.errors[0].message

    lead = await stub.GetLead(lp.GetLeadRequest(lead_id=lead_before.lead_id))
    assert lead.signal_count == 7
    explained = await stub.ExplainScore(lp.ExplainScoreRequest(lead_id=lead.lead_id))
    intent = next(x for x in explained.contributions if x.feature == "intent:purchase_intent")
    # The original confidence (0.93), decayed over the scenario's one day, not the tampered 0.1.
    assert intent.value == pytest.approx(0.93 * 0.5 ** (1 / 14))


async def test_client_stream_ingest_commits_in_chunks(leads: Leads) -> None:
    stub = await leads.start()
    signals = [
        signal(name="product_question", chat_session_id=f"s-{i}", source=c.SOURCE_CHAT)
        for i in range(1203)
    ]
    ack = await stub.Ingest(iter(signals), timeout=60)
    assert (ack.accepted, ack.rejected) == (1203, 0)
    again = await stub.Ingest(iter(signals[:10]), timeout=60)
    assert (again.accepted, again.duplicates) == (0, 10)


async def test_pagination_is_stable_and_tokens_are_tamper_checked(leads: Leads) -> None:
    stub = await leads.start()
    signals = [
        signal(name="product_question", visitor_id=f"v-{i:03}", source=c.SOURCE_VISION, minutes=i)
        for i in range(25)
    ]
    await stub.IngestBatch(lp.IngestBatchRequest(signals=signals))
    seen: list[str] = []
    token = ""
    while True:
        page = await stub.ListLeads(lp.ListLeadsRequest(page_size=10, page_token=token))
        seen += [lead.identity.visitor_id for lead in page.leads]
        token = page.next_page_token
        if not token:
            break
        # An update between pages must not move leads across pages.
        await stub.IngestBatch(
            lp.IngestBatchRequest(
                signals=[
                    signal(
                        name="purchase_intent",
                        visitor_id="v-000",
                        source=c.SOURCE_VISION,
                        minutes=30 + len(seen),
                    )
                ]
            )
        )
    assert seen == [f"v-{i:03}" for i in range(25)]

    first = await stub.ListLeads(lp.ListLeadsRequest(page_size=10))
    payload, _, mac = first.next_page_token.partition(".")
    forged = payload + "." + ("0" * len(mac))
    code, details = await code_of(stub.ListLeads(lp.ListLeadsRequest(page_token=forged)))
    assert code is grpc.StatusCode.INVALID_ARGUMENT
    assert "forged or corrupted" in details
    other_filter = lp.ListLeadsRequest(
        page_token=first.next_page_token, filter=lp.LeadFilter(min_score=0.5)
    )
    code, details = await code_of(stub.ListLeads(other_filter))
    assert code is grpc.StatusCode.INVALID_ARGUMENT
    assert "another filter" in details


async def test_filters_select_by_class_stage_product_and_score(leads: Leads) -> None:
    stub = await leads.start()
    await stub.IngestBatch(lp.IngestBatchRequest(signals=customer_journey()))
    await stub.IngestBatch(
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

    async def ids(f: lp.LeadFilter) -> list[str]:
        page = await stub.ListLeads(lp.ListLeadsRequest(filter=f))
        return [lead.identity.visitor_id for lead in page.leads]

    assert await ids(lp.LeadFilter(classes=[lp.LEAD_CLASS_HOT])) == ["v-7"]
    assert await ids(lp.LeadFilter(classes=[lp.LEAD_CLASS_COLD])) == ["walk-in"]
    assert await ids(lp.LeadFilter(stages=[lp.LEAD_STAGE_NEW])) == ["walk-in"]
    assert await ids(lp.LeadFilter(product_interest="Phone")) == ["v-7"]
    assert await ids(lp.LeadFilter(min_score=0.7)) == ["v-7"]
    assert await ids(lp.LeadFilter(max_score=0.3)) == ["walk-in"]


BEFORE_YEAR_ONE = Timestamp(seconds=-62135596801)
AFTER_9999 = Timestamp(seconds=253402300800)


async def test_bad_requests_get_precise_statuses(leads: Leads) -> None:
    stub = await leads.start()
    cases: list[tuple[Awaitable[object], grpc.StatusCode, str]] = [
        (
            stub.IngestBatch(lp.IngestBatchRequest()),
            grpc.StatusCode.INVALID_ARGUMENT,
            "batch is empty",
        ),
        (
            stub.IngestBatch(lp.IngestBatchRequest(signals=[signal()])),
            grpc.StatusCode.INVALID_ARGUMENT,
            "identity: at least one key",
        ),
        (
            stub.IngestBatch(lp.IngestBatchRequest(signals=[signal(confidence=2, phone=PHONE)])),
            grpc.StatusCode.INVALID_ARGUMENT,
            "confidence: 2.0 is outside [0, 1]",
        ),
        (
            stub.IngestBatch(lp.IngestBatchRequest(signals=[signal(minutes=10_000, phone=PHONE)])),
            grpc.StatusCode.INVALID_ARGUMENT,
            "is in the future",
        ),
        (
            stub.IngestBatch(lp.IngestBatchRequest(signals=[signal(source=42, phone=PHONE)])),
            grpc.StatusCode.INVALID_ARGUMENT,
            "source: unknown",
        ),
        (stub.Ingest(iter([])), grpc.StatusCode.INVALID_ARGUMENT, "no signals"),
        (stub.GetLead(lp.GetLeadRequest()), grpc.StatusCode.INVALID_ARGUMENT, "lead_id: required"),
        (stub.GetLead(lp.GetLeadRequest(lead_id="nope")), grpc.StatusCode.NOT_FOUND, "not found"),
        (
            stub.ExplainScore(lp.ExplainScoreRequest(lead_id="nope")),
            grpc.StatusCode.NOT_FOUND,
            "not found",
        ),
        (
            stub.ListLeads(lp.ListLeadsRequest(page_size=-1)),
            grpc.StatusCode.INVALID_ARGUMENT,
            "page_size",
        ),
        (
            stub.ListLeads(lp.ListLeadsRequest(filter=lp.LeadFilter(min_score=2))),
            grpc.StatusCode.INVALID_ARGUMENT,
            "within [0, 1]",
        ),
        (
            stub.ListLeads(lp.ListLeadsRequest(filter=lp.LeadFilter(min_score=0.8, max_score=0.2))),
            grpc.StatusCode.INVALID_ARGUMENT,
            "min_score is above max_score",
        ),
        (  # proto enums are open: 99 reaches the server, and matched nothing with OK
            stub.ListLeads(lp.ListLeadsRequest(filter=lp.LeadFilter(classes=[99]))),  # type: ignore[list-item]
            grpc.StatusCode.INVALID_ARGUMENT,
            "filter.classes: 99 is not one of LEAD_CLASS_UNSPECIFIED",
        ),
        (
            stub.ListLeads(lp.ListLeadsRequest(filter=lp.LeadFilter(stages=[2, 42]))),  # type: ignore[list-item]
            grpc.StatusCode.INVALID_ARGUMENT,
            "filter.stages: 42 is not one of",
        ),
        (
            stub.ListLeads(lp.ListLeadsRequest(page_token="garbage")),
            grpc.StatusCode.INVALID_ARGUMENT,
            "page_token",
        ),
        (
            stub.CampaignReport(lp.CampaignReportRequest(campaign_ids=["spring", " "])),
            grpc.StatusCode.INVALID_ARGUMENT,
            "campaign_ids: empty id",
        ),
        (  # a second before year 1 (the fuzz suite found these)
            stub.CampaignReport(lp.CampaignReportRequest(since=BEFORE_YEAR_ONE)),
            grpc.StatusCode.INVALID_ARGUMENT,
            "since: not a valid time",
        ),
        (
            stub.ListLeads(lp.ListLeadsRequest(filter=lp.LeadFilter(updated_since=AFTER_9999))),
            grpc.StatusCode.INVALID_ARGUMENT,
            "filter.updated_since: not a valid time",
        ),
        (
            stub.ForgetLead(lp.ForgetLeadRequest(lead_id="nope")),
            grpc.StatusCode.NOT_FOUND,
            "not found",
        ),
        (stub.ForgetLead(lp.ForgetLeadRequest()), grpc.StatusCode.INVALID_ARGUMENT, "lead_id"),
        (
            stub.MergeLeads(lp.MergeLeadsRequest(lead_ids=["a"])),
            grpc.StatusCode.INVALID_ARGUMENT,
            "at least two distinct",
        ),
        (
            stub.MergeLeads(lp.MergeLeadsRequest(lead_ids=["a", "b"])),
            grpc.StatusCode.NOT_FOUND,
            "not found",
        ),
        (
            stub.SplitLead(lp.SplitLeadRequest(lead_id="a")),
            grpc.StatusCode.INVALID_ARGUMENT,
            "merge_id",
        ),
        (
            stub.WatchLeads(lp.WatchLeadsRequest(filter=lp.LeadFilter(min_score=3))).read(),
            grpc.StatusCode.INVALID_ARGUMENT,
            "within [0, 1]",
        ),
        (
            stub.WatchLeads(
                lp.WatchLeadsRequest(filter=lp.LeadFilter(updated_since=BEFORE_YEAR_ONE))
            ).read(),
            grpc.StatusCode.INVALID_ARGUMENT,
            "filter.updated_since: not a valid time",
        ),
    ]
    for call, expected, words in cases:
        code, details = await code_of(call)
        assert (code, words in details) == (expected, True), (words, code, details)


async def test_nothing_is_lost_across_a_restart(leads: Leads) -> None:
    stub = await leads.start()
    await stub.IngestBatch(lp.IngestBatchRequest(signals=customer_journey()))
    before = (await stub.ListLeads(lp.ListLeadsRequest())).leads
    await leads.stop()
    stub = await leads.start()
    after = (await stub.ListLeads(lp.ListLeadsRequest())).leads
    assert [(x.lead_id, x.signal_count, x.lead_class) for x in after] == [
        (x.lead_id, x.signal_count, x.lead_class) for x in before
    ]
    replay = await stub.IngestBatch(lp.IngestBatchRequest(signals=customer_journey()[:1]))
    assert replay.accepted == 1  # a new signal id; the journey's own ids are below
    token_page = await stub.ListLeads(lp.ListLeadsRequest(page_size=1))
    assert token_page.leads


def test_migrations_create_exactly_the_declared_schema(database_url: str) -> None:
    store = LeadStore(database_url)
    store.migrate()
    store.migrate()  # idempotent
    with store.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), schema.metadata)
    store.close()
    assert diff == []


def test_a_database_migrated_by_a_newer_release_is_refused_naming_both(database_url: str) -> None:
    from sqlalchemy import text

    from percept.leads.store import StoreVersionError

    store = LeadStore(database_url)
    store.migrate()
    with store.engine.begin() as conn:  # what a newer release's migration leaves behind
        conn.execute(text("UPDATE alembic_version SET version_num = '0042_from_the_future'"))
    with pytest.raises(StoreVersionError) as caught:
        store.migrate()
    store.close()
    message = str(caught.value)
    assert "'0042_from_the_future'" in message
    assert re.search(r"its newest is '\d{4}'", message), message


async def test_replicas_starting_together_migrate_once(postgres_cluster: ThrowawayCluster) -> None:
    """(PostgreSQL: SQLite is one process's embedded store.)"""
    url = postgres_cluster.new_database()
    stores = [LeadStore(url) for _ in range(3)]
    await asyncio.gather(*(asyncio.to_thread(store.migrate) for store in stores))
    with stores[0].engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), schema.metadata)
    for store in stores:
        store.close()
    assert diff == []


async def test_replicas_starting_together_on_a_fresh_database_make_one_secret_each(
    postgres_cluster: ThrowawayCluster,
) -> None:
    """(PostgreSQL.) The store's secrets (page tokens, erasure tombstones) are made by the
    first replica; one starting beside it must not crash on a duplicate key."""
    from sqlalchemy import event

    url = postgres_cluster.new_database()
    stores = [LeadStore(url) for _ in range(2)]

    def slow_secrets(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        if statement.startswith("INSERT INTO store_settings"):
            time.sleep(0.3)  # widens any window between reading and inserting a secret

    for store in stores:
        event.listen(store.engine, "before_cursor_execute", slow_secrets)
    try:
        await asyncio.gather(*(asyncio.to_thread(store.migrate) for store in stores))
        assert stores[0]._token_key == stores[1]._token_key != b""
        assert stores[0]._erasure_key == stores[1]._erasure_key != b""
    finally:
        for store in stores:
            store.close()


def test_write_conflicts_between_replicas_are_exported(tmp_path: Path) -> None:
    from prometheus_client import generate_latest

    from percept.leads.service import LeadsService

    service = LeadsService(local_settings(tmp_path / "leads"))
    service.store.conflicts = 3  # what three reruns after conflicts leave
    exported = generate_latest(service.registry).decode()
    assert "percept_leads_write_conflicts_total 3.0" in exported
    service.store.close()


async def test_a_watch_cancelled_while_listen_is_awaited_leaves_no_watcher(leads: Leads) -> None:
    """During a PostgreSQL outage LISTEN is not in place and a watch waits for it: a
    client that gives up then must not leave a watcher collecting changes for ever."""
    import threading
    from types import SimpleNamespace

    from percept.leads.service import LeadsService

    stub = await leads.start()
    assert leads.host is not None
    servicer = cast(LeadsService, leads.host.service).servicer
    assert servicer is not None
    listening = threading.Event()
    real, servicer.listener = servicer.listener, SimpleNamespace(listening=listening)  # type: ignore[assignment]
    try:
        watch = stub.WatchLeads(lp.WatchLeadsRequest())
        async with asyncio.timeout(10):
            while not servicer.feed.watchers:  # noqa: ASYNC110 - subscribed by the server
                await asyncio.sleep(0.02)
        watch.cancel()
        async with asyncio.timeout(10):
            while servicer.feed.watchers:  # noqa: ASYNC110 - unsubscribed by the server
                await asyncio.sleep(0.02)
    finally:
        listening.set()
        servicer.listener = real  # PostgreSQL's: stopped with the service
