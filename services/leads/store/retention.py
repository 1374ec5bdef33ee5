"""Signals past their kind's retention go; leads left without signals go too; erasure
tombstones go once every signal they cover would be past retention."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy import (
    Connection,
    and_,
    func,
    or_,
    select,
)

from percept.leads import schema
from percept.leads.changes import Change
from percept.leads.store import tombstones
from percept.leads.store.base import (
    PURGE_LOCK,
)
from percept.leads.store.state import StateMixin
from percept.v1 import common_pb2, leads_pb2

log = logging.getLogger("percept.leads.store")


@dataclass
class Purge:
    signals: int = 0  # signals deleted
    leads: int = 0  # leads deleted (left without signals)
    tombstones: int = 0  # erasure tombstones deleted
    # FORGOTTEN for each lead id deleted, UPDATED for each lead re-scored: watchers hear
    # them (NOTIFY on PostgreSQL; the servicer tells its own on SQLite).
    changes: list[Change] = field(default_factory=list)


class RetentionMixin(StateMixin):
    """Signals past their kind's retention go; leads left without signals go too."""

    def purge_expired(self, default_days: float, by_kind: dict[str, float]) -> tuple[int, int]:
        """Deletes signals past their kind's retention; leads left without signals go too.

        Returns (signals deleted, leads deleted). Remaining leads are recomputed.
        """
        done = self.purge(default_days, by_kind)
        return done.signals, done.leads

    def purge(self, default_days: float, by_kind: dict[str, float]) -> Purge:
        """`purge_expired`, with the changes watchers must hear. Erasure tombstones older
        than the longest retention go too: a signal from before such an erasure would be
        past its retention when it came back."""
        sig, leads = schema.signals.c, schema.leads.c
        kinds = {
            common_pb2.SignalKind.Value(f"SIGNAL_KIND_{name.upper()}"): days
            for name, days in by_kind.items()
        }
        longest = timedelta(days=max([default_days, *kinds.values()]))

        def work(conn: Connection) -> Purge:
            if self.shared and not conn.scalar(select(func.pg_try_advisory_xact_lock(PURGE_LOCK))):
                return Purge()  # another replica is purging now
            now = self.clock()  # under the write lock, as every write's time (ingest)
            conditions = [
                and_(sig.kind == kind, sig.occurred_at < now - timedelta(days=days))
                for kind, days in kinds.items()
            ]
            conditions.append(
                and_(
                    sig.kind.not_in(list(kinds)),
                    sig.occurred_at < now - timedelta(days=default_days),
                )
            )
            expired = or_(*conditions)
            done = Purge(tombstones=tombstones.purge(conn, now - longest))
            touched = sorted(set(conn.scalars(select(sig.lead_id).where(expired).distinct())))
            if not touched:
                return done
            done.signals = conn.execute(schema.signals.delete().where(expired)).rowcount
            emptied = [
                lead
                for lead in touched
                if conn.scalar(select(sig.signal_id).where(sig.lead_id == lead).limit(1)) is None
            ]
            gone: list[str] = []
            if emptied:
                absorbed = list(
                    conn.scalars(select(leads.lead_id).where(leads.merged_into.in_(emptied)))
                )
                gone = [*emptied, *absorbed]
                self._delete_leads(conn, gone)
            kept = [lead for lead in touched if lead not in emptied]
            before = self._refresh(conn, kept, now)
            updated = leads_pb2.LeadChange.CHANGE_TYPE_UPDATED
            forgotten = leads_pb2.LeadChange.CHANGE_TYPE_FORGOTTEN
            done.leads = len(emptied)
            done.changes = [Change(lead, forgotten) for lead in gone] + [
                Change(lead, updated, *before.get(lead, (0, 0))) for lead in kept
            ]
            self._notify(conn, done.changes)
            return done

        done = self._write(work)
        if done.signals or done.tombstones:
            log.info(
                "retention purge",
                extra={"signals": done.signals, "leads": done.leads, "tombstones": done.tombstones},
            )
        return done
