"""Several leads replicas on one real PostgreSQL: one person's keys arriving through
different replicas at the same moment end as one lead, every replica's watchers hear
every lead, and no answer carries SQL or anybody's data."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import pytest
from leads_harness import Leads, Receiver
from leads_signals import signal
from local_servers import local_settings
from pg_cluster import ThrowawayCluster

from percept.v1 import common_pb2 as c
from percept.v1 import leads_pb2 as lp
from percept.v1 import leads_pb2_grpc

pytestmark = pytest.mark.slow
PEOPLE = 150
LEAKS = ("SELECT", "INSERT", "UPDATE", "psycopg", "sqlalchemy", "@example.com", "+1415")


def phone(i: int) -> str:
    return f"+1415555{i:04d}"


def email(i: int) -> str:
    return f"person{i}@example.com"


def journeys() -> list[tuple[int, c.Signal]]:
    """(replica, signal): each person's call through one replica, their chat e-mail through
    the next, and the contact that joins the two through the one after (modulo)."""
    sends = []
    for i in range(PEOPLE):
        sends.append((0, signal(phone=phone(i), name="purchase_intent")))
        sends.append((1, signal(source=c.SOURCE_CHAT, name="product_question", email=email(i))))
        sends.append(
            (
                2 + i % 2,
                signal(
                    source=c.SOURCE_CHAT,
                    kind=c.SIGNAL_KIND_CONTACT_CAPTURED,
                    name="",
                    phone=phone(i),
                    email=email(i),
                ),
            )
        )
    return sends


def _queued_events(url: str) -> int:
    from sqlalchemy import create_engine, func, select

    from percept.leads import schema

    engine = create_engine(url)
    with engine.connect() as conn:
        count = conn.scalar(select(func.count()).select_from(schema.webhook_events))
    engine.dispose()
    return int(count or 0)


async def watch(stub: leads_pb2_grpc.LeadsAsyncStub, heard: dict[str, lp.Lead]) -> None:
    async for change in stub.WatchLeads(lp.WatchLeadsRequest()):
        heard[change.lead.lead_id] = change.lead


@pytest.mark.parametrize("count", [2, 3])
async def test_replicas_resolve_one_person_to_one_lead_watch_everything_and_hook_once(
    postgres_cluster: ThrowawayCluster, tmp_path: Path, count: int
) -> None:
    url = postgres_cluster.new_database()
    crm = Receiver(failures=0)
    replicas = [
        Leads(
            local_settings(
                tmp_path / f"replica-{n}",
                database_url=url,
                leads_webhook_urls=[crm.url],
                leads_webhook_secret="s" * 32,
            )
        )
        for n in range(count)
    ]
    stubs = [await replica.start() for replica in replicas]
    heard: list[dict[str, lp.Lead]] = [{} for _ in range(count)]
    watchers = []
    for stub, seen in zip(stubs, heard, strict=True):
        call = stub.WatchLeads(lp.WatchLeadsRequest())
        await asyncio.wait_for(call.initial_metadata(), 10)
        call.cancel()
        watchers.append(asyncio.create_task(watch(stub, seen)))
    await asyncio.sleep(0.5)
    errors: list[str] = []
    gate = asyncio.Semaphore(24)

    async def send(replica: int, message: c.Signal) -> None:
        async with gate:
            try:
                stub = stubs[replica % count]
                ack = await stub.IngestBatch(lp.IngestBatchRequest(signals=[message]))
                errors.extend(e.message for e in ack.errors)
            except grpc.aio.AioRpcError as exc:
                errors.append(f"{exc.code().name}: {exc.details()}")

    try:
        await asyncio.gather(*(send(r, m) for r, m in journeys()))
        assert errors == []
        leads: list[lp.Lead] = []
        token = ""
        while True:
            page = await stubs[0].ListLeads(lp.ListLeadsRequest(page_size=500, page_token=token))
            leads += page.leads
            token = page.next_page_token
            if not token:
                break
        assert len(leads) == PEOPLE  # the sequential reference: one lead a person
        assert sorted(lead.identity.email for lead in leads) == sorted(map(email, range(PEOPLE)))
        assert all(lead.identity.phone for lead in leads)
        final = {lead.lead_id for lead in leads}
        async with asyncio.timeout(30):  # every replica's watchers hear every lead
            while True:
                if all(final <= set(seen) for seen in heard):
                    break
                await asyncio.sleep(0.2)
        # Webhooks: each event once, whichever replica queued it and whichever delivered it.
        async with asyncio.timeout(60):
            while True:
                queued = await asyncio.to_thread(_queued_events, url)
                if queued and len(crm.requests) >= queued:
                    break
                await asyncio.sleep(0.3)
        await asyncio.sleep(2)  # a second delivery would come now
        delivered = [request[0]["x-percept-event-id"] for request in crm.requests]
        assert len(delivered) == len(set(delivered)) == queued
    finally:
        for task in watchers:
            task.cancel()
        for replica in replicas:
            await replica.stop()
        crm.close()
    for message in errors:
        assert not any(leak in message for leak in LEAKS), message
