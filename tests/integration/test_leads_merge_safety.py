"""Merges that do not join strangers: a shared phone between two people with different
e-mails is a suggestion, not a merge; a switchboard stops linking; a person decides."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
import pytest_asyncio
from leads_harness import Leads
from leads_signals import signal
from local_servers import local_settings

from percept.leads import schema
from percept.leads.store import LeadStore
from percept.runtime.settings import SettingsError, load_settings
from percept.v1 import common_pb2 as c
from percept.v1 import leads_pb2 as lp
from percept.v1 import leads_pb2_grpc

pytestmark = pytest.mark.slow
SWITCHBOARD = "+14155550100"


@pytest_asyncio.fixture
async def stub(database_url: str, tmp_path: Path) -> AsyncIterator[leads_pb2_grpc.LeadsAsyncStub]:
    leads = Leads(local_settings(tmp_path / "leads", database_url=database_url))
    yield await leads.start()
    await leads.stop()


def caller(email: str, minutes: float, phone: str = SWITCHBOARD) -> c.Signal:
    return signal(
        source=c.SOURCE_CHAT,
        kind=c.SIGNAL_KIND_CONTACT_CAPTURED,
        name="",
        minutes=minutes,
        phone=phone,
        email=email,
    )


async def all_leads(stub: leads_pb2_grpc.LeadsAsyncStub) -> list[lp.Lead]:
    return list((await stub.ListLeads(lp.ListLeadsRequest(page_size=500))).leads)


async def code_of(call: object) -> tuple[grpc.StatusCode, str]:
    try:
        await call  # type: ignore[misc]
    except grpc.aio.AioRpcError as exc:
        return exc.code(), exc.details() or ""
    raise AssertionError("the call succeeded")


async def test_two_people_sharing_a_phone_get_a_suggestion_not_a_merge(
    stub: leads_pb2_grpc.LeadsAsyncStub, database_url: str
) -> None:
    await stub.IngestBatch(lp.IngestBatchRequest(signals=[caller("ana@example.com", 0)]))
    await stub.IngestBatch(lp.IngestBatchRequest(signals=[caller("ben@example.com", 5)]))
    leads = await all_leads(stub)
    assert sorted(x.identity.email for x in leads) == ["ana@example.com", "ben@example.com"]
    ana = next(x for x in leads if x.identity.email == "ana@example.com")
    ben = next(x for x in leads if x.identity.email == "ben@example.com")
    (suggestion,) = (
        await stub.ListMergeSuggestions(lp.ListMergeSuggestionsRequest(lead_id=ben.lead_id))
    ).suggestions
    assert sorted(suggestion.lead_ids) == sorted([ana.lead_id, ben.lead_id])
    assert (suggestion.key_type, suggestion.key_value) == ("phone", SWITCHBOARD)
    assert suggestion.evidence_signal_id and suggestion.decision == ""
    # the same person writing again with the same e-mail and phone joins her own lead
    await stub.IngestBatch(lp.IngestBatchRequest(signals=[caller("ben@example.com", 9)]))
    assert len(await all_leads(stub)) == 2
    again = await stub.ListMergeSuggestions(lp.ListMergeSuggestionsRequest())
    assert [s.suggestion_id for s in again.suggestions] == [suggestion.suggestion_id]

    # a person decides: accepted, the older lead survives, the merge is undoable
    merged = await stub.MergeLeads(
        lp.MergeLeadsRequest(suggestion_id=suggestion.suggestion_id, reason="same family")
    )
    assert merged.lead_id == ana.lead_id and len(await all_leads(stub)) == 1
    decided = await stub.ListMergeSuggestions(lp.ListMergeSuggestionsRequest(include_decided=True))
    assert [s.decision for s in decided.suggestions] == ["accepted"]
    code, details = await code_of(
        stub.MergeLeads(lp.MergeLeadsRequest(suggestion_id=suggestion.suggestion_id))
    )
    assert (code, "was already accepted" in details) == (grpc.StatusCode.FAILED_PRECONDITION, True)
    store = LeadStore(database_url)  # the accepted suggestion is a recorded merge
    with store.engine.connect() as conn:
        merge = conn.execute(schema.merges.select()).mappings().one()
    store.close()
    assert merge["reason"] == f"suggestion {suggestion.suggestion_id} accepted: same family"
    await stub.SplitLead(lp.SplitLeadRequest(lead_id=ana.lead_id, merge_id=merge["merge_id"]))
    assert len(await all_leads(stub)) == 2


async def test_a_switchboard_number_stops_linking_after_three_people(
    stub: leads_pb2_grpc.LeadsAsyncStub,
) -> None:
    for i in range(25):  # one caller at a time
        await stub.IngestBatch(lp.IngestBatchRequest(signals=[caller(f"caller{i}@example.com", i)]))
    await stub.IngestBatch(  # and 25 in one batch
        lp.IngestBatchRequest(signals=[caller(f"caller{i}@example.com", i) for i in range(25, 50)])
    )
    leads = await all_leads(stub)
    assert len(leads) == 50
    suggestions = (
        await stub.ListMergeSuggestions(lp.ListMergeSuggestionsRequest(page_size=500))
    ).suggestions
    assert len(suggestions) == 3  # people 2, 3 and 4; then it links nobody


async def test_bad_suggestion_requests_get_precise_errors(
    stub: leads_pb2_grpc.LeadsAsyncStub,
) -> None:
    await stub.IngestBatch(lp.IngestBatchRequest(signals=[caller("ana@example.com", 0)]))
    await stub.IngestBatch(lp.IngestBatchRequest(signals=[caller("ben@example.com", 5)]))
    (suggestion,) = (await stub.ListMergeSuggestions(lp.ListMergeSuggestionsRequest())).suggestions
    cases = [
        (
            stub.DismissMergeSuggestion(lp.DismissMergeSuggestionRequest(suggestion_id="nope")),
            grpc.StatusCode.NOT_FOUND,
            "merge suggestion 'nope' not found",
        ),
        (
            stub.DismissMergeSuggestion(lp.DismissMergeSuggestionRequest()),
            grpc.StatusCode.INVALID_ARGUMENT,
            "suggestion_id: required",
        ),
        (
            stub.MergeLeads(
                lp.MergeLeadsRequest(lead_ids=["a", "b"], suggestion_id=suggestion.suggestion_id)
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
            "not both",
        ),
        (
            stub.ListMergeSuggestions(lp.ListMergeSuggestionsRequest(page_size=501)),
            grpc.StatusCode.INVALID_ARGUMENT,
            "page_size: 501",
        ),
        (
            stub.ListMergeSuggestions(lp.ListMergeSuggestionsRequest(lead_id="nobody")),
            grpc.StatusCode.NOT_FOUND,
            "lead 'nobody' not found",
        ),
    ]
    for call, expected, words in cases:
        code, details = await code_of(call)
        assert (code, words in details) == (expected, True), (words, code, details)
    dismissed = await stub.DismissMergeSuggestion(
        lp.DismissMergeSuggestionRequest(
            suggestion_id=suggestion.suggestion_id, reason="two colleagues"
        )
    )
    assert dismissed.decision == "dismissed" and dismissed.reason == suggestion.reason
    kept = await stub.ListMergeSuggestions(lp.ListMergeSuggestionsRequest(include_decided=True))
    assert [s.decision_reason for s in kept.suggestions] == ["two colleagues"]
    code, details = await code_of(
        stub.DismissMergeSuggestion(
            lp.DismissMergeSuggestionRequest(suggestion_id=suggestion.suggestion_id)
        )
    )
    assert (code, "already dismissed" in details) == (grpc.StatusCode.FAILED_PRECONDITION, True)

    # a suggestion whose lead is erased goes with it (its key is that person's data)
    await stub.IngestBatch(lp.IngestBatchRequest(signals=[caller("cy@example.com", 7)]))
    (open_one,) = (await stub.ListMergeSuggestions(lp.ListMergeSuggestionsRequest())).suggestions
    cy = next(x for x in await all_leads(stub) if x.identity.email == "cy@example.com")
    await stub.ForgetLead(lp.ForgetLeadRequest(lead_id=cy.lead_id, reason="GDPR art. 17"))
    code, details = await code_of(
        stub.MergeLeads(lp.MergeLeadsRequest(suggestion_id=open_one.suggestion_id))
    )
    assert (code, "not found" in details) == (grpc.StatusCode.NOT_FOUND, True)


def test_the_people_per_key_limit_is_checked() -> None:
    for bad in ("0", "1001", "many"):
        with pytest.raises(SettingsError) as caught:
            load_settings(leads_max_people_per_key=bad)
        assert "PERCEPT_LEADS_MAX_PEOPLE_PER_KEY" in str(caught.value)
