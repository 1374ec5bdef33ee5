"""The telephony gateway's protocol parts, without a model: parsing, timelines,
signatures, AudioSocket framing and call admission."""

from __future__ import annotations

import asyncio
import base64
import json
import struct
import uuid

import pytest

from percept.speech.gateway import audiohook, audiohook_signature, audiosocket, twilio
from percept.speech.gateway import call as call_module
from percept.speech.gateway.errors import AuthError, ProtocolError
from percept.speech.gateway.limits import Admission, CallRefusedError
from percept.v1 import speech_pb2 as sp

SECRET = b"a client secret of the integration"
KEY = "a-key-of-sixteen-or-more"


def test_a_twilio_start_gives_the_call_tracks_law_and_parameters() -> None:
    start = twilio.parse_start(
        {
            "event": "start",
            "streamSid": "MZ1",
            "start": {
                "callSid": "CA1",
                "tracks": ["inbound", "outbound"],
                "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
                "customParameters": {"from": "+14155550123", "campaign": "spring", "key": "k"},
            },
        }
    )
    assert start.caller.call_id == "CA1" and start.caller.phone == "+14155550123"
    assert start.caller.campaign_id == "spring" and start.key == "k"
    assert start.tracks == ("inbound", "outbound") and start.law == "mulaw"


def test_a_telnyx_start_is_read_in_its_own_spelling() -> None:
    start = twilio.parse_start(
        {
            "event": "start",
            "stream_id": "s1",
            "start": {
                "call_control_id": "v3:abc",
                "media_format": {"encoding": "PCMA", "sample_rate": 8000, "channels": 1},
            },
        }
    )
    assert start.caller.call_id == "v3:abc" and start.law == "alaw"


@pytest.mark.parametrize(
    ("media", "words"),
    [
        ({"encoding": "audio/x-l16", "sampleRate": 16000}, "encoding"),
        ({"encoding": "audio/x-mulaw", "sampleRate": 16000}, "16000 Hz"),
        ({"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 2}, "2 channel"),
    ],
)
def test_a_start_in_a_format_not_taken_names_it(media: dict[str, object], words: str) -> None:
    with pytest.raises(ProtocolError) as refused:
        twilio.parse_start({"event": "start", "start": {"mediaFormat": media}})
    assert refused.value.code == 1003 and words in refused.value.reason


@pytest.mark.parametrize(
    ("frame", "code", "words"),
    [
        ("not json", 1007, "not JSON"),
        ("[1, 2]", 1007, "'event'"),
        (b"\x00", 1003, "binary"),
    ],
)
def test_frames_that_are_not_media_stream_messages_are_named(
    frame: str | bytes, code: int, words: str
) -> None:
    with pytest.raises(ProtocolError) as refused:
        twilio.parse_message(frame)
    assert refused.value.code == code and words in refused.value.reason


def test_media_payloads_and_tracks_are_checked() -> None:
    payload = base64.b64encode(b"\xff" * 160).decode()
    media = {"track": "outbound", "timestamp": "40", "payload": payload}
    message = {"event": "media", "media": media}
    assert twilio.parse_media(message) == ("outbound", 40, b"\xff" * 160)
    for media, words in (
        ({"track": "inbound", "payload": "%%%"}, "base64"),
        ({"track": "sideways", "payload": payload}, "inbound or outbound"),
        ({"track": "inbound", "payload": payload, "timestamp": "soon"}, "milliseconds"),
    ):
        with pytest.raises(ProtocolError) as refused:
            twilio.parse_media({"event": "media", "media": media})
        assert words in refused.value.reason


def test_a_timeline_fills_holes_with_silence_but_not_jitter() -> None:
    timeline = twilio.Timeline()
    assert timeline.fill("inbound", 0, 160) == (0.0, 0.0)
    assert timeline.fill("inbound", 40, 160) == (0.0, 0.0)  # 20 ms late: jitter
    assert timeline.fill("inbound", 40, 160) == (0.0, 0.0)  # 20 ms early: it was
    silence, hole = timeline.fill("inbound", 1060, 160)  # 1 s lost
    assert hole == pytest.approx(1.0) and silence == pytest.approx(1.0)
    # a track that starts late starts silent, so both tracks share one clock
    silence, hole = timeline.fill("outbound", 2000, 160)
    assert silence == pytest.approx(2.0) and hole == pytest.approx(2.0)
    # a very long hole is filled only up to the cap
    silence, _ = timeline.fill("outbound", 2020 + 600_000, 160)
    assert silence == twilio.MAX_GAP_S


def test_frames_lost_one_at_a_time_are_filled_once_they_add_up() -> None:
    """Each lost 20 ms frame is within the jitter tolerance, but a track fed only what
    came would fall behind the stream's clock by every frame lost (2 % loss: 1.2 s a
    minute), and with it the other track's turns."""
    timeline = twilio.Timeline()
    fed = 0.0
    for n in range(3000):  # a minute of 20 ms frames, every 50th lost
        if n % 50 != 0:
            silence, _ = timeline.fill("inbound", n * 20, 160)
            fed += silence + 0.02
    assert abs(fed - 60.0) <= twilio.GAP_TOLERANCE_MS / 1000  # within the tolerance
    # stamps that go back (a platform that starts again) fill nothing and start again
    assert timeline.fill("inbound", 0, 160) == (0.0, 0.0)
    assert timeline.fill("inbound", 20, 160) == (0.0, 0.0)


def test_audiohook_media_choice_prefers_both_channels_of_pcmu() -> None:
    offered = [
        {"type": "audio", "format": "PCMU", "channels": ["external"], "rate": 8000},
        {"type": "audio", "format": "PCMU", "channels": ["external", "internal"], "rate": 8000},
        {"type": "audio", "format": "L16", "channels": ["external", "internal"], "rate": 16000},
    ]
    assert audiohook.choose_media(offered)["channels"] == ["external", "internal"]
    with pytest.raises(audiohook.Disconnect) as refused:
        audiohook.choose_media(offered[2:])
    assert "PCMU 8000" in refused.value.info


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("PT0S", 0.0), ("PT1.5S", 1.5), ("PT.5S", 0.5), ("PT2M3.25S", 123.25), ("PT1H", 3600)],
)
def test_audiohook_positions_are_iso_durations(text: str, seconds: float) -> None:
    assert audiohook.parse_duration(text, "position") == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["PT", "1.5", "P1D", "PT1.S", "PT.S", 3])
def test_a_position_that_is_not_a_duration_is_refused(text: object) -> None:
    with pytest.raises(audiohook.Disconnect):
        audiohook.parse_duration(text, "position")


def _signed_headers(created: int, **override: str) -> dict[str, str]:
    headers = {
        "Host": "percept.example.com",
        "Audiohook-Organization-Id": str(uuid.uuid4()),
        "Audiohook-Session-Id": str(uuid.uuid4()),
        "Audiohook-Correlation-Id": str(uuid.uuid4()),
        "X-API-KEY": KEY,
    }
    headers |= audiohook_signature.sign(
        headers, "/audiohook", SECRET, KEY, nonce="n" * 24, created=created
    )
    return headers | override


def _getter(headers: dict[str, str]):  # type: ignore[no-untyped-def]
    lower = {k.lower(): v for k, v in headers.items()}
    return lambda name: [lower[name.lower()]] if name.lower() in lower else []


def test_an_audiohook_signature_verifies_and_any_change_breaks_it() -> None:
    headers = _signed_headers(created=1_000_000)
    audiohook_signature.verify(_getter(headers), "/audiohook", SECRET, KEY, now=1_000_002)
    cases = [
        ({}, "/audiohook?x=1", SECRET, 1_000_002, "does not match"),
        ({}, "/audiohook", b"another secret", 1_000_002, "does not match"),
        ({"Audiohook-Session-Id": str(uuid.uuid4())}, "/audiohook", SECRET, 1_000_002, "match"),
        ({}, "/audiohook", SECRET, 1_000_030, "older than"),
        ({}, "/audiohook", SECRET, 999_990, "future"),
        ({"Signature": "sig1=:AAAA:"}, "/audiohook", SECRET, 1_000_002, "does not match"),
    ]
    for override, target, secret, now, words in cases:
        with pytest.raises(AuthError) as refused:
            audiohook_signature.verify(_getter(headers | override), target, secret, KEY, now=now)
        assert words in str(refused.value)
    unsigned = {k: v for k, v in headers.items() if not k.startswith("Signature")}
    with pytest.raises(AuthError, match="not signed"):
        audiohook_signature.verify(_getter(unsigned), "/audiohook", SECRET, KEY, now=1_000_002)


def test_an_audiohook_signature_must_cover_the_session_headers() -> None:
    headers = _signed_headers(created=1_000_000)
    partial = headers["Signature-Input"].replace(' "audiohook-session-id"', "")
    with pytest.raises(AuthError):
        audiohook_signature.verify(
            _getter(headers | {"Signature-Input": partial}),
            "/audiohook",
            SECRET,
            KEY,
            now=1_000_002,
        )


@pytest.mark.parametrize(
    ("suffix", "track", "role"),
    [
        ("000000000001", "agent", sp.CHANNEL_ROLE_AGENT),
        ("000000000002", "customer", sp.CHANNEL_ROLE_CUSTOMER),
        ("1234567890ab", "caller", sp.CHANNEL_ROLE_UNSPECIFIED),
    ],
)
def test_audiosocket_legs_are_paired_by_their_uuid(suffix: str, track: str, role: int) -> None:
    call = uuid.UUID(f"4f9c2b1e-8d3a-4c55-9e21-{suffix}")
    call_id, name, found = audiosocket.leg_of(call)
    assert (name, found) == (track, role)
    if role == sp.CHANNEL_ROLE_UNSPECIFIED:
        assert call_id == str(call)
    else:
        assert call_id == "4f9c2b1e-8d3a-4c55-9e21"


async def _frames(data: bytes, limit: int = 1024) -> tuple[list[tuple[int, bytes]], str]:
    """The frames of `data` and how the stream ended: hang-up (between frames) or
    dropped (inside one)."""
    reader = asyncio.StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    frames = []
    while True:
        try:
            frames.append(await audiosocket.read_frame(reader, limit))
        except audiosocket.HangUpError:
            return frames, "hang-up"
        except asyncio.IncompleteReadError:
            return frames, "dropped"


async def test_audiosocket_frames_are_a_kind_and_a_big_endian_length() -> None:
    audio = b"\x01\x00" * 160
    data = struct.pack(">BH", 0x01, 16) + uuid.uuid4().bytes
    data += struct.pack(">BH", 0x10, len(audio)) + audio + b"\x03\x00\x011"
    frames, end = await _frames(data)
    assert [kind for kind, _ in frames] == [0x01, 0x10, 0x03] and end == "hang-up"
    assert frames[1][1] == audio and frames[2][1] == b"1"
    # a stream that ends inside a frame (its header or its payload) is a dropped line
    for cut in (struct.pack(">BH", 0x10, 320) + b"\x00" * 100, b"\x10\x01"):
        assert await _frames(cut) == ([], "dropped")
    with pytest.raises(ProtocolError, match="over 1024"):
        await _frames(struct.pack(">BH", 0x10, 4000))


def test_admission_counts_the_server_and_each_key() -> None:
    admission = Admission(max_calls=3, max_per_key=2)
    admission.admit("a")
    admission.admit("a")
    with pytest.raises(CallRefusedError, match="API key holds its 2"):
        admission.admit("a")
    admission.admit(None)
    with pytest.raises(CallRefusedError, match="gateway holds its 3"):
        admission.admit("b")
    admission.release("a")
    admission.admit("b")
    assert admission.total == 3 and dict(admission.by_key) == {"a": 1, "b": 1}


def test_close_reasons_fit_a_control_frame() -> None:
    reason = twilio._reason("é" * 200)
    assert len(reason.encode()) <= 123 and reason.endswith("…")
    assert json.dumps(reason)


@pytest.mark.parametrize("stamp", ["1e400", 1e400, -20, True, "x", 10**400, "٣"])
def test_a_media_timestamp_that_is_not_milliseconds_is_refused(stamp: object) -> None:
    payload = base64.b64encode(b"\xff").decode()
    media = {"track": "inbound", "timestamp": stamp, "payload": payload}
    with pytest.raises(ProtocolError, match="milliseconds"):
        twilio.parse_media({"event": "media", "media": media})


def test_audiohook_media_with_odd_channel_names_is_not_chosen() -> None:
    offered = [{"type": "audio", "format": "PCMU", "channels": [{}], "rate": 8000}]
    with pytest.raises(audiohook.Disconnect):
        audiohook.choose_media(offered)


def test_a_signature_that_is_not_a_byte_sequence_is_refused() -> None:
    headers = _signed_headers(created=1_000_000) | {"Signature": 'sig1=("a")'}
    with pytest.raises(AuthError, match="no byte sequence"):
        audiohook_signature.verify(_getter(headers), "/audiohook", SECRET, KEY, now=1_000_002)


async def test_a_track_far_behind_makes_its_reader_wait_until_it_drains_or_closes() -> None:
    track = call_module.Track("inbound", 0, None, None, bytes_per_s=8000)  # type: ignore[arg-type]
    limit = int(call_module.BACKLOG_S * 8000)
    await track.put(b"\xff" * (limit + 1))
    waiting = asyncio.create_task(track.put(b"\xff" * 160))
    await asyncio.sleep(0.05)
    assert not waiting.done() and track.queue.qsize() == 1  # the reader waits: memory bound
    track.taken(await track.queue.get())  # the worker catches up
    await asyncio.wait_for(waiting, 1)
    assert track.queue.qsize() == 1
    await track.put(b"\xff" * (limit + 1))
    blocked = asyncio.create_task(track.put(b"\xff" * 160))
    await asyncio.sleep(0.05)
    track.close()  # its worker died: the reader is let go, nothing more is kept
    await asyncio.wait_for(blocked, 1)
    assert track.queue.empty() and track.backlog == 0
    await track.put(b"\xff" * 160)
    assert track.queue.empty()
