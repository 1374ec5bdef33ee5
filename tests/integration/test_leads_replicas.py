"""Several leads replicas on one real PostgreSQL: one person's keys arriving through
different replicas at the same moment end as one lead, every replica's watchers hear
every lead, and no answer carries SQL or anybody's data."""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import Callable
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
        sends.append((2 + i % 2, contact(i)))
    return sends


def contact(i: int) -> c.Signal:
    """Person i leaves phone and e-mail in the chat: the signal that joins their keys."""
    return signal(
        source=c.SOURCE_CHAT,
        kind=c.SIGNAL_KIND_CONTACT_CAPTURED,
        name="",
        phone=phone(i),
        email=email(i),
    )


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


async def test_a_replica_killed_mid_ingest_loses_nothing(
    postgres_cluster: ThrowawayCluster, tmp_path: Path
) -> None:
    """Two `percept serve leads` on one PostgreSQL behind one address (as the headless
    Service resolves); a perception service's outbox sends 800 signals; one replica is
    killed with SIGKILL half-way: the outbox sends the rest, and what the dead one had
    not acknowledged, to the other. Every signal is stored, once."""
    import signal as signals_module
    import subprocess

    from local_servers import PERCEPT, free_port
    from prometheus_client import CollectorRegistry
    from sqlalchemy import create_engine, func, select

    from percept.leads import schema
    from percept.runtime.signals import SignalPublisher

    url = postgres_cluster.new_database()
    ports = [free_port(), free_port()]
    processes = _serve_leads(url, ports, tmp_path)
    addresses = [f"127.0.0.1:{port}" for port in ports]
    health = await asyncio.to_thread(
        subprocess.run,
        [PERCEPT, "health", "--wait", "60", *addresses],
        capture_output=True,
        timeout=90,
    )
    assert health.returncode == 0, health.stdout
    settings = local_settings(tmp_path / "vision", leads_address="ipv4:" + ",".join(addresses))
    publisher = SignalPublisher(settings, "vision", CollectorRegistry())
    publisher.start()
    assert publisher.outbox is not None
    people = 400
    sent = [signal(phone=phone(i), name="purchase_intent") for i in range(people)]
    sent += [contact(i) for i in range(people)]
    engine = create_engine(url)

    def stored() -> int:
        with engine.connect() as conn:
            return int(conn.scalar(select(func.count()).select_from(schema.signals)) or 0)

    try:

        async def steadily() -> None:  # as a camera's signals come: batches keep flowing
            for n, message in enumerate(sent):
                publisher.publish(message)
                if n % 20 == 19:
                    await asyncio.sleep(0.05)

        publishing = asyncio.create_task(steadily())
        await _until(stored, 200, 60)
        processes[0].send_signal(signals_module.SIGKILL)  # mid-ingest, no goodbye
        await publishing
        await _until(stored, len(sent), 120)
        assert await asyncio.to_thread(stored) == len(sent)  # each once
        with engine.connect() as conn:
            leads_left = conn.scalar(
                select(func.count())
                .select_from(schema.leads)
                .where(schema.leads.c.merged_into.is_(None))
            )
        assert leads_left == people
    finally:
        await publisher.close()
        engine.dispose()
        for process in processes:
            if process.poll() is None:
                process.terminate()
                process.wait(30)


def _serve_leads(url: str, ports: list[int], folder: Path) -> list[subprocess.Popen[bytes]]:
    """`percept serve leads` on each port, all on the database at `url`."""
    from local_servers import PERCEPT

    base = {k: v for k, v in os.environ.items() if not k.startswith("PERCEPT_")}
    processes = []
    for n, port in enumerate(ports):
        env = base | {
            "PERCEPT_DATABASE_URL": url,
            "PERCEPT_LEADS_PORT": str(port),
            "PERCEPT_LEADS_METRICS_PORT": "0",
            "PERCEPT_DATA_DIR": str(folder / f"leads-{n}"),
            "PERCEPT_LOG_LEVEL": "WARNING",
        }
        with (folder / f"leads-{n}.log").open("wb") as log:
            processes.append(
                subprocess.Popen([PERCEPT, "serve", "leads"], env=env, stdout=log, stderr=log)
            )
    return processes


async def _until(count: Callable[[], int], at_least: int, within_s: float) -> None:
    async with asyncio.timeout(within_s):
        while True:
            if await asyncio.to_thread(count) >= at_least:
                return
            await asyncio.sleep(0.1)
