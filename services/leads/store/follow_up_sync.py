"""A lead's open follow-up kept what its rules say, in the write that changed the lead.

Every write that stores a lead's state calls `_sync_follow_ups`: the rule the lead
meets now gives at most one open follow-up, due `within_h` of the signal that made the
rule apply (or of the last contact: a completed follow-up). The same rule keeps its
row and its due time (the lead's own messages are no salesperson's contact); another
rule replaces it; no rule (won, lost, cooled off) drops it. The row keeps the
timeline's words for its opening and closing, and a new follow-up goes to the webhooks.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, bindparam, insert, select, update

from percept.leads import schema
from percept.leads.bulk import BulkWrite
from percept.leads.followups import FollowUp, territory_of
from percept.leads.scoring import CLOSED_STAGES, Assessment, follow_up_rules, stage_name
from percept.leads.store.base import _chunks, utc
from percept.leads.store.outbox import OutboxMixin

ACTION_WORDS = {
    "call": "call",
    "email": "e-mail",
    "send_quote": "send a quote",
    "support_call": "support call",
    "retention_call": "retention call",
}


def follow_up_payload(row: dict[str, Any], kind: str, now: datetime) -> dict[str, Any]:
    """A webhook's body for a follow-up (`follow_up.created`, `follow_up.overdue`)."""
    return {
        "type": kind,
        "follow_up_id": row["follow_up_id"],
        "lead_id": row["lead_id"],
        "action": row["action"],
        "priority": row["priority"],
        "due_at": utc(row["due_at"]).isoformat(),
        "reason": row["reason"],
        "owner": row["owner"],
        "rule": row["rule"],
        "at": now.isoformat(),
    }


@dataclass
class FollowUpsOf:
    """What a sync reads of some leads' follow-ups."""

    open: dict[str, list[dict[str, Any]]]
    contacted: dict[str, datetime]  # the latest completion per lead


class FollowUpSyncMixin(OutboxMixin):
    """Keeps each lead's open follow-up in step with its state (see the module)."""

    def _follow_ups_of(self, conn: Connection, lead_ids: Iterable[str]) -> FollowUpsOf:
        """These leads' open follow-ups, and when a salesperson last completed one (a
        contact the rules count, as a salesperson's chat message)."""
        f = schema.follow_ups.c
        held = FollowUpsOf({}, {})
        for chunk in _chunks(sorted(lead_ids)):
            # every follow-up of these leads (a handful each): by the lead's index, not the
            # status one a status condition would tempt SQLite into
            found = conn.execute(select(*_READ).where(f.lead_id.in_(chunk)))
            for r in (dict(zip(_NAMES, row, strict=True)) for row in found):
                if r["status"] == "open":
                    held.open.setdefault(r["lead_id"], []).append(r)
                elif r["status"] == "done":
                    closed = utc(r["closed_at"])
                    held.contacted[r["lead_id"]] = max(
                        held.contacted.get(r["lead_id"], closed), closed
                    )
        return held

    def _sync_follow_ups(
        self,
        conn: Connection,
        assessed: dict[str, Assessment],
        held: FollowUpsOf,
        now: datetime,
    ) -> None:
        open_rows = held.open
        owners = follow_up_rules(self.policy).owners
        territories = self._territories(
            conn, [lead for lead, a in assessed.items() if _by_territory(a.follow_up)]
        )
        closes: list[dict[str, Any]] = []
        changes: list[dict[str, Any]] = []
        created: list[dict[str, Any]] = []
        for lead, a in assessed.items():
            want: FollowUp | None = a.follow_up
            rows = open_rows.get(lead, [])
            keep = next((r for r in rows if want is not None and r["rule"] == want.rule), None)
            for r in rows:
                if r is keep:
                    continue
                status, detail = _closing(want, a)
                closes.append(
                    {
                        "target": r["follow_up_id"],
                        "status": status,
                        "closed_at": now,
                        "closed_as": detail,
                    }
                )
            if want is None:
                continue
            due = want.due_at
            values = {
                "action": want.action,
                "priority": want.priority,
                "reason": want.reason,
                "owner": want.owner(owners, lead, a.product_interest, territories.get(lead, "")),
            }
            if keep is None:
                row = {
                    "follow_up_id": uuid.uuid4().hex,
                    "lead_id": lead,
                    "origin_lead_id": lead,
                    "rule": want.rule,
                    "created_at": now,
                    "due_at": due,
                    "snoozed_until": None,
                    "status": "open",
                    "closed_at": None,
                    "outcome": None,
                    "note": None,
                    "overdue_at": None,
                    "opened_as": f"{ACTION_WORDS.get(want.action, want.action)} by "
                    f"{due:%Y-%m-%d %H:%M} UTC",
                    "closed_as": None,
                    **values,
                }
                created.append(row)
                continue
            # The same rule: due as it was (the lead's own messages are no salesperson's
            # contact); what it says and who does it may have changed (a product named).
            if any(keep[k] != v for k, v in values.items()):
                changes.append({"target": keep["follow_up_id"], **values})
        _INSERT(conn, created)  # plain executemany: ingest runs this for every batch
        _CLOSE(conn, closes)
        _CHANGE(conn, changes)
        if created and self.follow_up_webhook_urls:
            payloads = [follow_up_payload(r, "follow_up.created", now) for r in created]
            self._queue_events(conn, payloads, now, self.follow_up_webhook_urls)

    def _territories(self, conn: Connection, lead_ids: Sequence[str]) -> dict[str, str]:
        """Each lead's territory: the country of its phone number (read only for the
        leads whose rule hands them out by territory)."""
        ident = schema.identities.c
        found: dict[str, str] = {}
        for chunk in _chunks(sorted(lead_ids)):
            rows = conn.execute(
                select(ident.lead_id, ident.key_value)
                .where(ident.lead_id.in_(chunk), ident.key_type == "phone")
                .order_by(ident.first_seen_at)
            )
            for lead_id, phone in rows:
                found.setdefault(lead_id, territory_of(phone))
        return found

    def _move_follow_ups(self, conn: Connection, absorbed: str, survivor: str) -> None:
        """A merge: the absorbed lead's follow-ups (and their steps) become the survivor's;
        the survivor's next sync keeps one open."""
        for table in (schema.follow_ups, schema.follow_up_steps):
            conn.execute(update(table).where(table.c.lead_id == absorbed).values(lead_id=survivor))

    def _delete_follow_ups(self, conn: Connection, lead_ids: Sequence[str]) -> None:
        """An erasure or expiry: notes about a person go with the person."""
        steps, f = schema.follow_up_steps.c, schema.follow_ups.c
        # Locked first: a snooze or the overdue check (not serial writes) adding a step
        # meanwhile would leave one behind the deletion (a foreign-key error on PostgreSQL).
        conn.execute(select(f.follow_up_id).where(f.lead_id.in_(lead_ids)).with_for_update())
        conn.execute(schema.follow_up_steps.delete().where(steps.lead_id.in_(lead_ids)))
        conn.execute(schema.follow_ups.delete().where(f.lead_id.in_(lead_ids)))


def _by_territory(want: FollowUp | None) -> bool:
    return want is not None and want.owner_rule == "territory"


def _closing(want: FollowUp | None, a: Assessment) -> tuple[str, str]:
    if want is not None:
        return "replaced", f"replaced: {want.reason}"
    if a.stage in CLOSED_STAGES:
        return "dropped", f"the lead is {stage_name(a.stage)}"
    return "dropped", "no follow-up rule applies to the lead any more"


def step_row(row: dict[str, Any], at: datetime, step: str, detail: str) -> dict[str, Any]:
    return {
        "follow_up_id": row["follow_up_id"],
        "lead_id": row["lead_id"],
        "origin_lead_id": row["origin_lead_id"],
        "at": at,
        "step": step,
        "detail": detail,
    }


# What a sync reads of a lead's follow-ups, as plain tuples.
_READ = tuple(
    schema.follow_ups.c[name]
    for name in (
        "follow_up_id",
        "lead_id",
        "rule",
        "status",
        "closed_at",
        "action",
        "priority",
        "reason",
        "owner",
    )
)
_NAMES = tuple(column.name for column in _READ)
_INSERT = BulkWrite(insert(schema.follow_ups))
_CLOSE = BulkWrite(
    update(schema.follow_ups)
    .where(schema.follow_ups.c.follow_up_id == bindparam("target"))
    .values(
        status=bindparam("status"),
        closed_at=bindparam("closed_at"),
        closed_as=bindparam("closed_as"),
    )
)
_CHANGE = BulkWrite(
    update(schema.follow_ups)
    .where(schema.follow_ups.c.follow_up_id == bindparam("target"))
    .values({name: bindparam(name) for name in ("action", "priority", "reason", "owner")})
)
