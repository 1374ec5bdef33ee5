"""The console's follow-up queue: a salesperson's day (`/today`) and the backlog as CSV.

`GET /api/follow-ups` lists (owner, unassigned, due_before, include_closed, page);
`POST /api/follow-ups/{id}/complete` ({outcome, note}) and `/snooze` ({until, note})
need the `respond` scope, as answering chats does; `GET /api/follow-ups/{id}/message`
is its suggested message; `GET /api/follow-ups.csv` is every open follow-up, soonest
due first.
"""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from google.protobuf.timestamp_pb2 import Timestamp
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from percept.console.api import (
    ApiError,
    call_backend,
    handled,
    json_body,
    page_size,
    person_name,
)
from percept.console.messages import time_json
from percept.leads.identity import KEY_FIELDS
from percept.leads.scoring import class_name, stage_name
from percept.v1 import leads_pb2

if TYPE_CHECKING:
    from percept.console.gateway import Backends

MAX_NOTE = 4000
CSV_PAGE = 500
CSV_COLUMNS = (
    "follow_up_id",
    "due_at",
    "overdue",
    "priority",
    "action",
    "owner",
    "reason",
    "lead_id",
    "lead",
    "class",
    "score",
    "stage",
    "product_interest",
    "rule",
    "created_at",
)


def follow_up_json(f: leads_pb2.FollowUp) -> dict[str, Any]:
    identity = {k: getattr(f.identity, k) for k in KEY_FIELDS if getattr(f.identity, k)}
    return {
        "follow_up_id": f.follow_up_id,
        "lead_id": f.lead_id,
        "lead": identity.get("email") or identity.get("phone") or f"lead {f.lead_id[:8]}",
        "identity": identity,
        "rule": f.rule,
        "action": f.action,
        "priority": f.priority,
        "reason": f.reason,
        "owner": f.owner,
        "status": f.status,
        "outcome": f.outcome,
        "note": f.note,
        "overdue": f.overdue,
        "created_at": time_json(f.created_at),
        "due_at": time_json(f.due_at),
        "closed_at": time_json(f.closed_at),
        "snoozed_until": time_json(f.snoozed_until),
        "class": class_name(f.lead_class),
        "score": round(f.score, 4),
        "stage": stage_name(f.stage),
        "product_interest": f.product_interest,
    }


def _when(value: str, name: str) -> Timestamp:
    """An ISO 8601 time with its offset (the browser's toISOString) as a Timestamp."""
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ApiError(400, f"{name}: {value!r} is not an ISO 8601 time") from None
    if parsed.tzinfo is None:
        raise ApiError(400, f"{name}: {value!r} has no time zone (add Z or +hh:mm)")
    stamp = Timestamp()
    try:
        stamp.FromDatetime(parsed.astimezone(UTC))
    except (OverflowError, ValueError):  # past year 9999 once in UTC
        raise ApiError(400, f"{name}: {value!r} is out of range") from None
    return stamp


def _note(body: dict[str, Any]) -> str:
    note = body.get("note", "")
    if not isinstance(note, str) or len(note) > MAX_NOTE:
        raise ApiError(400, f"note: text of at most {MAX_NOTE} characters")
    return note


class FollowUpsApi:
    def __init__(self, backends: Backends) -> None:
        self.backends = backends

    def routes(self) -> list[Route]:
        return [
            Route("/api/follow-ups", handled(self.list)),
            Route("/api/follow-ups.csv", handled(self.csv)),
            Route(
                "/api/follow-ups/{follow_up_id}/complete", handled(self.complete), methods=["POST"]
            ),
            Route("/api/follow-ups/{follow_up_id}/snooze", handled(self.snooze), methods=["POST"]),
            Route("/api/follow-ups/{follow_up_id}/message", handled(self.message)),
        ]

    async def list(self, request: Request) -> Response:
        q = request.query_params
        ask = leads_pb2.ListFollowUpsRequest(
            owner=person_name(q.get("owner", ""), "owner"),
            unassigned=q.get("unassigned", "") in ("1", "true"),
            include_closed=q.get("include_closed", "") in ("1", "true"),
            page_token=q.get("page", ""),
            lead_id=q.get("lead_id", ""),
        )
        ask.page_size = page_size(request)
        if q.get("due_before"):
            ask.due_before.CopyFrom(_when(q["due_before"], "due_before"))
        page = await call_backend(self.backends.leads.ListFollowUps, ask, self.backends)
        return JSONResponse(
            {
                "follow_ups": [follow_up_json(f) for f in page.follow_ups],
                "next_page": page.next_page_token,
            }
        )

    async def csv(self, request: Request) -> Response:
        """Every open follow-up (or one owner's), read page by page as it is sent."""
        owner = person_name(request.query_params.get("owner", ""), "owner")
        first = await self._page(owner, "")  # a bad request fails before the download starts

        async def rows() -> AsyncIterator[str]:
            page = first
            out = io.StringIO()
            writer = csv.writer(out)
            writer.writerow(CSV_COLUMNS)
            while True:
                for f in page.follow_ups:
                    row = follow_up_json(f)
                    writer.writerow([row[c] for c in CSV_COLUMNS])
                yield out.getvalue()
                out.seek(0)
                out.truncate()
                if not page.next_page_token:
                    return
                page = await self._page(owner, page.next_page_token)

        return StreamingResponse(
            rows(),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": 'attachment; filename="follow-ups.csv"'},
        )

    async def _page(self, owner: str, token: str) -> leads_pb2.ListFollowUpsResponse:
        ask = leads_pb2.ListFollowUpsRequest(owner=owner, page_size=CSV_PAGE, page_token=token)
        page: leads_pb2.ListFollowUpsResponse = await call_backend(
            self.backends.leads.ListFollowUps, ask, self.backends
        )
        return page

    async def message(self, request: Request) -> Response:
        """The suggested message (`channel`, `language` to ask for another)."""
        q = request.query_params
        drafted = await call_backend(
            self.backends.leads.SuggestMessage,
            leads_pb2.SuggestMessageRequest(
                follow_up_id=request.path_params["follow_up_id"],
                channel=q.get("channel", ""),
                language=q.get("language", ""),
            ),
            self.backends,
        )
        return JSONResponse(
            {
                "channel": drafted.channel,
                "language": drafted.language,
                "subject": drafted.subject,
                "text": drafted.text,
                "source": drafted.source,
                "template": drafted.template,
                "left_out": list(drafted.left_out),
            }
        )

    async def complete(self, request: Request) -> Response:
        body = await json_body(request)
        outcome = body.get("outcome", "")
        if not isinstance(outcome, str):
            raise ApiError(400, "outcome: won, lost, or empty")
        done = await call_backend(
            self.backends.leads.CompleteFollowUp,
            leads_pb2.CompleteFollowUpRequest(
                follow_up_id=request.path_params["follow_up_id"],
                outcome=outcome,
                note=_note(body),
            ),
            self.backends,
        )
        return JSONResponse(follow_up_json(done))

    async def snooze(self, request: Request) -> Response:
        body = await json_body(request)
        until = body.get("until")
        if not isinstance(until, str):
            raise ApiError(400, "until: required, an ISO 8601 time")
        snoozed = await call_backend(
            self.backends.leads.SnoozeFollowUp,
            leads_pb2.SnoozeFollowUpRequest(
                follow_up_id=request.path_params["follow_up_id"],
                until=_when(until, "until"),
                note=_note(body),
            ),
            self.backends,
        )
        return JSONResponse(follow_up_json(snoozed))
