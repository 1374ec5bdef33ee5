"""What training, segmentation and campaign reports read and write."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
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
    Features,
)
from percept.leads.store.base import (
    _chunks,
)
from percept.leads.store.state import StateMixin
from percept.v1 import leads_pb2

log = logging.getLogger("percept.leads.store")


class AnalyticsMixin(StateMixin):
    """What training, segmentation and campaign reports read and write."""

    def active_features(self) -> tuple[list[str], list[Features]]:
        """Every lead that was not merged away, with its aggregates."""
        c = schema.leads.c
        with self.engine.connect() as conn:
            ids = list(
                conn.scalars(select(c.lead_id).where(c.merged_into.is_(None)).order_by(c.lead_id))
            )
            stored = self._stored_features(conn, ids)
            missing = [i for i in ids if i not in stored]
            facts = self._facts(conn, missing) if missing else {}
        half_life = self.policy.half_life
        features = [stored.get(i) or Features.of(facts.get(i, []), half_life) for i in ids]
        return ids, features

    def save_segments(self, results: Sequence[Any]) -> None:
        """Replaces the segments and every lead's segment with a new clustering."""
        now = self.clock()
        leads = schema.leads.c

        def work(conn: Connection) -> None:
            conn.execute(update(schema.leads).values(segment=None))
            conn.execute(schema.segments.delete())
            for r in results:
                conn.execute(
                    insert(schema.segments).values(
                        segment_id=r.segment_id,
                        name=r.name,
                        size=len(r.lead_ids),
                        dominant_features=r.dominant_features,
                        created_at=now,
                    )
                )
                for chunk in _chunks(list(r.lead_ids)):
                    conn.execute(
                        update(schema.leads)
                        .where(leads.lead_id.in_(chunk))
                        .values(segment=r.segment_id)
                    )

        self._write(work)

    def list_segments(self) -> list[dict[str, Any]]:
        """The segments, each with how many of its leads were won and lost so far."""
        s, leads = schema.segments.c, schema.leads.c
        with self.engine.connect() as conn:
            rows = conn.execute(select(schema.segments).order_by(s.size.desc(), s.name)).mappings()
            found = [dict(r) for r in rows]
            outcomes = conn.execute(
                select(leads.segment, leads.stage, func.count())
                .where(
                    leads.segment.is_not(None),
                    leads.merged_into.is_(None),  # a merged-away lead is its survivor's
                    leads.stage.in_([leads_pb2.LEAD_STAGE_WON, leads_pb2.LEAD_STAGE_LOST]),
                )
                .group_by(leads.segment, leads.stage)
            ).all()
        counted = {(segment, stage): n for segment, stage, n in outcomes}
        for row in found:
            row["won"] = counted.get((row["segment_id"], leads_pb2.LEAD_STAGE_WON), 0)
            row["lost"] = counted.get((row["segment_id"], leads_pb2.LEAD_STAGE_LOST), 0)
        return found

    def campaign_members(
        self, campaign_ids: Sequence[str], since: datetime | None
    ) -> list[tuple[str, str, bool, bool, str]]:
        """(lead, campaign, in control group, won, segment name) for every campaign signal."""
        sig, leads, seg = schema.signals.c, schema.leads.c, schema.segments.c
        query = (
            select(sig.lead_id, sig.campaign_id, sig.attributes, leads.stage, seg.name)
            .join(schema.leads, leads.lead_id == sig.lead_id)
            .outerjoin(schema.segments, seg.segment_id == leads.segment)
            .where(sig.campaign_id != "")
        )
        if campaign_ids:
            query = query.where(sig.campaign_id.in_(list(campaign_ids)))
        if since is not None:
            query = query.where(sig.occurred_at >= since)
        with self.engine.connect() as conn:
            return [
                (
                    r.lead_id,
                    r.campaign_id,
                    (r.attributes or {}).get("campaign_group") == "control",
                    r.stage == leads_pb2.LEAD_STAGE_WON,
                    r.name or "",
                )
                for r in conn.execute(query)
            ]
