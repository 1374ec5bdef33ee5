"""Delivers queued events to HTTP receivers as signed POSTs, retrying with back-off.

Leads tells CRMs of class and stage changes, nlp tells help desks of chats
waiting for a salesperson. Each service queues its events in its own database
in the transaction that made them (a `WebhookQueue`), so a crash loses none;
delivery is at least once and receivers de-duplicate by `event_id`. Each request carries
`X-Percept-Signature: t=<unix time>,v1=<hex HMAC-SHA256 of "<t>.<body>">`;
receivers recompute it with the shared secret and reject stale timestamps.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import random
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, Protocol

import httpx
from sqlalchemy import Table, and_, delete, or_, select, update
from sqlalchemy.engine import Connection

from percept.runtime.periodic import survive

log = logging.getLogger("percept.webhooks")
SETTLED_KEPT = timedelta(days=7)  # delivered or given-up events, kept to look into
PURGE_EVERY_S = 3600.0
PURGE_BATCH = 1000


class WebhookQueue(Protocol):
    def due_webhooks(self, now: datetime, limit: int) -> list[dict[str, Any]]:
        """Claims due events: dicts with event_id, payload (its `url` among them), attempts."""
        ...

    def webhook_attempted(
        self,
        event_id: str,
        *,
        delivered: bool,
        now: datetime,
        retry_at: datetime | None,
        error: str | None,
    ) -> None: ...

    def purge_settled(self, before: datetime) -> int:
        """Deletes up to PURGE_BATCH events delivered or given up before `before`."""
        ...


def now_utc() -> datetime:
    return datetime.now(UTC)


def claim_due(
    conn: Connection, table: Table, now: datetime, limit: int, lease_s: float
) -> list[dict[str, Any]]:
    """Claims a queue table's due events: this replica's to deliver for `lease_s`.
    Replicas skip rows another is claiming (FOR UPDATE SKIP LOCKED) and claimed rows
    are due again only when the lease ends, so each event goes out once; one whose
    replica died in the middle is delivered by another after the lease."""
    w = table.c
    query = (
        select(w.event_id, w.payload, w.attempts)
        .where(w.delivered_at.is_(None), w.failed.is_(False), w.next_attempt_at <= now)
        .order_by(w.next_attempt_at, w.event_id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    rows = [dict(r) for r in conn.execute(query).mappings()]
    if rows:
        conn.execute(
            update(table)
            .where(w.event_id.in_([r["event_id"] for r in rows]))
            .values(next_attempt_at=now + timedelta(seconds=lease_s))
        )
    return rows


def record_attempt(
    conn: Connection,
    table: Table,
    event_id: str,
    *,
    delivered: bool,
    now: datetime,
    retry_at: datetime | None,
    error: str | None,
) -> None:
    """An attempt on a queue table's event: delivered, retried later, or (retry_at
    None) given up."""
    w = table.c
    values: dict[str, Any] = {"attempts": w.attempts + 1, "last_error": error}
    if delivered:
        values["delivered_at"] = now
    elif retry_at is None:
        values["failed"] = True
    else:
        values["next_attempt_at"] = retry_at
    conn.execute(update(table).where(w.event_id == event_id).values(**values))


def purge_settled(conn: Connection, table: Table, before: datetime) -> int:
    """Up to PURGE_BATCH events delivered or given up before `before`: kept a while to
    look into, then deleted, or the table grows for as long as webhooks are configured
    and the claim query reads past every settled row. In batches, each its own
    transaction: the first purge of a table grown for months holds no lock for long."""
    w = table.c
    settled = or_(w.delivered_at < before, and_(w.failed.is_(True), w.next_attempt_at < before))
    batch = select(w.event_id).where(settled).limit(PURGE_BATCH).scalar_subquery()
    return int(conn.execute(delete(table).where(w.event_id.in_(batch))).rowcount)


def signature(secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


class WebhookDelivery:
    def __init__(
        self,
        store: WebhookQueue,
        secret: str,
        *,
        max_attempts: int = 10,
        min_backoff_s: float = 2.0,
        max_backoff_s: float = 600.0,
        poll_s: float = 1.0,
        batch: int = 50,
        timeout_s: float = 10.0,
        clock: Callable[[], datetime] = now_utc,
    ) -> None:
        self.store = store
        self.clock = clock  # wall time for retries, whatever clock scores leads
        self.secret = secret
        self.max_attempts = max_attempts
        self.min_backoff_s, self.max_backoff_s = min_backoff_s, max_backoff_s
        self.poll_s = poll_s
        self.batch = batch
        self.timeout_s = timeout_s

    async def run(self) -> None:
        purged_at = -PURGE_EVERY_S
        async with httpx.AsyncClient(timeout=self.timeout_s) as client:
            while True:
                if time.monotonic() - purged_at >= PURGE_EVERY_S:
                    purged_at = time.monotonic()
                    await survive(self._purge, "webhook purge")
                due = await survive(
                    lambda: asyncio.to_thread(self.store.due_webhooks, self.clock(), self.batch),
                    "webhook claim",
                )
                if not due:
                    await asyncio.sleep(self.poll_s)
                    continue
                await asyncio.gather(
                    *(survive(partial(self._deliver, client, e), "webhook delivery") for e in due)
                )

    async def _purge(self) -> int:
        before, purged = self.clock() - SETTLED_KEPT, 0
        while True:
            batch = await asyncio.to_thread(self.store.purge_settled, before)
            purged += batch
            if batch < PURGE_BATCH:
                return purged

    async def _deliver(self, client: httpx.AsyncClient, event: dict[str, object]) -> None:
        payload = dict(event["payload"])  # type: ignore[call-overload]
        url = str(payload.pop("url"))
        body = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
        headers = {
            "content-type": "application/json",
            "x-percept-event-id": str(event["event_id"]),
            "x-percept-signature": signature(self.secret, int(time.time()), body),
        }
        error: str | None = None
        try:
            response = await client.post(url, content=body, headers=headers)
            if response.status_code >= 300:
                error = f"HTTP {response.status_code}"
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"
        now = self.clock()
        attempts = int(event["attempts"]) + 1  # type: ignore[call-overload]
        retry_at: datetime | None = None
        if error is not None and attempts < self.max_attempts:
            delay = min(self.min_backoff_s * 2 ** (attempts - 1), self.max_backoff_s)
            retry_at = now + timedelta(seconds=delay * random.uniform(0.8, 1.2))
        if error is not None:
            log.warning(
                "webhook delivery failed",
                extra={
                    "event_id": event["event_id"],
                    "attempt": attempts,
                    "error": error,
                    "gave_up": retry_at is None,
                },
            )
        await asyncio.to_thread(
            self.store.webhook_attempted,
            str(event["event_id"]),
            delivered=error is None,
            now=now,
            retry_at=retry_at,
            error=error,
        )
