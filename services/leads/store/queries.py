"""Reading leads: one with its timeline, pages of them (signed page tokens), raw rows."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import (
    Connection,
    and_,
    or_,
    select,
)
from sqlalchemy.sql.elements import ColumnElement

from percept.leads import schema
from percept.leads.identity import IdentityKey
from percept.leads.scoring import (
    SignalFacts,
    assess_features,
)
from percept.leads.store.base import (
    DEFAULT_PAGE_SIZE,
    MAX_PAGE_SIZE,
    InvalidPageTokenError,
    LeadFilter,
    LeadView,
    _chunks,
    utc,
)
from percept.leads.store.state import StateMixin

log = logging.getLogger("percept.leads.store")
# GetLead(include_timeline) shows a lead's most recent entries (signals and follow-up
# steps), oldest first: a lead with ~93,000 signals made a message over the 8 MiB limit.
# A Lead's signal_count says how many signals there are in all.
MAX_TIMELINE_ENTRIES = 1000
CLOSED_STEPS = {"done": "completed", "replaced": "replaced", "dropped": "dropped"}


class Fingerprinted(Protocol):
    """What a page token is bound to: a filter whose fingerprint must match."""

    def fingerprint(self) -> str: ...


class QueriesMixin(StateMixin):
    """Reading leads: one with its timeline, pages of them (signed page tokens), raw rows."""

    def facts_of(self, lead_id: str) -> list[SignalFacts]:
        """Every signal of a lead, as scoring sees them (training, audits)."""
        with self.engine.connect() as conn:
            return self._facts(conn, [lead_id]).get(lead_id, [])

    def rows(self, lead_ids: Sequence[str]) -> list[dict[str, Any]]:
        """Stored state of these leads (those that still exist), with their keys."""
        c = schema.leads.c
        with self.engine.connect() as conn:
            rows = []
            for chunk in _chunks(list(lead_ids)):
                rows += [
                    dict(r)
                    for r in conn.execute(
                        select(schema.leads).where(c.lead_id.in_(chunk))
                    ).mappings()
                ]
            keys = self._keys_of(conn, [r["lead_id"] for r in rows])
        for row in rows:
            row["keys"] = keys.get(row["lead_id"], [])
        return rows

    def lead_of_key(self, key: IdentityKey) -> str | None:
        """The lead a key belongs to (get() follows it to a merge's survivor)."""
        ident = schema.identities.c
        with self.engine.connect() as conn:
            found = conn.execute(
                select(ident.lead_id).where(
                    ident.key_type == key.key_type, ident.key_value == key.value
                )
            ).scalar()
        return str(found) if found is not None else None

    def get(self, lead_id: str, *, include_timeline: bool = False) -> LeadView | None:
        """The lead (following merges to the survivor), scored as of now; with its timeline,
        the most recent MAX_TIMELINE_ENTRIES entries of it, oldest first."""
        leads, ident, sig = schema.leads.c, schema.identities.c, schema.signals.c
        with self.engine.connect() as conn:
            row = None
            for _ in range(64):  # merge chains are flattened; this only guards against cycles
                row = (
                    conn.execute(select(schema.leads).where(leads.lead_id == lead_id))
                    .mappings()
                    .first()
                )
                if row is None or row["merged_into"] is None:
                    break
                lead_id = row["merged_into"]
            if row is None:
                return None
            keys = [
                IdentityKey(r.key_type, r.key_value)
                for r in conn.execute(
                    select(ident.key_type, ident.key_value)
                    .where(ident.lead_id == lead_id)
                    .order_by(ident.first_seen_at, ident.key_type)
                )
            ]
            features = self._features_of(conn, lead_id)
            timeline = []
            if include_timeline:
                timeline = [
                    dict(r)
                    for r in conn.execute(
                        select(
                            sig.signal_id,
                            sig.source,
                            sig.kind,
                            sig.name,
                            sig.value,
                            sig.numeric_value,
                            sig.evidence,
                            sig.occurred_at,
                        )
                        .where(sig.lead_id == lead_id)
                        .order_by(sig.occurred_at.desc(), sig.signal_id.desc())
                        .limit(MAX_TIMELINE_ENTRIES)  # ix_signals_lead_time, read backwards
                    ).mappings()
                ][::-1]
            f = schema.follow_ups.c
            follow_ups = [  # by the lead's own index; the open one is among them
                dict(r)
                for r in conn.execute(
                    select(schema.follow_ups).where(f.lead_id == lead_id)
                ).mappings()
            ]
            follow_up = next((r for r in follow_ups if r["status"] == "open"), None)
            if include_timeline:
                timeline = sorted(  # stable: at one moment, signals first
                    [*timeline, *self._follow_up_steps(conn, lead_id, follow_ups)],
                    key=lambda e: utc(e["occurred_at"]),
                )[-MAX_TIMELINE_ENTRIES:]
        return LeadView(
            dict(row),
            keys,
            assess_features(features, self.clock(), self.policy, model=self.active_model()),
            timeline,
            follow_up,
        )

    def _follow_up_steps(
        self, conn: Connection, lead_id: str, follow_ups: Sequence[Mapping[str, Any]]
    ) -> list[dict[str, Any]]:
        """The lead's follow-ups as timeline entries (`follow_up_id` tells them apart): each
        one's opening and closing (kept in its row) and the steps between (snoozes, overdue).
        At one moment, an older follow-up's entries come first (one closes, the next opens),
        and one follow-up's in their own order."""
        st = schema.follow_up_steps.c
        by_id = {f["follow_up_id"]: f for f in follow_ups}
        entries: list[tuple[datetime, datetime, int, dict[str, Any]]] = []

        def add(f: Mapping[str, Any], at: datetime, rank: int, step: str, detail: str) -> None:
            entry = {
                "follow_up_id": f["follow_up_id"],
                "occurred_at": at,
                "step": step,
                "detail": detail,
                "action": f["action"],
            }
            entries.append((utc(at), utc(f["created_at"]), rank, entry))

        for f in follow_ups:
            add(f, f["created_at"], 0, "created", f["opened_as"])
            if f["closed_at"] is not None:
                step = CLOSED_STEPS.get(f["status"], f["status"])
                add(f, f["closed_at"], 2, step, f["closed_as"] or "")
        steps = conn.execute(
            select(st.follow_up_id, st.at, st.step, st.detail)
            .where(st.lead_id == lead_id)
            .order_by(st.at, st.step_id)
        )
        for r in steps:
            if r.follow_up_id in by_id:
                add(by_id[r.follow_up_id], r.at, 1, r.step, r.detail)
        entries.sort(key=lambda e: e[:3])
        return [e[3] for e in entries]

    def page(
        self, where: LeadFilter, page_size: int, page_token: str
    ) -> tuple[list[dict[str, Any]], str]:
        """A page of leads in creation order (stable under updates) and the next page's token."""
        size = min(page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
        c = schema.leads.c
        clauses: list[ColumnElement[bool]] = [c.merged_into.is_(None)]
        if where.classes:
            clauses.append(c.lead_class.in_(where.classes))
        if where.stages:
            clauses.append(c.stage.in_(where.stages))
        if where.product_interest:
            clauses.append(c.product_interest == where.product_interest.lower())
        if where.min_score:
            clauses.append(c.score >= where.min_score)
        if where.max_score:
            clauses.append(c.score <= where.max_score)
        if where.updated_since:
            clauses.append(c.updated_at >= where.updated_since)
        if where.segment:
            clauses.append(c.segment == where.segment)
        if page_token:
            created, lead_id = self._read_token(page_token, where)
            clauses.append(
                or_(c.created_at > created, and_(c.created_at == created, c.lead_id > lead_id))
            )
        query = (
            select(schema.leads).where(*clauses).order_by(c.created_at, c.lead_id).limit(size + 1)
        )
        with self.engine.connect() as conn:
            rows = [dict(r) for r in conn.execute(query).mappings()]
            keys = self._keys_of(conn, [r["lead_id"] for r in rows[:size]])
        for row in rows:
            row["keys"] = keys.get(row["lead_id"], [])
        if len(rows) <= size:
            return rows, ""
        last = rows[size - 1]
        return rows[:size], self._make_token(utc(last["created_at"]), last["lead_id"], where)

    def _keys_of(self, conn: Connection, lead_ids: list[str]) -> dict[str, list[IdentityKey]]:
        ident = schema.identities.c
        keys: dict[str, list[IdentityKey]] = {}
        for chunk in _chunks(lead_ids):
            rows = conn.execute(
                select(ident.lead_id, ident.key_type, ident.key_value)
                .where(ident.lead_id.in_(chunk))
                .order_by(ident.first_seen_at, ident.key_type)
            )
            for r in rows:
                keys.setdefault(r.lead_id, []).append(IdentityKey(r.key_type, r.key_value))
        return keys

    def _make_token(self, created: datetime, lead_id: str, where: Fingerprinted) -> str:
        body = json.dumps({"c": created.isoformat(), "i": lead_id, "f": where.fingerprint()})
        payload = base64.urlsafe_b64encode(body.encode()).decode().rstrip("=")
        mac = hmac.new(self._token_key, payload.encode(), hashlib.sha256).hexdigest()[:32]
        return f"{payload}.{mac}"

    def _read_token(self, token: str, where: Fingerprinted) -> tuple[datetime, str]:
        payload, _, mac = token.partition(".")
        expected = hmac.new(self._token_key, payload.encode(), hashlib.sha256).hexdigest()[:32]
        if not mac or not hmac.compare_digest(mac, expected):
            raise InvalidPageTokenError(
                "page_token: not issued by this server (forged or corrupted)"
            )
        body = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        if body["f"] != where.fingerprint():
            raise InvalidPageTokenError(
                "page_token: issued for another filter; start from page one"
            )
        return datetime.fromisoformat(body["c"]), str(body["i"])
