"""A person's decisions about leads: merge, merge suggestions, split, erase."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Connection,
    insert,
    or_,
    select,
    update,
)

from percept.leads import schema
from percept.leads.changes import Change
from percept.leads.identity import IdentityKey
from percept.leads.store import tombstones
from percept.leads.store.base import (
    Erasure,
    LeadConflictError,
    LeadNotFoundError,
    _chunks,
    utc,
)
from percept.leads.store.state import StateMixin
from percept.v1 import leads_pb2

log = logging.getLogger("percept.leads.store")


class LifecycleMixin(StateMixin):
    """A person's decisions about leads: merge, merge suggestions, split, erase."""

    def merge_leads(self, lead_ids: Sequence[str], reason: str) -> list[Change]:
        """Merges leads into the first one (a salesperson's decision), recorded and undoable."""

        def work(conn: Connection) -> list[Change]:
            now = self.clock()  # under the write lock, as every write's time (ingest)
            resolved = [self._resolve(conn, lead) for lead in lead_ids]
            if len(set(resolved)) != len(resolved):
                raise LeadConflictError("lead_ids: some of these leads are already the same lead")
            why = f"manual: {reason}".strip()
            return self._merge_recorded(conn, resolved[0], resolved[1:], now, why)

        return self._write(work)

    def _merge_recorded(
        self,
        conn: Connection,
        survivor: str,
        absorbed: Sequence[str],
        now: datetime,
        reason: str,
        evidence: str | None = None,
    ) -> list[Change]:
        """A person's merge: recorded (undoable), the survivor's state anew, watchers told:
        the survivor MERGED (first), each absorbed lead FORGOTTEN (no lead of its own any
        more; GetLead on its id answers the survivor)."""
        before = self._refresh(conn, [survivor], now)
        for other in absorbed:
            self._merge(conn, survivor, other, now, evidence=evidence, reason=reason)
        self._refresh(conn, [survivor], now)
        previous = before.get(survivor, (0, 0))
        changes = [Change(survivor, leads_pb2.LeadChange.CHANGE_TYPE_MERGED, *previous)]
        forgotten = leads_pb2.LeadChange.CHANGE_TYPE_FORGOTTEN
        changes += [Change(other, forgotten) for other in absorbed]
        self._notify(conn, changes)
        return changes

    def _decide(
        self, conn: Connection, suggestion_id: str, decision: str, reason: str, now: datetime
    ) -> None:
        m = schema.merge_suggestions.c
        conn.execute(
            update(schema.merge_suggestions)
            .where(m.suggestion_id == suggestion_id)
            .values(decided_at=now, decision=decision, decision_reason=reason)
        )

    def merge_suggestions(
        self, lead_id: str, include_decided: bool, limit: int
    ) -> list[dict[str, Any]]:
        """Suggestions (newest first) with each lead as it survives now; a lead's only
        when `lead_id` is given. An open one whose leads were merged since is left out."""
        m, c = schema.merge_suggestions.c, schema.leads.c
        with self.engine.connect() as conn:
            query = select(schema.merge_suggestions).order_by(m.created_at.desc(), m.suggestion_id)
            if lead_id:
                current = self._resolve(conn, lead_id)
                ids = [current, *conn.scalars(select(c.lead_id).where(c.merged_into == current))]
                query = query.where(or_(m.lead_a.in_(ids), m.lead_b.in_(ids)))
            if not include_decided:
                query = query.where(m.decided_at.is_(None))
            rows = [dict(r) for r in conn.execute(query.limit(limit * 4)).mappings()]
            involved = sorted({r[k] for r in rows for k in ("lead_a", "lead_b")})
            survivor: dict[str, str] = {}
            for chunk in _chunks(involved):
                for r in conn.execute(select(c.lead_id, c.merged_into).where(c.lead_id.in_(chunk))):
                    survivor[r.lead_id] = r.merged_into or r.lead_id
        shown = []
        for row in rows:
            a, b = survivor.get(row["lead_a"]), survivor.get(row["lead_b"])
            if a is None or b is None or (a == b and row["decided_at"] is None):
                continue  # erased, or merged since
            shown.append({**row, "lead_ids": [a, b]})
        return shown[:limit]

    def _open_suggestion(self, conn: Connection, suggestion_id: str) -> dict[str, Any]:
        m = schema.merge_suggestions.c
        row = (
            conn.execute(select(schema.merge_suggestions).where(m.suggestion_id == suggestion_id))
            .mappings()
            .first()
        )
        if row is None:
            raise LeadNotFoundError(f"merge suggestion {suggestion_id!r} not found")
        if row["decided_at"] is not None:
            raise LeadConflictError(
                f"merge suggestion {suggestion_id!r} was already {row['decision']}"
            )
        return dict(row)

    def dismiss_suggestion(self, suggestion_id: str, reason: str) -> dict[str, Any]:
        def work(conn: Connection) -> dict[str, Any]:
            now = self.clock()
            row = self._open_suggestion(conn, suggestion_id)
            self._decide(conn, suggestion_id, "dismissed", reason, now)
            return {**row, "decided_at": now, "decision": "dismissed", "decision_reason": reason}

        return self._write(work)

    def accept_suggestion(self, suggestion_id: str, reason: str) -> list[Change]:
        """Merges a suggestion's two leads (the older survives) and records the decision."""

        def work(conn: Connection) -> list[Change]:
            now = self.clock()
            row = self._open_suggestion(conn, suggestion_id)
            try:
                pair = [self._resolve(conn, row["lead_a"]), self._resolve(conn, row["lead_b"])]
            except LeadNotFoundError:
                raise LeadConflictError(
                    f"merge suggestion {suggestion_id!r}: one of its leads was erased"
                ) from None
            if pair[0] == pair[1]:
                raise LeadConflictError(
                    f"merge suggestion {suggestion_id!r}: its leads were merged already"
                )
            created = dict(
                conn.execute(
                    select(schema.leads.c.lead_id, schema.leads.c.created_at).where(
                        schema.leads.c.lead_id.in_(pair)
                    )
                ).all()
            )
            survivor, absorbed = sorted(pair, key=lambda lead: (utc(created[lead]), lead))
            why = f"suggestion {suggestion_id} accepted: {reason}".strip(": ")
            evidence = row["evidence_signal_id"]
            changes = self._merge_recorded(conn, survivor, [absorbed], now, why, evidence)
            self._decide(conn, suggestion_id, "accepted", reason, now)
            return changes

        return self._write(work)

    def split_lead(self, lead_id: str, merge_id: str) -> list[Change]:
        """Undoes a recorded merge: the absorbed lead gets back its keys, signals and
        follow-ups."""
        m = schema.merges.c

        def work(conn: Connection) -> list[Change]:
            now = self.clock()
            current = self._resolve(conn, lead_id)
            merge = (
                conn.execute(select(schema.merges).where(m.merge_id == merge_id)).mappings().first()
            )
            if merge is None:
                raise LeadNotFoundError(f"merge {merge_id!r} not found")
            if merge["undone_at"] is not None:
                raise LeadConflictError(f"merge {merge_id!r} was already undone")
            if self._resolve(conn, merge["survivor_id"]) != current:
                raise LeadConflictError(f"merge {merge_id!r} does not belong to lead {lead_id!r}")
            absorbed = merge["absorbed_id"]
            # The absorbed lead comes back with everything merged into it before.
            closure, frontier = {absorbed}, [absorbed]
            while frontier:
                rows = conn.execute(
                    select(m.absorbed_id).where(
                        m.survivor_id.in_(frontier), m.undone_at.is_(None), m.merge_id != merge_id
                    )
                )
                frontier = [r.absorbed_id for r in rows if r.absorbed_id not in closure]
                closure.update(frontier)
            for table in (
                schema.identities,
                schema.signals,
                schema.follow_ups,  # its follow-ups, their notes and steps too
                schema.follow_up_steps,
            ):
                conn.execute(
                    update(table)
                    .where(table.c.lead_id == current, table.c.origin_lead_id.in_(closure))
                    .values(lead_id=absorbed)
                )
            leads = schema.leads.c
            conn.execute(
                update(schema.leads).where(leads.lead_id == absorbed).values(merged_into=None)
            )
            conn.execute(
                update(schema.leads)
                .where(leads.lead_id.in_(closure - {absorbed}))
                .values(merged_into=absorbed)
            )
            conn.execute(update(schema.merges).where(m.merge_id == merge_id).values(undone_at=now))
            before = self._refresh(conn, [current, absorbed], now)
            split = leads_pb2.LeadChange.CHANGE_TYPE_SPLIT
            changes = [Change(x, split, *before.get(x, (0, 0))) for x in (current, absorbed)]
            self._notify(conn, changes)
            return changes

        return self._write(work)

    def forget(self, lead_id: str, reason: str) -> Erasure:
        """Erases a lead, every lead merged into it, their keys, signals and merges, and
        keeps tombstones (no personal data) so that none of it comes back (tombstones.py).
        Every erased lead id is FORGOTTEN to watchers: the surviving lead and each merged
        into it, whichever of them the caller named."""
        leads, ident, sig = schema.leads.c, schema.identities.c, schema.signals.c

        def work(conn: Connection) -> Erasure:
            now = self.clock()  # under the write lock: signals up to now are covered
            current = self._resolve(conn, lead_id)
            ids = [
                current,
                *conn.scalars(select(leads.lead_id).where(leads.merged_into == current)),
            ]
            rows = conn.execute(
                select(ident.key_type, ident.key_value, ident.people, ident.shared).where(
                    ident.lead_id.in_(ids)
                )
            ).all()
            held = [IdentityKey(r.key_type, r.key_value) for r in rows]
            # A key seen with other people (a switchboard, a family address) is not this
            # person's alone: its tombstone would drop their queued signals too. The
            # signal-id tombstones still stop this person's own replays.
            own = [
                IdentityKey(r.key_type, r.key_value) for r in rows if r.people <= 1 and not r.shared
            ]
            faces = [k.value for k in held if k.key_type == "face_identity_id"]
            signal_ids = list(conn.scalars(select(sig.signal_id).where(sig.lead_id.in_(ids))))
            tombstones.record(conn, self._erasure_key, signal_ids, own, now)
            signals = conn.execute(schema.signals.delete().where(sig.lead_id.in_(ids))).rowcount
            keys, erased = self._delete_leads(conn, ids)
            self._queue_face_erasures(conn, faces, now)
            audit_id = uuid.uuid4().hex
            conn.execute(
                insert(schema.erasures).values(
                    audit_id=audit_id,
                    erased_at=now,
                    reason=reason,
                    leads_erased=erased,
                    signals_erased=signals,
                    identities_erased=keys,
                )
            )
            forgotten = leads_pb2.LeadChange.CHANGE_TYPE_FORGOTTEN
            changes = [Change(lead, forgotten) for lead in ids]
            self._notify(conn, changes)
            return Erasure(audit_id, erased, signals, keys, faces, changes)

        return self._write(work)
