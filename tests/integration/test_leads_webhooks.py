"""Class and stage changes reach a CRM as signed, retried webhooks."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path

import grpc
import pytest
from leads_harness import Receiver, customer_journey
from leads_signals import NOW

from percept.leads import schema
from percept.leads.service import LeadsService
from percept.leads.store import LeadStore
from percept.runtime.server import ServiceHost
from percept.runtime.settings import Settings, SettingsError, load_settings
from percept.v1 import leads_pb2 as lp
from percept.v1 import leads_pb2_grpc

SECRET = "s" * 32


@pytest.fixture
def receiver_factory() -> Iterator[Callable[[int], Receiver]]:
    made: list[Receiver] = []

    def make(failures: int) -> Receiver:
        made.append(Receiver(failures))
        return made[-1]

    yield make
    for r in made:
        r.close()


async def run_leads(
    settings: Settings, *, max_attempts: int = 10
) -> tuple[ServiceHost, LeadsService]:
    service = LeadsService(settings)
    service.store.clock = lambda: NOW + timedelta(days=1)  # the journey happened yesterday
    assert service.webhooks is not None
    service.webhooks.min_backoff_s = 0.05
    service.webhooks.poll_s = 0.05
    service.webhooks.max_attempts = max_attempts
    host = ServiceHost(service, settings)
    await host.start()
    await asyncio.wait_for(host.ready.wait(), 30)
    return host, service


async def until(check: Callable[[], bool], limit_s: float = 20) -> None:
    async with asyncio.timeout(limit_s):
        while not check():  # noqa: ASYNC110 - the state lives in another thread's server
            await asyncio.sleep(0.05)


def verify(headers: dict[str, str], body: bytes) -> bool:
    parts = dict(p.split("=", 1) for p in headers["x-percept-signature"].split(","))
    expected = hmac.new(
        SECRET.encode(), f"{parts['t']}.".encode() + body, hashlib.sha256
    ).hexdigest()
    return hmac.compare_digest(parts["v1"], expected)


async def test_changes_are_signed_retried_and_delivered_once(
    make_settings: Callable[..., Settings],
    tmp_path: Path,
    receiver_factory: Callable[[int], Receiver],
) -> None:
    crm = receiver_factory(1)
    settings = make_settings(
        database_url=f"sqlite:///{tmp_path / 'l.db'}",
        leads_webhook_urls=[crm.url],
        leads_webhook_secret=SECRET,
    )
    host, service = await run_leads(settings)
    try:
        async with grpc.aio.insecure_channel(host.address) as channel:
            stub = leads_pb2_grpc.LeadsStub(channel)
            await stub.IngestBatch(lp.IngestBatchRequest(signals=customer_journey()))
        await until(lambda: any(status == 200 for _, _, status in crm.requests))
        await asyncio.sleep(0.3)  # nothing more may arrive
    finally:
        await host.stop(grace=1)
    assert [status for _, _, status in crm.requests] == [500, 200]
    (first_headers, _, _), (headers, body, _) = crm.requests
    assert first_headers["x-percept-event-id"] == headers["x-percept-event-id"]  # a retry
    assert verify(headers, body)
    assert not verify(headers, body + b" ")
    event = json.loads(body)
    assert event["type"] == "lead.changed"
    assert (event["previous_class"], event["class"]) == ("cold", "hot")
    assert (event["previous_stage"], event["stage"]) == ("new", "opportunity")
    assert event["product_interest"] == "phone"
    assert "+1415" not in body.decode() and "@" not in body.decode()  # no personal data
    with service.store.engine.connect() as conn:
        (row,) = conn.execute(schema.webhook_events.select()).mappings().all()
    assert row["attempts"] == 2 and row["delivered_at"] is not None and not row["failed"]


async def test_delivery_gives_up_after_the_last_attempt(
    make_settings: Callable[..., Settings],
    tmp_path: Path,
    receiver_factory: Callable[[int], Receiver],
) -> None:
    crm = receiver_factory(1000)
    settings = make_settings(
        database_url=f"sqlite:///{tmp_path / 'l.db'}",
        leads_webhook_urls=[crm.url],
        leads_webhook_secret=SECRET,
    )
    host, service = await run_leads(settings, max_attempts=3)
    try:
        service.store.ingest(customer_journey())
        await until(lambda: len(crm.requests) >= 3)
        await asyncio.sleep(0.3)
    finally:
        await host.stop(grace=1)
    assert len(crm.requests) == 3
    with service.store.engine.connect() as conn:
        (row,) = conn.execute(schema.webhook_events.select()).mappings().all()
    assert row["failed"] and row["attempts"] == 3 and row["last_error"] == "HTTP 500"


def test_webhook_settings_are_validated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PERCEPT_LEADS_WEBHOOK_URLS", "https://crm.example.com/hook")
    with pytest.raises(SettingsError, match="leads_webhook_secret of at least 16 characters"):
        load_settings()
    monkeypatch.setenv("PERCEPT_LEADS_WEBHOOK_SECRET", "short")
    with pytest.raises(SettingsError) as excinfo:
        load_settings()
    assert "short" not in str(excinfo.value)
    monkeypatch.setenv("PERCEPT_LEADS_WEBHOOK_SECRET", SECRET)
    monkeypatch.setenv("PERCEPT_LEADS_WEBHOOK_URLS", "ftp://crm.example.com/hook")
    with pytest.raises(SettingsError, match="must be http"):
        load_settings()


def queued(store: LeadStore, rows: dict[str, tuple[datetime, datetime | None, bool]]) -> None:
    """Webhook events as the delivery loop leaves them: id -> (last attempt, delivered
    at, given up)."""
    with store.engine.begin() as conn:
        for event_id, (attempted, delivered, failed) in rows.items():
            conn.execute(
                schema.webhook_events.insert().values(
                    event_id=event_id,
                    created_at=attempted,
                    payload={"url": "http://crm.test/"},
                    attempts=1,
                    next_attempt_at=attempted,
                    delivered_at=delivered,
                    failed=failed,
                )
            )


def test_settled_events_go_after_a_week_pending_ones_stay(database_url: str) -> None:
    """Delivered and given-up events are kept a week to look into, then deleted: else
    the table grows for as long as webhooks are configured."""
    from percept.runtime.webhooks import SETTLED_KEPT

    store = LeadStore(database_url)
    store.migrate()
    old, recent = NOW - SETTLED_KEPT - timedelta(hours=1), NOW - timedelta(days=1)
    rows = {
        "delivered-old": (old, old, False),
        "delivered-recent": (recent, recent, False),
        "failed-old": (old, None, True),
        "failed-recent": (recent, None, True),
        "pending-old": (old, None, False),  # still retried: never purged
    }
    queued(store, rows)
    assert store.purge_settled(NOW - SETTLED_KEPT) == 2
    with store.engine.connect() as conn:
        left = set(
            conn.scalars(
                schema.webhook_events.select().with_only_columns(schema.webhook_events.c.event_id)
            )
        )
    assert left == {"delivered-recent", "failed-recent", "pending-old"}
    store.close()


async def test_the_delivery_loop_purges_a_long_backlog_in_batches(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from percept.runtime import webhooks

    monkeypatch.setattr(webhooks, "PURGE_BATCH", 3)
    store = LeadStore(database_url)
    store.migrate()
    old = NOW - webhooks.SETTLED_KEPT - timedelta(days=1)
    queued(store, {f"e{n}": (old, old, False) for n in range(8)})
    delivery = webhooks.WebhookDelivery(store, "s" * 32, clock=lambda: NOW)
    assert await delivery._purge() == 8
    assert store.purge_settled(NOW) == 0
    store.close()
