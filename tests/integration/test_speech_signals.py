"""A call's intents reach leads as signals: speech and leads in one process, real models."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import grpc
import numpy as np
import pytest
from conftest import HostFactory, record_published
from speech_audio import pcm16k, speak

from percept.leads.service import LeadsService
from percept.runtime.server import ServiceHost
from percept.runtime.settings import Settings
from percept.speech.service import SpeechService
from percept.v1 import common_pb2, leads_pb2, leads_pb2_grpc, speech_pb2_grpc
from percept.v1 import speech_pb2 as sp

pytestmark = pytest.mark.slow
CALLER = "+14155550123"
Channels = Callable[[ServiceHost], grpc.aio.Channel]


async def ready(start_host: HostFactory, service: object, settings: Settings) -> ServiceHost:
    host = await start_host(service, settings)  # type: ignore[arg-type]
    await asyncio.wait_for(host.ready.wait(), 120)
    return host


async def call(
    channel: grpc.aio.Channel, folder: Path, text: str, **config: object
) -> list[sp.RecognitionEvent]:
    """The caller says `text` (then a second of silence), streamed in 100 ms chunks."""
    audio = pcm16k(speak(text, folder / "call.wav"))
    audio = np.concatenate([audio, np.zeros(16000, np.int16)])
    first = sp.RecognitionConfig(
        encoding=sp.AUDIO_ENCODING_LINEAR16,
        sample_rate_hz=16000,
        caller=common_pb2.IdentityKeys(phone=CALLER),
        **config,  # type: ignore[arg-type]
    )
    messages = [sp.StreamingRecognizeRequest(config=first)] + [
        sp.StreamingRecognizeRequest(audio_content=audio[i : i + 1600].tobytes())
        for i in range(0, len(audio), 1600)
    ]
    stub = speech_pb2_grpc.SpeechStub(channel)
    return [e async for e in stub.StreamingRecognize(iter(messages))]


def finals(events: list[sp.RecognitionEvent]) -> list[sp.RecognitionEvent]:
    return [e for e in events if e.type == sp.RecognitionEvent.EVENT_TYPE_FINAL]


async def test_a_callers_intent_becomes_a_lead(
    make_settings: Callable[..., Settings],
    start_host: HostFactory,
    channel_to: Channels,
    tmp_path: Path,
) -> None:
    leads_settings = make_settings()
    leads = await ready(start_host, LeadsService(leads_settings), leads_settings)
    speech_settings = make_settings(leads_address=leads.address, data_dir=tmp_path / "speech")
    speech = await ready(start_host, SpeechService(speech_settings), speech_settings)
    events = await call(
        channel_to(speech),
        tmp_path,
        "Hello. I want to buy two phones for my office.",
        call_id="call-42",
        campaign_id="spring",
    )
    assert any("purchase_intent" in {i.name for i in f.intents} for f in finals(events))

    stub = leads_pb2_grpc.LeadsStub(channel_to(leads))
    lead = None
    for _ in range(100):  # the outbox delivers in the background
        page = await stub.ListLeads(leads_pb2.ListLeadsRequest())
        lead = next((x for x in page.leads if x.identity.phone == CALLER), None)
        if lead is not None and lead.product_interest:
            break
        await asyncio.sleep(0.1)
    assert lead is not None, "no lead for the caller"
    full = await stub.GetLead(leads_pb2.GetLeadRequest(lead_id=lead.lead_id, include_timeline=True))
    assert full.identity.call_id == "call-42"
    assert full.product_interest == "phone"
    assert common_pb2.SOURCE_SPEECH in full.channels
    kinds = {t.kind for t in full.timeline}
    assert common_pb2.SIGNAL_KIND_INTENT in kinds
    assert common_pb2.SIGNAL_KIND_ENTITY in kinds


async def test_calls_go_on_while_leads_is_down(
    make_settings: Callable[..., Settings],
    start_host: HostFactory,
    channel_to: Channels,
    tmp_path: Path,
) -> None:
    settings = make_settings(leads_address="127.0.0.1:9")  # nobody listens there
    service = SpeechService(settings)
    speech = await ready(start_host, service, settings)
    events = await asyncio.wait_for(
        call(channel_to(speech), tmp_path, "I want to buy two phones."), 60
    )
    assert finals(events)
    outbox = service.signals.outbox
    assert outbox is not None and outbox.pending() >= 1  # kept for when leads is back


AGENT_SAYS = "Thank you for calling. Would you like to schedule a demo next week?"
CUSTOMER_SAYS = "I want to buy two phones for my office."


async def test_on_a_stereo_call_only_the_customers_words_become_signals(
    make_settings: Callable[..., Settings],
    start_host: HostFactory,
    channel_to: Channels,
    tmp_path: Path,
) -> None:
    """8 kHz mu-law stereo, the agent on channel 0 and then the customer on channel 1
    (the other channel quiet meanwhile): both get intents, only the customer's are
    published to leads."""
    from percept.speech import g711

    settings = make_settings(leads_address="127.0.0.1:9")  # the outbox keeps what is published
    service = SpeechService(settings)
    speech = await ready(start_host, service, settings)
    published = record_published(service)
    agent = pcm16k(speak(AGENT_SAYS, tmp_path / "agent.wav"))[::2]  # 8 kHz
    customer = pcm16k(speak(CUSTOMER_SAYS, tmp_path / "customer.wav"))[::2]
    quiet = np.zeros(8000, np.int16)
    left = np.concatenate([quiet, agent, quiet, np.zeros(len(customer), np.int16), quiet])
    right = np.concatenate([quiet, np.zeros(len(agent), np.int16), quiet, customer, quiet])
    data = g711.compress(np.stack([left, right], axis=1).reshape(-1), "mulaw")
    config = sp.RecognitionConfig(
        encoding=sp.AUDIO_ENCODING_MULAW,
        sample_rate_hz=8000,
        audio_channel_count=2,
        separate_channel_recognition=True,
        channel_roles=[sp.CHANNEL_ROLE_AGENT, sp.CHANNEL_ROLE_CUSTOMER],
        caller=common_pb2.IdentityKeys(phone=CALLER),
        call_id="call-stereo",
    )
    messages = [sp.StreamingRecognizeRequest(config=config)] + [
        sp.StreamingRecognizeRequest(audio_content=data[i : i + 1600])  # 100 ms of 2 channels
        for i in range(0, len(data), 1600)
    ]
    stub = speech_pb2_grpc.SpeechStub(channel_to(speech))
    events = [e async for e in stub.StreamingRecognize(iter(messages))]
    done = finals(events)
    by_role = {role: [f for f in done if f.role == role] for role in (1, 2)}
    agent_finals, customer_finals = (
        by_role[sp.CHANNEL_ROLE_AGENT],
        by_role[sp.CHANNEL_ROLE_CUSTOMER],
    )
    assert agent_finals and customer_finals, [(f.channel, f.transcript) for f in done]
    assert {f.channel for f in agent_finals} == {0} and {f.channel for f in customer_finals} == {1}
    summary = events[-1]
    assert summary.type == sp.RecognitionEvent.EVENT_TYPE_CALL_SUMMARY
    assert all(e.role == (e.channel + 1) for e in events[:-1])  # partials and ends too
    assert [r.role for r in summary.summary.roles] == [
        sp.CHANNEL_ROLE_AGENT,
        sp.CHANNEL_ROLE_CUSTOMER,
    ]
    agent_intents = {i.name for f in agent_finals for i in f.intents}
    assert "demo_or_meeting_request" in agent_intents  # found, for analytics
    assert "purchase_intent" in {i.name for f in customer_finals for i in f.intents}
    # each channel numbers its own utterances
    assert [f.utterance_index for f in customer_finals] == list(range(len(customer_finals)))
    names = {s.name for s in published if s.kind == common_pb2.SIGNAL_KIND_INTENT}
    assert "purchase_intent" in names and "demo_or_meeting_request" not in names, names
    said = [s for s in published if s.kind == common_pb2.SIGNAL_KIND_INTENT]
    assert {s.evidence for s in said} <= {f.transcript for f in customer_finals}
    # the call's end speaks of the customer's side only
    (feeling,) = [s for s in published if s.kind == common_pb2.SIGNAL_KIND_CALL_SENTIMENT]
    (side,) = [r for r in summary.summary.roles if r.role == sp.CHANNEL_ROLE_CUSTOMER]
    assert feeling.numeric_value == pytest.approx(side.sentiment_score)


def test_a_spanish_final_is_understood_through_translation(
    make_settings: Callable[..., Settings],
) -> None:
    """The understanding code reads English: a Spanish final gets its intents and
    entities from the Apertium translation chat uses, its transcript stays Spanish."""
    from percept.nlp.translation import load_translator
    from percept.speech.backends import Utterance
    from percept.speech.servicer import SpeechServicer
    from percept.understanding.loading import load_understanding

    settings = make_settings()
    servicer = SpeechServicer(understanding=load_understanding(settings))
    said = "Quiero comprar dos teléfonos para mi oficina."
    alone = servicer.final_event(0, Utterance(said, 0.0, 2.0, (), 0.9), "es")
    servicer.translator = load_translator(settings)
    try:
        final = servicer.final_event(0, Utterance(said, 0.0, 2.0, (), 0.9), "es")
    finally:
        servicer.translator.close()
    assert final.transcript == said and final.language_code == "es"
    assert "purchase_intent" in {i.name for i in final.intents}
    assert {"product", "quantity"} <= {e.type for e in final.entities}
    assert "purchase_intent" not in {i.name for i in alone.intents}  # what translation adds


async def test_a_call_that_ends_in_a_cancellation_asks_leads_for_a_retention_call(
    make_settings: Callable[..., Settings],
    start_host: HostFactory,
    channel_to: Channels,
    tmp_path: Path,
) -> None:
    """The call's end reaches leads: its summary (on the lead's timeline), how the
    customer sounded, its categories; a negative turn and then a cancellation make
    the lead's next follow-up a retention call within hours."""
    leads_settings = make_settings(data_dir=tmp_path / "leads")
    leads = await ready(start_host, LeadsService(leads_settings), leads_settings)
    speech_settings = make_settings(leads_address=leads.address, data_dir=tmp_path / "speech")
    speech = await ready(start_host, SpeechService(speech_settings), speech_settings)
    pause = np.zeros(24000, np.int16)
    angry = "This is ridiculous, the laptop stopped working after two days."
    audio = np.concatenate(
        [
            pcm16k(speak(angry, tmp_path / "a.wav")),
            pause,
            pcm16k(speak("I want to cancel my subscription.", tmp_path / "b.wav")),
            pause,
        ]
    )
    first = sp.RecognitionConfig(
        encoding=sp.AUDIO_ENCODING_LINEAR16,
        sample_rate_hz=16000,
        caller=common_pb2.IdentityKeys(phone=CALLER),
        call_id="call-cancel",
    )
    messages = [sp.StreamingRecognizeRequest(config=first)] + [
        sp.StreamingRecognizeRequest(audio_content=audio[i : i + 1600].tobytes())
        for i in range(0, len(audio), 1600)
    ]
    events = [
        e
        async for e in speech_pb2_grpc.SpeechStub(channel_to(speech)).StreamingRecognize(
            iter(messages)
        )
    ]
    said = [(e.transcript, e.sentiment) for e in finals(events)]
    assert [s for _, s in said] == [common_pb2.SENTIMENT_NEGATIVE] * 2, said
    categories = [
        e.category.name for e in events if e.type == sp.RecognitionEvent.EVENT_TYPE_CATEGORY
    ]
    assert "cancellation_after_negative_turn" in categories
    summary = events[-1].summary
    assert [c.name for c in summary.categories] == categories
    (side,) = summary.roles
    assert side.sentiment == common_pb2.SENTIMENT_NEGATIVE and side.utterances == 2

    stub = leads_pb2_grpc.LeadsStub(channel_to(leads))
    wanted = {
        common_pb2.SIGNAL_KIND_CALL_SUMMARY,
        common_pb2.SIGNAL_KIND_CALL_SENTIMENT,
        common_pb2.SIGNAL_KIND_CALL_CATEGORY,
    }
    full = None
    for _ in range(150):  # the outbox delivers in the background, maybe in two batches
        page = await stub.ListLeads(leads_pb2.ListLeadsRequest())
        lead = next((x for x in page.leads if x.identity.phone == CALLER), None)
        if lead is not None:
            full = await stub.GetLead(
                leads_pb2.GetLeadRequest(lead_id=lead.lead_id, include_timeline=True)
            )
            if wanted <= {t.kind for t in full.timeline}:
                break
        await asyncio.sleep(0.1)
    assert full is not None
    # read again: the lead's state and its timeline are two reads
    full = await stub.GetLead(leads_pb2.GetLeadRequest(lead_id=full.lead_id, include_timeline=True))
    assert full is not None
    kinds = {t.kind for t in full.timeline}
    assert {
        common_pb2.SIGNAL_KIND_CALL_SUMMARY,
        common_pb2.SIGNAL_KIND_CALL_SENTIMENT,
        common_pb2.SIGNAL_KIND_CALL_CATEGORY,
    } <= kinds
    (call_summary,) = [
        t.summary for t in full.timeline if t.kind == common_pb2.SIGNAL_KIND_CALL_SUMMARY
    ]
    assert (
        "unspecified talked" in call_summary and "cancellation_after_negative_turn" in call_summary
    )
    assert full.next_follow_up_reason.startswith("retention call"), full.next_follow_up_reason
    assert full.next_follow_up_action == "retention_call" and full.next_follow_up_priority == 1
    due = full.next_follow_up_at.ToDatetime() - full.last_signal_at.ToDatetime()
    assert due.total_seconds() == 4 * 3600
    explained = await stub.ExplainScore(leads_pb2.ExplainScoreRequest(lead_id=full.lead_id))
    assert "call_sentiment:negative" in {c.feature for c in explained.contributions}
