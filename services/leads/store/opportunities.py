"""What opportunity mining reads: open leads by expected value, won leads' baskets."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from sqlalchemy import select

from percept.leads import schema
from percept.leads.store.base import MAX_PAGE_SIZE
from percept.leads.store.queries import QueriesMixin
from percept.v1 import common_pb2, leads_pb2


class OpportunitiesMixin(QueriesMixin):
    def top_opportunities(self, product: str, limit: int) -> list[dict[str, Any]]:
        """Open leads of highest expected value (kept by every write), with their keys."""
        c = schema.leads.c
        query = (
            select(schema.leads)
            .where(c.merged_into.is_(None), c.expected_value.is_not(None))
            .order_by(c.expected_value.desc(), c.lead_id)
            .limit(min(limit, MAX_PAGE_SIZE))
        )
        if product:
            query = query.where(c.product_interest == product.lower())
        with self.engine.connect() as conn:
            rows = [dict(r) for r in conn.execute(query).mappings()]
            keys = self._keys_of(conn, [r["lead_id"] for r in rows])
        for row in rows:
            row["keys"] = keys.get(row["lead_id"], [])
        return rows

    def won_baskets(self, products: Collection[str]) -> list[frozenset[str]]:
        """What each won lead bought: the products named when it was won, else the
        catalog products it showed interest in."""
        c, sig = schema.leads.c, schema.signals.c
        won = leads_pb2.LEAD_STAGE_WON
        with self.engine.connect() as conn:
            interests = {
                lead_id: frozenset(p for p in (features or {}).get("interest", {}) if p in products)
                for lead_id, features in conn.execute(
                    select(c.lead_id, c.features).where(c.stage == won, c.merged_into.is_(None))
                )
            }
            named: dict[str, frozenset[str]] = {}
            rows = conn.execute(
                select(sig.lead_id, sig.attributes)
                .join(schema.leads, c.lead_id == sig.lead_id)
                .where(
                    sig.kind == common_pb2.SIGNAL_KIND_OUTCOME,
                    sig.value == "won",
                    c.stage == won,
                )
                .order_by(sig.occurred_at)
            )
            for lead_id, attributes in rows:
                listed = (attributes or {}).get("products", "")
                if listed:
                    named[lead_id] = frozenset(p for p in listed.split(",") if p in products)
        return [named.get(lead, basket) for lead, basket in interests.items()]
