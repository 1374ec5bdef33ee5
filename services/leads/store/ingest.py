"""Idempotent ingest and identity resolution: which lead each signal is."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Connection,
    insert,
    select,
    update,
)

from percept.leads import schema
from percept.leads.bulk import BulkWrite
from percept.leads.changes import Change
from percept.leads.identity import EXCLUSIVE, STRENGTH, IdentityKey
from percept.leads.store import tombstones
from percept.leads.store.base import (
    GroupResult,
    IngestResult,
    _chunks,
    _Leads,
    utc,
)
from percept.leads.store.state import StateMixin
from percept.leads.validation import InvalidSignalError, ValidSignal, validate
from percept.v1 import common_pb2, leads_pb2

log = logging.getLogger("percept.leads.store")


class IngestMixin(StateMixin):
    """Idempotent ingest and identity resolution: which lead each signal is."""

    def ingest(self, messages: Sequence[common_pb2.Signal]) -> IngestResult:
        """Stores new signals, skips exact replays, rejects bad or conflicting ones; one commit."""
        return self.ingest_together([messages]).results[0]

    def ingest_together(self, batches: Sequence[Sequence[common_pb2.Signal]]) -> GroupResult:
        """`ingest` for several batches in one transaction (one fsync, one write per lead);
        each batch gets its own counts and errors. A signal id sent twice is stored once and
        counted as a duplicate where it came second. A signal an erasure covers (tombstones)
        is dropped and counted as a duplicate too: it was dealt with, and must not be sent
        again."""
        arrived = self.clock()  # for validation; the write's own time is taken under its lock
        group = GroupResult([IngestResult() for _ in batches])
        valid: dict[str, ValidSignal] = {}
        came_in: dict[str, IngestResult] = {}  # signal id -> the result of its batch
        for messages, result in zip(batches, group.results, strict=True):
            for message in messages:
                try:
                    signal = validate(message, now=arrived, default_region=self.default_region)
                except InvalidSignalError as exc:
                    result.errors.append((message.signal_id, str(exc)))
                    continue
                earlier = valid.get(signal.signal_id)
                if earlier is None:
                    valid[signal.signal_id] = signal
                    came_in[signal.signal_id] = result
                elif earlier.content_hash == signal.content_hash:
                    result.duplicates += 1
                else:
                    result.errors.append((signal.signal_id, _conflict(signal.signal_id)))
        if not valid:
            return group

        def work(conn: Connection) -> tuple[list[ValidSignal], list[str], list[Change]]:
            # Stamped once the write lock is held: a write that waited for another's is
            # not stamped before changes that commit ahead of it (ListLeads(updated_since)).
            now = self.clock()
            fresh, replayed = self._drop_known(conn, list(valid.values()))
            changes = self._store(conn, fresh, now) if fresh else []
            self._notify(conn, changes)
            return fresh, replayed, changes

        fresh, replayed, group.changes = self._write(work)  # counted once it committed
        for s in fresh:
            came_in[s.signal_id].accepted += 1
        erased = 0
        for mark in replayed:
            signal_id = mark[1:]
            if mark[0] in "=x":
                came_in[signal_id].duplicates += 1
                erased += mark[0] == "x"
                continue
            log.warning(
                "conflicting replay rejected; original kept", extra={"signal_id": signal_id}
            )
            came_in[signal_id].errors.append((signal_id, _conflict(signal_id)))
        if erased:
            log.info("signals of erased people dropped", extra={"signals": erased})
        return group

    def _drop_known(
        self, conn: Connection, signals: list[ValidSignal]
    ) -> tuple[list[ValidSignal], list[str]]:
        """The signals not stored yet, and the ids of those that were ("=id" when stored
        with the same content, "!id" when with other content) or that an erasure covers
        ("xid": tombstones.py)."""
        gone = tombstones.erased(conn, self._erasure_key, signals)
        if gone:
            signals = [s for s in signals if s.signal_id not in gone]
        known: dict[str, str] = {}
        sig = schema.signals.c
        for chunk in _chunks([s.signal_id for s in signals]):
            rows = conn.execute(
                select(sig.signal_id, sig.content_hash).where(sig.signal_id.in_(chunk))
            ).all()
            known.update({r.signal_id: r.content_hash for r in rows})
        fresh: list[ValidSignal] = []
        replayed = ["x" + signal_id for signal_id in sorted(gone)]
        for s in signals:
            stored = known.get(s.signal_id)
            if stored is None:
                fresh.append(s)
            else:
                replayed.append(("=" if stored == s.content_hash else "!") + s.signal_id)
        return fresh, replayed

    def _store(self, conn: Connection, signals: list[ValidSignal], now: datetime) -> list[Change]:
        """Writes fresh signals, their keys and new leads, merges, and the leads' new state."""
        ident, lead_c = schema.identities.c, schema.leads.c
        by_type: dict[str, set[str]] = {}
        for s in signals:
            for k in s.keys:
                by_type.setdefault(k.key_type, set()).add(k.value)
        owner: dict[IdentityKey, str] = {}
        shared: set[IdentityKey] = set()  # seen with too many people: links nobody
        people: dict[IdentityKey, int] = {}
        leads = _Leads()
        # One query per key type: `key_type = ? AND key_value IN (...)` walks the primary key,
        # and the join brings each owner's creation time (the oldest lead survives a merge).
        query = select(
            ident.key_value, ident.lead_id, ident.people, ident.shared, lead_c.created_at
        ).join(schema.leads, lead_c.lead_id == ident.lead_id)
        for key_type, values in sorted(by_type.items()):
            for chunk in _chunks(sorted(values)):
                rows = conn.execute(
                    query.where(ident.key_type == key_type, ident.key_value.in_(chunk))
                ).all()  # fetchall: row-by-row fetching cost as much as the query
                for r in rows:
                    key = IdentityKey(key_type, r.key_value)
                    people[key] = r.people
                    if r.shared:
                        shared.add(key)
                        continue
                    owner[key] = r.lead_id
                    leads.created[r.lead_id] = utc(r.created_at)
        exclusive = self._exclusive_keys(conn, sorted(set(owner.values())))

        new_leads: list[str] = []
        new_keys: list[dict[str, Any]] = []
        merges: list[tuple[str, str, str]] = []  # (survivor, absorbed, evidence signal id)
        suggested: list[tuple[str, str, IdentityKey, str]] = []  # (lead, lead, key, signal)
        refused: dict[IdentityKey, int] = {}  # people a key was refused as linking, now
        signal_rows: list[dict[str, Any]] = []
        ordered = sorted(signals, key=lambda s: s.occurred_at)  # signal_rows follow this order
        for s in ordered:
            group, blocked = _who(s, owner, leads, exclusive)
            if not group:
                lead = uuid.uuid4().hex
                leads.created[lead] = min(s.occurred_at, now)
                new_leads.append(lead)
            else:
                lead = group[0]  # the oldest lead survives a merge
                for absorbed in group[1:]:
                    leads.parent[absorbed] = lead
                    merges.append((lead, absorbed, s.signal_id))
                    for key_type, values in exclusive.pop(absorbed, {}).items():
                        exclusive.setdefault(lead, {}).setdefault(key_type, set()).update(values)
            for other, key in blocked:
                suggested.append((other, lead, key, s.signal_id))
                refused[key] = refused.get(key, 0) + 1
                if people.get(key, 1) + refused[key] > self.max_people_per_key:
                    shared.add(key)  # a switchboard: it links nobody from now on
                    owner.pop(key, None)
            for key in s.keys:
                if key not in owner and key not in shared and key not in people:
                    owner[key] = lead
                    people[key] = 1
                    new_keys.append(
                        {
                            "key_type": key.key_type,
                            "key_value": key.value,
                            "lead_id": lead,
                            "origin_lead_id": lead,
                            "first_seen_at": s.occurred_at,
                        }
                    )
                    if key.key_type in EXCLUSIVE:
                        held = exclusive.setdefault(lead, {})
                        held.setdefault(key.key_type, set()).add(key.value)
            signal_rows.append(_signal_row(s, lead, now))

        if new_leads:
            _INSERT_LEADS(
                conn,
                [
                    {
                        "lead_id": lead,
                        "created_at": leads.created[lead],
                        "updated_at": now,
                        "last_signal_at": leads.created[lead],
                        "score": 0.0,
                        "lead_class": leads_pb2.LEAD_CLASS_COLD,
                        "stage": leads_pb2.LEAD_STAGE_NEW,
                        "product_interest": "",
                        "signal_count": 0,
                        "qualification": {},
                        "channels": [],
                    }
                    for lead in new_leads
                ],
            )
        for row in new_keys:
            row["lead_id"] = leads.find(row["lead_id"])
        for row in signal_rows:
            row["lead_id"] = leads.find(row["lead_id"])
        _INSERT_IDENTITIES(conn, new_keys)
        _INSERT_SIGNALS(conn, signal_rows)
        for survivor, absorbed, evidence in merges:
            self._merge(conn, leads.find(survivor), absorbed, now, evidence=evidence)
        self._count_people(conn, refused, shared)
        self._suggest(conn, suggested, leads.find, now)
        touched = sorted({row["lead_id"] for row in signal_rows})
        before = self._update_incrementally(
            conn,
            touched,
            [a for _, a, _ in merges],
            leads.find,
            set(new_leads),
            ordered,
            signal_rows,
            now,
        )
        merged_into = {leads.find(s) for s, _, _ in merges}
        fresh = set(new_leads)
        # A lead merged into another is no lead of its own any more: watchers drop it
        # (FORGOTTEN; GetLead on its id answers the survivor, whose change is MERGED).
        # One made in this very batch was never announced.
        forgotten = leads_pb2.LeadChange.CHANGE_TYPE_FORGOTTEN
        changes = [Change(a, forgotten) for _, a, _ in merges if a not in fresh]
        for lead in touched:
            kind = (
                leads_pb2.LeadChange.CHANGE_TYPE_CREATED
                if lead in fresh
                else leads_pb2.LeadChange.CHANGE_TYPE_MERGED
                if lead in merged_into
                else leads_pb2.LeadChange.CHANGE_TYPE_UPDATED
            )
            previous = before.get(lead, (0, 0)) if lead not in fresh else (0, 0)
            changes.append(Change(lead, kind, *previous))
        return changes

    def _exclusive_keys(
        self, conn: Connection, lead_ids: Sequence[str]
    ) -> dict[str, dict[str, set[str]]]:
        """The e-mails and CRM ids each lead holds (a person has one of each)."""
        ident = schema.identities.c
        held: dict[str, dict[str, set[str]]] = {}
        for chunk in _chunks(list(lead_ids)):
            rows = conn.execute(
                select(ident.lead_id, ident.key_type, ident.key_value).where(
                    ident.lead_id.in_(chunk), ident.key_type.in_(EXCLUSIVE)
                )
            )
            for r in rows:
                held.setdefault(r.lead_id, {}).setdefault(r.key_type, set()).add(r.key_value)
        return held

    def _count_people(
        self, conn: Connection, refused: dict[IdentityKey, int], shared: set[IdentityKey]
    ) -> None:
        """Keys refused as links count the people they were seen with; past the limit
        they are shared (kept on their lead, linking nobody)."""
        ident = schema.identities.c
        for key, count in refused.items():
            conn.execute(
                update(schema.identities)
                .where(ident.key_type == key.key_type, ident.key_value == key.value)
                .values(people=ident.people + count, shared=key in shared)
            )

    def _suggest(
        self,
        conn: Connection,
        suggested: Sequence[tuple[str, str, IdentityKey, str]],
        find: Callable[[str], str],
        now: datetime,
    ) -> None:
        """A merge suggestion per pair of leads a weak shared key would have joined (once
        per pair while undecided)."""
        m = schema.merge_suggestions.c
        fresh: dict[frozenset[str], dict[str, Any]] = {}
        for a, b, key, signal_id in suggested:
            pair = frozenset((find(a), find(b)))
            if len(pair) == 2 and pair not in fresh:
                first, second = sorted(pair)
                fresh[pair] = {
                    "suggestion_id": uuid.uuid4().hex,
                    "lead_a": first,
                    "lead_b": second,
                    "key_type": key.key_type,
                    "key_value": key.value,
                    "evidence_signal_id": signal_id,
                    "reason": f"both have the {key.key_type} {key.value}, but each "
                    "has a different e-mail or CRM id",
                    "created_at": now,
                }
        if not fresh:
            return
        involved = sorted({lead for pair in fresh for lead in pair})
        for chunk in _chunks(involved):
            for r in conn.execute(
                select(m.lead_a, m.lead_b).where(m.decided_at.is_(None), m.lead_a.in_(chunk))
            ):
                fresh.pop(frozenset((r.lead_a, r.lead_b)), None)
        if fresh:
            conn.execute(insert(schema.merge_suggestions), list(fresh.values()))


_INSERT_LEADS = BulkWrite(insert(schema.leads))

_INSERT_SIGNALS = BulkWrite(insert(schema.signals))

_INSERT_IDENTITIES = BulkWrite(insert(schema.identities))


def _who(
    s: ValidSignal,
    owner: dict[IdentityKey, str],
    leads: _Leads,
    exclusive: dict[str, dict[str, set[str]]],
) -> tuple[list[str], list[tuple[str, IdentityKey]]]:
    """The leads a signal belongs to (oldest first: they merge), and those a key of it
    links but it must not join: a lead holding another e-mail (CRM id) than the signal
    or the rest of the group, linked only through a weaker key (a shared phone)."""
    link: dict[str, int] = {}
    via: dict[str, IdentityKey] = {}
    for key in s.keys:
        if key in owner:
            lead = leads.find(owner[key])
            if STRENGTH[key.key_type] > link.get(lead, -1):
                link[lead], via[lead] = STRENGTH[key.key_type], key
    held: dict[str, set[str]] = {}
    for key in s.keys:
        if key.key_type in EXCLUSIVE:
            held.setdefault(key.key_type, set()).add(key.value)
    group: list[str] = []
    blocked: list[tuple[str, IdentityKey]] = []
    for lead in sorted(link, key=lambda x: (-link[x], leads.created[x], x)):
        theirs = exclusive.get(lead, {})
        if any(
            held.get(key_type) and not held[key_type] & values and STRENGTH[key_type] > link[lead]
            for key_type, values in theirs.items()
        ):
            blocked.append((lead, via[lead]))
            continue
        group.append(lead)
        for key_type, values in theirs.items():
            held.setdefault(key_type, set()).update(values)
    group.sort(key=lambda x: (leads.created[x], x))
    return group, blocked


def _conflict(signal_id: str) -> str:
    return f"signal {signal_id}: signal_id already stored with different content; original kept"


def _signal_row(s: ValidSignal, lead: str, now: datetime) -> dict[str, Any]:
    return {
        "signal_id": s.signal_id,
        "content_hash": s.content_hash,
        "lead_id": lead,
        "origin_lead_id": lead,
        "source": s.source,
        "kind": s.kind,
        "name": s.name,
        "value": s.value,
        "numeric_value": s.numeric_value,
        "confidence": s.confidence,
        "evidence": s.evidence,
        "campaign_id": s.campaign_id,
        "identity": {k.key_type: k.value for k in s.keys},
        "attributes": s.attributes,
        "occurred_at": s.occurred_at,
        "received_at": now,
    }
