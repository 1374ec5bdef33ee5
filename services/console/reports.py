"""The console's reports (`/reports`): campaigns, segments, the follow-up backlog and
opportunities as JSON for the page's charts, or as CSV (`?format=csv`)."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from percept.console.api import ApiError, call_backend, handled
from percept.leads.identity import KEY_FIELDS
from percept.leads.scoring import class_name
from percept.v1 import leads_pb2

if TYPE_CHECKING:
    from percept.console.gateway import Backends

CAMPAIGN_COLUMNS = (
    "campaign_id",
    "segment",
    "leads",
    "won",
    "conversion_rate",
    "ci_low",
    "ci_high",
    "has_control",
    "control_rate",
    "uplift",
)
SEGMENT_COLUMNS = ("segment_id", "name", "size", "won", "lost", "conversion_rate", "features")
BACKLOG_COLUMNS = ("owner", "action", "overdue", "due_within_day", "later")
OPPORTUNITY_COLUMNS = (
    "lead_id",
    "lead",
    "class",
    "score",
    "product_interest",
    "expected_value",
    "reason",
    "cross_sell",
)


def _answer(
    request: Request, name: str, rows: list[dict[str, Any]], columns: Sequence[str]
) -> Response:
    """JSON for the page; CSV with `?format=csv` (a spreadsheet opens it as is)."""
    wanted = request.query_params.get("format", "json")
    if wanted == "json":
        return JSONResponse({name: rows})
    if wanted != "csv":
        raise ApiError(400, f"format: {wanted!r} is not json or csv")
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(columns)
    for row in rows:
        writer.writerow(
            ["; ".join(v) if isinstance(v, list) else v for v in (row[c] for c in columns)]
        )
    return Response(
        out.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}.csv"'},
    )


class ReportsApi:
    def __init__(self, backends: Backends) -> None:
        self.backends = backends

    def routes(self) -> list[Route]:
        return [
            Route("/api/reports/campaigns", handled(self.campaigns)),
            Route("/api/reports/segments", handled(self.segments)),
            Route("/api/reports/backlog", handled(self.backlog)),
            Route("/api/reports/opportunities", handled(self.opportunities)),
        ]

    async def campaigns(self, request: Request) -> Response:
        report = await call_backend(
            self.backends.leads.CampaignReport, leads_pb2.CampaignReportRequest(), self.backends
        )
        rows = [
            {
                "campaign_id": s.campaign_id,
                "segment": s.segment,
                "leads": s.leads,
                "won": s.won,
                "conversion_rate": round(s.conversion_rate, 4),
                "ci_low": round(s.conversion_ci_low, 4),
                "ci_high": round(s.conversion_ci_high, 4),
                "has_control": s.has_control,
                "control_rate": round(s.conversion_rate - s.uplift, 4) if s.has_control else None,
                "uplift": round(s.uplift, 4) if s.has_control else None,
            }
            for s in report.stats
        ]
        return _answer(request, "campaigns", rows, CAMPAIGN_COLUMNS)

    async def segments(self, request: Request) -> Response:
        listed = await call_backend(
            self.backends.leads.ListSegments, leads_pb2.ListSegmentsRequest(), self.backends
        )
        rows = [
            {
                "segment_id": s.segment_id,
                "name": s.name,
                "size": s.size,
                "won": s.won,
                "lost": s.lost,
                "conversion_rate": round(s.conversion_rate, 4),
                "features": list(s.dominant_features),
            }
            for s in listed.segments
        ]
        return _answer(request, "segments", rows, SEGMENT_COLUMNS)

    async def backlog(self, request: Request) -> Response:
        found = await call_backend(
            self.backends.leads.FollowUpBacklog, leads_pb2.FollowUpBacklogRequest(), self.backends
        )
        rows = [
            {
                "owner": r.owner,
                "action": r.action,
                "overdue": r.overdue,
                "due_within_day": r.due_within_day,
                "later": r.later,
            }
            for r in found.rows
        ]
        return _answer(request, "backlog", rows, BACKLOG_COLUMNS)

    async def opportunities(self, request: Request) -> Response:
        found = await call_backend(
            self.backends.leads.ListOpportunities,
            leads_pb2.ListOpportunitiesRequest(
                product_interest=request.query_params.get("product", ""), page_size=100
            ),
            self.backends,
        )
        rows = []
        for o in found.opportunities:
            identity = {k: getattr(o.lead.identity, k) for k in KEY_FIELDS}
            rows.append(
                {
                    "lead_id": o.lead.lead_id,
                    "lead": identity["email"] or identity["phone"] or o.lead.lead_id[:8],
                    "class": class_name(o.lead.lead_class),
                    "score": round(o.lead.score, 4),
                    "product_interest": o.lead.product_interest,
                    "expected_value": round(o.expected_value, 2),
                    "reason": o.reason,
                    "cross_sell": [a.reason for a in o.cross_sell],
                }
            )
        return _answer(request, "opportunities", rows, OPPORTUNITY_COLUMNS)
