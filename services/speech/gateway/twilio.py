"""Twilio Media Streams (and the Telnyx and SignalWire dialects of it) at `/twilio`.

The platform opens a WebSocket per `<Stream>` and sends JSON text frames:
`connected`, one `start` (stream, call, tracks, media format, the TwiML
`<Parameter>`s as `customParameters`), `media` frames of base64 mu-law at
8 kHz per track with a timestamp in ms, `dtmf`, `mark`, and `stop`. The
inbound track is the caller (CUSTOMER), the outbound track what the caller
hears (AGENT: an agent, an IVR). Telnyx sends the same events in snake_case
(`stream_id`, `media_format` with `PCMU`/`PCMA`, `call_control_id`, the
caller in `from`), lists no tracks in `start` (each track is taken when its
first frame comes) and may send `error` events; SignalWire speaks Twilio's
spelling. Events this gateway does not know are logged and skipped, never
fatal: a platform that adds one must not cut every call (on a bidirectional
stream a closed socket ends the TwiML). Nothing is ever sent back: a one-way
stream ends by closing the socket, and the telephone call goes on.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request

from percept.runtime.auth import bearer_token
from percept.speech.gateway.call import GatewayCall
from percept.speech.gateway.context import Caller, GatewayContext, IdleClock, ended_how
from percept.speech.gateway.errors import (
    BAD_DATA,
    NORMAL,
    POLICY,
    UNSUPPORTED,
    AuthError,
    ProtocolError,
)
from percept.v1 import speech_pb2

log = logging.getLogger("percept.speech.gateway")
GATEWAY = "twilio"
RATE = 8000
ROLES = {"inbound": speech_pb2.CHANNEL_ROLE_CUSTOMER, "outbound": speech_pb2.CHANNEL_ROLE_AGENT}
ENCODINGS = {"audio/x-mulaw": "mulaw", "pcmu": "mulaw", "pcma": "alaw", "audio/x-alaw": "alaw"}
SILENCE = {"mulaw": b"\xff", "alaw": b"\xd5"}  # the code of 0 in each law
MAX_GAP_S = 120.0  # a longer hole is filled only this much (memory stays bounded)
GAP_TOLERANCE_MS = 40  # network jitter in stamping, not lost audio
MAX_TIMESTAMP_MS = 10**11  # three years of one stream
MAX_UNKNOWN_EVENTS = 8  # distinct unknown event names logged per stream


def _field(message: dict[str, Any], camel: str, snake: str) -> Any:
    return message.get(camel, message.get(snake))


def _track(name: object) -> str:
    """`inbound`/`outbound` (media) or `inbound_track`/`outbound_track` (dtmf, Telnyx)."""
    track = str(name or "").removesuffix("_track")
    if track not in ROLES:
        raise ProtocolError(POLICY, f"media.track: {str(name)[:40]!r} is not inbound or outbound")
    return track


@dataclass(frozen=True)
class Start:
    caller: Caller
    tracks: tuple[str, ...]
    law: str
    key: str


def parse_message(text: str | bytes) -> dict[str, Any]:
    if isinstance(text, bytes):
        raise ProtocolError(UNSUPPORTED, "Media Streams frames are JSON text; got a binary frame")
    try:
        message = json.loads(text)
    except ValueError:
        raise ProtocolError(BAD_DATA, "a frame is not JSON") from None
    if not isinstance(message, dict) or not isinstance(message.get("event"), str):
        raise ProtocolError(BAD_DATA, "a frame is not a JSON object with an 'event'")
    return message


def parse_start(message: dict[str, Any]) -> Start:
    start = message.get("start")
    if not isinstance(start, dict):
        raise ProtocolError(POLICY, "start: the 'start' object is missing")
    media = _field(start, "mediaFormat", "media_format") or {}
    if not isinstance(media, dict):
        raise ProtocolError(POLICY, "start.mediaFormat is not an object")
    encoding = str(media.get("encoding", "audio/x-mulaw"))
    law = ENCODINGS.get(encoding.lower())
    if law is None:
        raise ProtocolError(
            UNSUPPORTED,
            f"start.mediaFormat.encoding {encoding[:40]!r} is not taken here "
            "(audio/x-mulaw, PCMU or PCMA)",
        )
    rate = _field(media, "sampleRate", "sample_rate") or RATE
    channels = media.get("channels", 1)
    if rate != RATE or channels != 1:
        raise ProtocolError(
            UNSUPPORTED,
            f"start.mediaFormat: {rate!s:.12} Hz, {channels!s:.4} channel(s); "
            "G.711 comes at 8000 Hz mono",
        )
    tracks = start.get("tracks", [])
    if not isinstance(tracks, list):
        raise ProtocolError(POLICY, "start.tracks is not a list of tracks")
    names = tuple(dict.fromkeys(_track(t) for t in tracks))  # none: as they come (Telnyx)
    params = _field(start, "customParameters", "custom_parameters") or {}
    if not isinstance(params, dict):
        raise ProtocolError(POLICY, "start.customParameters is not an object")

    def param(*names: str) -> str:
        return next((str(params[n]).strip() for n in names if params.get(n)), "")

    call_id = str(
        _field(start, "callSid", "call_control_id")
        or _field(message, "streamSid", "stream_id")
        or ""
    )
    caller = Caller(
        call_id=call_id[:128],
        phone=(param("caller", "from", "From") or str(start.get("from") or "").strip())[:64],
        campaign_id=param("campaign", "campaign_id")[:128],
        language=param("language")[:35],
    )
    return Start(caller, names, law, param("key"))


def parse_media(message: dict[str, Any]) -> tuple[str, int | None, bytes]:
    media = message.get("media")
    if not isinstance(media, dict):
        raise ProtocolError(POLICY, "media: the 'media' object is missing")
    track = _track(media.get("track", "inbound"))
    try:
        payload = base64.b64decode(str(media.get("payload", "")), validate=True)
    except (binascii.Error, ValueError):
        raise ProtocolError(BAD_DATA, "media.payload is not base64") from None
    return track, _timestamp(media.get("timestamp")), payload


def _timestamp(stamp: object) -> int | None:
    """Milliseconds since the stream began: an integer, or its decimal string."""
    if stamp is None:
        return None
    if isinstance(stamp, str) and stamp.isascii() and stamp.isdigit():
        value = int(stamp)
    elif isinstance(stamp, int) and not isinstance(stamp, bool):
        value = stamp
    elif isinstance(stamp, float) and stamp.is_integer():
        value = int(stamp)
    else:
        value = -1
    if not 0 <= value <= MAX_TIMESTAMP_MS:
        raise ProtocolError(POLICY, "media.timestamp is not a number of milliseconds")
    return value


def signature_valid(token: str, request: Request, given: str) -> bool:
    """X-Twilio-Signature of a WebSocket: base64 HMAC-SHA1 of the URL Twilio opened,
    keyed by the account's auth token. A proxy may add or drop the port, so each
    spelling of the host is tried (as Twilio's own validators do)."""
    host = request.headers.get("Host", "")
    bare = host.rsplit(":", 1)[0] if ":" in host and not host.endswith("]") else host
    expected = given.encode()
    for name in dict.fromkeys((host, bare, f"{bare}:443")):
        url = f"wss://{name}{request.path}"
        digest = hmac.new(token.encode(), url.encode(), hashlib.sha1).digest()
        if hmac.compare_digest(base64.b64encode(digest), expected):
            return True
    return False


@dataclass(frozen=True)
class Handshake:
    """What the upgrade request proved: `verified` (a signature or a key) and the
    bucket of the key that limits the call; unverified, `start` must bring a key."""

    verified: bool
    bucket: str | None


def check_handshake(ctx: GatewayContext, request: Request) -> Handshake:
    token = ctx.settings.speech_twilio_auth_token
    signature = request.headers.get("X-Twilio-Signature")
    if token and signature:
        if not signature_valid(token, request, signature):
            raise AuthError("X-Twilio-Signature does not match this URL and the auth token")
        return Handshake(True, None)  # the account's own streams: the server's limit only
    header = request.headers.get("X-API-KEY") or bearer_token(
        request.headers.get("Authorization", "")
    )
    if header:
        return Handshake(True, ctx.check_key(header, "the X-API-KEY header"))
    if token and not ctx.keys:
        raise AuthError("X-Twilio-Signature is missing")
    if ctx.keys:
        return Handshake(False, None)  # the key comes in start's customParameters
    return Handshake(True, None)


class Timeline:
    """Where each track's audio has got to; holes in the timestamps become silence,
    so the two tracks stay aligned (their utterance offsets share one clock).

    A hole is measured against the audio the track has had so far, not against the
    previous frame: one lost 20 ms frame is within the jitter tolerance, but lost
    frames add up, and once they come to more than it they are filled."""

    def __init__(self) -> None:
        self.heard_ms: dict[str, float] = {}  # each track's audio so far, silence included

    def fill(self, track: str, timestamp: int | None, samples: int) -> tuple[float, float]:
        """The seconds of silence due before a frame of `samples` at `timestamp` (at most
        MAX_GAP_S), and the hole's length."""
        heard = self.heard_ms.get(track, 0.0)  # a track that starts late starts silent
        if timestamp is None:
            timestamp = round(heard)
        hole_ms = timestamp - heard
        silence_s, hole_s = 0.0, 0.0
        if hole_ms > GAP_TOLERANCE_MS:
            silence_s, hole_s = min(hole_ms / 1000, MAX_GAP_S), hole_ms / 1000
            heard = float(timestamp)  # past the cap the rest of a hole is given up
        elif hole_ms < -GAP_TOLERANCE_MS:
            heard = float(timestamp)  # the stamps went back: nothing to fill, start again
        self.heard_ms[track] = heard + samples * 1000 / RATE
        return silence_s, hole_s


async def serve(ws: ServerConnection, ctx: GatewayContext, handshake: Handshake) -> None:
    """One Media Stream, from `connected` to `stop` (or the socket's end)."""
    idle = IdleClock(ctx.settings.speech_gateway_idle_timeout_s)  # start and media count
    metrics = ctx.metrics
    call: GatewayCall | None = None
    timeline: Timeline | None = None
    law, lazy = "mulaw", False
    logged: set[str] = set()  # unknown event names already logged
    async with AsyncExitStack() as stack:
        try:
            while True:
                message = parse_message(await idle.receive(ws.recv()))
                event = message["event"]
                if event in ("media", "start"):
                    idle.reset()
                if event == "media":
                    if call is None or timeline is None:
                        raise ProtocolError(POLICY, "media before start")
                    track, timestamp, payload = parse_media(message)
                    if track not in call.tracks:
                        if not lazy:  # start listed its tracks
                            raise ProtocolError(POLICY, f"media on the {track} track, not in start")
                        call.add_track(track, ROLES[track], rate=RATE, law=law)
                    metrics.frames.labels(GATEWAY).inc()
                    silence_s, hole_s = timeline.fill(track, timestamp, len(payload))
                    if hole_s:
                        metrics.gaps.labels(GATEWAY).inc()
                        metrics.gap_seconds.labels(GATEWAY).inc(hole_s)
                        await call.feed_silence(track, silence_s, SILENCE[law])
                    await call.feed(track, payload)
                elif event == "start":
                    if call is not None:
                        raise ProtocolError(POLICY, "a second start")
                    start = parse_start(message)
                    bucket = handshake.bucket
                    if not handshake.verified:
                        bucket = ctx.check_key(start.key, "customParameters.key")
                    tracks = [(name, ROLES[name]) for name in start.tracks]
                    call = await stack.enter_async_context(
                        ctx.call(GATEWAY, start.caller, bucket, tracks)
                    )
                    law, lazy = start.law, not start.tracks
                    for name in start.tracks:
                        call.add_track(name, ROLES[name], rate=RATE, law=law)
                    timeline = Timeline()
                elif event == "stop":
                    await ws.close(NORMAL, "stopped")  # the platform is not kept waiting
                    if call is not None:
                        await call.end("completed")
                    return
                elif event == "error":  # Telnyx reports its own trouble this way
                    log.warning(
                        "the platform reported an error",
                        extra={"gateway": GATEWAY, "call_id": call.call_id if call else ""},
                    )
                elif event not in ("connected", "dtmf", "mark"):  # keys pressed are not logged
                    metrics.unknown_events.labels(GATEWAY).inc()
                    name = event[:32]
                    if name not in logged and len(logged) < MAX_UNKNOWN_EVENTS:
                        logged.add(name)  # each name once: a chatty platform floods no log
                        log.warning(
                            "unknown Media Streams event skipped",
                            extra={"gateway": GATEWAY, "event": name},
                        )
        except AuthError as exc:
            ctx.refused(GATEWAY, exc, ws.remote_address)
            await ws.close(POLICY, _reason(str(exc)))
        except ProtocolError as exc:
            ctx.refused(GATEWAY, exc, ws.remote_address)
            await ws.close(exc.code, _reason(exc.reason))
            if call is not None:
                await call.end("error")
        except ConnectionClosed as closed:  # no stop: its last words are still final
            reason = ended_how(ctx, GATEWAY, closed, ws.remote_address)
            if call is not None:
                await call.end(reason)


def _reason(text: str) -> str:
    """A close reason fits a control frame: 123 bytes of UTF-8."""
    data = text.encode()
    return text if len(data) <= 123 else data[:120].decode(errors="ignore") + "…"
