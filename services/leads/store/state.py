"""A lead's derived state (score, class, stage, qualification) kept up to date."""

from __future__ import annotations

import logging
import math
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    Connection,
    bindparam,
    insert,
    or_,
    select,
    update,
)

from percept.leads import schema
from percept.leads.bulk import BulkWrite
from percept.leads.opportunities import expected_value
from percept.leads.scoring import (
    CLOSED_STAGES,
    Assessment,
    Features,
    LinearModel,
    SignalFacts,
    assess_features,
    list_prices,
)
from percept.leads.store.base import (
    _chunks,
    utc,
)
from percept.leads.store.follow_up_sync import FollowUpSyncMixin
from percept.leads.validation import ValidSignal

log = logging.getLogger("percept.leads.store")


class StateMixin(FollowUpSyncMixin):
    """A lead's derived state (score, class, stage, qualification) kept up to date, by
    the trained model when one is active."""

    MODEL_CHECK_S = 30.0  # how stale the active model may be in a running server

    def active_model(self) -> LinearModel | None:
        """The active trained model (re-read at most every MODEL_CHECK_S), or None: the prior."""
        if time.monotonic() - self._model_checked < self.MODEL_CHECK_S:
            return self._model
        m = schema.scoring_models.c
        with self.engine.connect() as conn:
            row = conn.execute(select(m.model).where(m.active.is_(True))).first()
        self._model = LinearModel(**row.model) if row else None
        self._model_checked = time.monotonic()
        return self._model

    def save_model(self, model: LinearModel, metrics: dict[str, Any], *, activate: bool) -> None:
        def work(conn: Connection) -> None:
            if activate:
                conn.execute(update(schema.scoring_models).values(active=False))
            conn.execute(
                insert(schema.scoring_models).values(
                    version=model.version,
                    created_at=self.clock(),
                    active=activate,
                    model={
                        "version": model.version,
                        "intercept": model.intercept,
                        "weights": model.weights,
                    },
                    metrics=metrics,
                )
            )

        self._write(work)
        self._model_checked = -math.inf  # picked up at once in this process

    def _delete_leads(self, conn: Connection, ids: Sequence[str]) -> tuple[int, int]:
        """Deletes leads (their signals gone already) with their keys, merges and merge
        suggestions (which hold a key's value: that person's data). (keys, leads) deleted."""
        ident, m, s = schema.identities.c, schema.merges.c, schema.merge_suggestions.c
        self._delete_follow_ups(conn, ids)
        keys = conn.execute(schema.identities.delete().where(ident.lead_id.in_(ids))).rowcount
        conn.execute(
            schema.merges.delete().where(or_(m.survivor_id.in_(ids), m.absorbed_id.in_(ids)))
        )
        conn.execute(
            schema.merge_suggestions.delete().where(or_(s.lead_a.in_(ids), s.lead_b.in_(ids)))
        )
        leads = schema.leads.c
        conn.execute(update(schema.leads).where(leads.lead_id.in_(ids)).values(merged_into=None))
        erased = conn.execute(schema.leads.delete().where(leads.lead_id.in_(ids))).rowcount
        return keys, erased

    def _merge(
        self,
        conn: Connection,
        survivor: str,
        absorbed: str,
        now: datetime,
        *,
        evidence: str | None = None,
        reason: str = "identity keys seen together",
    ) -> None:
        for table in (schema.identities, schema.signals):
            conn.execute(update(table).where(table.c.lead_id == absorbed).values(lead_id=survivor))
        self._move_follow_ups(conn, absorbed, survivor)
        leads = schema.leads.c
        conn.execute(
            update(schema.leads)
            .where(or_(leads.lead_id == absorbed, leads.merged_into == absorbed))
            .values(merged_into=survivor, updated_at=now)
        )
        conn.execute(
            insert(schema.merges).values(
                merge_id=uuid.uuid4().hex,
                survivor_id=survivor,
                absorbed_id=absorbed,
                reason=reason,
                evidence_signal_id=evidence,
                created_at=now,
            )
        )

    def _update_incrementally(
        self,
        conn: Connection,
        roots: Sequence[str],
        absorbed: Sequence[str],
        find: Callable[[str], str],
        new_leads: set[str],
        signals: Sequence[ValidSignal],
        signal_rows: Sequence[dict[str, Any]],
        now: datetime,
    ) -> dict[str, tuple[int, int]]:
        """Folds a batch into the stored aggregates: O(batch), not O(lead history)."""
        before: dict[str, tuple[int, int]] = {}
        stored = self._stored_features(conn, [*roots, *absorbed], before)
        features: dict[str, Features] = {}
        stale: set[str] = set()
        for lead in [*roots, *absorbed]:
            found = stored.get(lead)
            if found is None and lead not in new_leads:
                stale.add(find(lead))
            features[lead] = found or Features(self.policy.half_life.total_seconds())
        for lead in absorbed:
            if find(lead) not in stale:
                features[find(lead)].merge(features[lead])
        for signal, row in zip(signals, signal_rows, strict=True):
            if row["lead_id"] not in stale:
                features[row["lead_id"]].add(_facts_of(signal))
        states = {r: features[r] for r in roots if r not in stale}
        known = {r: before[r] for r in states if r in before}
        before = self._write_states(conn, states, now, known)
        if stale:
            before |= self._refresh(conn, sorted(stale), now)
        return before

    def _stored_features(
        self,
        conn: Connection,
        lead_ids: Sequence[str],
        before: dict[str, tuple[int, int]] | None = None,
    ) -> dict[str, Features]:
        """Stored aggregates that are still valid for the current half-life; `before`, when
        given, gets each lead's (class, stage) from the same read."""
        c = schema.leads.c
        found: dict[str, Features] = {}
        half_life = self.policy.half_life.total_seconds()
        query = select(c.lead_id, c.features, c.lead_class, c.stage)
        for chunk in _chunks(sorted(set(lead_ids))):
            for lead_id, features, lead_class, stage in conn.execute(
                query.where(c.lead_id.in_(chunk))
            ).all():
                if before is not None:
                    before[lead_id] = (lead_class, stage)
                if features and features.get("half_life_s") == half_life:
                    found[lead_id] = Features.from_json(features)
        return found

    def _features_of(self, conn: Connection, lead_id: str) -> Features:
        """One lead's aggregates: stored, or recomputed from its signals."""
        return self._stored_features(conn, [lead_id]).get(lead_id) or Features.of(
            self._facts(conn, [lead_id]).get(lead_id, []), self.policy.half_life
        )

    def _refresh(
        self, conn: Connection, lead_ids: Sequence[str], now: datetime
    ) -> dict[str, tuple[int, int]]:
        """Recomputes leads from all their signals (splits, merges by hand, old rows)."""
        facts = self._facts(conn, lead_ids)
        return self._write_states(
            conn,
            {
                lead: Features.of(facts[lead], self.policy.half_life)
                for lead in lead_ids
                if lead in facts
            },
            now,
        )

    def _write_states(
        self,
        conn: Connection,
        states: dict[str, Features],
        now: datetime,
        before: dict[str, tuple[int, int]] | None = None,
    ) -> dict[str, tuple[int, int]]:
        """Stores aggregates and what they imply; returns each lead's (class, stage) before
        (read here unless the caller read them already)."""
        c = schema.leads.c
        if before is None:
            before = {}
            for chunk in _chunks(sorted(states)):
                rows = conn.execute(
                    select(c.lead_id, c.lead_class, c.stage).where(c.lead_id.in_(chunk))
                ).all()
                before.update({r.lead_id: (r.lead_class, r.stage) for r in rows})
        updates: list[dict[str, Any]] = []
        assessed: dict[str, Assessment] = {}
        model = self.active_model()
        prices = list_prices(self.policy)
        held = self._follow_ups_of(conn, states)
        for lead, features in states.items():
            contacted = held.contacted.get(lead)
            a = assessed[lead] = assess_features(
                features,
                now,
                self.policy,
                explain=False,
                model=model,
                contacted_at=contacted.timestamp() if contacted else 0.0,
            )
            worth = None
            if a.stage not in CLOSED_STAGES:
                worth = expected_value(a.score, a.qualification, a.product_interest, prices)
            updates.append(
                {
                    "target": lead,
                    "score": a.score,
                    "lead_class": a.lead_class,
                    "stage": a.stage,
                    "product_interest": a.product_interest,
                    "qualification": a.qualification,
                    "channels": a.channels,
                    "signal_count": features.signal_count,
                    "updated_at": now,
                    "last_signal_at": datetime.fromtimestamp(features.last_signal_at, UTC),
                    "features": features.to_json(),
                    "expected_value": worth.value if worth else None,
                }
            )
        if updates:
            _REFRESH(conn, updates)  # one executemany for the whole batch
            self._queue_webhooks(conn, updates, before, now)
            self._sync_follow_ups(conn, assessed, held, now)
        return before

    def _facts(self, conn: Connection, lead_ids: Sequence[str]) -> dict[str, list[SignalFacts]]:
        sig = schema.signals.c
        facts: dict[str, list[SignalFacts]] = {}
        for chunk in _chunks(list(lead_ids)):
            rows = conn.execute(
                select(
                    sig.lead_id,
                    sig.source,
                    sig.kind,
                    sig.name,
                    sig.value,
                    sig.numeric_value,
                    sig.confidence,
                    sig.occurred_at,
                    sig.identity,
                ).where(sig.lead_id.in_(chunk))
            )
            for r in rows:
                facts.setdefault(r.lead_id, []).append(
                    SignalFacts(
                        r.source,
                        r.kind,
                        r.name,
                        r.value,
                        r.numeric_value,
                        r.confidence,
                        utc(r.occurred_at),
                        tuple(r.identity),
                    )
                )
        return facts


_REFRESH = BulkWrite(
    update(schema.leads)
    .where(schema.leads.c.lead_id == bindparam("target"))
    .values(
        {
            name: bindparam(name)
            for name in (
                "score",
                "lead_class",
                "stage",
                "product_interest",
                "qualification",
                "channels",
                "signal_count",
                "updated_at",
                "last_signal_at",
            )
        }
    )
)


def _facts_of(s: ValidSignal) -> SignalFacts:
    return SignalFacts(
        s.source,
        s.kind,
        s.name,
        s.value,
        s.numeric_value,
        s.confidence,
        s.occurred_at,
        tuple(k.key_type for k in s.keys),
    )
