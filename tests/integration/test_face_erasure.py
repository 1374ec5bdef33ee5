"""ForgetLead erases the lead's face embeddings in vision: at once when vision answers,
and later, without loss, when it was down at the time."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest
from conftest import HostFactory
from vision_harness import leads_then_vision, start_vision
from vision_media import astronaut

from percept.leads.service import LeadsService
from percept.leads.store import LeadStore
from percept.runtime.server import ServiceHost
from percept.runtime.settings import Settings
from percept.v1 import common_pb2, leads_pb2, leads_pb2_grpc, vision_pb2, vision_pb2_grpc
from percept.vision.images import encode_jpeg
from percept.vision.service import VisionService

pytestmark = pytest.mark.slow
PHONE = "+14155550177"


async def enrol_and_find_lead(vision: ServiceHost, leads: ServiceHost) -> str:
    """Enrols the astronaut with her phone; returns the lead that got her face identity."""
    async with (
        grpc.aio.insecure_channel(vision.address) as to_vision,
        grpc.aio.insecure_channel(leads.address) as to_leads,
    ):
        enrolled = await vision_pb2_grpc.VisionStub(to_vision).Enroll(
            vision_pb2.EnrollRequest(
                image=vision_pb2.Image(encoded=encode_jpeg(astronaut())),
                consent_reference="signed at the desk",
                identity=common_pb2.IdentityKeys(phone=PHONE),
            )
        )
        stub = leads_pb2_grpc.LeadsStub(to_leads)
        for _ in range(100):
            page = await stub.ListLeads(leads_pb2.ListLeadsRequest())
            lead = next((x for x in page.leads if x.identity.phone == PHONE), None)
            if lead is not None and lead.identity.face_identity_id:
                assert lead.identity.face_identity_id == enrolled.face_identity_id
                return lead.lead_id
            await asyncio.sleep(0.1)
    raise AssertionError("the enrolment never reached leads")


async def forget(leads: ServiceHost, lead_id: str) -> leads_pb2.ForgetLeadResponse:
    async with grpc.aio.insecure_channel(leads.address) as channel:
        return await leads_pb2_grpc.LeadsStub(channel).ForgetLead(
            leads_pb2.ForgetLeadRequest(lead_id=lead_id, reason="visitor asked to be forgotten")
        )


Pair = tuple[ServiceHost, Settings, VisionService, ServiceHost]


@pytest.fixture
async def pair(
    make_settings: Callable[..., Settings],
    start_host: HostFactory,
    free_port: Callable[[], int],
    tmp_path: Path,
) -> Pair:
    """Leads told where vision listens, and vision on that port (tests stop it themselves)."""
    port = free_port()
    return await leads_then_vision(
        start_host,
        make_settings(vision_address=f"127.0.0.1:{port}"),
        tmp_path / "vision",
        vision_port=port,
    )


def leads_store(leads: ServiceHost) -> LeadStore:
    assert isinstance(leads.service, LeadsService)
    return leads.service.store


async def test_forget_lead_erases_the_face_in_vision(pair: Pair) -> None:
    leads, _, service, vision = pair
    try:
        lead_id = await enrol_and_find_lead(vision, leads)
        erased = await forget(leads, lead_id)
        assert erased.embeddings_erased == 1
        engine = service.servicer.engine
        assert engine is not None and engine.gallery is not None
        assert engine.gallery.size() == 0
        assert leads_store(leads).pending_face_erasures() == 0
    finally:
        await vision.stop(grace=1)


async def test_an_erasure_made_while_vision_is_down_completes_later(pair: Pair) -> None:
    leads, settings, _, vision = pair
    store = leads_store(leads)
    lead_id = await enrol_and_find_lead(vision, leads)
    await vision.stop(grace=1)  # vision goes down, with her embedding in its gallery

    erased = await forget(leads, lead_id)
    assert erased.embeddings_erased == 0  # not confirmed yet...
    assert store.pending_face_erasures() == 1  # ...but queued, durably

    service, vision = await start_vision(settings)  # back, on the same port and gallery
    try:
        engine = service.servicer.engine
        assert engine is not None and engine.gallery is not None
        for _ in range(200):
            if store.pending_face_erasures() == 0:
                break
            await asyncio.sleep(0.1)
        assert store.pending_face_erasures() == 0
        assert engine.gallery.size() == 0
        async with grpc.aio.insecure_channel(vision.address) as channel:
            seen = await vision_pb2_grpc.VisionStub(channel).Detect(
                vision_pb2.DetectRequest(
                    image=vision_pb2.Image(encoded=encode_jpeg(astronaut())), detect_faces=True
                )
            )
        assert [f.enrolled for f in seen.faces] == [False]
    finally:
        await vision.stop(grace=1)
