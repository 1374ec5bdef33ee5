"""A real call in which the customer reads out a card, its expiry and security code:
nothing of them leaves speech in clear, wherever one looks.

The agent's channel is real telephone speech (Asterisk's prompts); the customer's
lines are espeak-ng sentences, since no recording reads out a card. The call is
16 kHz: over 8 kHz, tiny.en hears espeak-ng's digits as "free" and "salmon".
(E-mail addresses are covered by the unit tests: tiny.en does not hear one that
espeak-ng says over an 8 kHz line; "mike at yahoo dot com" came out "mikeatyabu.com".)
Speech and leads run as real servers; the scan covers the stream's events, a
watcher's updates, the published signals, the outbox and the leads database,
every log record and the metrics.
"""

from __future__ import annotations

import asyncio
import logging
import re
import sqlite3
from collections.abc import Callable
from pathlib import Path

import grpc
import numpy as np
import pytest
import real_media
from conftest import HostFactory, record_published
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from scipy.signal import resample_poly
from speech_audio import pcm16k, speak

from percept.leads.service import LeadsService
from percept.runtime.server import ServiceHost
from percept.runtime.settings import Settings
from percept.speech.service import SpeechService
from percept.understanding.redaction import reading
from percept.v1 import common_pb2, leads_pb2, leads_pb2_grpc, speech_pb2_grpc
from percept.v1 import speech_pb2 as sp

pytestmark = pytest.mark.slow
CALLER = "+14155550123"
CARD = "4539148803436467"  # passes Luhn; digits unlike any id, port or timestamp around
DIGITS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
SAID_CARD = ", ".join(" ".join(DIGITS[int(d)] for d in CARD[i : i + 4]) for i in range(0, 16, 4))
CUSTOMER = [
    "Hi, I want to buy two laptops for my office.",
    f"Sure. My card number is {SAID_CARD}.",
    "It expires in May twenty twenty seven, and the security code is seven three seven.",
]


def windows(digits: str, size: int) -> set[str]:
    return {digits[i : i + size] for i in range(len(digits) - size + 1)}


def leaks(text: str, size: int = 4) -> list[str]:
    """Runs of the card's digits in a text, number words read as digits."""
    read = re.sub(r"\D", "", reading(text).text)
    return [w for w in windows(CARD, size) if w in read]


def texts(event: sp.RecognitionEvent) -> str:
    """What an event says (its times are numbers too, and may hold any digits)."""
    said = [event.transcript, event.stable_prefix, *(w.word for w in event.words)]
    said += [f"{e.text} {e.normalized_value}" for e in event.entities]
    return " | ".join(said)


def stereo_call(folder: Path) -> tuple[bytes, float]:
    """Agent on channel 0 (real prompts), customer on channel 1, taking turns."""
    prompts = real_media.prompts("en")[: len(CUSTOMER)]
    turns: list[tuple[int, np.ndarray]] = []
    for prompt, line in zip(prompts, CUSTOMER, strict=True):
        # a wideband recording of the call: the prompts' 8 kHz brought up to 16 kHz
        turns.append((0, resample_poly(prompt.pcm, 2, 1).astype(np.int16)))
        customer = pcm16k(speak(line, folder / "customer.wav"))
        turns.append((1, customer))
    pause = np.full(6000, 0, np.int16)
    left: list[np.ndarray] = [pause]
    right: list[np.ndarray] = [pause]
    for channel, pcm in turns:
        (left if channel == 0 else right).append(pcm)
        (right if channel == 0 else left).append(np.zeros(len(pcm), np.int16))
        left.append(pause)
        right.append(pause)
    stereo = np.stack([np.concatenate(left), np.concatenate(right)], axis=1)
    return stereo.reshape(-1).astype("<i2").tobytes(), len(stereo) / 16000


async def test_a_card_and_an_email_never_leave_in_clear(
    make_settings: Callable[..., Settings],
    start_host: HostFactory,
    channel_to: Callable[[ServiceHost], grpc.aio.Channel],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    leads_settings = make_settings(data_dir=tmp_path / "leads")
    leads = await start_host(LeadsService(leads_settings), leads_settings)
    speech_settings = make_settings(
        leads_address=leads.address,
        data_dir=tmp_path / "speech",
        speech_redact="card,email",
    )
    service = SpeechService(speech_settings)
    speech = await start_host(service, speech_settings)
    await asyncio.wait_for(asyncio.gather(leads.ready.wait(), speech.ready.wait()), 120)
    published = record_published(service)

    stub = speech_pb2_grpc.SpeechStub(channel_to(speech))
    watch = stub.WatchCalls(sp.WatchCallsRequest(include_partials=True))
    await watch.initial_metadata()
    audio, seconds = stereo_call(tmp_path)
    config = sp.RecognitionConfig(
        encoding=sp.AUDIO_ENCODING_LINEAR16,
        sample_rate_hz=16000,
        audio_channel_count=2,
        separate_channel_recognition=True,
        channel_roles=[sp.CHANNEL_ROLE_AGENT, sp.CHANNEL_ROLE_CUSTOMER],
        interim_results=True,
        call_id="card-call",
        caller=common_pb2.IdentityKeys(phone=CALLER),
    )
    chunk = 6400  # 100 ms of 16-bit stereo
    requests = [sp.StreamingRecognizeRequest(config=config)] + [
        sp.StreamingRecognizeRequest(audio_content=audio[i : i + chunk])
        for i in range(0, len(audio), chunk)
    ]
    events = [e async for e in stub.StreamingRecognize(iter(requests))]
    updates: list[sp.CallUpdate] = []
    async for update in watch:
        updates.append(update)
        if update.type == sp.CallUpdate.UPDATE_TYPE_ENDED:
            break
    watch.cancel()

    finals = [e for e in events if e.type == sp.RecognitionEvent.EVENT_TYPE_FINAL]
    customer = " ".join(f.transcript for f in finals if f.role == sp.CHANNEL_ROLE_CUSTOMER)
    redactions = [e.type for f in finals for e in f.entities if e.redacted]
    assert "card_number" in redactions and "[card number]" in customer, customer
    assert "card_security_code" in redactions, customer
    assert "laptop" in customer.lower()  # what is not private stays
    assert all(not e.normalized_value for f in finals for e in f.entities if e.redacted)

    # the signals reached leads (the customer's intent), with the redacted evidence
    leads_stub = leads_pb2_grpc.LeadsStub(channel_to(leads))
    lead = None
    for _ in range(150):
        page = await leads_stub.ListLeads(leads_pb2.ListLeadsRequest())
        lead = next((x for x in page.leads if x.identity.phone == CALLER), None)
        if lead is not None and lead.signal_count >= len(published) > 0:
            break
        await asyncio.sleep(0.1)
    assert lead is not None
    full = await leads_stub.GetLead(
        leads_pb2.GetLeadRequest(lead_id=lead.lead_id, include_timeline=True)
    )
    timeline = " | ".join(t.summary for t in full.timeline)

    # the scan
    assert not [e for e in events if leaks(texts(e))], "a stream event"
    assert not [u for u in updates if leaks(texts(u.event))], "a WatchCalls update"
    assert not leaks(timeline), timeline
    assert published and not [
        s for s in published if leaks(f"{s.evidence} {s.value} {s.attributes}")
    ]
    for logged in caplog.records:
        said = [logged.getMessage()] + [v for v in logged.__dict__.values() if isinstance(v, str)]
        assert not leaks(" ".join(said), 6), logged
    metrics = generate_latest(service.registry).decode()
    labels = [
        v
        for f in text_string_to_metric_families(metrics)
        for x in f.samples
        for v in x.labels.values()
    ]
    assert labels and not leaks(" ".join(labels)), "a metric label"
    stores = [*tmp_path.glob("speech/**/*.db"), *tmp_path.glob("leads/**/*.db")]  # noqa: ASYNC240
    for db in stores:
        with sqlite3.connect(db) as conn:
            dump = "\n".join(conn.iterdump())
        assert not leaks(dump, 8), db  # 8: scores and times are digits too
    with sqlite3.connect(next(db for db in stores if "leads" in db.parts)) as conn:
        rows = conn.execute("SELECT name, value, evidence, attributes FROM signals").fetchall()
    assert rows and not [r for r in rows if leaks(" ".join(map(str, r)))]
    assert seconds > 10
