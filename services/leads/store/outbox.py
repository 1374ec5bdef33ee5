"""Work queued in a write's own transaction and done later: webhooks, face erasures.

Claimed with FOR UPDATE SKIP LOCKED and a lease, so one replica does each."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    Connection,
    func,
    insert,
    select,
    update,
)

from percept.leads import schema
from percept.leads.scoring import (
    class_name,
    stage_name,
)
from percept.leads.store.base import (
    CLAIM_LEASE_S,
    StoreBase,
)
from percept.runtime.webhooks import claim_due, purge_settled, record_attempt

log = logging.getLogger("percept.leads.store")


class OutboxMixin(StoreBase):
    """Work queued in a write's own transaction and done later: webhooks, face erasures.

    Claimed with FOR UPDATE SKIP LOCKED and a lease, so one replica does each."""

    def _queue_webhooks(
        self,
        conn: Connection,
        updates: Sequence[dict[str, Any]],
        before: dict[str, tuple[int, int]],
        now: datetime,
    ) -> None:
        """One event per URL for each lead whose class or stage changed (same transaction)."""
        if not self.webhook_urls:
            return
        payloads = []
        for u in updates:
            old_class, old_stage = before.get(u["target"], (0, 0))
            if (old_class, old_stage) == (u["lead_class"], u["stage"]):
                continue
            payloads.append(
                {
                    "type": "lead.changed",
                    "lead_id": u["target"],
                    "class": class_name(u["lead_class"]),
                    "previous_class": class_name(old_class),
                    "stage": stage_name(u["stage"]),
                    "previous_stage": stage_name(old_stage),
                    "score": round(u["score"], 4),
                    "product_interest": u["product_interest"],
                    "changed_at": now.isoformat(),
                }
            )
        self._queue_events(conn, payloads, now, self.webhook_urls)

    def _queue_events(
        self,
        conn: Connection,
        payloads: Sequence[dict[str, Any]],
        now: datetime,
        urls: Sequence[str],
    ) -> None:
        """Each payload to each of these URLs, in the caller's transaction."""
        events = []
        for payload in payloads:
            for url in urls:
                event_id = uuid.uuid4().hex
                events.append(
                    {
                        "event_id": event_id,
                        "created_at": now,
                        "attempts": 0,
                        "next_attempt_at": now,
                        "delivered_at": None,
                        "failed": False,
                        "last_error": None,
                        "payload": {**payload, "event_id": event_id, "url": url},
                    }
                )
        if events:
            conn.execute(insert(schema.webhook_events), events)

    def _queue_face_erasures(self, conn: Connection, faces: Sequence[str], now: datetime) -> None:
        """In the erasure's own transaction: no erased lead leaves a face behind unrecorded."""
        f = schema.face_erasures.c
        queued = set(conn.scalars(select(f.face_identity_id).where(f.face_identity_id.in_(faces))))
        rows = [
            {"face_identity_id": face, "requested_at": now, "attempts": 0, "next_attempt_at": now}
            for face in sorted(set(faces) - queued)
        ]
        if rows:
            conn.execute(insert(schema.face_erasures), rows)

    def due_face_erasures(
        self, now: datetime, limit: int, lease_s: float = CLAIM_LEASE_S
    ) -> list[tuple[str, int]]:
        """Claims due erasures for `lease_s` (see `due_webhooks`)."""
        f = schema.face_erasures.c
        query = (
            select(f.face_identity_id, f.attempts)
            .where(f.next_attempt_at <= now)
            .order_by(f.next_attempt_at, f.face_identity_id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )

        def work(conn: Connection) -> list[tuple[str, int]]:
            rows = [(r.face_identity_id, r.attempts) for r in conn.execute(query)]
            if rows:
                conn.execute(
                    update(schema.face_erasures)
                    .where(f.face_identity_id.in_([face for face, _ in rows]))
                    .values(next_attempt_at=now + timedelta(seconds=lease_s))
                )
            return rows

        return self._write(work, serial=False)

    def face_erasure_attempted(
        self, face_identity_id: str, *, done: bool, retry_at: datetime, error: str | None
    ) -> None:
        """Done: the row goes (vision holds nothing more). Else retried at `retry_at`."""
        f = schema.face_erasures.c
        row = schema.face_erasures.c.face_identity_id == face_identity_id
        with self.engine.begin() as conn:
            if done:
                conn.execute(schema.face_erasures.delete().where(row))
            else:
                conn.execute(
                    update(schema.face_erasures)
                    .where(row)
                    .values(attempts=f.attempts + 1, next_attempt_at=retry_at, last_error=error)
                )

    def pending_face_erasures(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.scalar(select(func.count()).select_from(schema.face_erasures)) or 0)

    def due_webhooks(
        self, now: datetime, limit: int, lease_s: float = CLAIM_LEASE_S
    ) -> list[dict[str, Any]]:
        """Claims due events (see runtime.webhooks.claim_due)."""
        return self._write(
            lambda conn: claim_due(conn, schema.webhook_events, now, limit, lease_s),
            serial=False,
        )

    def purge_settled(self, before: datetime) -> int:
        with self.engine.begin() as conn:
            return purge_settled(conn, schema.webhook_events, before)

    def webhook_attempted(
        self,
        event_id: str,
        *,
        delivered: bool,
        now: datetime,
        retry_at: datetime | None,
        error: str | None,
    ) -> None:
        with self.engine.begin() as conn:
            record_attempt(
                conn,
                schema.webhook_events,
                event_id,
                delivered=delivered,
                now=now,
                retry_at=retry_at,
                error=error,
            )
