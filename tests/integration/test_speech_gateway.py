"""The telephony gateway on the real model (tiny.en), driven by clients written from
each platform's protocol: Twilio Media Streams, Genesys AudioHook, Asterisk
AudioSocket. The caller's words become signals under the caller's identity, the
agent's are recognised under the agent's role and never signalled; watchers follow;
bad connections get the protocol's own refusal and nothing else is disturbed."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import ssl
import struct
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import numpy as np
import pytest
import real_media
from conftest import HostFactory
from speech_audio import mulaw8k, pcm8k, speak
from telephony_clients import (
    KIND_SLIN,
    KIND_UUID,
    AudioHookClient,
    audiosocket_frame,
    audiosocket_leg,
    twilio_call,
)
from tls_ca import ThrowawayCA
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from percept.runtime.server import ServiceHost
from percept.runtime.settings import Settings
from percept.speech import g711
from percept.speech.live_calls import LiveCall
from percept.speech.service import SpeechService
from percept.v1 import common_pb2, speech_pb2_grpc
from percept.v1 import speech_pb2 as sp

pytestmark = pytest.mark.slow
CALLER = "+14155550123"
KEY = "gateway-test-key-0123456789"
FINAL = sp.RecognitionEvent.EVENT_TYPE_FINAL
AGENT, CUSTOMER = sp.CHANNEL_ROLE_AGENT, sp.CHANNEL_ROLE_CUSTOMER
PURCHASE = "Hello. I want to buy two phones for my office."
FRAMES = "percept_gateway_frames_total"


@dataclass
class Gateway:
    service: SpeechService
    host: ServiceHost
    events: list[sp.RecognitionEvent] = field(default_factory=list)
    signals: list[common_pb2.Signal] = field(default_factory=list)
    ends: list[str] = field(default_factory=list)
    ended: asyncio.Event = field(default_factory=asyncio.Event)

    async def until_ends(self, count: int) -> list[str]:
        """The end reasons once `count` calls have ended (their finals all made)."""
        async with asyncio.timeout(60):
            while len(self.ends) < count:
                self.ended.clear()
                await self.ended.wait()
        return self.ends

    @property
    def url(self) -> str:
        assert self.service.gateway is not None
        return f"ws://127.0.0.1:{self.service.gateway.port}"

    @property
    def audiosocket_port(self) -> int:
        assert self.service.gateway is not None
        return self.service.gateway.audiosocket_port

    def finals(self, role: int | None = None) -> list[sp.RecognitionEvent]:
        return [e for e in self.events if e.type == FINAL and role in (None, e.role)]

    def said(self, role: int) -> str:
        return " ".join(e.transcript for e in self.finals(role))


async def start_gateway(start_host: HostFactory, settings: Settings) -> Gateway:
    """The speech service with its gateway; every delivered event and signal recorded."""
    service = SpeechService(settings)
    host = await start_host(service, settings)
    await asyncio.wait_for(host.ready.wait(), 120)
    gateway = Gateway(service, host)
    deliver = service.servicer.deliver

    def spy(config: sp.RecognitionConfig, live: LiveCall, event: sp.RecognitionEvent) -> None:
        gateway.events.append(event)
        deliver(config, live, event)

    service.servicer.deliver = spy  # type: ignore[method-assign,assignment]
    service.servicer.publish = gateway.signals.append
    board_end = service.servicer.calls.publish

    def on_update(update: sp.CallUpdate) -> None:
        if update.type == sp.CallUpdate.UPDATE_TYPE_ENDED:
            gateway.ends.append(update.end_reason)
            gateway.ended.set()
        board_end(update)

    service.servicer.calls.publish = on_update  # type: ignore[method-assign]
    return gateway


@pytest.fixture
def customer_audio(tmp_path: Path) -> bytes:
    return mulaw8k(speak(PURCHASE, tmp_path / "customer.wav"))


def intents_of(events: list[sp.RecognitionEvent]) -> set[str]:
    return {i.name for e in events for i in e.intents}


class Watching:
    """WatchCalls over gRPC, collected in the background."""

    def __init__(self, gateway: Gateway) -> None:
        self.channel = grpc.aio.insecure_channel(gateway.host.address)
        self.stream = speech_pb2_grpc.SpeechStub(self.channel).WatchCalls(sp.WatchCallsRequest())
        self.updates: list[sp.CallUpdate] = []

    async def until_ended(self, call_id: str) -> list[sp.CallUpdate]:
        async with asyncio.timeout(30):
            async for update in self.stream:
                self.updates.append(update)
                ended = update.type == sp.CallUpdate.UPDATE_TYPE_ENDED
                if ended and update.call.call_id == call_id:
                    break
        self.stream.cancel()
        await self.channel.close()
        return [u for u in self.updates if u.call.call_id == call_id]


async def test_a_twilio_stream_is_recognised_per_track_with_the_callers_identity(
    make_settings: Callable[..., Settings], start_host: HostFactory, customer_audio: bytes
) -> None:
    gateway = await start_gateway(start_host, make_settings())
    agent_call = real_media.telephone_call("en", 3)
    agent = g711.compress(agent_call.pcm, "mulaw")
    watching = Watching(gateway)
    await asyncio.wait_for(watching.stream.initial_metadata(), 10)  # watching before the call
    ws = await twilio_call(
        f"{gateway.url}/twilio",
        {"inbound": customer_audio, "outbound": agent},
        call_sid="CA-gateway-1",
        parameters={"caller": CALLER, "campaign": "spring"},
        pace=0,
    )
    assert ws.close_code == 1000
    assert await gateway.until_ends(1) == ["completed"]
    assert "purchase_intent" in intents_of(gateway.finals(CUSTOMER))
    assert "phone" in gateway.said(CUSTOMER).lower()
    # the caller's signals carry the caller's number, the call and the campaign; the
    # agent's finals (recognised, with their own intents if any) are never signalled
    assert gateway.signals and all(s.identity.phone == CALLER for s in gateway.signals)
    assert {s.campaign_id for s in gateway.signals} == {"spring"}
    assert any(s.kind == common_pb2.SIGNAL_KIND_INTENT for s in gateway.signals)
    evidence = " ".join(s.evidence for s in gateway.signals)
    assert all(f.transcript not in evidence for f in gateway.finals(AGENT))
    # the agent's track is recognised as well as the bare model hears it
    heard = (g711.expand(agent, "mulaw") / 32768).astype(np.float32)
    bare = real_media.bare_transcript(gateway.service.settings, heard, "en")
    ours, theirs = (real_media.wer(agent_call.text, t, "en") for t in (gateway.said(AGENT), bare))
    assert ours <= theirs + 0.05, f"gateway {ours:.3f}, bare {theirs:.3f}: {gateway.said(AGENT)}"
    # a watcher followed the call from its start to its end, both roles
    updates = await watching.until_ended("CA-gateway-1")
    kinds = [u.type for u in updates]
    assert kinds[0] == sp.CallUpdate.UPDATE_TYPE_STARTED and updates[0].call.source == "twilio"
    assert list(updates[0].call.channel_roles) == [CUSTOMER, AGENT]
    assert updates[-1].end_reason == "completed"
    heard_roles = {u.event.role for u in updates if u.event.type == FINAL}
    assert heard_roles == {CUSTOMER, AGENT}
    assert not any(u.call.campaign_id != "spring" for u in updates)


async def test_a_caller_id_that_is_no_number_leaves_the_call_without_one(
    make_settings: Callable[..., Settings], start_host: HostFactory, customer_audio: bytes
) -> None:
    """Platforms send "anonymous", "client:alice" or a SIP URI as the caller: the call
    goes on without a phone key. Kept, it made leads refuse every signal of the call."""
    gateway = await start_gateway(start_host, make_settings())
    ws = await twilio_call(
        f"{gateway.url}/twilio",
        {"inbound": customer_audio},
        call_sid="CA-anonymous",
        parameters={"caller": "anonymous"},
        pace=0,
    )
    assert ws.close_code == 1000
    assert await gateway.until_ends(1) == ["completed"]
    assert "purchase_intent" in intents_of(gateway.finals(CUSTOMER))
    assert gateway.signals
    assert all(s.identity.call_id == "CA-anonymous" for s in gateway.signals)
    assert not any(s.identity.phone for s in gateway.signals)


async def test_an_audiohook_session_pauses_exactly_what_was_paused(
    make_settings: Callable[..., Settings],
    start_host: HostFactory,
    customer_audio: bytes,
    tmp_path: Path,
) -> None:
    secret = b"the integration's client secret"
    settings = make_settings(
        api_keys=[KEY],
        speech_audiohook_client_secret=base64.b64encode(secret).decode(),
    )
    gateway = await start_gateway(start_host, settings)
    secret_words = mulaw8k(speak("My card number is four one one one.", tmp_path / "card.wav"))
    after = mulaw8k(speak("Please send the quote to my email.", tmp_path / "after.wav"))
    quiet = b"\xff" * 8000
    agent = g711.compress(real_media.telephone_call("en", 1, seed=4).pcm, "mulaw")
    client = AudioHookClient(f"{gateway.url}/audiohook", KEY, client_secret=secret)
    await client.connect()
    conversation = str(uuid.uuid4())
    opened = await client.open(conversation, ani=CALLER, custom={"campaignId": "autumn"})
    assert opened["parameters"]["media"][0]["channels"] == ["external", "internal"]
    assert opened["clientseq"] == 1 and opened["id"] == client.session_id
    await client.play([customer_audio + quiet, agent[: len(customer_audio) + 8000]], pace=0)
    await client.send("ping", {"rtt": "PT0.05S"})
    await client.expect("pong")
    await client.send("paused")
    await client.play([secret_words + quiet, b"\xff" * (len(secret_words) + 8000)], pace=0)
    await client.send("resumed")
    await client.play([after + quiet, b"\xff" * (len(after) + 8000)], pace=0)
    closed = await client.close()
    assert closed["type"] == "closed" and closed["clientseq"] == client.seq
    await gateway.until_ends(1)
    customer = gateway.said(CUSTOMER).lower()
    assert "phone" in customer and "email" in customer
    assert "card" not in customer and "four" not in customer, customer
    assert "purchase_intent" in intents_of(gateway.finals(CUSTOMER))
    assert all(s.identity.phone == CALLER for s in gateway.signals)
    assert {s.campaign_id for s in gateway.signals} == {"autumn"}
    assert gateway.finals(AGENT), "the internal channel is the agent's"
    assert gateway.ends[-1] == "completed"


async def test_an_audiohook_pause_of_minutes_keeps_the_conversation_clock(
    make_settings: Callable[..., Settings], start_host: HostFactory
) -> None:
    """A secure pause (card capture) lasts minutes: `resumed` says how much the client
    did not send, and all of it is kept as silence, so what is said after the pause is
    stamped on Genesys's conversation clock. The session id is kept as the client
    wrote it (upper case here): later messages carry it verbatim, replies echo it."""
    gateway = await start_gateway(start_host, make_settings(api_keys=[KEY]))
    assert gateway.service.gateway is not None
    ctx = gateway.service.gateway.ctx
    client = AudioHookClient(f"{gateway.url}/audiohook", KEY)
    client.session_id = client.session_id.upper()
    await client.connect()
    opened = await client.open(str(uuid.uuid4()))
    assert opened["type"] == "opened" and opened["id"] == client.session_id
    await client.play([b"\xff" * 800, b"\xff" * 800], pace=0)  # 0.1 s
    await client.send("ping")
    assert (await client.expect("pong"))["id"] == client.session_id
    (call,) = ctx.calls
    await client.send("paused")
    call.started -= 300.0  # five minutes of wall clock pass while paused
    await client.send("resumed", {"start": "PT0.1S", "discarded": "PT180.5S"})
    await client.play([b"\xff" * 800, b"\xff" * 800], pace=0)
    await client.send("ping")
    await client.expect("pong")  # every message before it was handled
    heard = {name: track.received_s for name, track in call.tracks.items()}
    assert heard == {name: pytest.approx(180.7, abs=0.01) for name in ("external", "internal")}
    closed = await client.close()
    assert closed["type"] == "closed"
    assert await gateway.until_ends(1) == ["completed"]


async def test_an_audiohook_probe_is_answered_without_a_call(
    make_settings: Callable[..., Settings], start_host: HostFactory
) -> None:
    gateway = await start_gateway(start_host, make_settings(api_keys=[KEY]))
    client = AudioHookClient(f"{gateway.url}/audiohook", KEY)
    await client.connect()
    await client.open("00000000-0000-0000-0000-000000000000")
    await client.play([b"\xff" * 1600, b"\xff" * 1600], pace=0)
    await client.close()
    assert gateway.ends == [] and not gateway.service.servicer.calls.calls


async def test_two_audiosocket_legs_are_one_call_with_roles(
    make_settings: Callable[..., Settings], start_host: HostFactory, tmp_path: Path
) -> None:
    gateway = await start_gateway(start_host, make_settings())
    customer = pcm8k(speak(PURCHASE, tmp_path / "c.wav")).tobytes()
    agent = real_media.telephone_call("en", 2, seed=5).pcm.tobytes()
    prefix = str(uuid.uuid4())[:24]
    legs = [
        audiosocket_leg(
            "127.0.0.1", gateway.audiosocket_port, uuid.UUID(prefix + suffix), pcm, pace=0
        )
        for suffix, pcm in (("000000000002", customer), ("000000000001", agent))
    ]
    backs = await asyncio.gather(*legs)
    assert backs == [b"", b""]  # nothing is sent back: no audio, no hang-up frame
    await gateway.until_ends(1)
    assert "purchase_intent" in intents_of(gateway.finals(CUSTOMER))
    assert gateway.finals(AGENT)
    assert {e.channel for e in gateway.finals()} == {0, 1}
    assert gateway.signals and all(
        s.identity.call_id == prefix.rstrip("-") for s in gateway.signals
    )
    assert gateway.ends == ["completed"]


async def test_a_dropped_socket_still_gets_its_last_final_and_signals(
    make_settings: Callable[..., Settings], start_host: HostFactory, customer_audio: bytes
) -> None:
    gateway = await start_gateway(start_host, make_settings())
    async with connect(f"{gateway.url}/twilio") as ws:
        start = {
            "callSid": "CA-drop",
            "tracks": ["inbound"],
            "customParameters": {"caller": CALLER},
        }
        await ws.send(json.dumps({"event": "start", "start": start}))
        for n in range(0, len(customer_audio), 160):
            payload = base64.b64encode(customer_audio[n : n + 160]).decode()
            media = {"track": "inbound", "timestamp": str(n // 8), "payload": payload}
            await ws.send(json.dumps({"event": "media", "media": media}))
        ws.transport.abort()  # no stop, no close frame: the line went dead
    await gateway.until_ends(1)
    assert gateway.ends == ["dropped"]
    assert "purchase_intent" in intents_of(gateway.finals(CUSTOMER))
    assert gateway.signals


# -- bad input ----------------------------------------------------------------------


async def _closed_with(url: str, *frames: str | bytes) -> tuple[int | None, str]:
    async with connect(url) as ws:
        for frame in frames:
            await ws.send(frame)
        await asyncio.wait_for(ws.wait_closed(), 30)
    return ws.close_code, ws.close_reason or ""


def _event(event: str, **body: object) -> str:
    return json.dumps({"event": event, **body})


async def test_bad_media_streams_are_closed_with_the_code_that_says_why(
    make_settings: Callable[..., Settings],
    start_host: HostFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    gateway = await start_gateway(start_host, make_settings(speech_gateway_max_frame_bytes=4096))
    url = f"{gateway.url}/twilio"
    start = _event("start", start={"callSid": "CA-bad", "tracks": ["inbound"]})
    media = _event("media", media={"track": "inbound", "payload": "//8="})
    cases: list[tuple[tuple[str | bytes, ...], int, str]] = [
        (("not json",), 1007, "not JSON"),
        ((b"\x00\x01",), 1003, "binary"),
        # an event this gateway does not know is logged and skipped: the call goes on
        ((_event("hello"), _event("hello"), _event("stop", stop={})), 1000, "stopped"),
        ((media,), 1008, "media before start"),
        ((start, start), 1008, "a second start"),
        ((start, _event("media", media={"track": "inbound", "payload": "***"})), 1007, "base64"),
        (
            (start, _event("media", media={"track": "outbound", "payload": "//8="})),
            1008,
            "outbound track",
        ),
        (
            (
                _event(
                    "start", start={"mediaFormat": {"encoding": "audio/x-l16", "sampleRate": 16000}}
                ),
            ),
            1003,
            "encoding",
        ),
        (("x" * 5000,), 1009, ""),
    ]
    for frames, code, words in cases:
        closed, reason = await _closed_with(url, *frames)
        assert closed == code and words in reason, (frames[-1][:60], closed, reason)
    reasons = [
        str(r.__dict__.get("reason"))
        for r in caplog.records
        if r.getMessage() == "gateway connection refused"
    ]
    assert len(reasons) == len(cases) - 1  # every one but the skipped event, with its reason
    assert "a frame over 4096 bytes" in reasons
    with pytest.raises(InvalidStatus) as missing:
        async with connect(f"{gateway.url}/nowhere"):
            pass
    assert missing.value.response.status_code == 404
    # none of it disturbed the service: a good call still goes through
    closed, _ = await _closed_with(url, start, media, _event("stop", stop={}))
    assert closed == 1000
    errors = gateway.service.registry.get_sample_value(
        "percept_gateway_decode_errors_total", {"gateway": "twilio"}
    )
    assert errors is not None and errors >= 2
    unknown = gateway.service.registry.get_sample_value(
        "percept_gateway_unknown_events_total", {"gateway": "twilio"}
    )
    assert unknown == 2  # each one counted, its name logged once
    skipped = [r for r in caplog.records if r.getMessage() == "unknown Media Streams event skipped"]
    assert len(skipped) == 1


async def test_an_idle_stream_is_ended_with_its_finals(
    make_settings: Callable[..., Settings], start_host: HostFactory, customer_audio: bytes
) -> None:
    gateway = await start_gateway(start_host, make_settings(speech_gateway_idle_timeout_s=1.5))
    async with connect(f"{gateway.url}/twilio") as ws:
        start = {
            "callSid": "CA-idle",
            "tracks": ["inbound"],
            "customParameters": {"caller": CALLER},
        }
        await ws.send(_event("start", start=start))
        for n in range(0, len(customer_audio), 160):
            payload = base64.b64encode(customer_audio[n : n + 160]).decode()
            await ws.send(_event("media", media={"track": "inbound", "payload": payload}))
        await asyncio.wait_for(ws.wait_closed(), 30)  # then nothing more is sent
    assert ws.close_code == 1008 and "idle" in (ws.close_reason or "")
    await gateway.until_ends(1)  # the socket is closed first, then the finals are made
    assert "purchase_intent" in intents_of(gateway.finals(CUSTOMER))
    assert gateway.ends == ["error"]


async def test_credentials_are_checked_as_each_platform_sends_them(
    make_settings: Callable[..., Settings], start_host: HostFactory
) -> None:
    read_only = "read-only-key-0123456789:read"
    secret = b"client secret"
    gateway = await start_gateway(
        start_host,
        make_settings(
            api_keys=[KEY, read_only],
            speech_audiohook_client_secret=base64.b64encode(secret).decode(),
        ),
    )
    twilio_url = f"{gateway.url}/twilio"
    start = {"callSid": "CA-key", "tracks": ["inbound"]}
    # Twilio: a key in the upgrade's header, or in start's customParameters
    refusals = []
    for headers in ({"X-API-KEY": "not-a-key-at-all-0000"}, {"X-API-KEY": read_only.split(":")[0]}):
        with pytest.raises(InvalidStatus) as refused:
            async with connect(twilio_url, additional_headers=headers):
                pass
        refusals.append(refused.value.response)
    assert [r.status_code for r in refusals] == [401, 401]
    assert b"not one of this server's keys" in refusals[0].body
    assert b"'perceive' scope" in refusals[1].body
    closed, reason = await _closed_with(twilio_url, _event("start", start=start))
    assert closed == 1008 and "API key is required" in reason
    keyed = start | {"customParameters": {"key": KEY}}
    closed, _ = await _closed_with(
        twilio_url, _event("start", start=keyed), _event("stop", stop={})
    )
    assert closed == 1000
    # AudioHook: X-API-KEY and the signature over the upgrade request
    for client in (
        AudioHookClient(f"{gateway.url}/audiohook", "not-a-key-at-all-0000", client_secret=secret),
        AudioHookClient(f"{gateway.url}/audiohook", KEY, client_secret=b"another secret"),
        AudioHookClient(f"{gateway.url}/audiohook", KEY),
    ):
        with pytest.raises(InvalidStatus) as refused:
            await client.connect()
        assert refused.value.response.status_code == 401
    good = AudioHookClient(f"{gateway.url}/audiohook", KEY, client_secret=secret)
    await good.connect()
    await good.open(str(uuid.uuid4()))
    await good.close()


async def test_audiohook_protocol_errors_disconnect_with_a_reason(
    make_settings: Callable[..., Settings], start_host: HostFactory
) -> None:
    gateway = await start_gateway(start_host, make_settings(api_keys=[KEY]))
    url = f"{gateway.url}/audiohook"
    # a message out of sequence
    client = AudioHookClient(url, KEY)
    await client.connect()
    await client.open(str(uuid.uuid4()))
    client.seq += 1  # skips one
    await client.send("ping")
    disconnect = await client.expect("disconnect")
    assert disconnect["parameters"]["reason"] == "error"
    assert "seq" in disconnect["parameters"]["info"]
    await client.send("close", {"reason": "disconnected"})
    await client.expect("closed")
    # audio before open
    client = AudioHookClient(url, KEY)
    await client.connect()
    assert client.ws is not None
    await client.ws.send(b"\xff" * 320)
    await asyncio.wait_for(client.ws.wait_closed(), 30)
    # media the server cannot take
    client = AudioHookClient(url, KEY)
    await client.connect()
    await client.send(
        "open",
        {
            "organizationId": client.organization_id,
            "conversationId": str(uuid.uuid4()),
            "media": [{"type": "audio", "format": "L16", "rate": 16000, "channels": ["external"]}],
        },
    )
    disconnect = await client.expect("disconnect")
    assert "PCMU" in disconnect["parameters"]["info"]
    assert gateway.ends.count("error") <= 1


async def test_bad_audiosocket_connections_are_closed_and_logged(
    make_settings: Callable[..., Settings],
    start_host: HostFactory,
    caplog: pytest.LogCaptureFixture,
    tmp_path: Path,
) -> None:
    gateway = await start_gateway(start_host, make_settings(speech_gateway_max_frame_bytes=4096))
    port = gateway.audiosocket_port

    async def send(data: bytes) -> bytes:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(data)
        await writer.drain()
        writer.write_eof()  # Asterisk hangs up by closing its side
        back = await asyncio.wait_for(reader.read(), 30)
        writer.close()
        return back

    call = uuid.uuid4().bytes
    slin = audiosocket_frame(KIND_SLIN, b"\x00\x00" * 160)
    cases = [
        (audiosocket_frame(KIND_SLIN, b"\x00\x00"), "UUID"),
        (audiosocket_frame(KIND_UUID, b"short"), "UUID"),
        (audiosocket_frame(KIND_UUID, call) + struct.pack(">BH", KIND_SLIN, 60000), "over 4096"),
        (audiosocket_frame(KIND_UUID, call) + slin + audiosocket_frame(0x42, b"?"), "0x42"),
        (audiosocket_frame(KIND_UUID, call) + audiosocket_frame(KIND_SLIN, b"\x00"), "odd"),
    ]
    for data, words in cases:
        caplog.clear()
        assert await send(data) == b""
        refused = [r for r in caplog.records if r.getMessage() == "gateway connection refused"]
        assert refused and words in str(refused[0].__dict__.get("reason")), words
    # a hang-up mid-frame: the call ends as dropped, with the finals it had
    customer = pcm8k(speak(PURCHASE, tmp_path / "c.wav")).tobytes()
    before = len(gateway.ends)
    data = audiosocket_frame(KIND_UUID, uuid.uuid4().bytes)
    data += b"".join(
        audiosocket_frame(KIND_SLIN, customer[i : i + 320]) for i in range(0, len(customer), 320)
    )
    assert await send(data + struct.pack(">BH", KIND_SLIN, 320) + b"\x00" * 10) == b""
    await gateway.until_ends(before + 1)
    assert gateway.ends[-1] == "dropped"
    assert "purchase_intent" in intents_of(gateway.finals())


async def test_a_twilio_signature_admits_a_stream_without_a_key(
    make_settings: Callable[..., Settings], start_host: HostFactory
) -> None:
    token = "twilio-auth-token-0123"
    gateway = await start_gateway(
        start_host, make_settings(api_keys=[KEY], speech_twilio_auth_token=token)
    )
    url = f"{gateway.url}/twilio"
    host = url.split("://", 1)[1].split("/", 1)[0]
    signed = f"wss://{host}/twilio"  # what Twilio signs: the URL it was given
    digest = hmac.new(token.encode(), signed.encode(), hashlib.sha1).digest()
    signature = base64.b64encode(digest).decode()
    start = _event("start", start={"callSid": "CA-signed", "tracks": ["inbound"]})
    async with connect(url, additional_headers={"X-Twilio-Signature": signature}) as ws:
        await ws.send(start)
        await ws.send(_event("stop", stop={}))
        await asyncio.wait_for(ws.wait_closed(), 30)
    assert ws.close_code == 1000
    forged = base64.b64encode(hashlib.sha1(b"forged").digest()).decode()
    with pytest.raises(InvalidStatus) as refused:
        async with connect(url, additional_headers={"X-Twilio-Signature": forged}):
            pass
    assert refused.value.response.status_code == 401
    assert b"X-Twilio-Signature does not match" in refused.value.response.body


async def test_calls_past_a_keys_share_are_refused_and_others_go_on(
    make_settings: Callable[..., Settings],
    start_host: HostFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    gateway = await start_gateway(
        start_host,
        make_settings(api_keys=[KEY], speech_gateway_max_calls_per_key=1),
    )
    url = f"{gateway.url}/twilio"
    headers = {"X-API-KEY": KEY}

    def start(sid: str) -> str:
        body = {"callSid": sid, "tracks": ["inbound"], "customParameters": {"caller": CALLER}}
        return _event("start", start=body)

    async with connect(url, additional_headers=headers) as first:
        await first.send(start("CA-first"))
        await first.send(_event("media", media={"track": "inbound", "payload": "//8="}))
        async with connect(url, additional_headers=headers) as second:
            await second.send(start("CA-second"))
            await asyncio.wait_for(second.wait_closed(), 30)
        assert second.close_code == 1013 and "holds its 1 calls" in (second.close_reason or "")
        await first.send(_event("stop", stop={}))
        await asyncio.wait_for(first.wait_closed(), 30)
    assert first.close_code == 1000
    refused = gateway.service.registry.get_sample_value(
        "percept_gateway_calls_total", {"gateway": "twilio", "outcome": "refused"}
    )
    assert refused == 1
    # nothing logged carries the caller's number or the key
    logged = " ".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)
    assert CALLER not in logged and KEY not in logged


async def test_a_server_stop_ends_gateway_calls_with_their_finals(
    make_settings: Callable[..., Settings], start_host: HostFactory, customer_audio: bytes
) -> None:
    gateway = await start_gateway(start_host, make_settings(api_keys=[KEY]))
    twilio = await connect(f"{gateway.url}/twilio", additional_headers={"X-API-KEY": KEY})
    body = {"callSid": "CA-stop", "tracks": ["inbound"], "customParameters": {"caller": CALLER}}
    await twilio.send(_event("start", start=body))
    for n in range(0, len(customer_audio), 160):
        payload = base64.b64encode(customer_audio[n : n + 160]).decode()
        await twilio.send(_event("media", media={"track": "inbound", "payload": payload}))
    hook = AudioHookClient(f"{gateway.url}/audiohook", KEY)
    await hook.connect()
    await hook.open(str(uuid.uuid4()), ani=CALLER)
    await hook.play([customer_audio, b"\xff" * len(customer_audio)], pace=0)
    # an AudioSocket leg left open: the stop closes it, which is no hang-up
    reader, writer = await asyncio.open_connection("127.0.0.1", gateway.audiosocket_port)
    slin = g711.expand(customer_audio, "mulaw").tobytes()
    writer.write(audiosocket_frame(KIND_UUID, uuid.uuid4().bytes))
    sent = range(0, len(slin), 320)
    for n in sent:
        writer.write(audiosocket_frame(KIND_SLIN, slin[n : n + 320]))
    await writer.drain()
    frames = {"gateway": "audiosocket"}
    async with asyncio.timeout(30):  # the server has read them all: the stop cuts no word
        while gateway.service.registry.get_sample_value(FRAMES, frames) != len(sent):  # noqa: ASYNC110 - a metric, no event
            await asyncio.sleep(0.05)

    async def answer_disconnect() -> dict[str, object]:
        message = await hook.expect("disconnect")
        await hook.send("close", {"reason": "disconnect"})
        await hook.expect("closed")
        return message

    answering = asyncio.create_task(answer_disconnect())
    await gateway.host.stop(grace=30)
    disconnect = await answering
    assert disconnect["parameters"] == {"reason": "completed", "info": "the server is stopping"}
    await asyncio.wait_for(twilio.wait_closed(), 10)
    assert twilio.close_code == 1001
    with contextlib.suppress(ConnectionResetError):  # closed with our frames unread
        assert await asyncio.wait_for(reader.read(), 10) == b""
    writer.close()
    assert sorted(gateway.ends) == ["shutdown", "shutdown", "shutdown"]
    finals = gateway.finals(CUSTOMER)
    assert len(finals) == 2 and all("phone" in f.transcript.lower() for f in finals)
    unspecified = gateway.said(sp.CHANNEL_ROLE_UNSPECIFIED).lower()
    assert "phone" in unspecified, "the AudioSocket leg's last words are final too"


async def test_silence_for_lost_audio_never_runs_ahead_of_the_wall_clock(
    make_settings: Callable[..., Settings], start_host: HostFactory
) -> None:
    gateway = await start_gateway(start_host, make_settings())
    assert gateway.service.gateway is not None
    ctx = gateway.service.gateway.ctx
    async with connect(f"{gateway.url}/twilio") as ws:
        body = {"callSid": "CA-gap", "tracks": ["inbound"]}
        await ws.send(_event("start", start=body))
        # timestamps that jump by minutes, frame after frame: each claims a long hole
        for n in range(20):
            media = {"track": "inbound", "timestamp": str(n * 200_000), "payload": "//8="}
            await ws.send(_event("media", media=media))
        registry = gateway.service.registry
        for _ in range(100):  # until the server has read all 20 frames
            await asyncio.sleep(0.05)
            frames = registry.get_sample_value(
                "percept_gateway_frames_total", {"gateway": "twilio"}
            )
            if frames == 20:
                break
        assert frames == 20
        (call,) = [c for c in ctx.calls if c.call_id == "CA-gap"]
        track = call.tracks["inbound"]
        elapsed = time.monotonic() - call.started
        assert track.received_s <= elapsed + 5.5  # not 20 x 120 s of silence in memory
        await ws.send(_event("stop", stop={}))
    claimed = gateway.service.registry.get_sample_value(
        "percept_gateway_gap_seconds_total", {"gateway": "twilio"}
    )
    assert claimed is not None and claimed >= 19 * 199  # what the peer claimed is counted


async def test_keepalives_do_not_hold_a_stream_open(
    make_settings: Callable[..., Settings], start_host: HostFactory
) -> None:
    gateway = await start_gateway(start_host, make_settings(speech_gateway_idle_timeout_s=1.0))
    began = time.monotonic()
    async with connect(f"{gateway.url}/twilio") as ws:
        with contextlib.suppress(ConnectionClosed):
            for _ in range(20):  # 'connected' every 0.3 s, never a start
                await ws.send(_event("connected", protocol="Call", version="1.0.0"))
                await asyncio.sleep(0.3)
        await asyncio.wait_for(ws.wait_closed(), 10)
    assert ws.close_code == 1008 and "idle" in (ws.close_reason or "")
    assert time.monotonic() - began < 3


async def test_the_gateway_speaks_tls_with_the_services_certificate(
    make_settings: Callable[..., Settings], start_host: HostFactory, tmp_path: Path
) -> None:
    ca = ThrowawayCA(tmp_path / "ca")
    server = ca.issue("speech", server=True)
    gateway = await start_gateway(
        start_host,
        make_settings(api_keys=[KEY], tls_cert_file=server.cert, tls_key_file=server.key),
    )
    assert gateway.service.gateway is not None
    port = gateway.service.gateway.port
    trust = ssl.create_default_context(cafile=str(ca.bundle))
    client = AudioHookClient(f"wss://localhost:{port}/audiohook", KEY)
    client.ws = await connect(
        client.url, ssl=trust, additional_headers=client.headers(f"localhost:{port}")
    )
    await client.open(str(uuid.uuid4()), ani=CALLER)
    await client.close()
    assert await gateway.until_ends(1) == ["completed"]
    with pytest.raises(ssl.SSLError):  # a certificate this client does not trust
        await connect(f"wss://localhost:{port}/audiohook", ssl=ssl.create_default_context())
