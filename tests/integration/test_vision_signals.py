"""What cameras tell leads, with real models and a real leads server: a consenting
visitor's enrolment and their dwell at the phones become one lead; a passer-by none."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import grpc
import pytest
from conftest import HostFactory
from vision_harness import frames_of, leads_then_vision, lockstep
from vision_media import astronaut, astronaut_person, group_photo, walk

from percept.runtime.server import ServiceHost
from percept.runtime.settings import Settings
from percept.v1 import common_pb2, leads_pb2, leads_pb2_grpc, vision_pb2, vision_pb2_grpc
from percept.vision.images import encode_jpeg
from percept.vision.service import VisionService

pytestmark = pytest.mark.slow
PHONE = "+14155550142"
K = common_pb2


async def leads_with(
    stub: leads_pb2_grpc.LeadsAsyncStub, wanted: Callable[[leads_pb2.Lead], bool]
) -> list[leads_pb2.Lead]:
    """The leads that match, once the outbox has delivered (it works in the background)."""
    for _ in range(150):
        page = await stub.ListLeads(leads_pb2.ListLeadsRequest(page_size=100))
        found = [lead for lead in page.leads if wanted(lead)]
        if found:
            return found
        await asyncio.sleep(0.1)
    return []


@pytest.fixture
async def store(
    make_settings: Callable[..., Settings], start_host: HostFactory, tmp_path: Path
) -> AsyncIterator[tuple[ServiceHost, ServiceHost, VisionService]]:
    leads, _, service, vision = await leads_then_vision(
        start_host, make_settings(), tmp_path / "vision"
    )
    yield leads, vision, service
    await vision.stop(grace=5)


async def test_a_consenting_visitors_store_visit_joins_their_lead(
    store: tuple[ServiceHost, ServiceHost, VisionService],
) -> None:
    leads, vision, _ = store
    async with (
        grpc.aio.insecure_channel(leads.address) as to_leads,
        grpc.aio.insecure_channel(vision.address) as to_vision,
    ):
        leads_stub = leads_pb2_grpc.LeadsStub(to_leads)
        camera = vision_pb2_grpc.VisionStub(to_vision)
        enrolled = await camera.Enroll(
            vision_pb2.EnrollRequest(
                image=vision_pb2.Image(encoded=encode_jpeg(astronaut())),
                consent_reference="loyalty sign-up at the desk, 2026-12-02",
                identity=K.IdentityKeys(phone=PHONE),
                camera_id="store-front",
            )
        )
        # She walks into the phones zone and stays 30 s (a frame every 2 s), then leaves
        # for the laptops. Feet: phones is 0.2-0.6 of the 854 px width.
        xs = [60] + [160 + 4 * i for i in range(16)] + [420, 460, 500, 540]
        results = await lockstep(camera, frames_of(walk(astronaut_person(), xs, height=440), 2.0))
        exits = [
            (e.zone, e.dwell.ToTimedelta().total_seconds())
            for r in results
            for e in r.zone_events
            if e.type == vision_pb2.ZoneEvent.EVENT_TYPE_EXIT
        ]
        phones = dict(exits)["phones"]
        assert phones >= 30

        found = await leads_with(
            leads_stub, lambda lead: lead.identity.phone == PHONE and lead.product_interest != ""
        )
        assert len(found) == 1, "the visit did not join the phone's lead"
        lead = await leads_stub.GetLead(
            leads_pb2.GetLeadRequest(lead_id=found[0].lead_id, include_timeline=True)
        )
        assert lead.identity.face_identity_id == enrolled.face_identity_id
        assert lead.identity.visitor_id.startswith("visit-")
        assert lead.product_interest == "phone"
        assert list(lead.channels) == [K.SOURCE_VISION]
        kinds = [t.kind for t in lead.timeline]
        assert K.SIGNAL_KIND_FACE_SEEN in kinds and K.SIGNAL_KIND_DWELL in kinds
        explained = await leads_stub.ExplainScore(
            leads_pb2.ExplainScoreRequest(lead_id=lead.lead_id)
        )
        dwell = {c.feature: c.description for c in explained.contributions}["dwell:phone"]
        assert dwell == f"lingered {phones:.0f} s at the phone display"


async def test_a_passer_by_creates_no_lead(
    store: tuple[ServiceHost, ServiceHost, VisionService],
) -> None:
    leads, vision, service = store
    async with (
        grpc.aio.insecure_channel(leads.address) as to_leads,
        grpc.aio.insecure_channel(vision.address) as to_vision,
    ):
        camera = vision_pb2_grpc.VisionStub(to_vision)
        stranger = group_photo(4)[40:1450, 60:900]  # a standing woman, not enrolled
        results = await lockstep(
            camera, frames_of(walk(stranger, list(range(60, 600, 40)), height=440), 0.5)
        )
        assert any(r.people_count for r in results)
        outbox = service.signals.outbox
        assert outbox is not None
        await asyncio.sleep(1.0)
        assert outbox.pending() == 0
        assert outbox.metrics.delivered._value.get() == 0  # nothing was ever sent
        page = await leads_pb2_grpc.LeadsStub(to_leads).ListLeads(leads_pb2.ListLeadsRequest())
        assert list(page.leads) == []


CROWDED_PHONES = """\
cameras:
  store-front:
    crowd_hold_s: 0
    zones:
      - name: phones
        kind: product
        product: phone
        polygon: [[0.2, 0.3], [0.6, 0.3], [0.6, 1.0], [0.2, 1.0]]
        crowd_alert: 1
"""


async def test_a_returning_visitor_and_crowding_reach_her_lead(
    make_settings: Callable[..., Settings], start_host: HostFactory, tmp_path: Path
) -> None:
    cameras = tmp_path / "cameras.yaml"
    cameras.write_text(CROWDED_PHONES)
    leads, _, _, vision = await leads_then_vision(
        start_host,
        make_settings(),
        tmp_path / "vision",
        vision_cameras_file=cameras,
        vision_visit_gap_s=2.0,  # a new visit after 2 s away (4 h by default)
    )
    try:
        async with (
            grpc.aio.insecure_channel(leads.address) as to_leads,
            grpc.aio.insecure_channel(vision.address) as to_vision,
        ):
            camera = vision_pb2_grpc.VisionStub(to_vision)
            await camera.Enroll(
                vision_pb2.EnrollRequest(
                    image=vision_pb2.Image(encoded=encode_jpeg(astronaut())),
                    consent_reference="loyalty sign-up",
                    identity=K.IdentityKeys(phone=PHONE),
                )
            )
            visit = walk(astronaut_person(), list(range(60, 300, 30)), height=440)
            await lockstep(camera, frames_of(visit, 0.5))  # right after enrolling
            await asyncio.sleep(2.5)
            await lockstep(camera, frames_of(visit, 0.5))  # back after the gap
            stub = leads_pb2_grpc.LeadsStub(to_leads)

            def kinds(lead: leads_pb2.Lead) -> list[int]:
                return [t.kind for t in lead.timeline]

            lead = None
            for _ in range(100):
                found = await leads_with(stub, lambda x: x.identity.phone == PHONE)
                lead = await stub.GetLead(
                    leads_pb2.GetLeadRequest(lead_id=found[0].lead_id, include_timeline=True)
                )
                if K.SIGNAL_KIND_RETURNING_VISIT in kinds(lead):
                    break
                await asyncio.sleep(0.1)
            assert lead is not None
            seen = kinds(lead)
            assert seen.count(K.SIGNAL_KIND_RETURNING_VISIT) == 1  # the first visit was not
            assert seen.count(K.SIGNAL_KIND_FACE_SEEN) == 3  # enrolment and two visits
            assert K.SIGNAL_KIND_CROWDING in seen
    finally:
        await vision.stop(grace=5)
