"""The follow-up queue's RPCs (ListFollowUps, CompleteFollowUp, SnoozeFollowUp) and
its message; a part of the leads servicer."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from percept.leads.changes import Change
from percept.leads.drafting import CHANNELS, Drafting, LeadWords
from percept.leads.identity import to_proto
from percept.leads.store import (
    FollowUpQuery,
    InvalidPageTokenError,
    LeadStore,
    utc,
)
from percept.leads.store.follow_ups import OUTCOMES
from percept.leads.wire import time_problem, timestamp
from percept.nlp.language_tags import LanguageTagError, check_tag
from percept.understanding.entities import catalog
from percept.v1 import leads_pb2

MAX_NOTE = 4000
MAX_PAGE = 500


def follow_up_message(row: dict[str, Any], now: datetime) -> leads_pb2.FollowUp:
    due = utc(row["due_at"])
    message = leads_pb2.FollowUp(
        follow_up_id=row["follow_up_id"],
        lead_id=row["lead_id"],
        rule=row["rule"],
        action=row["action"],
        priority=row["priority"],
        reason=row["reason"],
        owner=row["owner"],
        created_at=timestamp(row["created_at"]),
        due_at=timestamp(due),
        status=row["status"],
        outcome=row["outcome"] or "",
        note=row["note"] or "",
        overdue=row["status"] == "open" and due <= now,
        lead_class=row["lead_class"],
        score=row["score"],
        stage=row["stage"],
        product_interest=row["product_interest"],
        identity=to_proto(list(row["keys"])),
    )
    if row["closed_at"] is not None:
        message.closed_at.CopyFrom(timestamp(row["closed_at"]))
    if row["snoozed_until"] is not None:
        message.snoozed_until.CopyFrom(timestamp(row["snoozed_until"]))
    return message


class FollowUpRpcs:
    """Needs the servicer's store, `_store_call` (NOT_FOUND / FAILED_PRECONDITION),
    `_announce` (watchers hear of a lead a completion changed) and `drafting`."""

    store: LeadStore
    drafting: Drafting | None

    async def _store_call(self, context: Any, action: Any, *args: Any) -> Any: ...

    async def _announce(self, changes: list[Change]) -> None: ...

    async def ListFollowUps(
        self, request: leads_pb2.ListFollowUpsRequest, context: Any
    ) -> leads_pb2.ListFollowUpsResponse:
        await check_page_size(request.page_size, context)
        due_before = None
        if request.HasField("due_before"):
            due_before = await _time(request.due_before, "due_before", context)
        if request.unassigned and request.owner.strip():
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                "give owner or unassigned, not both (unassigned ones have no owner)",
            )
        query = FollowUpQuery(
            unassigned=request.unassigned,
            owner=request.owner.strip(),
            due_before=due_before,
            lead_id=request.lead_id.strip(),
            include_closed=request.include_closed,
        )
        try:
            rows, token = await self._store_call(
                context, self.store.follow_ups, query, request.page_size, request.page_token
            )
        except InvalidPageTokenError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        now = self.store.clock()
        return leads_pb2.ListFollowUpsResponse(
            follow_ups=[follow_up_message(r, now) for r in rows], next_page_token=token
        )

    async def CompleteFollowUp(
        self, request: leads_pb2.CompleteFollowUpRequest, context: Any
    ) -> leads_pb2.FollowUp:
        follow_up_id = await _required_id(request.follow_up_id, context)
        outcome = request.outcome.strip().lower()
        if outcome not in (*OUTCOMES, ""):
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"outcome: {request.outcome!r} is neither won nor lost "
                "(leave it empty when the contact decided nothing)",
            )
        note = await _note(request.note, context)
        products = [p.strip().lower() for p in request.products]
        if products and outcome != "won":
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, "products: only a won follow-up bought any"
            )
        unknown = [p for p in products if p not in catalog()]
        if unknown:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"products: {unknown[0]!r} is not a catalog product "
                f"({', '.join(sorted(catalog()))})",
            )
        row, changes = await self._store_call(
            context, self.store.complete_follow_up, follow_up_id, outcome, note, products
        )
        await self._announce(changes)
        return follow_up_message(row, self.store.clock())

    async def SnoozeFollowUp(
        self, request: leads_pb2.SnoozeFollowUpRequest, context: Any
    ) -> leads_pb2.FollowUp:
        follow_up_id = await _required_id(request.follow_up_id, context)
        if not request.HasField("until"):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "until: required")
        until = await _time(request.until, "until", context)
        if until <= self.store.clock():
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, f"until: {until.isoformat()} is not in the future"
            )
        note = await _note(request.note, context)
        row = await self._store_call(
            context, self.store.snooze_follow_up, follow_up_id, until, note
        )
        return follow_up_message(row, self.store.clock())

    async def FollowUpBacklog(
        self, request: leads_pb2.FollowUpBacklogRequest, context: Any
    ) -> leads_pb2.FollowUpBacklogResponse:
        rows = await asyncio.to_thread(self.store.backlog)
        return leads_pb2.FollowUpBacklogResponse(
            rows=[
                leads_pb2.BacklogRow(
                    owner=owner, action=action, overdue=late, due_within_day=soon, later=later
                )
                for owner, action, late, soon, later in rows
            ],
            as_of=timestamp(self.store.clock()),
        )

    async def SuggestMessage(
        self, request: leads_pb2.SuggestMessageRequest, context: Any
    ) -> leads_pb2.SuggestedMessage:
        follow_up_id = await _required_id(request.follow_up_id, context)
        channel = request.channel.strip().lower()
        if channel and channel not in CHANNELS:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"channel: {request.channel!r} is not one of {', '.join(CHANNELS)}",
            )
        language = request.language.strip()
        if language:
            try:
                language = check_tag(language)
            except LanguageTagError as exc:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"language: {exc}")
        if self.drafting is None:
            await context.abort(grpc.StatusCode.UNIMPLEMENTED, "this server drafts no messages")
        assert self.drafting is not None
        row = await self._store_call(context, self.store.follow_up, follow_up_id)
        language = language or await asyncio.to_thread(self.store.lead_language, row["lead_id"])
        lead = LeadWords(
            slots=row["qualification"],
            product=row["product_interest"],
            owner=row["owner"],
            language=language or "en",
            keys={k.key_type: k.value for k in row["keys"]},
        )
        drafted = await self.drafting.draft(row["action"], lead, channel)
        if drafted is None:
            await context.abort(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"no template in messages.yaml has the action {row['action']!r}",
            )
        assert drafted is not None
        return leads_pb2.SuggestedMessage(
            follow_up_id=follow_up_id,
            channel=drafted.channel,
            language=drafted.language,
            subject=drafted.subject,
            text=drafted.text,
            source=drafted.source,
            template=drafted.template,
            left_out=drafted.left_out,
        )


async def check_page_size(size: int, context: Any) -> None:
    """0 (the server's default) to MAX_PAGE, else INVALID_ARGUMENT."""
    if not 0 <= size <= MAX_PAGE:
        await context.abort(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"page_size: {size} is not from 0 (the default) to {MAX_PAGE}",
        )


async def _required_id(value: str, context: Any) -> str:
    if not value.strip():
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "follow_up_id: required")
    return value.strip()


async def _note(value: str, context: Any) -> str:
    if len(value) > MAX_NOTE:
        await context.abort(
            grpc.StatusCode.INVALID_ARGUMENT, f"note: longer than {MAX_NOTE} characters"
        )
    return value.strip()


async def _time(stamp: Timestamp, name: str, context: Any) -> datetime:
    if problem := time_problem(stamp, name):
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, problem)
    return stamp.ToDatetime(tzinfo=UTC)
