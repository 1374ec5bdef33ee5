"""Leads read latency with many leads, against a same-run baseline.

Baseline: a primary-key SELECT of one lead row through SQLAlchemy Core (the
floor of any read). Measured over gRPC on loopback: GetLead, the first
ListLeads page, a deep page (following 20 page tokens), and a filtered page;
the follow-up queue (ListFollowUps: everybody's, one owner's due within a day, a
deep page; FollowUpBacklog); ListOpportunities (the top 50 by expected value, with
cross-sell mined from the won leads' baskets: the first call mines, later ones
reuse it for 5 minutes; both are shown); and SuggestMessage.

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
from importlib import resources
from pathlib import Path

import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from sqlalchemy import func, select

from percept.leads import schema
from percept.leads.service import LeadsService, scoring_policy
from percept.leads.store import LeadStore
from percept.runtime.server import ServiceHost
from percept.runtime.settings import Settings
from percept.v1 import common_pb2 as c
from percept.v1 import leads_pb2, leads_pb2_grpc

INTENTS = ("purchase_intent", "price_inquiry", "product_question", "complaint")
PRODUCTS = ("phone", "laptop", "tablet", "tv", "headphones", "watch")
OWNERS = ("Ana", "Luis", "Marta", "Pedro")
# The packaged rules with a team of four to share the follow-ups.
RULES = (resources.files("percept.leads").joinpath("followups.yaml").read_text()).replace(
    "  team: []", f"  team: [{', '.join(OWNERS)}]"
)


def populate(store: LeadStore, leads: int) -> list[str]:
    """One intent per lead; a third name a product, a fifth a budget, a tenth are won."""
    rng = random.Random(3)
    start = datetime.now(UTC) - timedelta(days=2)
    batch: list[c.Signal] = []
    for i in range(leads):
        stamp = Timestamp()
        stamp.FromDatetime(start + timedelta(seconds=i))

        def one(stamp: Timestamp = stamp, session: str = f"s-{i}", **fields: object) -> c.Signal:
            return c.Signal(
                **{"source": c.SOURCE_CHAT, **fields},  # type: ignore[arg-type]
                signal_id=uuid.uuid4().hex,
                confidence=rng.uniform(0.3, 1),
                occurred_at=stamp,
                identity=c.IdentityKeys(chat_session_id=session),
            )

        batch.append(one(kind=c.SIGNAL_KIND_INTENT, name=rng.choice(INTENTS)))
        if rng.random() < 0.33:
            for product in rng.sample(PRODUCTS, rng.choice((1, 1, 2))):
                batch.append(one(kind=c.SIGNAL_KIND_ENTITY, name="product", value=product))
        if rng.random() < 0.2:
            budget = f"{rng.randrange(2, 60) * 100} USD"
            batch.append(one(kind=c.SIGNAL_KIND_QUALIFICATION_SLOT, name="budget", value=budget))
        if rng.random() < 0.1:
            batch.append(one(source=c.SOURCE_CRM, kind=c.SIGNAL_KIND_OUTCOME, value="won"))
        if len(batch) >= 2000:
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


async def measure(url: str, ids: list[str], rounds: int, rules_dir: Path) -> dict[str, float]:
    settings = Settings(
        leads_port=0,
        leads_metrics_port=0,
        database_url=url,
        log_level="WARNING",
        understanding_dir=rules_dir,
    )
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
            results.update(await measure_follow_ups(stub, rounds))
    finally:
        store.close()
        await host.stop(None)
    return results


async def measure_follow_ups(stub: leads_pb2_grpc.LeadsAsyncStub, rounds: int) -> dict[str, float]:
    results: dict[str, float] = {}
    day = Timestamp()
    day.FromDatetime(datetime.now(UTC) + timedelta(days=1))
    results["ListFollowUps first page (50)"] = median_ms(
        await timed(
            lambda: stub.ListFollowUps(leads_pb2.ListFollowUpsRequest(page_size=50)), rounds
        )
    )
    mine = leads_pb2.ListFollowUpsRequest(owner="Marta", due_before=day, page_size=50)
    results["ListFollowUps one owner, due in a day"] = median_ms(
        await timed(lambda: stub.ListFollowUps(mine), rounds)
    )
    token = ""
    for _ in range(20):
        token = (
            await stub.ListFollowUps(leads_pb2.ListFollowUpsRequest(page_size=50, page_token=token))
        ).next_page_token
    deep = leads_pb2.ListFollowUpsRequest(page_size=50, page_token=token)
    results["ListFollowUps page 21 (token)"] = median_ms(
        await timed(lambda: stub.ListFollowUps(deep), rounds)
    )
    leads = [f.lead_id for f in (await stub.ListFollowUps(deep)).follow_ups]
    rng = random.Random(8)
    results["ListFollowUps one lead"] = median_ms(
        await timed(
            lambda: stub.ListFollowUps(leads_pb2.ListFollowUpsRequest(lead_id=rng.choice(leads))),
            rounds,
        )
    )
    results["FollowUpBacklog"] = median_ms(
        await timed(lambda: stub.FollowUpBacklog(leads_pb2.FollowUpBacklogRequest()), 20)
    )
    first = await timed(lambda: stub.ListOpportunities(leads_pb2.ListOpportunitiesRequest()), 1)
    results["ListOpportunities, first (mines baskets)"] = first[0] * 1000
    results["ListOpportunities top 50"] = median_ms(
        await timed(lambda: stub.ListOpportunities(leads_pb2.ListOpportunitiesRequest()), rounds)
    )
    laptops = leads_pb2.ListOpportunitiesRequest(product_interest="laptop")
    results["ListOpportunities top 50 laptop"] = median_ms(
        await timed(lambda: stub.ListOpportunities(laptops), rounds)
    )
    page = await stub.ListFollowUps(leads_pb2.ListFollowUpsRequest(page_size=100))
    follow_ups = [f.follow_up_id for f in page.follow_ups]
    rng = random.Random(9)
    results["SuggestMessage (English)"] = median_ms(
        await timed(
            lambda: stub.SuggestMessage(
                leads_pb2.SuggestMessageRequest(follow_up_id=rng.choice(follow_ups))
            ),
            rounds,
        )
    )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leads", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'q.db'}"
        rules_dir = Path(tmp) / "understanding"
        rules_dir.mkdir()
        (rules_dir / "followups.yaml").write_text(RULES)
        store = LeadStore(url, scoring_policy(Settings(understanding_dir=rules_dir)))
        store.migrate()
        began = time.perf_counter()
        ids = populate(store, args.leads)
        store.close()
        took = time.perf_counter() - began
        print(f"leads queries, SQLite, {len(ids)} leads (ingested in {took:.0f} s)")
        with store.engine.connect() as conn:
            open_follow_ups = conn.scalar(
                select(func.count()).where(schema.follow_ups.c.status == "open")
            )
        print(f"  {open_follow_ups} open follow-ups")
        results = asyncio.run(measure(url, ids, args.rounds, rules_dir))
    base = results.pop("baseline")
    print(f"  {'baseline primary-key SELECT':<42} {base:7.2f} ms")
    for name, value in results.items():
        print(f"  {name:<42} {value:7.2f} ms  ({value / base:.1f}x baseline)")


if __name__ == "__main__":
    main()
