"""Leads ingest throughput on SQLite, against a same-run baseline.

Baseline: inserting the same number of rows into the signals table with one
`executemany` per batch (the floor: no validation, no identity resolution, no
scoring). Measured: `LeadStore.ingest` on batches of realistic signals, where
each batch touches many leads (several signals per lead, some leads merging),
and the same through gRPC `IngestBatch` on loopback: from one client, and
from four at once (as several services' outboxes deliver), where batches that
arrive during a write share the next commit.

The same measurements run on a throwaway PostgreSQL cluster too (the
production store), with its own raw-insert baseline, and then with 1, 2 and 3
leads replicas on that one database, the 4 clients spread over them (writes
taking turns by an advisory lock): signals/s, the ratio to one replica, and how
many write transactions ran again after a conflict.

Run: .venv/bin/python bench/leads_ingest.py [--signals N] [--batch N] [--no-postgres]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from sqlalchemy import insert

from percept.leads import schema
from percept.leads.service import LeadsService
from percept.leads.store import LeadStore
from percept.runtime.server import ServiceHost
from percept.runtime.settings import Settings
from percept.v1 import common_pb2 as c
from percept.v1 import leads_pb2, leads_pb2_grpc

# The throwaway-cluster helper is shared with the tests.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from pg_cluster import ThrowawayCluster

INTENTS = ("purchase_intent", "price_inquiry", "product_question", "demo_or_meeting_request")
START = datetime.now(UTC) - timedelta(days=1)
CLIENTS = 4  # concurrent senders in the group-commit measurement


def make_signals(count: int, people: int, seed: int = 7) -> list[c.Signal]:
    rng = random.Random(seed)
    out = []
    for i in range(count):
        person = rng.randrange(people)
        stamp = Timestamp()
        stamp.FromDatetime(START + timedelta(seconds=i))
        identity = c.IdentityKeys(chat_session_id=f"chat-{person}")
        if rng.random() < 0.2:
            identity.phone = f"+1415555{person % 10000:04d}"  # links a chat to a phone: merges
        out.append(
            c.Signal(
                signal_id=uuid.uuid4().hex,
                source=c.SOURCE_CHAT,
                kind=c.SIGNAL_KIND_INTENT,
                name=rng.choice(INTENTS),
                confidence=rng.uniform(0.5, 1.0),
                occurred_at=stamp,
                identity=identity,
                evidence="do you have this phone in blue?",
            )
        )
    return out


def bench_baseline(url: str, signals: list[c.Signal], batch: int) -> float:
    store = LeadStore(url)
    store.migrate()
    lead = uuid.uuid4().hex
    now = datetime.now(UTC)
    with store.engine.begin() as conn:
        conn.execute(
            insert(schema.leads).values(
                lead_id=lead,
                created_at=now,
                updated_at=now,
                last_signal_at=now,
                score=0,
                lead_class=1,
                stage=1,
                product_interest="",
                signal_count=0,
                qualification={},
                channels=[],
            )
        )
    began = time.perf_counter()
    for start in range(0, len(signals), batch):
        rows = [
            {
                "signal_id": s.signal_id,
                "content_hash": "0" * 64,
                "lead_id": lead,
                "origin_lead_id": lead,
                "source": s.source,
                "kind": s.kind,
                "name": s.name,
                "value": s.value,
                "numeric_value": 0.0,
                "confidence": s.confidence,
                "evidence": s.evidence,
                "campaign_id": "",
                "identity": {},
                "attributes": {},
                "occurred_at": now,
                "received_at": now,
            }
            for s in signals[start : start + batch]
        ]
        with store.engine.begin() as conn:
            conn.execute(insert(schema.signals), rows)
    elapsed = time.perf_counter() - began
    store.close()
    return len(signals) / elapsed


def bench_store(url: str, signals: list[c.Signal], batch: int) -> float:
    store = LeadStore(url)
    store.migrate()
    began = time.perf_counter()
    for start in range(0, len(signals), batch):
        result = store.ingest(signals[start : start + batch])
        assert result.rejected == 0, result.errors[:3]
    elapsed = time.perf_counter() - began
    store.close()
    return len(signals) / elapsed


async def bench_grpc(url: str, signals: list[c.Signal], batch: int, clients: int = 1) -> float:
    """IngestBatch over loopback; with several clients (as several services' outboxes
    deliver at once) the batches are split among them round-robin."""
    settings = Settings(leads_port=0, leads_metrics_port=0, database_url=url, log_level="WARNING")
    host = ServiceHost(LeadsService(settings), settings)
    await host.start()
    await host.ready.wait()
    try:
        async with grpc.aio.insecure_channel(host.address) as channel:
            stub = leads_pb2_grpc.LeadsStub(channel)
            batches = [signals[i : i + batch] for i in range(0, len(signals), batch)]

            async def client(first: int) -> None:
                for part in batches[first::clients]:
                    request = leads_pb2.IngestBatchRequest(signals=part)
                    await stub.IngestBatch(request, timeout=120)

            began = time.perf_counter()
            await asyncio.gather(*(client(k) for k in range(clients)))
            return len(signals) / (time.perf_counter() - began)
    finally:
        await host.stop(None)


async def bench_replicas(
    url: str, signals: list[c.Signal], batch: int, count: int
) -> tuple[float, int]:
    """`count` leads replicas on one PostgreSQL, CLIENTS clients spread over them."""
    hosts, services = [], []
    for _ in range(count):
        settings = Settings(
            leads_port=0, leads_metrics_port=0, database_url=url, log_level="WARNING"
        )
        service = LeadsService(settings)
        host = ServiceHost(service, settings)
        await host.start()
        await host.ready.wait()
        hosts.append(host)
        services.append(service)
    channels = [grpc.aio.insecure_channel(host.address) for host in hosts]
    try:
        stubs = [leads_pb2_grpc.LeadsStub(channel) for channel in channels]
        batches = [signals[i : i + batch] for i in range(0, len(signals), batch)]

        async def client(first: int) -> None:
            stub = stubs[first % count]
            for part in batches[first::CLIENTS]:
                await stub.IngestBatch(leads_pb2.IngestBatchRequest(signals=part), timeout=300)

        began = time.perf_counter()
        await asyncio.gather(*(client(k) for k in range(CLIENTS)))
        rate = len(signals) / (time.perf_counter() - began)
        return rate, sum(service.store.conflicts for service in services)
    finally:
        for channel in channels:
            await channel.close()
        for host in hosts:
            await host.stop(None)


def report_replicas(cluster: ThrowawayCluster, signals: list[c.Signal], batch: int) -> None:
    floor = bench_baseline(cluster.new_database(), signals, batch)
    print(f"  PostgreSQL, leads replicas, {CLIENTS} clients spread over them:")
    print(f"    baseline raw executemany:   {floor:8.0f} signals/s")
    first = 0.0
    for count in (1, 2, 3):
        rate, conflicts = asyncio.run(bench_replicas(cluster.new_database(), signals, batch, count))
        first = first or rate
        print(
            f"    {count} replica{'s' if count > 1 else ' '}:                 {rate:8.0f} signals/s"
            f"  ({rate / first:.2f}x one replica, {rate / floor:.2f}x baseline;"
            f" {conflicts} transactions retried)"
        )


def history_cost(url: str, history: int, probes: int = 100) -> float:
    """Seconds to ingest one more signal (own batch) into a lead with `history` signals."""
    store = LeadStore(url)
    store.migrate()
    past = make_signals(history, 1, seed=history)
    for start in range(0, history, 1000):
        store.ingest(past[start : start + 1000])
    more = make_signals(probes, 1, seed=history + 1)
    began = time.perf_counter()
    for signal in more:
        store.ingest([signal])
    elapsed = (time.perf_counter() - began) / probes
    store.close()
    return elapsed


def report_history(tmp: Path) -> None:
    costs = {n: history_cost(f"sqlite:///{tmp / f'h{n}.db'}", n) for n in (10, 1_000, 10_000)}
    print("  score update cost per signal vs the lead's history (SQLite, one signal per commit):")
    for n, cost in costs.items():
        ratio = cost / costs[10]
        print(f"    {n:>6} earlier signals: {cost * 1000:6.2f} ms ({ratio:.2f}x the 10-signal one)")


def report(name: str, urls: list[str], signals: list[c.Signal], batch: int) -> None:
    base = bench_baseline(urls[0], signals, batch)
    store = bench_store(urls[1], signals, batch)
    over_grpc = asyncio.run(bench_grpc(urls[2], signals, batch))
    together = asyncio.run(bench_grpc(urls[3], signals, batch, clients=CLIENTS))
    print(f"  {name}:")
    print(f"    baseline raw executemany:   {base:8.0f} signals/s")
    print(f"    LeadStore.ingest:           {store:8.0f} signals/s  ({store / base:.2f}x baseline)")
    print(
        f"    gRPC IngestBatch, loopback: {over_grpc:8.0f} signals/s  "
        f"({over_grpc / base:.2f}x baseline)"
    )
    print(
        f"    gRPC, {CLIENTS} clients at once:    {together:8.0f} signals/s  "
        f"({together / base:.2f}x baseline; group commit)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--signals", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--people", type=int, default=4_000)
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args()
    signals = make_signals(args.signals, args.people)
    print(
        f"leads ingest: {args.signals} signals over {args.people} people, batches of {args.batch}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        names = ("base", "store", "grpc", "clients")
        urls = [f"sqlite:///{Path(tmp) / name}.db" for name in names]
        report("SQLite (WAL, synchronous=FULL)", urls, signals, args.batch)
        report_history(Path(tmp))
    if not args.no_postgres:
        cluster = ThrowawayCluster()
        cluster.start()
        try:
            urls = [cluster.new_database() for _ in range(4)]
            report("PostgreSQL 15 (throwaway cluster, fsync off)", urls, signals, args.batch)
            report_replicas(cluster, signals, args.batch)
        finally:
            cluster.stop()


if __name__ == "__main__":
    main()
