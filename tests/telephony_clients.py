"""Telephony platforms as the gateway meets them, written from their published protocols:
a Twilio Media Stream, a Genesys AudioHook v2 client and Asterisk AudioSocket legs.

Each plays tracks of 8 kHz audio in 20 ms frames, at real-time pace (`pace` 1.0) or
faster (0 sends as fast as the socket takes it), the way the platforms send them. Used
by the gateway tests and by bench/gateway.py.
"""

from __future__ import annotations

import asyncio
import base64
import json
import struct
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

from percept.speech.gateway import audiohook_signature

RATE = 8000
FRAME = 160  # 20 ms of 8 kHz G.711, one byte a sample
ULAW_SILENCE = b"\xff"


class Pacer:
    """Sleeps so that frame n leaves at n * 20 ms / pace after the start."""

    def __init__(self, pace: float) -> None:
        self.pace, self.start = pace, time.monotonic()

    async def at(self, frame: int) -> None:
        if self.pace <= 0:
            if frame % 50 == 0:
                await asyncio.sleep(0)
            return
        due = self.start + frame * 0.02 / self.pace
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)


def frames(audio: bytes, width: int = 1) -> list[bytes]:
    size = FRAME * width
    return [audio[i : i + size] for i in range(0, len(audio), size)]


# -- Twilio Media Streams -----------------------------------------------------------


async def twilio_call(
    url: str,
    tracks: Mapping[str, bytes],
    *,
    call_sid: str,
    parameters: Mapping[str, str] | None = None,
    pace: float = 1.0,
    headers: Mapping[str, str] | None = None,
    stop: bool = True,
) -> ClientConnection:
    """One `<Stream>`: connected, start, media per track (mu-law), stop. Returns the
    closed connection (its close code and reason say how the server ended it)."""
    async with connect(url, additional_headers=dict(headers or {})) as ws:
        await ws.send(json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"}))
        stream_sid = "MZ" + uuid.uuid4().hex
        start = {
            "accountSid": "AC" + "0" * 32,
            "streamSid": stream_sid,
            "callSid": call_sid,
            "tracks": list(tracks),
            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": RATE, "channels": 1},
            "customParameters": dict(parameters or {}),
        }
        sequence = 1
        await ws.send(
            json.dumps(
                {
                    "event": "start",
                    "sequenceNumber": str(sequence),
                    "start": start,
                    "streamSid": stream_sid,
                }
            )
        )
        chunked = {name: frames(audio) for name, audio in tracks.items()}
        count = max(len(c) for c in chunked.values())
        pacer = Pacer(pace)
        for n in range(count):
            await pacer.at(n)
            for name, chunks in chunked.items():
                if n < len(chunks):
                    sequence += 1
                    media = {
                        "track": name,
                        "chunk": str(n + 1),
                        "timestamp": str(n * 20),
                        "payload": base64.b64encode(chunks[n]).decode(),
                    }
                    await ws.send(
                        json.dumps(
                            {
                                "event": "media",
                                "sequenceNumber": str(sequence),
                                "media": media,
                                "streamSid": stream_sid,
                            }
                        )
                    )
        if stop:
            stopped = {"accountSid": start["accountSid"], "callSid": call_sid}
            await ws.send(
                json.dumps(
                    {
                        "event": "stop",
                        "sequenceNumber": str(sequence + 1),
                        "stop": stopped,
                        "streamSid": stream_sid,
                    }
                )
            )
        await ws.wait_closed()
    return ws


# -- Genesys AudioHook v2 -----------------------------------------------------------


@dataclass
class AudioHookClient:
    """One AudioHook session as Genesys Cloud runs it: open, audio, pings, pause and
    resume, close. Messages from the server are kept in `received`."""

    url: str
    api_key: str
    client_secret: bytes | None = None
    organization_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    session_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    seq: int = 0
    serverseq: int = 0
    position_s: float = 0.0
    received: list[dict[str, Any]] = field(default_factory=list)
    ws: ClientConnection | None = None

    def headers(self, host: str, path: str = "/audiohook") -> dict[str, str]:
        headers = {
            "Audiohook-Organization-Id": self.organization_id,
            "Audiohook-Correlation-Id": str(uuid.uuid4()),
            "Audiohook-Session-Id": self.session_id,
            "X-API-KEY": self.api_key,
        }
        if self.client_secret is not None:
            signed = headers | {"Host": host}
            headers |= audiohook_signature.sign(
                signed,
                path,
                self.client_secret,
                self.api_key,
                nonce=uuid.uuid4().hex,
                created=int(time.time()),
            )
        return headers

    async def connect(self) -> None:
        host = self.url.split("://", 1)[1].split("/", 1)[0]
        self.ws = await connect(self.url, additional_headers=self.headers(host))

    async def send(self, kind: str, parameters: dict[str, Any] | None = None) -> None:
        assert self.ws is not None
        self.seq += 1
        message = {
            "version": "2",
            "id": self.session_id,
            "type": kind,
            "seq": self.seq,
            "serverseq": self.serverseq,
            "position": f"PT{self.position_s:.2f}S",
            "parameters": parameters or {},
        }
        await self.ws.send(json.dumps(message))

    async def expect(self, kind: str) -> dict[str, Any]:
        """Reads server messages until one of `kind`."""
        assert self.ws is not None
        async with asyncio.timeout(30):
            while True:
                frame = await self.ws.recv()
                assert isinstance(frame, str), "the server sends text messages only"
                message: dict[str, Any] = json.loads(frame)
                self.received.append(message)
                self.serverseq = int(message["seq"])
                if message["type"] == kind:
                    return message

    async def open(
        self,
        conversation_id: str,
        *,
        ani: str = "",
        channels: Sequence[str] = ("external", "internal"),
        custom: Mapping[str, str] | None = None,
        language: str | None = None,
    ) -> dict[str, Any]:
        media = [
            {"type": "audio", "format": "PCMU", "channels": list(channels), "rate": RATE},
            {"type": "audio", "format": "PCMU", "channels": ["external"], "rate": RATE},
            {"type": "audio", "format": "PCMU", "channels": ["internal"], "rate": RATE},
        ]
        parameters: dict[str, Any] = {
            "organizationId": self.organization_id,
            "conversationId": conversation_id,
            "participant": {
                "id": str(uuid.uuid4()),
                "ani": f"tel:{ani}" if ani else "",
                "aniName": "",
                "dnis": "tel:+18005550100",
            },
            "media": media,
            "customConfig": dict(custom or {}),
        }
        if language:
            parameters["language"] = language
        await self.send("open", parameters)
        return await self.expect("opened")

    async def play(self, channels: Sequence[bytes], pace: float = 1.0) -> None:
        """Interleaved PCMU frames of 20 ms, one byte per channel per sample."""
        assert self.ws is not None
        length = max(len(c) for c in channels)
        padded = [c.ljust(length, ULAW_SILENCE) for c in channels]
        interleaved = bytearray(length * len(padded))
        for index, channel in enumerate(padded):
            interleaved[index :: len(padded)] = channel
        pacer = Pacer(pace)
        for n, frame in enumerate(frames(bytes(interleaved), len(padded))):
            await pacer.at(n)
            await self.ws.send(frame)
            self.position_s += len(frame) / len(padded) / RATE

    async def close(self) -> dict[str, Any]:
        await self.send("close", {"reason": "end"})
        closed = await self.expect("closed")
        assert self.ws is not None
        await self.ws.wait_closed()
        return closed


# -- Asterisk AudioSocket -----------------------------------------------------------

KIND_HANGUP, KIND_UUID, KIND_DTMF, KIND_SLIN = 0x00, 0x01, 0x03, 0x10


def audiosocket_frame(kind: int, payload: bytes = b"") -> bytes:
    return struct.pack(">BH", kind, len(payload)) + payload


async def audiosocket_leg(
    host: str,
    port: int,
    call_uuid: uuid.UUID,
    pcm: bytes,
    *,
    pace: float = 1.0,
    hang_up: bool = True,
) -> bytes:
    """One channel of a call: the UUID frame, signed-linear 8 kHz frames of 20 ms, the
    hang-up. Returns whatever the server sent back (AudioSocket servers may send audio)."""
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(audiosocket_frame(KIND_UUID, call_uuid.bytes))
    pacer = Pacer(pace)
    for n, chunk in enumerate(frames(pcm, 2)):
        await pacer.at(n)
        writer.write(audiosocket_frame(KIND_SLIN, chunk))
        await writer.drain()
    if hang_up:
        writer.write(audiosocket_frame(KIND_HANGUP))
    await writer.drain()
    writer.write_eof()
    back = await asyncio.wait_for(reader.read(), 60)
    writer.close()
    return back
