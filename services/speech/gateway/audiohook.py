"""Genesys Cloud AudioHook (protocol version 2) at `/audiohook`.

Genesys opens a WebSocket per conversation leg, with X-API-KEY and (when
the integration has a client secret) a signed upgrade request. Text frames
are JSON messages, each with a sequence number the other side acknowledges;
binary frames are the audio of the media the server chose in `opened`:
PCMU at 8 kHz, the `external` channel (the customer) and, when stereo, the
`internal` channel (the agent), interleaved sample by sample. The client
ends with `close`, answered by `closed` at once (the last finals are made
after it); the server asks for an end with `disconnect`, also when it is
stopping (Genesys does not re-establish a session on `reconnect`). While the
client says `paused` (a secure pause: card capture) nothing is recognised or
kept; `resumed` and `discarded` say how much audio the client did not send,
which is kept as silence so offsets stay on the conversation's clock. An
`update` may change the language. A `conversationId` of all zeros is a
connection probe, answered like a session but without a call.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import re
import uuid
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request

from percept.speech.audio import AudioError
from percept.speech.gateway import audiohook_signature
from percept.speech.gateway.call import GatewayCall
from percept.speech.gateway.context import Caller, GatewayContext, IdleClock, ended_how
from percept.speech.gateway.errors import NORMAL, AuthError, ProtocolError
from percept.v1 import speech_pb2

log = logging.getLogger("percept.speech.gateway")
GATEWAY = "audiohook"
VERSION = "2"
RATE = 8000
ROLES = {"external": speech_pb2.CHANNEL_ROLE_CUSTOMER, "internal": speech_pb2.CHANNEL_ROLE_AGENT}
PROBE = "00000000-0000-0000-0000-000000000000"
GOODBYE_S = 5.0  # how long a `close` is awaited after `disconnect`
# The reference's own pattern for seconds is `PT(\d*\.)?\d+S` ("PT.5S" included).
_DURATION = re.compile(r"^PT(?:(\d+)H)?(?:(\d+)M)?(?:(\d*\.?\d+)S)?$")


class Disconnect(Exception):
    """The session must end: `disconnect` is sent with this reason and info."""

    def __init__(self, reason: str, info: str) -> None:
        super().__init__(info)
        self.reason, self.info = reason, info


@dataclass(frozen=True)
class Handshake:
    bucket: str | None
    organization_id: str
    session_id: str


def _header(request: Request, name: str) -> str:
    return (request.headers.get(name) or "").strip()


def check_handshake(ctx: GatewayContext, request: Request) -> Handshake:
    """X-API-KEY must be one of this server's keys (when it has keys); with a client
    secret configured the upgrade must carry Genesys's signature over it."""
    api_key = _header(request, "X-API-KEY")
    bucket = ctx.check_key(api_key, "the X-API-KEY header")
    secret = ctx.settings.speech_audiohook_client_secret
    if secret:
        if not api_key:
            raise AuthError("X-API-KEY is required to check the signature")
        audiohook_signature.verify(
            request.headers.get_all, request.path, base64.b64decode(secret), api_key
        )
    return Handshake(
        bucket,
        _header(request, "Audiohook-Organization-Id"),
        _header(request, "Audiohook-Session-Id"),
    )


def parse_duration(value: object, where: str) -> float:
    """An ISO 8601 duration as AudioHook writes positions: PT1.5S, PT2M3.25S."""
    match = _DURATION.match(str(value)) if isinstance(value, str) else None
    if match is None or value == "PT":
        raise Disconnect("error", f"{where} is not an ISO 8601 duration such as PT1.5S")
    hours, minutes, seconds = match.groups()
    return int(hours or 0) * 3600 + int(minutes or 0) * 60 + float(seconds or 0)


def choose_media(offered: object) -> dict[str, Any]:
    """PCMU at 8 kHz, both channels if offered (the agent is heard too), else one."""
    if not isinstance(offered, list):
        raise Disconnect("error", "open.parameters.media is not a list")
    usable = [
        m
        for m in offered
        if isinstance(m, dict)
        and m.get("type") == "audio"
        and m.get("format") == "PCMU"
        and m.get("rate") == RATE
        and isinstance(m.get("channels"), list)
        and m["channels"]
        and all(isinstance(c, str) and c in ROLES for c in m["channels"])
        and len(set(m["channels"])) == len(m["channels"])
    ]
    if not usable:
        raise Disconnect("error", "no PCMU 8000 Hz audio among the offered media")
    return max(usable, key=lambda m: len(m["channels"]))


def _phone(ani: object) -> str:
    text = str(ani or "").strip()
    for prefix in ("tel:", "sip:"):
        text = text.removeprefix(prefix)
    return text.split("@", 1)[0].split(";", 1)[0][:64]


def parse_open(parameters: dict[str, Any], handshake: Handshake) -> tuple[Caller, bool]:
    """Who calls, and whether this is a connection probe."""
    organization = str(parameters.get("organizationId") or "")
    if handshake.organization_id and organization != handshake.organization_id:
        raise Disconnect(
            "unauthorized",
            "open.parameters.organizationId is not the Audiohook-Organization-Id header",
        )
    conversation = parameters.get("conversationId")
    try:
        conversation_id = str(uuid.UUID(str(conversation)))
    except ValueError:
        raise Disconnect("error", "open.parameters.conversationId is not a UUID") from None
    participant = parameters.get("participant") or {}
    custom = parameters.get("customConfig") or {}
    if not isinstance(participant, dict) or not isinstance(custom, dict):
        raise Disconnect("error", "open.parameters: participant/customConfig are not objects")
    language = parameters.get("language")
    caller = Caller(
        call_id=conversation_id,
        phone=_phone(participant.get("ani")),
        campaign_id=str(custom.get("campaignId") or custom.get("campaign") or "")[:128],
        language=str(language)[:35] if isinstance(language, str) else "",
    )
    return caller, conversation_id == PROBE


class Session:
    """One AudioHook session: the message sequence, the call, the goodbye."""

    def __init__(self, ws: ServerConnection, ctx: GatewayContext, handshake: Handshake) -> None:
        self.ws, self.ctx, self.handshake = ws, ctx, handshake
        self.id = ""
        self.seq = 0  # the last message this server sent
        self.clientseq = 0  # the last message the client sent
        self.channels: list[str] = []
        self.call: GatewayCall | None = None
        self.opened = False
        self.closing = False  # a disconnect or reconnect was sent; a close is awaited

    async def send(self, kind: str, parameters: dict[str, Any] | None = None) -> None:
        self.seq += 1
        message = {
            "version": VERSION,
            "type": kind,
            "seq": self.seq,
            "clientseq": self.clientseq,
            "id": self.id,
            "parameters": parameters or {},
        }
        await self.ws.send(json.dumps(message, separators=(",", ":")))

    async def goodbye(self) -> None:
        """The server is stopping: the client is asked to close (its `close` is then
        answered and the call ends with its last finals, within the grace)."""
        if self.opened and not self.closing:
            self.closing = True
            with contextlib.suppress(ConnectionClosed):
                await self.send(
                    "disconnect", {"reason": "completed", "info": "the server is stopping"}
                )

    def _parse(self, text: str) -> dict[str, Any]:
        try:
            message = json.loads(text)
        except ValueError:
            raise Disconnect("error", "a text frame is not JSON") from None
        if not isinstance(message, dict) or not isinstance(message.get("type"), str):
            raise Disconnect("error", "a message is not a JSON object with a 'type'")
        if message.get("version") != VERSION:
            raise Disconnect("error", f"protocol version {VERSION} is spoken here")
        seq = message.get("seq")
        if seq != self.clientseq + 1:
            raise Disconnect("error", f"seq {seq!s:.12} where {self.clientseq + 1} was due")
        if not isinstance(message.get("parameters", {}), dict):
            raise Disconnect("error", "parameters is not an object")
        if not self.id:
            # Kept as sent, as the reference server keeps it: every later message must
            # carry it verbatim, and replies echo it.
            self.id = str(message.get("id"))
            try:
                session = uuid.UUID(self.id)
            except ValueError:
                self.id = ""
                raise Disconnect("error", "id is not a session UUID") from None
            expected = self.handshake.session_id
            if expected and str(session) != expected.lower():
                raise Disconnect("error", "id is not the Audiohook-Session-Id header")
        elif message.get("id") != self.id:
            raise Disconnect("error", "id changed within the session")
        self.clientseq = seq
        return message

    async def serve(self) -> None:
        ctx = self.ctx
        # Before `open` nothing counts; then any message does (Genesys pings through a
        # secure pause, when no audio comes for minutes).
        idle = IdleClock(ctx.settings.speech_gateway_idle_timeout_s)
        async with AsyncExitStack() as stack:
            try:
                while True:
                    frame = await idle.receive(self.ws.recv())
                    if isinstance(frame, bytes):
                        await self._audio(frame)
                        idle.reset()
                        continue
                    message = self._parse(frame)
                    if self.opened or message["type"] == "open":
                        idle.reset()
                    if await self._message(message, stack):
                        return
            except ProtocolError as exc:  # idle, or the call was refused
                ctx.refused(GATEWAY, exc, self.ws.remote_address)
                await self._disconnect("error", exc.reason)
            except AuthError as exc:
                ctx.refused(GATEWAY, exc, self.ws.remote_address)
                await self._disconnect("unauthorized", str(exc))
            except Disconnect as exc:
                ctx.refused(GATEWAY, ProtocolError(NORMAL, exc.info), self.ws.remote_address)
                await self._disconnect(exc.reason, exc.info)
            except ConnectionClosed as closed:  # no close: its last words are still final
                reason = ended_how(ctx, GATEWAY, closed, self.ws.remote_address)
                if self.call is not None:
                    await self.call.end(reason)

    async def _audio(self, frame: bytes) -> None:
        if not self.opened:
            raise Disconnect("error", "audio before the session was opened")
        if self.call is None:
            return  # a probe, or audio racing the end
        width = len(self.channels)
        if len(frame) % width:
            raise Disconnect("error", f"an audio frame of {len(frame)} bytes for {width} channels")
        self.ctx.metrics.frames.labels(GATEWAY).inc()
        for index, name in enumerate(self.channels):
            await self.call.feed(name, frame[index::width])

    async def _message(self, message: dict[str, Any], stack: AsyncExitStack) -> bool:
        """Handles one client message; True when the session is over."""
        kind = message["type"]
        parameters: dict[str, Any] = message.get("parameters") or {}
        if kind == "open":
            if self.opened:
                raise Disconnect("error", "a second open")
            await self._open(parameters, stack)
        elif not self.opened and kind != "close":
            raise Disconnect("error", f"{kind[:32]!r} before open")
        elif kind == "ping":
            await self.send("pong")
        elif kind == "paused":
            if self.call is not None:
                await self.call.pause()
        elif kind == "resumed":
            if self.call is not None:
                self.call.resume()
            await self._discarded(parameters, "resumed")
        elif kind == "update":
            await self._update(parameters)
        elif kind == "discarded":
            await self._discarded(parameters, "discarded")
        elif kind == "error":
            log.warning(
                "audiohook client error",
                extra={"code": parameters.get("code"), "session": self.id},
            )
        elif kind == "close":
            # answered at once (Genesys waits only seconds); the last finals come after
            with contextlib.suppress(ConnectionClosed):
                await self.send("closed")
            if self.call is not None:
                await self.call.end("shutdown" if self.ctx.stopping else "completed")
            await self.ws.close(NORMAL, "closed")
            return True
        else:
            raise Disconnect("error", f"unknown message type {kind[:32]!r}")
        return False

    async def _open(self, parameters: dict[str, Any], stack: AsyncExitStack) -> None:
        caller, probe = parse_open(parameters, self.handshake)
        media = choose_media(parameters.get("media"))
        self.opened = True
        if not probe:
            self.channels = list(media["channels"])
            tracks = [(name, ROLES[name]) for name in self.channels]
            self.call = await stack.enter_async_context(
                self.ctx.call(GATEWAY, caller, self.handshake.bucket, tracks)
            )
            for name in self.channels:
                self.call.add_track(name, ROLES[name], rate=RATE, law="mulaw")
        opened: dict[str, Any] = {"media": [media], "startPaused": False}
        if parameters.get("supportedLanguages") is True:
            opened["supportedLanguages"] = self.ctx.languages()
        await self.send("opened", opened)

    async def _update(self, parameters: dict[str, Any]) -> None:
        """A new language for what is said next (an agent switched it in Genesys)."""
        language = parameters.get("language")
        if language is not None and self.call is not None:
            if not isinstance(language, str):
                raise Disconnect("error", "update.parameters.language is not a string")
            try:
                self.call.set_language(language[:35])
            except AudioError as exc:
                raise Disconnect("error", f"update.parameters.language: {exc}") from None
        await self.send("updated")

    async def _discarded(self, parameters: dict[str, Any], kind: str) -> None:
        """Audio the client did not send (it fell behind, or paused): silence keeps the
        channels on the conversation's clock, and nothing of what was said is kept."""
        if "discarded" not in parameters and kind == "resumed":
            return  # a client that sent no account of the pause
        seconds = parse_duration(parameters.get("discarded"), f"{kind}.parameters.discarded")
        if not seconds:
            return
        self.ctx.metrics.gaps.labels(GATEWAY).inc()
        self.ctx.metrics.gap_seconds.labels(GATEWAY).inc(seconds)
        if self.call is not None:
            for name in self.channels:
                await self.call.feed_silence(name, seconds, b"\xff")  # PCMU's silence

    async def _disconnect(self, reason: str, info: str) -> None:
        """Asks the client to close, answers its `close`, and closes the socket; the
        call's last finals are made after, as on a `close` (the client is not kept
        waiting on recognition)."""
        try:
            if self.id:
                self.closing = True
                await self.send("disconnect", {"reason": reason, "info": info[:200]})
                await self._await_close()
            await self.ws.close(NORMAL, info.encode()[:120].decode(errors="ignore"))
        except (ConnectionClosed, TimeoutError):
            pass
        finally:
            if self.call is not None:
                await self.call.end("error")

    async def _await_close(self) -> None:
        async with asyncio.timeout(GOODBYE_S):
            while True:
                frame = await self.ws.recv()
                if isinstance(frame, str):
                    try:
                        message = json.loads(frame)
                    except ValueError:
                        continue
                    if isinstance(message, dict) and message.get("type") == "close":
                        seq = message.get("seq")
                        if isinstance(seq, int) and not isinstance(seq, bool):
                            self.clientseq = seq
                        await self.send("closed")
                        return
