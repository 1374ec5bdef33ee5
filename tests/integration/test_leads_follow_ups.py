"""The follow-up queue over real gRPC: a hot lead untouched for a day gets a call, who
does it, completing and snoozing it, every step on the lead's timeline, and training
on the outcomes it records."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime, timedelta
from pathlib import Path

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from leads_harness import PHONE, Receiver, business, code_of, customer_journey
from leads_signals import NOW, signal
from sqlalchemy import select

from percept.leads import schema
from percept.leads.followups import parse_rules
from percept.leads.scoring import ScoringPolicy
from percept.leads.service import LeadsService
from percept.leads.store import FollowUpQuery, LeadStore
from percept.leads.training import Outcome, train
from percept.runtime.server import ServiceHost
from percept.runtime.settings import Settings
from percept.v1 import common_pb2 as c
from percept.v1 import leads_pb2 as lp
from percept.v1 import leads_pb2_grpc

RULES = """
owners:
  team: [Ana, Luis]
  by_product: {laptop: [Marta]}
rules:
  - id: hot
    when: {class: [hot]}
    action: call
    priority: 2
    within_h: 24
    owner: team
    reason: "hot lead: call within a day"
  - id: quote
    when: {intent: price_inquiry}
    action: send_quote
    priority: 3
    within_h: 48
    owner: product
    reason: "asked for prices: send a quote within two days"
"""
SECRET = "follow-up-webhook-secret"


def stamp(when: datetime) -> Timestamp:
    out = Timestamp()
    out.FromDatetime(when)
    return out


class Clock:
    """The leads server's clock, moved by the test."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


class Running:
    def __init__(self, service: LeadsService, host: ServiceHost, clock: Clock) -> None:
        self.service, self.host, self.clock = service, host, clock
        self.channel = grpc.aio.insecure_channel(host.address)
        self.stub = leads_pb2_grpc.LeadsStub(self.channel)


@pytest.fixture
async def running(
    make_settings: Callable[..., Settings], database_url: str, tmp_path: Path
) -> AsyncIterator[Callable[..., Awaitable[Running]]]:
    started: list[Running] = []

    async def start(**overrides: object) -> Running:
        understanding = tmp_path / "understanding"
        understanding.mkdir(exist_ok=True)
        (understanding / "followups.yaml").write_text(RULES)
        settings = make_settings(
            database_url=database_url, understanding_dir=understanding, **overrides
        )
        service = LeadsService(settings)
        clock = Clock(NOW + timedelta(hours=4))
        service.store.clock = clock
        if service.webhooks is not None:
            service.webhooks.min_backoff_s = service.webhooks.poll_s = 0.05
        host = ServiceHost(service, settings)
        await host.start()
        await asyncio.wait_for(host.ready.wait(), 30)
        # The tests move the clock and find overdue ones themselves (mark_overdue): the
        # minutely check must not race them.
        assert service._overdue is not None
        service._overdue.cancel()
        started.append(Running(service, host, clock))
        return started[-1]

    yield start
    for r in started:
        await r.channel.close()
        await r.host.stop(grace=1)


async def test_a_hot_lead_untouched_for_a_day_gets_a_call_and_winning_it_is_recorded(
    running: Callable[..., Awaitable[Running]],
) -> None:
    r = await running()
    stub = r.stub
    await stub.IngestBatch(lp.IngestBatchRequest(signals=customer_journey()), timeout=10)
    (lead,) = (await stub.ListLeads(lp.ListLeadsRequest())).leads
    assert lead.lead_class == lp.LEAD_CLASS_HOT

    # The journey's last signal was at NOW + 3 h: nothing is due yet four hours in.
    due_now = lp.ListFollowUpsRequest(due_before=stamp(r.clock.now))
    assert not (await stub.ListFollowUps(due_now)).follow_ups
    r.clock.now = NOW + timedelta(hours=30)  # nobody touched the lead for a day
    due_now = lp.ListFollowUpsRequest(due_before=stamp(r.clock.now))
    (follow_up,) = (await stub.ListFollowUps(due_now)).follow_ups
    assert follow_up.lead_id == lead.lead_id
    assert (follow_up.action, follow_up.priority, follow_up.rule) == ("call", 2, "hot")
    assert follow_up.reason == "hot lead: call within a day"
    assert follow_up.due_at.ToDatetime().isoformat() == "2026-11-21T18:00:00"  # last + 24 h
    assert follow_up.overdue and follow_up.status == "open"
    assert follow_up.owner in ("Ana", "Luis")
    assert follow_up.identity.phone == PHONE and follow_up.lead_class == lp.LEAD_CLASS_HOT
    other = "Luis" if follow_up.owner == "Ana" else "Ana"
    assert not (await stub.ListFollowUps(lp.ListFollowUpsRequest(owner=other))).follow_ups
    mine = await stub.ListFollowUps(lp.ListFollowUpsRequest(owner=follow_up.owner))
    assert [f.follow_up_id for f in mine.follow_ups] == [follow_up.follow_up_id]

    assert [f["follow_up_id"] for f in r.service.store.mark_overdue()] == [follow_up.follow_up_id]
    assert r.service.store.mark_overdue() == []  # told once

    code, details = await code_of(
        stub.CompleteFollowUp(
            lp.CompleteFollowUpRequest(follow_up_id=follow_up.follow_up_id, outcome="maybe")
        )
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "outcome: 'maybe' is neither won nor lost" in details
    done = await stub.CompleteFollowUp(
        lp.CompleteFollowUpRequest(
            follow_up_id=follow_up.follow_up_id, outcome="won", note="ordered two phones"
        )
    )
    assert (done.status, done.outcome, done.note) == ("done", "won", "ordered two phones")
    assert done.stage == lp.LEAD_STAGE_WON and not done.overdue
    code, details = await code_of(
        stub.CompleteFollowUp(
            lp.CompleteFollowUpRequest(follow_up_id=follow_up.follow_up_id, outcome="won")
        )
    )
    assert code == grpc.StatusCode.FAILED_PRECONDITION
    assert "was completed at 2026-11-21 21:00 UTC (won); it is not open" in details

    full = await stub.GetLead(lp.GetLeadRequest(lead_id=lead.lead_id, include_timeline=True))
    assert full.stage == lp.LEAD_STAGE_WON
    assert not full.next_follow_up_id  # a won lead has nothing to follow up
    steps = [e.summary for e in full.timeline if e.follow_up_id]
    assert steps == [
        "follow-up call created: call by 2026-11-21 18:00 UTC",
        "follow-up call overdue: was due 2026-11-21 18:00 UTC",
        "follow-up call completed: done: won: ordered two phones",
    ]
    assert full.timeline[-1].follow_up_id  # the outcome signal is at the same moment, before
    assert "CRM: outcome won" in [e.summary for e in full.timeline]
    assert (lead.lead_id, "won", r.clock.now) in r.service.store.recorded_outcomes()

    history = await stub.ListFollowUps(
        lp.ListFollowUpsRequest(lead_id=lead.lead_id, include_closed=True)
    )
    assert [(f.status, f.outcome) for f in history.follow_ups] == [("done", "won")]


async def test_a_contact_moves_the_next_follow_up_and_a_snooze_holds_it(
    running: Callable[..., Awaitable[Running]],
) -> None:
    r = await running()
    stub = r.stub
    await stub.IngestBatch(lp.IngestBatchRequest(signals=customer_journey()), timeout=10)
    (first,) = (await stub.ListFollowUps(lp.ListFollowUpsRequest())).follow_ups
    r.clock.now = NOW + timedelta(hours=26)
    done = await stub.CompleteFollowUp(
        lp.CompleteFollowUpRequest(follow_up_id=first.follow_up_id, note="left a voicemail")
    )
    assert (done.status, done.outcome) == ("done", "")
    # Still hot: the next call is due a day after this contact, not after the last signal.
    (second,) = (await stub.ListFollowUps(lp.ListFollowUpsRequest())).follow_ups
    assert second.follow_up_id != first.follow_up_id
    assert second.due_at.ToDatetime() == (r.clock.now + timedelta(hours=24)).replace(tzinfo=None)
    assert second.owner == first.owner  # the same person keeps the lead

    code, details = await code_of(
        stub.SnoozeFollowUp(
            lp.SnoozeFollowUpRequest(follow_up_id=second.follow_up_id, until=stamp(NOW))
        )
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "is not in the future" in details
    code, details = await code_of(
        stub.SnoozeFollowUp(lp.SnoozeFollowUpRequest(follow_up_id="nope", until=stamp(NOW)))
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT  # the time is checked first
    code, details = await code_of(  # due in a day: an hour from now would bring it forward
        stub.SnoozeFollowUp(
            lp.SnoozeFollowUpRequest(
                follow_up_id=second.follow_up_id, until=stamp(r.clock.now + timedelta(hours=1))
            )
        )
    )
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "a snooze only postpones" in details
    until = r.clock.now + timedelta(days=3)
    snoozed = await stub.SnoozeFollowUp(
        lp.SnoozeFollowUpRequest(
            follow_up_id=second.follow_up_id, until=stamp(until), note="on holiday"
        )
    )
    assert snoozed.due_at.ToDatetime() == until.replace(tzinfo=None)
    assert snoozed.snoozed_until == snoozed.due_at
    # The lead writing again is no contact: the snoozed due time holds.
    r.clock.now += timedelta(hours=1)
    again = signal(kind=c.SIGNAL_KIND_INTENT, name="product_question", minutes=27 * 60)
    again.identity.phone = PHONE
    await stub.IngestBatch(lp.IngestBatchRequest(signals=[again]), timeout=10)
    (held,) = (await stub.ListFollowUps(lp.ListFollowUpsRequest())).follow_ups
    assert held.follow_up_id == second.follow_up_id
    assert held.due_at.ToDatetime() == until.replace(tzinfo=None)

    code, details = await code_of(
        stub.CompleteFollowUp(lp.CompleteFollowUpRequest(follow_up_id="nope"))
    )
    assert code == grpc.StatusCode.NOT_FOUND and "follow-up 'nope' not found" in details
    code, details = await code_of(
        stub.SnoozeFollowUp(
            lp.SnoozeFollowUpRequest(follow_up_id=first.follow_up_id, until=stamp(until))
        )
    )
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "was completed" in details
    full = await stub.GetLead(lp.GetLeadRequest(lead_id=first.lead_id, include_timeline=True))
    steps = [e.summary for e in full.timeline if e.follow_up_id]
    assert steps[1] == "follow-up call completed: done: left a voicemail"
    assert steps[-1].startswith("follow-up call snoozed: snoozed until ")
    assert steps[-1].endswith("UTC: on holiday")


async def test_a_new_rule_replaces_the_open_follow_up_and_a_merge_keeps_one(
    running: Callable[..., Awaitable[Running]],
) -> None:
    r = await running()
    stub = r.stub
    price = signal(name="price_inquiry", confidence=0.9, chat_session_id="s-1")
    price.source = c.SOURCE_CHAT
    laptop = signal(
        kind=c.SIGNAL_KIND_ENTITY, name="product", value="laptop", chat_session_id="s-1"
    )
    laptop.source = c.SOURCE_CHAT
    await stub.IngestBatch(lp.IngestBatchRequest(signals=[price, laptop]), timeout=10)
    (quote,) = (await stub.ListFollowUps(lp.ListFollowUpsRequest())).follow_ups
    assert (quote.action, quote.owner) == ("send_quote", "Marta")  # laptop's person
    assert quote.reason == "asked for prices: send a quote within two days"

    # The same person phones ready to buy: hot now, so a call replaces the quote.
    buy = signal(name="purchase_intent", confidence=0.95, minutes=30, phone=PHONE)
    buy.identity.chat_session_id = "s-1"
    budget = signal(
        kind=c.SIGNAL_KIND_QUALIFICATION_SLOT, name="budget", value="2000", minutes=31, phone=PHONE
    )
    await stub.IngestBatch(lp.IngestBatchRequest(signals=[buy, budget]), timeout=10)
    (call,) = (await stub.ListFollowUps(lp.ListFollowUpsRequest())).follow_ups
    assert call.action == "call" and call.lead_id == quote.lead_id
    every = await stub.ListFollowUps(lp.ListFollowUpsRequest(include_closed=True))
    assert {(f.action, f.status) for f in every.follow_ups} == {
        ("send_quote", "replaced"),
        ("call", "open"),
    }

    # Another lead with its own follow-up, merged by hand: one open follow-up remains.
    other = signal(name="price_inquiry", confidence=0.9, email="ana@example.com")
    await stub.IngestBatch(lp.IngestBatchRequest(signals=[other]), timeout=10)
    assert len((await stub.ListFollowUps(lp.ListFollowUpsRequest())).follow_ups) == 2
    absorbed = await stub.GetLead(lp.GetLeadRequest(key=c.IdentityKeys(email="ana@example.com")))
    await stub.MergeLeads(
        lp.MergeLeadsRequest(lead_ids=[call.lead_id, absorbed.lead_id], reason="same person")
    )
    (left,) = (await stub.ListFollowUps(lp.ListFollowUpsRequest())).follow_ups
    assert left.lead_id == call.lead_id and left.action == "call"
    merged = await stub.ListFollowUps(
        lp.ListFollowUpsRequest(lead_id=absorbed.lead_id, include_closed=True)
    )  # the absorbed id finds the survivor's history, its own quote replaced in it
    assert {f.status for f in merged.follow_ups} == {"open", "replaced"}
    assert len(merged.follow_ups) == 3

    # Erasing the lead erases its follow-ups and their notes.
    await stub.ForgetLead(lp.ForgetLeadRequest(lead_id=call.lead_id, reason="asked"))
    assert not (await stub.ListFollowUps(lp.ListFollowUpsRequest(include_closed=True))).follow_ups


async def test_pages_of_follow_ups_and_bad_requests(
    running: Callable[..., Awaitable[Running]],
) -> None:
    r = await running()
    stub = r.stub
    signals = [
        signal(name="price_inquiry", minutes=i, chat_session_id=f"page-{i}") for i in range(5)
    ]
    await stub.IngestBatch(lp.IngestBatchRequest(signals=signals), timeout=10)
    seen: list[lp.FollowUp] = []
    token = ""
    for _ in range(3):
        page = await stub.ListFollowUps(lp.ListFollowUpsRequest(page_size=2, page_token=token))
        seen += page.follow_ups
        token = page.next_page_token
    assert not token and len(seen) == 5
    dues = [f.due_at.ToDatetime() for f in seen]
    assert dues == sorted(dues)
    first = await stub.ListFollowUps(lp.ListFollowUpsRequest(page_size=2))
    code, details = await code_of(
        stub.ListFollowUps(
            lp.ListFollowUpsRequest(page_size=2, owner="Ana", page_token=first.next_page_token)
        )
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "issued for another filter" in details
    code, details = await code_of(
        stub.ListFollowUps(lp.ListFollowUpsRequest(page_token=first.next_page_token + "x"))
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "not issued by this server" in details
    code, details = await code_of(stub.ListFollowUps(lp.ListFollowUpsRequest(page_size=501)))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "page_size: 501" in details
    code, details = await code_of(stub.ListFollowUps(lp.ListFollowUpsRequest(lead_id="nobody")))
    assert code == grpc.StatusCode.NOT_FOUND
    code, details = await code_of(stub.CompleteFollowUp(lp.CompleteFollowUpRequest()))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "follow_up_id: required" in details
    code, details = await code_of(
        stub.CompleteFollowUp(
            lp.CompleteFollowUpRequest(follow_up_id=seen[0].follow_up_id, note="x" * 5000)
        )
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "note: longer than" in details
    code, details = await code_of(
        stub.SnoozeFollowUp(lp.SnoozeFollowUpRequest(follow_up_id=seen[0].follow_up_id))
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "until: required" in details


async def test_new_and_overdue_follow_ups_go_to_their_webhook(
    running: Callable[..., Awaitable[Running]],
) -> None:
    crm = Receiver(0)
    try:
        r = await running(leads_follow_up_webhook_urls=[crm.url], leads_webhook_secret=SECRET)
        await r.stub.IngestBatch(lp.IngestBatchRequest(signals=customer_journey()), timeout=10)
        r.clock.now = NOW + timedelta(hours=30)
        r.service.store.mark_overdue()
        async with asyncio.timeout(20):
            while len(crm.requests) < 2:  # noqa: ASYNC110 - the receiver is another thread's
                await asyncio.sleep(0.05)
        bodies = {json.loads(body)["type"]: json.loads(body) for _, body, _ in crm.requests}
        assert sorted(bodies) == ["follow_up.created", "follow_up.overdue"]  # in any order
        created, overdue = bodies["follow_up.created"], bodies["follow_up.overdue"]
        assert created["action"] == "call"
        assert created["reason"] == "hot lead: call within a day"
        assert created["follow_up_id"] == overdue["follow_up_id"]
        assert overdue["due_at"] == "2026-11-21T18:00:00+00:00"
    finally:
        crm.close()


def test_outcomes_recorded_by_completing_follow_ups_train_the_score(tmp_path: Path) -> None:
    """Leads whose wins follow this business's own pattern, closed through the queue."""
    every_lead = parse_rules(
        "rules:\n  - {id: all, when: {}, action: email, priority: 3, within_h: 72, "
        "reason: 'every lead'}\n"
    )
    store = LeadStore(
        f"sqlite:///{tmp_path / 'l.db'}",
        ScoringPolicy(follow_ups=every_lead),
        clock=lambda: NOW,
    )
    store.migrate()
    outcomes = business(store, 400, seed=5, random_outcomes=False)
    for lead, won in outcomes:
        (row,), _ = store.follow_ups(FollowUpQuery(lead_id=lead), 10, "")
        store.complete_follow_up(row["follow_up_id"], "won" if won else "lost", "")
    recorded = store.recorded_outcomes()
    assert sorted((lead, o == "won") for lead, o, _ in recorded) == sorted(outcomes)
    report = train(store, [Outcome(lead, o == "won", at) for lead, o, at in recorded])
    assert report.activated, report.reason
    assert report.metrics["leads"] == len(outcomes)
    assert report.model.weights["intent:competitor_mention"] > 0
    assert store.follow_ups(FollowUpQuery(), 10, "")[0] == []  # won and lost: nothing left
    store.close()


def _buyer(person: int, products: set[str]) -> list[c.Signal]:
    """A lead who named these products and was won (a CRM's outcome)."""
    signals = [
        signal(
            kind=c.SIGNAL_KIND_ENTITY,
            name="product",
            value=product,
            minutes=i,
            email=f"buyer-{person}@example.com",
        )
        for i, product in enumerate(sorted(products))
    ]
    won = signal(kind=c.SIGNAL_KIND_OUTCOME, name="", value="won", minutes=10)
    won.source = c.SOURCE_CRM
    won.identity.email = f"buyer-{person}@example.com"
    return [*signals, won]


async def test_opportunities_rank_open_leads_and_offer_what_buyers_bought_together(
    running: Callable[..., Awaitable[Running]],
) -> None:
    r = await running()
    stub = r.stub
    rng = random.Random(11)
    baskets = []
    history: list[c.Signal] = []
    for person in range(120):  # a generated history with a planted pair
        basket = {p for p in ("phone", "tv", "watch") if rng.random() < 0.3}
        if rng.random() < 0.3:
            basket |= {"laptop", "headphones"} if rng.random() < 0.75 else {"laptop"}
        if basket:
            baskets.append(basket)
            history += _buyer(person, basket)
    for start in range(0, len(history), 500):
        await stub.IngestBatch(lp.IngestBatchRequest(signals=history[start : start + 500]))
    laptops = [b for b in baskets if "laptop" in b]
    both = sum("headphones" in b for b in laptops)
    lift = both / len(laptops) / (sum("headphones" in b for b in baskets) / len(baskets))

    # Two open leads: one gave a budget, one a quantity of laptops.
    budget = signal(
        kind=c.SIGNAL_KIND_QUALIFICATION_SLOT, name="budget", value="2000 USD", phone=PHONE
    )
    buy = signal(name="purchase_intent", confidence=0.9, phone=PHONE)
    laptop = [
        signal(kind=c.SIGNAL_KIND_ENTITY, name="product", value="laptop", chat_session_id="o"),
        signal(
            kind=c.SIGNAL_KIND_QUALIFICATION_SLOT, name="quantity", value="3", chat_session_id="o"
        ),
        signal(name="price_inquiry", confidence=0.9, chat_session_id="o"),
    ]
    await stub.IngestBatch(lp.IngestBatchRequest(signals=[budget, buy, *laptop]))

    found = await stub.ListOpportunities(lp.ListOpportunitiesRequest())
    assert found.won_leads == len(baskets)
    (rule,) = [a for a in found.associations if (a.given, a.then) == ("laptop", "headphones")]
    assert rule.lift == pytest.approx(lift) and rule.leads == both
    assert rule.reason.startswith("leads who bought laptop also bought headphones")
    values = [o.expected_value for o in found.opportunities]
    assert values == sorted(values, reverse=True) and len(values) == 2  # won leads are not
    by_key = {
        o.lead.identity.phone or o.lead.identity.chat_session_id: o for o in found.opportunities
    }
    phone_lead, laptop_lead = by_key[PHONE], by_key["o"]
    assert phone_lead.expected_value == pytest.approx(phone_lead.lead.score * 2000, rel=1e-5)
    assert phone_lead.reason == f"score {phone_lead.lead.score:.2f} x budget 2000 USD"
    assert laptop_lead.expected_value == pytest.approx(laptop_lead.lead.score * 1299 * 3, rel=1e-5)
    assert "3 laptop at list price 1,299" in laptop_lead.reason
    assert laptop_lead.cross_sell[0].then == "headphones"
    only = await stub.ListOpportunities(lp.ListOpportunitiesRequest(product_interest="laptop"))
    assert [o.lead.lead_id for o in only.opportunities] == [laptop_lead.lead.lead_id]
    code, details = await code_of(stub.ListOpportunities(lp.ListOpportunitiesRequest(page_size=-1)))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "page_size: -1" in details

    # Won through the queue with what they bought: the lead leaves the opportunities.
    (quote,) = (
        await stub.ListFollowUps(lp.ListFollowUpsRequest(lead_id=laptop_lead.lead.lead_id))
    ).follow_ups
    code, details = await code_of(
        stub.CompleteFollowUp(
            lp.CompleteFollowUpRequest(
                follow_up_id=quote.follow_up_id, outcome="won", products=["spaceship"]
            )
        )
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "'spaceship' is not a catalog" in details
    await stub.CompleteFollowUp(
        lp.CompleteFollowUpRequest(
            follow_up_id=quote.follow_up_id, outcome="won", products=["laptop", "headphones"]
        )
    )
    left = await stub.ListOpportunities(lp.ListOpportunitiesRequest())
    assert [o.lead.lead_id for o in left.opportunities] == [phone_lead.lead.lead_id]
    assert r.service.store.won_baskets({"laptop", "headphones", "phone"})


def test_a_territory_rule_gives_the_lead_to_its_countrys_people(tmp_path: Path) -> None:
    rules = parse_rules(
        "owners: {team: [Zoe], by_territory: {ES: [Ana], MX: [Luis]}}\n"
        "rules:\n  - {id: all, when: {}, action: call, priority: 2, within_h: 24, "
        "owner: territory, reason: 'every lead'}\n"
    )
    store = LeadStore(
        f"sqlite:///{tmp_path / 't.db'}", ScoringPolicy(follow_ups=rules), clock=lambda: NOW
    )
    store.migrate()
    for phone in ("+34912345678", "+525512345678", "+14155552671"):
        store.ingest([signal(name="product_question", phone=phone)])
    rows, _ = store.follow_ups(FollowUpQuery(), 10, "")
    owners = {r["keys"][0].value: r["owner"] for r in rows}
    assert owners == {"+34912345678": "Ana", "+525512345678": "Luis", "+14155552671": "Zoe"}
    store.close()


def test_completing_a_promised_callback_keeps_the_promise(tmp_path: Path) -> None:
    store = LeadStore(f"sqlite:///{tmp_path / 'c.db'}", clock=lambda: NOW + timedelta(hours=2))
    store.migrate()
    asked = signal(source=c.SOURCE_CHAT, name="product_question", chat_session_id="cb")
    promise = signal(
        source=c.SOURCE_CHAT,
        kind=c.SIGNAL_KIND_CALLBACK_PROMISED,
        name="callback",
        minutes=5,
        chat_session_id="cb",
    )
    store.ingest([asked, promise])
    (callback,), _ = store.follow_ups(FollowUpQuery(), 10, "")
    assert callback["rule"] == "callback"
    store.complete_follow_up(callback["follow_up_id"], "", "called her back")
    left, _ = store.follow_ups(FollowUpQuery(), 10, "")
    assert all(r["rule"] != "callback" for r in left)  # not promised again, nor overdue
    assert store.mark_overdue() == []
    store.close()


async def test_a_split_gives_the_absorbed_lead_its_follow_ups_back(
    running: Callable[..., Awaitable[Running]],
) -> None:
    r = await running()
    stub = r.stub
    first = signal(name="price_inquiry", confidence=0.9, email="a@example.com")
    second = signal(name="price_inquiry", confidence=0.9, email="b@example.com")
    await stub.IngestBatch(lp.IngestBatchRequest(signals=[first, second]))
    a = await stub.GetLead(lp.GetLeadRequest(key=c.IdentityKeys(email="a@example.com")))
    b = await stub.GetLead(lp.GetLeadRequest(key=c.IdentityKeys(email="b@example.com")))
    await stub.CompleteFollowUp(
        lp.CompleteFollowUpRequest(follow_up_id=b.next_follow_up_id, note="b's own note")
    )
    merged = await stub.MergeLeads(lp.MergeLeadsRequest(lead_ids=[a.lead_id, b.lead_id]))
    history = await stub.ListFollowUps(
        lp.ListFollowUpsRequest(lead_id=merged.lead_id, include_closed=True)
    )
    assert "b's own note" in [f.note for f in history.follow_ups]
    with r.service.store.engine.connect() as conn:  # the merge's id (the audit row)
        merge_id = str(conn.scalar(select(schema.merges.c.merge_id)))
    await stub.SplitLead(lp.SplitLeadRequest(lead_id=a.lead_id, merge_id=merge_id))
    back = await stub.ListFollowUps(lp.ListFollowUpsRequest(lead_id=b.lead_id, include_closed=True))
    assert "b's own note" in [f.note for f in back.follow_ups]
    kept = await stub.ListFollowUps(lp.ListFollowUpsRequest(lead_id=a.lead_id, include_closed=True))
    assert "b's own note" not in [f.note for f in kept.follow_ups]
