"""Segments and campaign reports over real gRPC, on SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from datetime import timedelta

import pytest
from leads_harness import Leads
from leads_signals import NOW, at

from percept.leads.analytics import segment
from percept.leads.store import LeadStore
from percept.runtime.settings import Settings
from percept.v1 import common_pb2 as c
from percept.v1 import leads_pb2 as lp
from percept.v1 import leads_pb2_grpc


def sig(
    kind: c.SignalKind.ValueType,
    name: str,
    visitor: str,
    *,
    value: str = "",
    seconds: float = 0.0,
    campaign: str = "",
    control: bool = False,
    source: c.Source.ValueType = c.SOURCE_CHAT,
) -> c.Signal:
    return c.Signal(
        signal_id=uuid.uuid4().hex,
        source=source,
        kind=kind,
        name=name,
        value=value,
        numeric_value=seconds,
        confidence=0.9,
        occurred_at=at(0),
        identity=c.IdentityKeys(visitor_id=visitor),
        campaign_id=campaign,
        attributes={"campaign_group": "control"} if control else {},
    )


def population() -> list[c.Signal]:
    signals = []
    for i in range(15):  # buyers: intent and budget in chat
        signals += [
            sig(c.SIGNAL_KIND_INTENT, "purchase_intent", f"buyer-{i}"),
            sig(c.SIGNAL_KIND_QUALIFICATION_SLOT, "budget", f"buyer-{i}", value="1000 USD"),
        ]
    for i in range(15):  # browsers: long dwell and returning visits in the store
        signals += [
            sig(
                c.SIGNAL_KIND_DWELL,
                "tvs",
                f"browser-{i}",
                value="tv",
                seconds=300,
                source=c.SOURCE_VISION,
            ),
            sig(c.SIGNAL_KIND_RETURNING_VISIT, "", f"browser-{i}", source=c.SOURCE_VISION),
        ]
    return signals


@pytest.fixture
async def leads(
    make_settings: Callable[..., Settings], database_url: str
) -> AsyncIterator[tuple[leads_pb2_grpc.LeadsAsyncStub, LeadStore]]:
    running = Leads(make_settings(database_url=database_url))
    stub = await running.start()
    store = LeadStore(database_url, clock=lambda: NOW + timedelta(days=1))
    yield stub, store
    store.close()
    await running.stop()


async def test_segments_are_found_named_and_filterable(
    leads: tuple[leads_pb2_grpc.LeadsAsyncStub, LeadStore],
) -> None:
    stub, store = leads
    await stub.IngestBatch(lp.IngestBatchRequest(signals=population()))
    ids, features = store.active_features()
    results = segment(ids, features, store.clock())
    store.save_segments(results)

    listed = (await stub.ListSegments(lp.ListSegmentsRequest())).segments
    assert sorted(s.size for s in listed) == [15, 15]
    by_name = {s.name: s for s in listed}
    buyers = next(
        s for name, s in by_name.items() if "ready to buy" in name or "budget known" in name
    )
    browsers = next(
        s for name, s in by_name.items() if "store browsers" in name or "returning" in name
    )
    assert "intent:purchase_intent" in buyers.dominant_features
    assert "dwell" in browsers.dominant_features

    page = await stub.ListLeads(
        lp.ListLeadsRequest(filter=lp.LeadFilter(segment=buyers.segment_id))
    )
    assert len(page.leads) == 15
    assert all(x.identity.visitor_id.startswith("buyer-") for x in page.leads)


async def test_too_few_leads_to_segment_is_a_clear_error(
    leads: tuple[leads_pb2_grpc.LeadsAsyncStub, LeadStore],
) -> None:
    _, store = leads
    with pytest.raises(ValueError, match="at least 10 leads; the store has 0"):
        segment(*store.active_features(), store.clock())


async def test_campaign_report_gives_conversion_intervals_and_uplift(
    leads: tuple[leads_pb2_grpc.LeadsAsyncStub, LeadStore],
) -> None:
    stub, _ = leads
    signals = []
    for i in range(20):
        control = i >= 10
        person = f"p-{i}"
        signals.append(
            sig(c.SIGNAL_KIND_INTENT, "price_inquiry", person, campaign="spring", control=control)
        )
        if (not control and i < 7) or (control and i < 13):  # 7/10 treated, 3/10 control won
            signals.append(sig(c.SIGNAL_KIND_OUTCOME, "", person, value="won", source=c.SOURCE_CRM))
    signals.append(sig(c.SIGNAL_KIND_INTENT, "price_inquiry", "other", campaign="autumn"))
    await stub.IngestBatch(lp.IngestBatchRequest(signals=signals))

    report = await stub.CampaignReport(lp.CampaignReportRequest(campaign_ids=["spring"]))
    (spring,) = [s for s in report.stats if not s.segment]
    assert (spring.campaign_id, spring.leads, spring.won) == ("spring", 10, 7)
    assert spring.conversion_rate == pytest.approx(0.7)
    assert spring.conversion_ci_low < 0.7 < spring.conversion_ci_high
    assert spring.has_control and spring.uplift == pytest.approx(0.4)
    everything = await stub.CampaignReport(lp.CampaignReportRequest())
    assert {s.campaign_id for s in everything.stats} == {"spring", "autumn"}
