"""Erasure stays erasure, and watchers hear of every lead a write removes or changes.

- A signal an at-least-once sender replays after its person was erased (its ack was
  lost), or one it queued before the erasure, is dropped (tombstones) instead of
  bringing the person back; one from after the erasure is the person coming back.
- WatchLeads hears every lead id an erasure, a merge or the retention purge removes
  (FORGOTTEN) or re-scores, on SQLite (in-process) and PostgreSQL (NOTIFY).
- A write is stamped (updated_at) once it holds the write lock.
- WatchLeads honours filter.segment.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import datetime, timedelta
from types import SimpleNamespace
from typing import cast

import psycopg
import pytest
from leads_harness import EMAIL, PHONE, Leads, customer_journey, next_change
from leads_signals import NOW, recent, signal
from sqlalchemy import func, select

from percept.leads import schema
from percept.leads.identity import IdentityKey
from percept.leads.service import LeadsService
from percept.leads.store import IngestResult, LeadFilter, LeadStore, now_utc
from percept.leads.store.base import WRITE_LOCK
from percept.runtime.settings import Settings
from percept.v1 import common_pb2 as c
from percept.v1 import leads_pb2 as lp
from percept.v1 import leads_pb2_grpc

CT = lp.LeadChange
DAY = 24 * 60  # minutes
FACE = "face-9"


class Clock:
    def __init__(self, at: datetime) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at


def _dump(store: LeadStore) -> str:
    with store.engine.connect() as conn:
        return "\n".join(
            str(row)
            for table in schema.metadata.sorted_tables
            for row in conn.execute(table.select())
        )


def _tombstones(store: LeadStore) -> int:
    with store.engine.connect() as conn:
        return sum(
            int(conn.scalar(select(func.count()).select_from(table)) or 0)
            for table in (schema.erased_signals, schema.erased_keys)
        )


def _counts(result: IngestResult) -> tuple[int, int, int]:
    return result.accepted, result.duplicates, result.rejected


def test_replayed_and_queued_signals_do_not_bring_an_erased_person_back(
    database_url: str,
) -> None:
    clock = Clock(NOW + timedelta(days=1))
    store = LeadStore(database_url, clock=clock)
    store.migrate()
    first = signal(email=EMAIL, phone=PHONE, face_identity_id=FACE, evidence="I want a phone")
    assert _counts(store.ingest([first])) == (1, 0, 0)
    lead = store.lead_of_key(IdentityKey("email", EMAIL))
    assert lead is not None
    store.forget(lead, "GDPR art. 17")

    # The sender's outbox retries the very signal (its ack was lost): a duplicate, so it
    # is not sent again, and nothing comes back. Beside it, someone else's is stored.
    other = signal(visitor_id="someone-else", kind=c.SIGNAL_KIND_ZONE_VISIT, name="entrance")
    assert _counts(store.ingest([first, other])) == (1, 1, 0)
    # Signals queued before the erasure, delivered only now: each carries a key erased
    # at or after it occurred (the face at the very moment of the erasure).
    queued = [signal(phone=PHONE, minutes=60), signal(face_identity_id=FACE, minutes=DAY)]
    assert _counts(store.ingest(queued)) == (0, 2, 0)
    rows, _ = store.page(LeadFilter(), 10, "")
    assert [k.value for r in rows for k in r["keys"]] == ["someone-else"]
    for key in (("email", EMAIL), ("phone", PHONE), ("face_identity_id", FACE)):
        assert store.lead_of_key(IdentityKey(*key)) is None
    # The tombstones hold nothing of the person: no key, no signal id, no words. (The face
    # id waits in face_erasures until vision confirms its embedding is gone.)
    dump = _dump(store)
    for personal in (EMAIL, PHONE, first.signal_id, queued[0].signal_id, "I want"):
        assert personal not in dump
    assert _tombstones(store) == 4  # the signal; its e-mail, phone and face

    # The person comes back after the erasure (new consent): a new lead, with only that.
    clock.at = NOW + timedelta(days=1, minutes=2)
    back = signal(email=EMAIL, minutes=DAY + 1)
    assert _counts(store.ingest([back])) == (1, 0, 0)
    again = store.lead_of_key(IdentityKey("email", EMAIL))
    assert again is not None and again != lead
    view = store.get(again)
    assert view is not None and view.row["signal_count"] == 1
    assert [k.value for k in view.keys] == [EMAIL]
    # Erased again: from then on a signal up to the second erasure is dropped, also one
    # from between the two.
    clock.at = NOW + timedelta(days=2)
    store.forget(again, "asked again")
    between = signal(email=EMAIL, minutes=DAY + 30)
    assert _counts(store.ingest([between, back])) == (0, 2, 0)
    assert store.lead_of_key(IdentityKey("email", EMAIL)) is None
    store.close()


def test_an_erasure_leaves_a_key_other_people_share_to_them(database_url: str) -> None:
    """A switchboard phone two people called from is not the erased person's alone:
    tombstoning it would drop the other person's queued signals, as duplicates that
    nobody sends again."""
    clock = Clock(NOW + timedelta(days=1))
    store = LeadStore(database_url, clock=clock)
    store.migrate()
    store.ingest([signal(email=EMAIL, phone=PHONE, minutes=120)])
    store.ingest([signal(email="bo@example.com", phone=PHONE, minutes=110)])  # two people
    ana = store.lead_of_key(IdentityKey("email", EMAIL))
    bo = store.lead_of_key(IdentityKey("email", "bo@example.com"))
    assert ana is not None and bo is not None and ana != bo
    store.forget(ana, "GDPR art. 17")
    # Bo's signal queued before the erasure, through the shared phone: stored.
    queued = signal(email="bo@example.com", phone=PHONE, minutes=60)
    assert _counts(store.ingest([queued])) == (1, 0, 0)
    view = store.get(bo)
    assert view is not None and view.row["signal_count"] == 2
    # Ana's own e-mail stays erased: her queued signal is dropped.
    assert _counts(store.ingest([signal(email=EMAIL, minutes=60)])) == (0, 1, 0)
    store.close()


def test_tombstones_go_with_the_retention_purge_after_the_longest_retention(
    database_url: str,
) -> None:
    clock = Clock(NOW + timedelta(days=1))
    store = LeadStore(database_url, clock=clock)
    store.migrate()
    first = signal(email=EMAIL)
    store.ingest([first])
    lead = store.lead_of_key(IdentityKey("email", EMAIL))
    assert lead is not None
    store.forget(lead, "GDPR art. 17")
    assert _tombstones(store) == 2
    clock.at = NOW + timedelta(days=1 + 400)  # past the default, within the longest
    assert store.purge(365, {"dwell": 500}).tombstones == 0
    assert _counts(store.ingest([first])) == (0, 1, 0)  # still covered
    clock.at = NOW + timedelta(days=1 + 501)
    assert store.purge(365, {"dwell": 500}).tombstones == 2
    assert _tombstones(store) == 0
    store.close()


@contextlib.contextmanager
def _write_lock_held(store: LeadStore, url: str) -> Iterator[None]:
    """Another writer holds the write lock: another replica's advisory lock on
    PostgreSQL, this process's writer on SQLite."""
    if not store.shared:
        with store._write_lock:
            yield
        return
    dsn = url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(dsn) as conn:
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK,))
        yield
        conn.commit()


@pytest.mark.parametrize("write", ["ingest", "merge"])
def test_a_write_that_waited_for_the_lock_is_stamped_once_it_got_it(
    database_url: str, write: str
) -> None:
    """A client that reloads with ListLeads(updated_since=W) must get a change that
    committed after W, although it began (and waited for the lock) before W."""
    store = LeadStore(database_url)
    store.migrate()
    store.ingest([recent(phone=PHONE)])
    store.ingest([recent(email=EMAIL)])
    keys = (IdentityKey("phone", PHONE), IdentityKey("email", EMAIL))
    ids = [str(store.lead_of_key(key)) for key in keys]

    def action() -> object:
        if write == "ingest":
            return store.ingest([recent(email=EMAIL, name="price_inquiry")])
        return store.merge_leads(ids, "same person")

    with _write_lock_held(store, database_url):
        worker = threading.Thread(target=action)
        worker.start()
        time.sleep(0.5)  # it waits for the lock
        watermark = now_utc()
        time.sleep(0.05)
    worker.join(30)
    rows, _ = store.page(LeadFilter(updated_since=watermark), 10, "")
    store.close()
    assert len(rows) == 1, f"changed before {watermark}: the reload would miss it"


@pytest.fixture
async def running(
    make_settings: Callable[..., Settings], database_url: str
) -> AsyncIterator[tuple[leads_pb2_grpc.LeadsAsyncStub, LeadsService]]:
    leads = Leads(make_settings(database_url=database_url))
    stub = await leads.start()
    assert leads.host is not None
    yield stub, cast(LeadsService, leads.host.service)
    await leads.stop()


async def _changes(watch: object, count: int) -> dict[str, int]:
    heard: dict[str, int] = {}
    for _ in range(count):
        change = await next_change(watch)
        assert change.lead.lead_id not in heard, change
        heard[change.lead.lead_id] = change.type
    return heard


async def _lead(stub: leads_pb2_grpc.LeadsAsyncStub, **key: str) -> str:
    return (await stub.GetLead(lp.GetLeadRequest(key=c.IdentityKeys(**key)))).lead_id


async def test_watchers_hear_every_lead_a_merge_or_an_erasure_removes(
    running: tuple[leads_pb2_grpc.LeadsAsyncStub, LeadsService],
) -> None:
    stub, _ = running
    watch = stub.WatchLeads(lp.WatchLeadsRequest(), timeout=60)
    await asyncio.wait_for(watch.initial_metadata(), 10)
    for one in (signal(phone=PHONE), signal(email=EMAIL), signal(chat_session_id="chat-9")):
        await stub.IngestBatch(lp.IngestBatchRequest(signals=[one]))
    assert set((await _changes(watch, 3)).values()) == {CT.CHANGE_TYPE_CREATED}
    phone, email = await _lead(stub, phone=PHONE), await _lead(stub, email=EMAIL)
    chat = await _lead(stub, chat_session_id="chat-9")

    # A signal joins the phone and the e-mail: the absorbed lead is gone from the board.
    await stub.IngestBatch(lp.IngestBatchRequest(signals=[signal(phone=PHONE, email=EMAIL)]))
    survivor = await _lead(stub, phone=PHONE)
    absorbed = email if survivor == phone else phone
    assert await _changes(watch, 2) == {
        survivor: CT.CHANGE_TYPE_MERGED,
        absorbed: CT.CHANGE_TYPE_FORGOTTEN,
    }
    # A salesperson merges the chat lead in.
    await stub.MergeLeads(lp.MergeLeadsRequest(lead_ids=[survivor, chat], reason="same"))
    assert await _changes(watch, 2) == {
        survivor: CT.CHANGE_TYPE_MERGED,
        chat: CT.CHANGE_TYPE_FORGOTTEN,
    }
    watch.cancel()


async def test_an_erasure_by_a_merged_away_id_tells_watchers_of_every_erased_lead(
    running: tuple[leads_pb2_grpc.LeadsAsyncStub, LeadsService],
) -> None:
    stub, _ = running
    for one in (signal(phone=PHONE), signal(email=EMAIL), signal(chat_session_id="chat-9")):
        await stub.IngestBatch(lp.IngestBatchRequest(signals=[one]))
    phone, email = await _lead(stub, phone=PHONE), await _lead(stub, email=EMAIL)
    chat = await _lead(stub, chat_session_id="chat-9")
    await stub.MergeLeads(lp.MergeLeadsRequest(lead_ids=[phone, email, chat], reason="same"))
    watch = stub.WatchLeads(lp.WatchLeadsRequest(), timeout=60)
    await asyncio.wait_for(watch.initial_metadata(), 10)
    # Erased by an id the caller had from before the merge: the board shows the
    # surviving lead, which is the one really erased; every erased id is told.
    await stub.ForgetLead(lp.ForgetLeadRequest(lead_id=email, reason="GDPR art. 17"))
    erased = await _changes(watch, 3)
    assert erased == {lead: CT.CHANGE_TYPE_FORGOTTEN for lead in (phone, email, chat)}
    watch.cancel()


async def test_watchers_hear_what_the_retention_purge_deletes_and_rescores(
    running: tuple[leads_pb2_grpc.LeadsAsyncStub, LeadsService],
) -> None:
    stub, service = running
    old = -40 * DAY
    await stub.IngestBatch(
        lp.IngestBatchRequest(
            signals=[
                signal(visitor_id="v-old", minutes=old),  # only old: the lead goes
                signal(email=EMAIL, minutes=old, name="purchase_intent"),  # re-scored
                signal(email=EMAIL, minutes=DAY - 5, name="product_question"),
            ]
        )
    )
    gone, rescored = await _lead(stub, visitor_id="v-old"), await _lead(stub, email=EMAIL)
    watch = stub.WatchLeads(lp.WatchLeadsRequest(), timeout=60)
    await asyncio.wait_for(watch.initial_metadata(), 10)
    service.retention_days = 30
    await service._purge()
    assert await _changes(watch, 2) == {
        gone: CT.CHANGE_TYPE_FORGOTTEN,
        rescored: CT.CHANGE_TYPE_UPDATED,
    }
    watch.cancel()
    listed = (await stub.ListLeads(lp.ListLeadsRequest())).leads
    assert [(x.lead_id, x.signal_count) for x in listed] == [(rescored, 1)]


async def test_a_segment_filtered_watch_streams_only_that_segments_leads(
    running: tuple[leads_pb2_grpc.LeadsAsyncStub, LeadsService],
) -> None:
    stub, service = running
    journey = customer_journey()
    await stub.IngestBatch(lp.IngestBatchRequest(signals=journey[:1]))
    await stub.IngestBatch(lp.IngestBatchRequest(signals=[signal(visitor_id="walk-in")]))
    member, outsider = await _lead(stub, phone=PHONE), await _lead(stub, visitor_id="walk-in")
    segment = SimpleNamespace(
        segment_id="seg-phones", name="phone buyers", lead_ids=[member], dominant_features=[]
    )
    await asyncio.to_thread(service.store.save_segments, [segment])
    watch = stub.WatchLeads(
        lp.WatchLeadsRequest(filter=lp.LeadFilter(segment="seg-phones")), timeout=60
    )
    await asyncio.wait_for(watch.initial_metadata(), 10)
    await stub.IngestBatch(lp.IngestBatchRequest(signals=[signal(visitor_id="walk-in")]))
    await stub.IngestBatch(lp.IngestBatchRequest(signals=journey[1:2]))
    change = await next_change(watch)
    assert change.lead.lead_id == member, f"{outsider} is in no segment"
    assert change.type == CT.CHANGE_TYPE_UPDATED
    watch.cancel()
