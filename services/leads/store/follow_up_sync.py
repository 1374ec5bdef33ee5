"""A lead's open follow-up kept what its rules say, in the write that changed the lead.

Every write that stores a lead's state calls `_sync_follow_ups`: the rule the lead
meets now gives at most one open follow-up. The same rule keeps its row (due again
from the latest signal or contact, never before a snooze); another rule replaces it;
no rule (won, lost, cooled off) drops it. Each step is recorded for the timeline, and
a new follow-up goes to the webhooks.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, bindparam, insert, or_, select, update

from percept.leads import schema
from percept.leads.followups import FollowUp
from percept.leads.scoring import Assessment, follow_up_rules, stage_name
from percept.leads.store.base import _chunks, utc
from percept.leads.store.outbox import OutboxMixin
from percept.v1 import leads_pb2

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


class FollowUpSyncMixin(OutboxMixin):
    """Keeps each lead's open follow-up in step with its state (see the module)."""

    def _sync_follow_ups(
        self, conn: Connection, assessed: dict[str, Assessment], now: datetime
    ) -> None:
        f = schema.follow_ups.c
        open_rows: dict[str, list[Any]] = {}
        touched: dict[str, datetime] = {}
        for chunk in _chunks(sorted(assessed)):
            found = conn.execute(
                select(schema.follow_ups).where(
                    f.lead_id.in_(chunk), or_(f.status == "open", f.status == "done")
                )
            ).mappings()
            for r in map(dict, found):
                if r["status"] == "open":
                    open_rows.setdefault(r["lead_id"], []).append(r)
                else:
                    closed = utc(r["closed_at"])
                    touched[r["lead_id"]] = max(touched.get(r["lead_id"], closed), closed)
        owners = follow_up_rules(self.policy).owners
        closes: list[dict[str, Any]] = []
        changes: list[dict[str, Any]] = []
        created: list[dict[str, Any]] = []
        steps: list[dict[str, Any]] = []
        for lead, a in assessed.items():
            want: FollowUp | None = a.follow_up
            rows = open_rows.get(lead, [])
            keep = next((r for r in rows if want is not None and r["rule"] == want.rule), None)
            for r in rows:
                if r is keep:
                    continue
                status, detail = _closing(want, a)
                closes.append({"target": r["follow_up_id"], "status": status, "closed_at": now})
                steps.append(step_row(r, now, status, detail))
            if want is None:
                continue
            due = want.due_after(touched.get(lead))
            values = {
                "action": want.action,
                "priority": want.priority,
                "reason": want.reason,
                "owner": want.owner(owners, lead, a.product_interest),
            }
            if keep is None:
                row = {
                    "follow_up_id": uuid.uuid4().hex,
                    "lead_id": lead,
                    "rule": want.rule,
                    "created_at": now,
                    "due_at": due,
                    "snoozed_until": None,
                    "status": "open",
                    "closed_at": None,
                    "outcome": None,
                    "note": None,
                    "overdue_at": None,
                    **values,
                }
                created.append(row)
                words = ACTION_WORDS.get(want.action, want.action)
                steps.append(step_row(row, now, "created", f"{words} by {due:%Y-%m-%d %H:%M} UTC"))
                continue
            if keep["snoozed_until"] is not None:
                due = max(due, utc(keep["snoozed_until"]))
            old_due = utc(keep["due_at"])
            if due != old_due or any(keep[k] != v for k, v in values.items()):
                overdue = keep["overdue_at"] if due <= now else None  # due again: told again
                changes.append(
                    {"target": keep["follow_up_id"], "due_at": due, "overdue_at": overdue, **values}
                )
        if created:
            conn.execute(insert(schema.follow_ups), created)
        if closes:
            conn.execute(_CLOSE, closes)
        if changes:
            conn.execute(_CHANGE, changes)
        if steps:
            conn.execute(insert(schema.follow_up_steps), steps)
        if created and self.follow_up_webhook_urls:
            payloads = [follow_up_payload(r, "follow_up.created", now) for r in created]
            self._queue_events(conn, payloads, now, self.follow_up_webhook_urls)

    def _move_follow_ups(self, conn: Connection, absorbed: str, survivor: str) -> None:
        """A merge: the absorbed lead's follow-ups (and their steps) become the survivor's;
        the survivor's next sync keeps one open."""
        for table in (schema.follow_ups, schema.follow_up_steps):
            conn.execute(update(table).where(table.c.lead_id == absorbed).values(lead_id=survivor))

    def _delete_follow_ups(self, conn: Connection, lead_ids: Sequence[str]) -> None:
        """An erasure or expiry: notes about a person go with the person."""
        steps, f = schema.follow_up_steps.c, schema.follow_ups.c
        conn.execute(schema.follow_up_steps.delete().where(steps.lead_id.in_(lead_ids)))
        conn.execute(schema.follow_ups.delete().where(f.lead_id.in_(lead_ids)))


def _closing(want: FollowUp | None, a: Assessment) -> tuple[str, str]:
    if want is not None:
        return "replaced", f"replaced: {want.reason}"
    if a.stage in (leads_pb2.LEAD_STAGE_WON, leads_pb2.LEAD_STAGE_LOST):
        return "dropped", f"the lead is {stage_name(a.stage)}"
    return "dropped", "no follow-up rule applies to the lead any more"


def step_row(row: dict[str, Any], at: datetime, step: str, detail: str) -> dict[str, Any]:
    return {
        "follow_up_id": row["follow_up_id"],
        "lead_id": row["lead_id"],
        "at": at,
        "step": step,
        "detail": detail,
    }


_CLOSE = (
    update(schema.follow_ups)
    .where(schema.follow_ups.c.follow_up_id == bindparam("target"))
    .values(status=bindparam("status"), closed_at=bindparam("closed_at"))
)
_CHANGE = (
    update(schema.follow_ups)
    .where(schema.follow_ups.c.follow_up_id == bindparam("target"))
    .values(
        {
            name: bindparam(name)
            for name in ("due_at", "overdue_at", "action", "priority", "reason", "owner")
        }
    )
)
