"""A call's intents reach leads as signals: speech and leads in one process, real models."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import grpc
import numpy as np
import pytest
from speech_audio import pcm16k, speak

from percept.leads.service import LeadsService
from percept.runtime.server import ServiceHost
from percept.runtime.settings import Settings
from percept.speech.service import SpeechService
from percept.v1 import common_pb2, leads_pb2, leads_pb2_grpc, speech_pb2_grpc
from percept.v1 import speech_pb2 as sp

pytestmark = pytest.mark.slow
CALLER = "+14155550123"


async def started(service: object, settings: Settings) -> ServiceHost:
    host = ServiceHost(service, settings)  # type: ignore[arg-type]
    await host.start()
    await asyncio.wait_for(host.ready.wait(), 120)
    return host


async def test_a_callers_intent_becomes_a_lead(
    make_settings: Callable[..., Settings], tmp_path_factory: pytest.TempPathFactory
) -> None:
    folder = tmp_path_factory.mktemp("call")
    audio = pcm16k(speak("Hello. I want to buy two phones for my office.", folder / "a.wav"))
    audio = np.concatenate([audio, np.zeros(16000, np.int16)])
    leads_settings = make_settings()
    leads = await started(LeadsService(leads_settings), leads_settings)
    speech_settings = make_settings(leads_address=leads.address, data_dir=folder / "speech")
    speech = await started(SpeechService(speech_settings), speech_settings)
    try:
        async with grpc.aio.insecure_channel(speech.address) as channel:
            config = sp.RecognitionConfig(
                encoding=sp.AUDIO_ENCODING_LINEAR16,
                sample_rate_hz=16000,
                call_id="call-42",
                caller=common_pb2.IdentityKeys(phone=CALLER),
                campaign_id="spring",
            )
            chunks = [audio[i : i + 1600].tobytes() for i in range(0, len(audio), 1600)]
            messages = [sp.StreamingRecognizeRequest(config=config)] + [
                sp.StreamingRecognizeRequest(audio_content=c) for c in chunks
            ]
            events = [
                e
                async for e in speech_pb2_grpc.SpeechStub(channel).StreamingRecognize(
                    iter(messages)
                )
            ]
        finals = [e for e in events if e.type == sp.RecognitionEvent.EVENT_TYPE_FINAL]
        assert any("purchase_intent" in {i.name for i in f.intents} for f in finals), finals

        async with grpc.aio.insecure_channel(leads.address) as channel:
            stub = leads_pb2_grpc.LeadsStub(channel)
            lead = None
            for _ in range(100):  # the outbox delivers in the background
                page = await stub.ListLeads(leads_pb2.ListLeadsRequest())
                lead = next((x for x in page.leads if x.identity.phone == CALLER), None)
                if lead is not None and lead.product_interest:
                    break
                await asyncio.sleep(0.1)
            assert lead is not None, "no lead for the caller"
            full = await stub.GetLead(
                leads_pb2.GetLeadRequest(lead_id=lead.lead_id, include_timeline=True)
            )
        assert full.identity.call_id == "call-42"
        assert full.product_interest == "phone"
        assert common_pb2.SOURCE_SPEECH in full.channels
        kinds = {t.kind for t in full.timeline}
        assert common_pb2.SIGNAL_KIND_INTENT in kinds
        assert common_pb2.SIGNAL_KIND_ENTITY in kinds
    finally:
        await speech.stop(grace=1)
        await leads.stop(grace=1)


async def test_calls_go_on_while_leads_is_down(
    make_settings: Callable[..., Settings], tmp_path_factory: pytest.TempPathFactory
) -> None:
    folder = tmp_path_factory.mktemp("call")
    audio = pcm16k(speak("I want to buy two phones.", folder / "a.wav"))
    audio = np.concatenate([audio, np.zeros(16000, np.int16)])
    settings = make_settings(leads_address="127.0.0.1:9")  # nobody listens there
    speech = await started(SpeechService(settings), settings)
    try:
        async with grpc.aio.insecure_channel(speech.address) as channel:
            config = sp.RecognitionConfig(
                encoding=sp.AUDIO_ENCODING_LINEAR16,
                sample_rate_hz=16000,
                caller=common_pb2.IdentityKeys(phone=CALLER),
            )
            messages = [sp.StreamingRecognizeRequest(config=config)] + [
                sp.StreamingRecognizeRequest(audio_content=audio[i : i + 1600].tobytes())
                for i in range(0, len(audio), 1600)
            ]
            events = await asyncio.wait_for(
                _collect(speech_pb2_grpc.SpeechStub(channel), messages), 60
            )
        assert any(e.type == sp.RecognitionEvent.EVENT_TYPE_FINAL for e in events)
        service = speech.service
        assert isinstance(service, SpeechService)
        outbox = service.signals.outbox
        assert outbox is not None and outbox.pending() >= 1  # kept for when leads is back
    finally:
        await speech.stop(grace=1)


async def _collect(
    stub: speech_pb2_grpc.SpeechAsyncStub, messages: list[sp.StreamingRecognizeRequest]
) -> list[sp.RecognitionEvent]:
    return [e async for e in stub.StreamingRecognize(iter(messages))]
