"""gRPC face of the leads service: validates requests, maps the store to messages."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import UTC
from typing import Any, TypeVar

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from percept.leads.analytics import Membership, campaign_report
from percept.leads.changes import Change
from percept.leads.drafting import Drafting
from percept.leads.follow_up_rpcs import FollowUpRpcs
from percept.leads.identity import InvalidIdentityError, keys_of
from percept.leads.listen import ChangeListener
from percept.leads.opportunity_rpcs import OpportunityRpcs
from percept.leads.scoring import CHANNEL_NAMES
from percept.leads.store import (
    IngestResult,
    InvalidPageTokenError,
    LeadConflictError,
    LeadFilter,
    LeadNotFoundError,
    LeadStore,
    LeadView,
)
from percept.leads.store.follow_up_sync import ACTION_WORDS
from percept.leads.watch import ChangeFeed, Event, WatcherOverflowError
from percept.leads.wire import lead_message, time_problem, timestamp
from percept.runtime.batching import BatchMetrics, MicroBatcher
from percept.runtime.interceptors import database_unreachable
from percept.runtime.streams import MalformedMessageError, refuse
from percept.v1 import common_pb2, leads_pb2, leads_pb2_grpc

log = logging.getLogger("percept.leads")
T = TypeVar("T")
MAX_SUGGESTIONS = 500

Context = grpc.aio.ServicerContext[Any, Any]
STREAM_CHUNK = 500  # signals committed together from a client stream
MAX_BATCH = 10_000
MAX_GROUP_SIGNALS = 10_000  # signals of several callers written in one transaction at most
SHOWN_ERRORS = 5


def _ack(result: IngestResult) -> leads_pb2.IngestAck:
    return leads_pb2.IngestAck(
        accepted=result.accepted,
        duplicates=result.duplicates,
        rejected=result.rejected,
        errors=[leads_pb2.SignalError(signal_id=i, message=m) for i, m in result.errors],
    )


def _view_message(view: LeadView) -> leads_pb2.Lead:
    lead = lead_message(view.row, view.keys)
    a = view.assessment
    lead.score, lead.lead_class, lead.stage = a.score, a.lead_class, a.stage
    lead.product_interest = a.product_interest
    if (f := view.follow_up) is not None:
        lead.next_follow_up_id = f["follow_up_id"]
        lead.next_follow_up_at.CopyFrom(timestamp(f["due_at"]))
        lead.next_follow_up_reason = f["reason"]
        lead.next_follow_up_action = f["action"]
        lead.next_follow_up_priority = f["priority"]
        lead.next_follow_up_rule = f["rule"]
        lead.next_follow_up_owner = f["owner"]
    for entry in view.timeline:
        if "follow_up_id" in entry:
            action = ACTION_WORDS.get(entry["action"], entry["action"])
            lead.timeline.append(
                leads_pb2.TimelineEntry(
                    occurred_at=timestamp(entry["occurred_at"]),
                    summary=f"follow-up {action} {entry['step']}: {entry['detail']}",
                    follow_up_id=entry["follow_up_id"],
                )
            )
            continue
        lead.timeline.append(
            leads_pb2.TimelineEntry(
                occurred_at=timestamp(entry["occurred_at"]),
                source=entry["source"],
                kind=entry["kind"],
                summary=_summary(entry),
                signal_id=entry["signal_id"],
            )
        )
    return lead


def _summary(entry: dict[str, Any]) -> str:
    kind = common_pb2.SignalKind.Name(entry["kind"]).removeprefix("SIGNAL_KIND_").lower()
    channel = CHANNEL_NAMES.get(entry["source"], "unknown channel")
    if entry["kind"] == common_pb2.SIGNAL_KIND_CHAT_MESSAGE:  # a chat a salesperson took over
        return f"{channel}: {entry['name']} wrote: {entry['value']}"
    what = " ".join(p for p in (entry["name"], entry["value"]) if p)
    return f"{channel}: {kind.replace('_', ' ')} {what}".strip()


def filter_problem(f: leads_pb2.LeadFilter) -> str:
    """What is wrong with a filter, or '' when it is valid."""
    if f.HasField("updated_since") and (
        problem := time_problem(f.updated_since, "filter.updated_since")
    ):
        return problem
    for name, values, enum in (
        ("classes", f.classes, leads_pb2.LeadClass),
        ("stages", f.stages, leads_pb2.LeadStage),
    ):
        unknown = sorted(set(values) - set(enum.values()))
        if unknown:  # an open enum: a number no class or stage has would match nothing
            return f"filter.{name}: {unknown[0]} is not one of {', '.join(enum.keys())}"
    if not (0 <= f.min_score <= 1 and 0 <= f.max_score <= 1):
        return "filter: min_score and max_score must be within [0, 1]"
    if f.max_score and f.min_score > f.max_score:
        return "filter: min_score is above max_score"
    return ""


def filter_from_proto(f: leads_pb2.LeadFilter) -> LeadFilter:
    return LeadFilter(
        classes=tuple(sorted(set(f.classes))),
        stages=tuple(sorted(set(f.stages))),
        product_interest=f.product_interest.strip(),
        min_score=f.min_score,
        max_score=f.max_score,
        updated_since=f.updated_since.ToDatetime(tzinfo=UTC)
        if f.HasField("updated_since")
        else None,
        segment=f.segment.strip(),
    )


class LeadsServicer(FollowUpRpcs, OpportunityRpcs, leads_pb2_grpc.LeadsServicer):
    def __init__(
        self,
        store: LeadStore,
        feed: ChangeFeed | None = None,
        erase_faces: Callable[[Sequence[str]], Awaitable[int]] | None = None,
        metrics: BatchMetrics | None = None,
        drafting: Drafting | None = None,
    ) -> None:
        self.store = store
        self.drafting = drafting  # suggested messages (SuggestMessage)
        self.feed = feed or ChangeFeed()
        self.erase_faces = erase_faces  # in the vision service; queued until it confirms
        self._loop: asyncio.AbstractEventLoop | None = None  # the gRPC loop, for the writer
        self.listener: ChangeListener | None = None  # every replica's changes (PostgreSQL)
        # Group commit: batches that arrive while one is written share the next transaction
        # (one fsync, each lead written once); a lone batch is written at once.
        self.writes: MicroBatcher[list[common_pb2.Signal], IngestResult] = MicroBatcher(
            self._write_together,
            max_batch=64,
            max_wait_s=0.0,
            size_of=len,
            max_size=MAX_GROUP_SIGNALS,
            # One caller's failing batch does not fail the others; an outage fails them all.
            alone_on_failure=lambda exc: not database_unreachable(exc),
            metrics=metrics,
            thread_name="leads-writer",
        )

    def start_listening(self, loop: asyncio.AbstractEventLoop) -> None:
        """On a shared PostgreSQL every replica's changes come through LISTEN (this
        replica's too, once, in commit order); a replica alone announces its own."""
        self._loop = loop
        if not self.store.shared:
            return

        def heard(changes: list[Change]) -> None:  # on the listening thread
            if self.feed.watchers:
                events = self._events(changes)
                loop.call_soon_threadsafe(self.feed.publish, events)

        def gap() -> None:
            loop.call_soon_threadsafe(self.feed.reset)

        self.listener = ChangeListener(self.store.listen_dsn, heard, gap)
        self.listener.start()

    def stop_listening(self) -> None:
        if self.listener is not None:
            self.listener.stop()

    async def _announce(self, changes: list[Change]) -> None:
        """Tells watchers about changed leads (skipped when nobody watches, and when the
        listener hears every replica's changes)."""
        if changes and self.feed.watchers and self.listener is None:
            self.feed.publish(await asyncio.to_thread(self._events, changes))

    def _events(self, changes: list[Change]) -> list[Event]:
        """What watchers are told of these changes: each lead as it is now (one read), with
        its segment (a watch's filter.segment). A FORGOTTEN lead (erased, purged, or merged
        into another) carries its id only."""
        forgotten = leads_pb2.LeadChange.CHANGE_TYPE_FORGOTTEN
        present = [c.lead_id for c in changes if c.type != forgotten]
        rows = {r["lead_id"]: r for r in self.store.rows(present)} if present else {}
        now = Timestamp()
        now.GetCurrentTime()
        events = []
        for change in changes:
            row = rows.get(change.lead_id) if change.type != forgotten else None
            lead = lead_message(row, row["keys"]) if row else leads_pb2.Lead(lead_id=change.lead_id)
            message = leads_pb2.LeadChange(
                type=change.type,
                lead=lead,
                changed_at=now,
                previous_class=change.previous_class,  # type: ignore[arg-type]
                previous_stage=change.previous_stage,  # type: ignore[arg-type]
            )
            events.append(Event(message, (row or {}).get("segment") or ""))
        return events

    def _write_together(self, batches: Sequence[list[common_pb2.Signal]]) -> list[IngestResult]:
        """Runs on the writer thread. Watchers hear of each commit once, in commit order, and
        before its callers are answered (the loop runs callbacks in the order they come)."""
        written = self.store.ingest_together(batches)
        heard_by_listener = self.listener is not None
        if written.changes and self.feed.watchers and self._loop and not heard_by_listener:
            try:
                events = self._events(written.changes)
            except Exception:  # committed all the same: the callers must hear that
                log.exception("lead changes not announced; watchers resync with ListLeads")
            else:
                self._loop.call_soon_threadsafe(self.feed.publish, events)
        return written.results

    async def _ingest(self, signals: list[common_pb2.Signal]) -> IngestResult:
        self._loop = asyncio.get_running_loop()
        return await self.writes.submit(signals)

    async def _answer(self, total: IngestResult, context: Context) -> leads_pb2.IngestAck:
        if total.rejected and not (total.accepted or total.duplicates):
            shown = "; ".join(m for _, m in total.errors[:SHOWN_ERRORS])
            more = total.rejected - SHOWN_ERRORS
            suffix = f" (and {more} more)" if more > 0 else ""
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, f"no signal accepted: {shown}{suffix}"
            )
        return _ack(total)

    async def IngestBatch(
        self, request: leads_pb2.IngestBatchRequest, context: Context
    ) -> leads_pb2.IngestAck:
        if not request.signals:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "signals: the batch is empty")
        if len(request.signals) > MAX_BATCH:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"signals: {len(request.signals)} in one batch; at most {MAX_BATCH}",
            )
        return await self._answer(await self._ingest(list(request.signals)), context)

    async def Ingest(
        self, request_iterator: AsyncIterator[common_pb2.Signal], context: Context
    ) -> leads_pb2.IngestAck:
        total = IngestResult()
        chunk: list[common_pb2.Signal] = []

        async def flush() -> None:
            part = await self._ingest(chunk)
            total.accepted += part.accepted
            total.duplicates += part.duplicates
            total.errors += part.errors
            chunk.clear()

        try:
            async for signal in request_iterator:
                chunk.append(signal)
                if len(chunk) >= STREAM_CHUNK:
                    await flush()
        except MalformedMessageError as exc:  # what came before it is stored (idempotently)
            await refuse(context, request_iterator, grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        if chunk:
            await flush()
        if not (total.accepted or total.duplicates or total.rejected):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "the stream carried no signals")
        return await self._answer(total, context)

    async def GetLead(self, request: leads_pb2.GetLeadRequest, context: Context) -> leads_pb2.Lead:
        lead_id = request.lead_id
        if not lead_id.strip() and request.HasField("key"):
            lead_id = await self._lead_of_key(request.key, context)
        view = await self._view(lead_id, context, timeline=request.include_timeline)
        return _view_message(view)

    async def ListLeads(
        self, request: leads_pb2.ListLeadsRequest, context: Context
    ) -> leads_pb2.ListLeadsResponse:
        problem = filter_problem(request.filter)
        if request.page_size < 0:
            problem = f"page_size: {request.page_size} is negative"
        if problem:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, problem)
        where = filter_from_proto(request.filter)
        try:
            rows, token = await asyncio.to_thread(
                self.store.page, where, request.page_size, request.page_token
            )
        except InvalidPageTokenError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        return leads_pb2.ListLeadsResponse(
            leads=[lead_message(r, r["keys"]) for r in rows], next_page_token=token
        )

    async def ExplainScore(
        self, request: leads_pb2.ExplainScoreRequest, context: Context
    ) -> leads_pb2.ScoreExplanation:
        view = await self._view(request.lead_id, context)
        a = view.assessment
        return leads_pb2.ScoreExplanation(
            lead_id=view.row["lead_id"],
            score=a.score,
            lead_class=a.lead_class,
            model=a.model,
            contributions=[
                leads_pb2.FeatureContribution(
                    feature=c.feature,
                    description=c.description,
                    value=c.value,
                    contribution=c.contribution,
                )
                for c in a.contributions
            ],
        )

    async def WatchLeads(
        self, request: leads_pb2.WatchLeadsRequest, context: Context
    ) -> AsyncIterator[leads_pb2.LeadChange]:
        problem = filter_problem(request.filter)
        if problem:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, problem)
        watcher = self.feed.subscribe(filter_from_proto(request.filter))
        try:  # from here a cancelled call unsubscribes, even while LISTEN is awaited
            if self.listener is not None:  # in place once LISTEN is: the headers promise it
                # The listener thread's Event, polled rather than waited for in a thread: in
                # an outage every watch waits, and reconnecting clients would hold the
                # executor's few threads.
                listening, deadline = self.listener.listening, time.monotonic() + 10
                while not listening.is_set() and time.monotonic() < deadline:  # noqa: ASYNC110
                    await asyncio.sleep(0.05)
            # The headers say the watch is in place: a client that awaits them and then
            # lists (ListLeads) misses no change between the two.
            await context.send_initial_metadata(())
            async for change in watcher.changes():
                yield change
        except WatcherOverflowError:
            await context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"watcher fell more than {self.feed.capacity} changes behind; "
                "catch up with ListLeads(updated_since) and watch again",
            )
        finally:
            self.feed.unsubscribe(watcher)

    async def MergeLeads(
        self, request: leads_pb2.MergeLeadsRequest, context: Context
    ) -> leads_pb2.Lead:
        ids = [i.strip() for i in request.lead_ids]
        suggestion = request.suggestion_id.strip()
        if suggestion:
            if ids:
                await context.abort(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    "give lead_ids or suggestion_id, not both (a suggestion names its leads)",
                )
            changes = await self._lifecycle(
                context, self.store.accept_suggestion, suggestion, request.reason
            )
            return await self._current(changes[0].lead_id, context)
        if len(ids) < 2 or not all(ids) or len(set(ids)) != len(ids):
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                "lead_ids: give at least two distinct lead ids (or a suggestion_id)",
            )
        changes = await self._lifecycle(context, self.store.merge_leads, ids, request.reason)
        return await self._current(changes[0].lead_id, context)

    async def ListMergeSuggestions(
        self, request: leads_pb2.ListMergeSuggestionsRequest, context: Context
    ) -> leads_pb2.ListMergeSuggestionsResponse:
        size = request.page_size or 50
        if not 1 <= size <= MAX_SUGGESTIONS:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"page_size: {request.page_size} is not from 1 to {MAX_SUGGESTIONS}",
            )
        rows = await self._store_call(
            context,
            self.store.merge_suggestions,
            request.lead_id.strip(),
            request.include_decided,
            size,
        )
        return leads_pb2.ListMergeSuggestionsResponse(
            suggestions=[_suggestion_message(r) for r in rows]
        )

    async def DismissMergeSuggestion(
        self, request: leads_pb2.DismissMergeSuggestionRequest, context: Context
    ) -> leads_pb2.MergeSuggestion:
        suggestion = request.suggestion_id.strip()
        if not suggestion:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "suggestion_id: required")
        row = await self._store_call(
            context, self.store.dismiss_suggestion, suggestion, request.reason.strip()
        )
        return _suggestion_message({**row, "lead_ids": [row["lead_a"], row["lead_b"]]})

    async def SplitLead(
        self, request: leads_pb2.SplitLeadRequest, context: Context
    ) -> leads_pb2.SplitLeadResponse:
        if not request.lead_id.strip() or not request.merge_id.strip():
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "lead_id and merge_id: required")
        changes = await self._lifecycle(
            context, self.store.split_lead, request.lead_id.strip(), request.merge_id.strip()
        )
        leads = [await self._current(c.lead_id, context) for c in changes]
        return leads_pb2.SplitLeadResponse(leads=leads)

    async def ForgetLead(
        self, request: leads_pb2.ForgetLeadRequest, context: Context
    ) -> leads_pb2.ForgetLeadResponse:
        if not request.lead_id.strip():
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "lead_id: required")
        erasure = await self._store_call(
            context, self.store.forget, request.lead_id.strip(), request.reason
        )
        log.info(
            "lead erased",
            extra={
                "audit_id": erasure.audit_id,
                "signals": erasure.signals,
                "leads": erasure.leads,
            },
        )
        await self._announce(erasure.changes)  # every erased lead id (NOTIFY: the store)
        # Face embeddings live in the vision service: erased there now if it answers, else
        # by the retrying task (the erasure itself queued them with the lead's deletion).
        embeddings = 0
        if erasure.face_identity_ids and self.erase_faces is not None:
            embeddings = await self.erase_faces(erasure.face_identity_ids)
        return leads_pb2.ForgetLeadResponse(
            audit_id=erasure.audit_id,
            signals_erased=erasure.signals,
            embeddings_erased=embeddings,
        )

    async def _store_call(self, context: Context, action: Callable[..., T], *args: Any) -> T:
        """A store call off the loop; a lead or suggestion that is not there is NOT_FOUND,
        one in the wrong state (already merged, decided) FAILED_PRECONDITION."""
        try:
            return await asyncio.to_thread(action, *args)
        except LeadNotFoundError as exc:
            await context.abort(grpc.StatusCode.NOT_FOUND, str(exc))
        except LeadConflictError as exc:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(exc))
        raise AssertionError("unreachable")

    async def _lifecycle(self, context: Context, action: Any, *args: Any) -> list[Change]:
        changes: list[Change] = await self._store_call(context, action, *args)
        await self._announce(changes)
        return changes

    async def _current(self, lead_id: str, context: Context) -> leads_pb2.Lead:
        return _view_message(await self._view(lead_id, context))

    async def _lead_of_key(self, key: common_pb2.IdentityKeys, context: Context) -> str:
        """The lead holding the first key given (a chat's session id...), or NOT_FOUND."""
        try:
            keys = keys_of(key, self.store.default_region)
        except InvalidIdentityError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"key: {exc}")
        if not keys:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "key: no identity key set")
        found = await asyncio.to_thread(self.store.lead_of_key, keys[0])
        if found is None:
            await context.abort(
                grpc.StatusCode.NOT_FOUND, f"no lead has the {keys[0].key_type} key given"
            )
        assert found is not None
        return found

    async def _view(self, lead_id: str, context: Context, *, timeline: bool = False) -> LeadView:
        """The lead (a merged lead's id finds its survivor), or INVALID_ARGUMENT / NOT_FOUND."""
        if not lead_id.strip():
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "lead_id: required")
        view = await asyncio.to_thread(self.store.get, lead_id.strip(), include_timeline=timeline)
        if view is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"lead {lead_id!r} not found")
        assert view is not None  # abort() raised otherwise
        return view

    async def ListSegments(
        self, request: leads_pb2.ListSegmentsRequest, context: Context
    ) -> leads_pb2.ListSegmentsResponse:
        rows = await asyncio.to_thread(self.store.list_segments)
        return leads_pb2.ListSegmentsResponse(
            segments=[
                leads_pb2.Segment(
                    segment_id=r["segment_id"],
                    name=r["name"],
                    size=r["size"],
                    dominant_features=r["dominant_features"],
                    won=r["won"],
                    lost=r["lost"],
                    conversion_rate=r["won"] / r["size"] if r["size"] else 0.0,
                )
                for r in rows
            ]
        )

    async def CampaignReport(
        self, request: leads_pb2.CampaignReportRequest, context: Context
    ) -> leads_pb2.CampaignReportResponse:
        ids = [i.strip() for i in request.campaign_ids]
        if not all(ids):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "campaign_ids: empty id")
        if request.HasField("since") and (problem := time_problem(request.since, "since")):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, problem)
        since = request.since.ToDatetime(tzinfo=UTC) if request.HasField("since") else None
        rows = await asyncio.to_thread(self.store.campaign_members, ids, since)
        stats = campaign_report([Membership(*row) for row in rows])
        return leads_pb2.CampaignReportResponse(
            stats=[
                leads_pb2.CampaignStats(
                    campaign_id=x.campaign_id,
                    segment=x.segment,
                    leads=x.leads,
                    won=x.won,
                    conversion_rate=x.rate,
                    conversion_ci_low=x.ci_low,
                    conversion_ci_high=x.ci_high,
                    uplift=x.uplift,
                    has_control=x.has_control,
                )
                for x in stats
            ]
        )


def _suggestion_message(row: dict[str, Any]) -> leads_pb2.MergeSuggestion:
    return leads_pb2.MergeSuggestion(
        suggestion_id=row["suggestion_id"],
        lead_ids=row["lead_ids"],
        key_type=row["key_type"],
        key_value=row["key_value"],
        evidence_signal_id=row["evidence_signal_id"],
        reason=row["reason"],
        created_at=timestamp(row["created_at"]),
        decision=row["decision"] or "",
        decision_reason=row["decision_reason"] or "",
        decided_at=timestamp(row["decided_at"]) if row["decided_at"] is not None else None,
    )
