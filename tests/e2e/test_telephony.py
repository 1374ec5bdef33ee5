"""Three telephony platforms at once against `percept serve all`, at real-time pace:
a Twilio Media Stream, a Genesys AudioHook session and two Asterisk AudioSocket legs,
each carrying a caller (scripted speech: what no recording has) and an agent (real
8 kHz telephone prompts). Each caller's lead gets the caller's intents and number;
nothing said on an agent track becomes a caller's intent; a watcher sees every call."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np
import numpy.typing as npt
import pytest
import real_media
from local_servers import serve_all
from speech_audio import pcm8k, speak
from telephony_clients import AudioHookClient, audiosocket_leg, twilio_call
from vision_harness import MODEL_DIR

from percept.speech import g711
from percept.v1 import common_pb2, leads_pb2, leads_pb2_grpc, speech_pb2_grpc
from percept.v1 import speech_pb2 as sp

pytestmark = pytest.mark.slow
TWILIO_CALLER, GENESYS_CALLER = "+14155550101", "+14155550102"
TWILIO_SAYS = "Hello. I want to purchase two laptops for my office."
GENESYS_SAYS = "Hi. How much does the phone cost? Can we schedule a demo next week?"
ASTERISK_SAYS = "Hello. I would like to purchase three phones for my team."
CALLERS_SAY = (TWILIO_SAYS, GENESYS_SAYS, ASTERISK_SAYS)


@dataclass
class Suite:
    addresses: dict[str, str]
    gateway_port: int
    audiosocket_port: int


@pytest.fixture(scope="module")
def suite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Suite]:
    log = tmp_path_factory.mktemp("telephony-log") / "serve.log"
    with serve_all(tmp_path_factory.mktemp("telephony"), MODEL_DIR, log) as (_, env, addresses):
        yield Suite(
            addresses,
            int(env["PERCEPT_SPEECH_GATEWAY_PORT"]),
            int(env["PERCEPT_SPEECH_AUDIOSOCKET_PORT"]),
        )


def turns(
    customer: npt.NDArray[np.int16], agent: npt.NDArray[np.int16]
) -> tuple[npt.NDArray[np.int16], npt.NDArray[np.int16]]:
    """The agent speaks first, then the customer, each side quiet while the other talks."""
    quiet = np.zeros(4000, np.int16)
    first = np.concatenate([agent, quiet, np.zeros(len(customer), np.int16), quiet])
    second = np.concatenate([np.zeros(len(agent), np.int16), quiet, customer, quiet])
    return second, first


async def watch_calls(address: str, updates: list[sp.CallUpdate], watching: asyncio.Event) -> None:
    async with grpc.aio.insecure_channel(address) as channel:
        stream = speech_pb2_grpc.SpeechStub(channel).WatchCalls(sp.WatchCallsRequest())
        await stream.initial_metadata()  # the headers come once the watch is in place
        watching.set()
        async for update in stream:
            updates.append(update)


async def leads_by(address: str, want: int) -> list[leads_pb2.Lead]:
    """Every lead once `want` of them exist (signals are delivered in the background)."""
    async with grpc.aio.insecure_channel(address) as channel:
        stub = leads_pb2_grpc.LeadsStub(channel)
        deadline = time.monotonic() + 90
        while True:
            page = await stub.ListLeads(leads_pb2.ListLeadsRequest(page_size=100))
            if len(page.leads) >= want or time.monotonic() > deadline:
                return list(page.leads)
            await asyncio.sleep(1)


async def test_three_platforms_at_once_become_the_callers_leads(
    suite: Suite, tmp_path: Path
) -> None:
    agents = [real_media.telephone_call("en", 2, seed=seed).pcm for seed in (11, 12, 13)]
    said = [pcm8k(speak(text, tmp_path / f"{n}.wav")) for n, text in enumerate(CALLERS_SAY)]
    twilio_in, twilio_out = turns(said[0], agents[0])
    genesys_ext, genesys_int = turns(said[1], agents[1])
    asterisk_cust, asterisk_agent = turns(said[2], agents[2])
    updates: list[sp.CallUpdate] = []
    watching = asyncio.Event()
    watcher = asyncio.create_task(watch_calls(suite.addresses["speech"], updates, watching))
    await asyncio.wait_for(watching.wait(), 30)
    base = f"ws://127.0.0.1:{suite.gateway_port}"

    async def twilio() -> None:
        ws = await twilio_call(
            f"{base}/twilio",
            {
                "inbound": g711.compress(twilio_in, "mulaw"),
                "outbound": g711.compress(twilio_out, "mulaw"),
            },
            call_sid="CA-e2e-twilio",
            parameters={"caller": TWILIO_CALLER, "campaign": "e2e"},
        )
        assert ws.close_code == 1000

    async def genesys() -> None:
        client = AudioHookClient(f"{base}/audiohook", "no-keys-on-this-server")
        await client.connect()
        await client.open(conversation, ani=GENESYS_CALLER)
        await client.play(
            [g711.compress(genesys_ext, "mulaw"), g711.compress(genesys_int, "mulaw")]
        )
        await client.close()

    prefix = str(uuid.uuid4())[:24]
    conversation = str(uuid.uuid4())

    async def asterisk() -> None:
        legs = [
            audiosocket_leg(
                "127.0.0.1",
                suite.audiosocket_port,
                uuid.UUID(prefix + suffix),
                pcm.tobytes(),
                hang_up=False,  # Asterisk hangs up by closing the socket
            )
            for suffix, pcm in (("000000000002", asterisk_cust), ("000000000001", asterisk_agent))
        ]
        await asyncio.gather(*legs)

    started = time.monotonic()
    await asyncio.gather(twilio(), genesys(), asterisk())
    played = time.monotonic() - started
    longest = max(len(a) for a in (twilio_in, genesys_ext, asterisk_cust)) / 8000
    assert played >= longest * 0.95, "the calls were played at real-time pace"

    for _ in range(900):  # the last finals of each call come after its end
        if sum(u.type == sp.CallUpdate.UPDATE_TYPE_ENDED for u in updates) == 3:
            break
        await asyncio.sleep(0.2)
    await asyncio.sleep(3)  # the outbox delivers the last signals
    finals = [u for u in updates if u.event.type == sp.RecognitionEvent.EVENT_TYPE_FINAL]
    heard = "\n".join(f"{u.call.call_id} {u.event.role}: {u.event.transcript}" for u in finals)
    leads = await leads_by(suite.addresses["leads"], 3)
    by_phone = {lead.identity.phone: lead for lead in leads if lead.identity.phone}
    twilio_lead, genesys_lead = by_phone[TWILIO_CALLER], by_phone[GENESYS_CALLER]
    assert twilio_lead.identity.call_id == "CA-e2e-twilio"
    assert twilio_lead.product_interest == "laptop", heard
    asterisk_leads = [lead for lead in leads if lead.identity.call_id == prefix.rstrip("-")]
    assert len(asterisk_leads) == 1 and asterisk_leads[0].product_interest == "phone", heard
    assert genesys_lead.identity.call_id and genesys_lead.product_interest == "phone", heard

    def intents(call_id: str, role: int) -> set[str]:
        return {
            i.name
            for u in finals
            if u.call.call_id == call_id and u.event.role == role
            for i in u.event.intents
        }

    calls = {
        "CA-e2e-twilio": twilio_lead,
        conversation: genesys_lead,
        prefix.rstrip("-"): asterisk_leads[0],
    }
    found: set[str] = set()
    async with grpc.aio.insecure_channel(suite.addresses["leads"]) as channel:
        stub = leads_pb2_grpc.LeadsStub(channel)
        for call_id, lead in calls.items():
            full = await stub.GetLead(
                leads_pb2.GetLeadRequest(lead_id=lead.lead_id, include_timeline=True)
            )
            # every signal came from the call (the rest are the lead's follow-up steps)
            assert all(e.source == common_pb2.SOURCE_SPEECH for e in full.timeline if e.signal_id)
            # "phone call: intent purchase_intent"
            signalled = {
                e.summary.rsplit(" ", 1)[-1]
                for e in full.timeline
                if e.kind == common_pb2.SIGNAL_KIND_INTENT
            }
            customer = intents(call_id, sp.CHANNEL_ROLE_CUSTOMER)
            agent_only = intents(call_id, sp.CHANNEL_ROLE_AGENT) - customer
            assert signalled and signalled <= customer, (call_id, signalled, customer)
            assert not signalled & agent_only
            found |= signalled
    assert "purchase_intent" in found
    assert any(u.event.role == sp.CHANNEL_ROLE_AGENT for u in finals), "agents were heard"
    sources = {u.call.source for u in updates if u.type == sp.CallUpdate.UPDATE_TYPE_STARTED}
    assert sources == {"twilio", "audiohook", "audiosocket"}
    ended = [u for u in updates if u.type == sp.CallUpdate.UPDATE_TYPE_ENDED]
    assert sorted(u.end_reason for u in ended) == ["completed"] * 3
    watcher.cancel()
