"""The follow-up queue as salespeople use it: list, complete, snooze; overdue ones found.

A follow-up completed as won or lost records the outcome as the lead's own signal
(`percept leads train` learns from it) in the same transaction; any completion counts
as a contact, so the lead's next follow-up is due from it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, and_, case, func, insert, or_, select, update
from sqlalchemy.sql.elements import ColumnElement

from percept.leads import schema
from percept.leads.changes import Change
from percept.leads.store.base import (
    DEFAULT_PAGE_SIZE,
    MAX_PAGE_SIZE,
    LeadConflictError,
    LeadNotFoundError,
    _chunks,
    utc,
)
from percept.leads.store.follow_up_sync import follow_up_payload, step_row
from percept.leads.store.ingest import _signal_row
from percept.leads.store.queries import QueriesMixin
from percept.leads.store.state import _facts_of
from percept.leads.validation import ValidSignal
from percept.v1 import common_pb2, leads_pb2

OUTCOMES = ("won", "lost")
# A follow-up with what a salesperson needs of its lead to decide the order of the day.
_WITH_LEAD = select(
    schema.follow_ups,
    schema.leads.c.lead_class,
    schema.leads.c.score,
    schema.leads.c.stage,
    schema.leads.c.product_interest,
    schema.leads.c.qualification,
).join(schema.leads, schema.leads.c.lead_id == schema.follow_ups.c.lead_id)
OVERDUE_BATCH = 500


class FollowUpNotFoundError(LeadNotFoundError):
    pass


class FollowUpClosedError(LeadConflictError):
    """Completing or snoozing a follow-up that is not open; says what became of it."""


@dataclass(frozen=True)
class FollowUpQuery:
    owner: str = ""  # '' : everybody's
    due_before: datetime | None = None
    lead_id: str = ""
    include_closed: bool = False
    unassigned: bool = False  # only those nobody owns

    def fingerprint(self) -> str:
        due = self.due_before.isoformat() if self.due_before else ""
        raw = f"{self.owner}|{due}|{self.lead_id}|{self.include_closed}|{self.unassigned}"
        return hashlib.sha256(raw.encode()).hexdigest()[:16]


class FollowUpsMixin(QueriesMixin):
    """The follow-up queue (see the module)."""

    def follow_ups(
        self, query: FollowUpQuery, page_size: int, page_token: str
    ) -> tuple[list[dict[str, Any]], str]:
        """A page of follow-ups, soonest due first, each with its lead's class, score,
        product interest and keys; and the next page's token."""
        size = min(page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
        f = schema.follow_ups.c
        with self.engine.connect() as conn:
            clauses: list[ColumnElement[bool]] = []
            if query.lead_id:  # a merged lead's id finds the survivor's
                lead = self._resolve(conn, query.lead_id)
                clauses.append(f.lead_id == lead)
            if not query.include_closed and not query.lead_id:
                # (one lead's: its few rows by its own index, the open ones kept below; a
                # status condition would tempt SQLite into scanning every open follow-up)
                clauses.append(f.status == "open")
            if query.owner or query.unassigned:
                clauses.append(f.owner == query.owner)
            if query.due_before is not None:
                clauses.append(f.due_at < query.due_before)
            if page_token:
                due, last = self._read_token(page_token, query)
                clauses.append(or_(f.due_at > due, and_(f.due_at == due, f.follow_up_id > last)))
            rows_query = _WITH_LEAD.where(*clauses).order_by(f.due_at, f.follow_up_id)
            if not query.lead_id or query.include_closed:  # else filtered below, then cut
                rows_query = rows_query.limit(size + 1)
            rows = [dict(r) for r in conn.execute(rows_query).mappings()]
            if query.lead_id and not query.include_closed:
                rows = [r for r in rows if r["status"] == "open"][: size + 1]
            keys = self._keys_of(conn, sorted({r["lead_id"] for r in rows[:size]}))
        for row in rows:
            row["keys"] = keys.get(row["lead_id"], [])
        if len(rows) <= size:
            return rows, ""
        last_row = rows[size - 1]
        token = self._make_token(utc(last_row["due_at"]), last_row["follow_up_id"], query)
        return rows[:size], token

    def follow_up(self, follow_up_id: str) -> dict[str, Any]:
        with self.engine.connect() as conn:
            return self._follow_up_row(conn, follow_up_id)

    def complete_follow_up(
        self, follow_up_id: str, outcome: str, note: str, products: Sequence[str] = ()
    ) -> tuple[dict[str, Any], list[Change]]:
        """Done, with an outcome (won, lost, or '' when nothing was decided), a note, and
        for a win the products bought."""
        if outcome not in (*OUTCOMES, ""):
            raise ValueError(f"outcome {outcome!r} is not won or lost")

        def work(conn: Connection) -> tuple[dict[str, Any], list[Change]]:
            now = self.clock()  # under the write lock, as every write's time (ingest)
            row = self._open_follow_up(conn, follow_up_id)
            f = schema.follow_ups.c
            said = f"done: {outcome}" if outcome else "done"
            conn.execute(
                update(schema.follow_ups)
                .where(f.follow_up_id == follow_up_id)
                .values(
                    status="done",
                    closed_at=now,
                    outcome=outcome,
                    note=note,
                    closed_as=f"{said}: {note}" if note else said,
                )
            )
            lead = row["lead_id"]
            features = self._features_of(conn, lead)
            if outcome:
                signal = _outcome_signal(follow_up_id, outcome, note, now, products)
                conn.execute(insert(schema.signals).values(_signal_row(signal, lead, now)))
                features.add(_facts_of(signal))
            before = self._write_states(conn, {lead: features}, now)
            changes = [Change(lead, leads_pb2.LeadChange.CHANGE_TYPE_UPDATED, *before[lead])]
            self._notify(conn, changes)
            return self._follow_up_row(conn, follow_up_id), changes

        return self._write(work)

    def snooze_follow_up(self, follow_up_id: str, until: datetime, note: str) -> dict[str, Any]:
        """Not due before `until`: a snooze only postpones (LeadConflictError when the
        follow-up is due later already)."""
        now = self.clock()
        if until <= now:
            raise ValueError(f"until: {until.isoformat()} is not in the future")

        def work(conn: Connection) -> dict[str, Any]:
            row = self._open_follow_up(conn, follow_up_id)
            due = utc(row["due_at"])
            if until <= due:
                raise FollowUpClosedError(
                    f"follow-up {follow_up_id!r} is due {due:%Y-%m-%d %H:%M} UTC, after "
                    f"{until:%Y-%m-%d %H:%M} UTC: a snooze only postpones"
                )
            f = schema.follow_ups.c
            conn.execute(
                update(schema.follow_ups)
                .where(f.follow_up_id == follow_up_id)
                .values(due_at=until, snoozed_until=until, overdue_at=None)
            )
            said = f"snoozed until {until:%Y-%m-%d %H:%M} UTC"
            self._add_step(conn, row, now, "snoozed", f"{said}: {note}" if note else said)
            return self._follow_up_row(conn, follow_up_id)

        return self._write(work, serial=False)

    def mark_overdue(self) -> list[dict[str, Any]]:
        """Open follow-ups past due and not yet told: marked (one replica each, by row
        locks), stepped on the timeline, sent to the webhooks. Returns them."""
        now = self.clock()
        f = schema.follow_ups.c
        query = (
            select(schema.follow_ups)
            .where(f.status == "open", f.overdue_at.is_(None), f.due_at <= now)
            .order_by(f.due_at, f.follow_up_id)
            .limit(OVERDUE_BATCH)
            .with_for_update(skip_locked=True)
        )

        def work(conn: Connection) -> list[dict[str, Any]]:
            rows = [dict(r) for r in conn.execute(query).mappings()]
            if not rows:
                return rows
            for chunk in _chunks([r["follow_up_id"] for r in rows]):
                conn.execute(
                    update(schema.follow_ups)
                    .where(f.follow_up_id.in_(chunk))
                    .values(overdue_at=now)
                )
            steps = [
                step_row(r, now, "overdue", f"was due {utc(r['due_at']):%Y-%m-%d %H:%M} UTC")
                for r in rows
            ]
            conn.execute(insert(schema.follow_up_steps), steps)
            if self.follow_up_webhook_urls:
                payloads = [follow_up_payload(r, "follow_up.overdue", now) for r in rows]
                self._queue_events(conn, payloads, now, self.follow_up_webhook_urls)
            return rows

        return self._write(work, serial=False)

    def backlog(self) -> list[tuple[str, str, int, int, int]]:
        """Open follow-ups by (owner, action): overdue, due within a day, later."""
        now = self.clock()
        f = schema.follow_ups.c
        day = now + timedelta(days=1)
        query = (
            select(
                f.owner,
                f.action,
                func.sum(case((f.due_at <= now, 1), else_=0)),
                func.sum(case((and_(f.due_at > now, f.due_at <= day), 1), else_=0)),
                func.sum(case((f.due_at > day, 1), else_=0)),
            )
            .where(f.status == "open")
            .group_by(f.owner, f.action)
            .order_by(f.owner, f.action)
        )
        with self.engine.connect() as conn:
            return [(o, a, int(x), int(y), int(z)) for o, a, x, y, z in conn.execute(query)]

    def lead_language(self, lead_id: str) -> str:
        """The language the lead last chatted in ('' when they never chatted)."""
        sig = schema.signals.c
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(sig.attributes)
                .where(sig.lead_id == lead_id, sig.source == common_pb2.SOURCE_CHAT)
                .order_by(sig.occurred_at.desc())
                .limit(50)
            )
            for (attributes,) in rows:
                if attributes and attributes.get("language"):
                    return str(attributes["language"])
        return ""

    def recorded_outcomes(self) -> list[tuple[str, str, datetime]]:
        """Every lead's latest won/lost outcome signal (a completed follow-up's, a CRM's):
        (lead_id, outcome, when), for training."""
        sig, leads = schema.signals.c, schema.leads.c
        latest: dict[str, tuple[str, str, datetime]] = {}
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(sig.lead_id, sig.value, sig.occurred_at)
                .join(schema.leads, leads.lead_id == sig.lead_id)
                .where(sig.kind == common_pb2.SIGNAL_KIND_OUTCOME, leads.merged_into.is_(None))
                .order_by(sig.occurred_at, sig.signal_id)
            )
            for lead_id, value, occurred_at in rows:
                latest[lead_id] = (lead_id, value, utc(occurred_at))
        return list(latest.values())

    def _open_follow_up(self, conn: Connection, follow_up_id: str) -> dict[str, Any]:
        f = schema.follow_ups.c
        row = (
            conn.execute(
                select(schema.follow_ups).where(f.follow_up_id == follow_up_id).with_for_update()
            )
            .mappings()
            .first()
        )
        if row is None:
            raise FollowUpNotFoundError(f"follow-up {follow_up_id!r} not found")
        if row["status"] != "open":
            raise FollowUpClosedError(_closed(dict(row)))
        return dict(row)

    def _follow_up_row(self, conn: Connection, follow_up_id: str) -> dict[str, Any]:
        f = schema.follow_ups.c
        row = conn.execute(_WITH_LEAD.where(f.follow_up_id == follow_up_id)).mappings().first()
        if row is None:
            raise FollowUpNotFoundError(f"follow-up {follow_up_id!r} not found")
        found = dict(row)
        found["keys"] = self._keys_of(conn, [found["lead_id"]]).get(found["lead_id"], [])
        return found

    def _add_step(
        self, conn: Connection, row: dict[str, Any], at: datetime, step: str, detail: str
    ) -> None:
        conn.execute(insert(schema.follow_up_steps).values(step_row(row, at, step, detail)))


def _closed(row: dict[str, Any]) -> str:
    when = f"{utc(row['closed_at']):%Y-%m-%d %H:%M} UTC" if row["closed_at"] else "earlier"
    what = {"done": "was completed", "replaced": "was replaced", "dropped": "was dropped"}
    said = what.get(row["status"], row["status"])
    outcome = f" ({row['outcome']})" if row.get("outcome") else ""
    return f"follow-up {row['follow_up_id']!r} {said} at {when}{outcome}; it is not open"


def _outcome_signal(
    follow_up_id: str, outcome: str, note: str, now: datetime, products: Sequence[str]
) -> ValidSignal:
    """The outcome as the lead's own signal (no identity: it is already the lead's)."""
    signal_id = f"follow-up:{follow_up_id}"
    attributes = {"follow_up_id": follow_up_id}
    if products:
        attributes["products"] = ",".join(products)
    return ValidSignal(
        signal_id=signal_id,
        content_hash=hashlib.sha256(f"{signal_id}|{outcome}".encode()).hexdigest(),
        source=common_pb2.SOURCE_CRM,
        kind=common_pb2.SIGNAL_KIND_OUTCOME,
        name="",
        value=outcome,
        numeric_value=0.0,
        confidence=1.0,
        evidence=note,
        campaign_id="",
        keys=(),
        attributes=attributes,
        occurred_at=now,
    )
