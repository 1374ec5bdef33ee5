"""ListOpportunities: open leads by expected value, with what else to offer each; a
part of the leads servicer."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from percept.leads.follow_up_rpcs import check_page_size
from percept.leads.opportunities import Association, associations, cross_sell, expected_value
from percept.leads.scoring import list_prices
from percept.leads.store import LeadStore
from percept.leads.wire import lead_message
from percept.understanding.entities import catalog
from percept.v1 import leads_pb2

ASSOCIATIONS_TTL_S = 300.0  # won leads' baskets are mined again at most this often
DEFAULT_PAGE = 50


def association_message(rule: Association) -> leads_pb2.ProductAssociation:
    return leads_pb2.ProductAssociation(
        given=rule.given,
        then=rule.then,
        support=rule.support,
        confidence=rule.confidence,
        lift=rule.lift,
        leads=rule.leads,
        reason=rule.reason,
    )


class OpportunityRpcs:
    """Needs the servicer's store; keeps the mined associations for ASSOCIATIONS_TTL_S."""

    store: LeadStore
    _mined: tuple[float, list[Association], int] | None = None

    async def _associations(self) -> tuple[list[Association], int]:
        if self._mined is None or time.monotonic() - self._mined[0] > ASSOCIATIONS_TTL_S:
            products = set(list_prices(self.store.policy)) | set(catalog())
            baskets = await asyncio.to_thread(self.store.won_baskets, products)
            self._mined = (time.monotonic(), associations(baskets), len(baskets))
        return self._mined[1], self._mined[2]

    async def ListOpportunities(
        self, request: leads_pb2.ListOpportunitiesRequest, context: Any
    ) -> leads_pb2.ListOpportunitiesResponse:
        await check_page_size(request.page_size, context)
        rows = await asyncio.to_thread(
            self.store.top_opportunities,
            request.product_interest.strip(),
            request.page_size or DEFAULT_PAGE,
        )
        rules, won = await self._associations()
        prices = list_prices(self.store.policy)
        found = []
        for row in rows:
            worth = expected_value(
                row["score"], row["qualification"], row["product_interest"], prices
            )
            interests = (row["features"] or {}).get("interest", {}) or {row["product_interest"]: 0}
            found.append(
                leads_pb2.Opportunity(
                    lead=lead_message(row, row["keys"]),
                    expected_value=row["expected_value"],
                    reason=worth.reason if worth else "",
                    cross_sell=[association_message(r) for r in cross_sell(interests, rules)],
                )
            )
        return leads_pb2.ListOpportunitiesResponse(
            opportunities=found,
            associations=[association_message(r) for r in rules],
            won_leads=won,
        )
