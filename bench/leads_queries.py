"""GetLead and ListLeads latency with many leads, against a same-run baseline.

Baseline: a primary-key SELECT of one lead row through SQLAlchemy Core (the
floor of any read). Measured over gRPC on loopback: GetLead, the first
ListLeads page, a deep page (following 20 page tokens), and a filtered page.

Run: .venv/bin/python bench/leads_queries.py [--leads N]   (default 100,000)
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from sqlalchemy import select

from percept.leads import schema
from percept.leads.service import LeadsService
from percept.leads.store import LeadStore
from percept.runtime.server import ServiceHost
from percept.runtime.settings import Settings
from percept.v1 import common_pb2 as c
from percept.v1 import leads_pb2, leads_pb2_grpc

INTENTS = ("purchase_intent", "price_inquiry", "product_question", "complaint")


def populate(store: LeadStore, leads: int) -> list[str]:
    rng = random.Random(3)
    start = datetime.now(UTC) - timedelta(days=2)
    batch: list[c.Signal] = []
    for i in range(leads):
        stamp = Timestamp()
        stamp.FromDatetime(start + timedelta(seconds=i))
        batch.append(
            c.Signal(
                signal_id=uuid.uuid4().hex,
                source=c.SOURCE_CHAT,
                kind=c.SIGNAL_KIND_INTENT,
                name=rng.choice(INTENTS),
                confidence=rng.uniform(0.3, 1),
                occurred_at=stamp,
                identity=c.IdentityKeys(chat_session_id=f"s-{i}"),
            )
        )
        if len(batch) == 2000:
            store.ingest(batch)
            batch = []
    if batch:
        store.ingest(batch)
    with store.engine.connect() as conn:
        return list(conn.scalars(select(schema.leads.c.lead_id)))


def median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


async def timed(call: Callable[[], Awaitable[object]], rounds: int) -> list[float]:
    out = []
    for _ in range(rounds):
        began = time.perf_counter()
        await call()
        out.append(time.perf_counter() - began)
    return out


async def measure(url: str, ids: list[str], rounds: int) -> dict[str, float]:
    settings = Settings(leads_port=0, leads_metrics_port=0, database_url=url, log_level="WARNING")
    host = ServiceHost(LeadsService(settings), settings)
    await host.start()
    await host.ready.wait()
    rng = random.Random(5)
    store = LeadStore(url)
    results: dict[str, float] = {}
    try:
        t = schema.leads.c

        def pk_select() -> None:
            with store.engine.connect() as conn:
                conn.execute(select(schema.leads).where(t.lead_id == rng.choice(ids))).first()

        base = []
        for _ in range(rounds):
            began = time.perf_counter()
            pk_select()
            base.append(time.perf_counter() - began)
        results["baseline"] = median_ms(base)
        async with grpc.aio.insecure_channel(host.address) as channel:
            stub = leads_pb2_grpc.LeadsStub(channel)
            results["GetLead"] = median_ms(
                await timed(
                    lambda: stub.GetLead(leads_pb2.GetLeadRequest(lead_id=rng.choice(ids))), rounds
                )
            )
            results["ListLeads first page (50)"] = median_ms(
                await timed(
                    lambda: stub.ListLeads(leads_pb2.ListLeadsRequest(page_size=50)), rounds
                )
            )
            token = ""
            for _ in range(20):
                token = (
                    await stub.ListLeads(leads_pb2.ListLeadsRequest(page_size=50, page_token=token))
                ).next_page_token
            results["ListLeads page 21 (token)"] = median_ms(
                await timed(
                    lambda: stub.ListLeads(
                        leads_pb2.ListLeadsRequest(page_size=50, page_token=token)
                    ),
                    rounds,
                )
            )
            hot = leads_pb2.LeadFilter(min_score=0.3)
            results["ListLeads filtered (score >= 0.3)"] = median_ms(
                await timed(
                    lambda: stub.ListLeads(leads_pb2.ListLeadsRequest(filter=hot, page_size=50)),
                    rounds,
                )
            )
    finally:
        store.close()
        await host.stop(None)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leads", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'q.db'}"
        store = LeadStore(url)
        store.migrate()
        began = time.perf_counter()
        ids = populate(store, args.leads)
        store.close()
        took = time.perf_counter() - began
        print(f"leads queries, SQLite, {len(ids)} leads (ingested in {took:.0f} s)")
        results = asyncio.run(measure(url, ids, args.rounds))
    base = results.pop("baseline")
    print(f"  baseline primary-key SELECT:      {base:7.2f} ms")
    for name, value in results.items():
        print(f"  {name:<33} {value:7.2f} ms  ({value / base:.1f}x baseline)")


if __name__ == "__main__":
    main()
