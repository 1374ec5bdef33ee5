"""Signals past their kind's retention go; leads left without signals go too."""

from __future__ import annotations

import logging
from datetime import timedelta

from sqlalchemy import (
    Connection,
    and_,
    func,
    or_,
    select,
)

from percept.leads import schema
from percept.leads.store.base import (
    PURGE_LOCK,
)
from percept.leads.store.state import StateMixin
from percept.v1 import common_pb2

log = logging.getLogger("percept.leads.store")


class RetentionMixin(StateMixin):
    """Signals past their kind's retention go; leads left without signals go too."""

    def purge_expired(self, default_days: float, by_kind: dict[str, float]) -> tuple[int, int]:
        """Deletes signals past their kind's retention; leads left without signals go too.

        Returns (signals deleted, leads deleted). Remaining leads are recomputed.
        """
        now = self.clock()
        sig, leads = schema.signals.c, schema.leads.c
        kinds = {
            common_pb2.SignalKind.Value(f"SIGNAL_KIND_{name.upper()}"): days
            for name, days in by_kind.items()
        }
        conditions = [
            and_(sig.kind == kind, sig.occurred_at < now - timedelta(days=days))
            for kind, days in kinds.items()
        ]
        conditions.append(
            and_(sig.kind.not_in(list(kinds)), sig.occurred_at < now - timedelta(days=default_days))
        )
        expired = or_(*conditions)

        def work(conn: Connection) -> tuple[int, list[str]]:
            if self.shared and not conn.scalar(select(func.pg_try_advisory_xact_lock(PURGE_LOCK))):
                return 0, []  # another replica is purging now
            touched = sorted(set(conn.scalars(select(sig.lead_id).where(expired).distinct())))
            if not touched:
                return 0, []
            deleted = conn.execute(schema.signals.delete().where(expired)).rowcount
            emptied = [
                lead
                for lead in touched
                if conn.scalar(select(sig.signal_id).where(sig.lead_id == lead).limit(1)) is None
            ]
            if emptied:
                absorbed = list(
                    conn.scalars(select(leads.lead_id).where(leads.merged_into.in_(emptied)))
                )
                self._delete_leads(conn, [*emptied, *absorbed])
            self._refresh(conn, [lead for lead in touched if lead not in emptied], now)
            return deleted, emptied

        deleted, emptied = self._write(work)
        if not deleted:
            return 0, 0
        log.info("retention purge", extra={"signals": deleted, "leads": len(emptied)})
        return deleted, len(emptied)
