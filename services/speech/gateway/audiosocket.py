"""Asterisk AudioSocket: raw TCP, one connection per channel, on its own port.

Each frame is a kind byte, a big-endian 16-bit length and the payload
(Asterisk's res_audiosocket): 0x01 the call's UUID (16 bytes, first), 0x10
audio at 8 kHz (0x11-0x18: 12, 16, 24, 32, 44.1, 48, 96 and 192 kHz signed
linear), 0x03 a DTMF digit, 0x00 hang-up, 0xff an error. Asterisk hangs up
by closing the socket, so an end of stream between frames is a hang-up and
one inside a frame is a dropped line. Nothing is sent back: a 0x00 from this
side would hang the caller up, and the application waits on the channel too.

Kind 0x10 is signed linear from the AudioSocket() application; the channel
driver and ARI's externalMedia send the channel's own codec under the same
kind, so `speech_audiosocket_codec` says which law that port gets.

The protocol carries one channel and no credentials, so the port admits
only the networks in `speech_audiosocket_networks`, and two legs of one
call are paired by their UUIDs (a convention of this gateway, set in the
dialplan): both share the first 24 characters, the agent's ends in
`000000000001`, the customer's in `000000000002`. Any other UUID is a call
of one channel whose speaker is not known.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import struct
import uuid
from dataclasses import dataclass, field

from percept.speech.gateway.call import GatewayCall
from percept.speech.gateway.context import Caller, GatewayContext, IdleClock
from percept.speech.gateway.errors import BAD_DATA, POLICY, UNSUPPORTED, ProtocolError
from percept.v1 import speech_pb2

log = logging.getLogger("percept.speech.gateway")
GATEWAY = "audiosocket"
HANGUP, UUID, DTMF, ERROR = 0x00, 0x01, 0x03, 0xFF
SLIN_8K = 0x10
RATES = {
    SLIN_8K: 8000,
    0x11: 12000,
    0x12: 16000,
    0x13: 24000,
    0x14: 32000,
    0x15: 44100,
    0x16: 48000,
    0x17: 96000,
    0x18: 192000,
}
LEGS = {
    "000000000001": ("agent", speech_pb2.CHANNEL_ROLE_AGENT),
    "000000000002": ("customer", speech_pb2.CHANNEL_ROLE_CUSTOMER),
}


def leg_of(call_uuid: uuid.UUID) -> tuple[str, str, int]:
    """(call id, track name, role) of a connection's UUID."""
    text = str(call_uuid)
    leg = LEGS.get(text[24:])
    if leg is None:
        return text, "caller", speech_pb2.CHANNEL_ROLE_UNSPECIFIED
    return text[:24].rstrip("-"), leg[0], leg[1]


class HangUpError(Exception):
    """The peer closed its side between frames: Asterisk's hang-up."""


async def read_frame(reader: asyncio.StreamReader, max_bytes: int) -> tuple[int, bytes]:
    """The next frame; HangUpError at an end of stream between frames, IncompleteReadError
    at one inside a frame (the line dropped)."""
    try:
        header = await reader.readexactly(3)
    except asyncio.IncompleteReadError as exc:
        if not exc.partial:
            raise HangUpError from None
        raise
    kind, length = struct.unpack(">BH", header)
    if length > max_bytes:
        raise ProtocolError(POLICY, f"a frame of {length} bytes is over {max_bytes}")
    return kind, await reader.readexactly(length)


@dataclass
class SharedCall:
    """A call whose legs come on separate connections; the first leg's handler owns it."""

    call: GatewayCall
    legs: set[str] = field(default_factory=set)
    done: asyncio.Event = field(default_factory=asyncio.Event)


class AudioSocketServer:
    def __init__(self, ctx: GatewayContext) -> None:
        self.ctx = ctx
        self.networks = [
            ipaddress.ip_network(n, strict=False) for n in ctx.settings.speech_audiosocket_networks
        ]
        self.server: asyncio.Server | None = None
        self.writers: set[asyncio.StreamWriter] = set()
        self.handlers: set[asyncio.Task[object]] = set()
        self.shared: dict[str, SharedCall] = {}
        codec = ctx.settings.speech_audiosocket_codec
        self.law: str | None = None if codec == "slin" else codec

    @property
    def port(self) -> int:
        assert self.server is not None
        return int(self.server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        settings = self.ctx.settings
        try:
            self.server = await asyncio.start_server(
                self._connection, settings.host, settings.speech_audiosocket_port
            )
        except OSError as exc:
            raise OSError(
                f"speech gateway: cannot listen on {settings.host}:"
                f"{settings.speech_audiosocket_port} ({exc.strerror}); "
                "set PERCEPT_SPEECH_AUDIOSOCKET_PORT"
            ) from exc

    async def stop(self) -> None:
        """Closes every connection: each call ends with its last finals."""
        if self.server is None:
            return
        self.server.close()
        for writer in list(self.writers):
            writer.close()
        await asyncio.gather(*self.handlers, return_exceptions=True)
        await self.server.wait_closed()

    def abort(self) -> None:
        """Past the grace: every connection is cut and its handler cancelled."""
        for writer in list(self.writers):
            writer.transport.abort()
        for handler in list(self.handlers):
            handler.cancel()

    def _allowed(self, peer: object) -> bool:
        if not isinstance(peer, tuple) or not peer:
            return False
        try:
            address = ipaddress.ip_address(str(peer[0]).split("%", 1)[0])
        except ValueError:
            return False
        mapped = getattr(address, "ipv4_mapped", None)
        address = mapped or address
        return any(address in network for network in self.networks)

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        handler = asyncio.current_task()
        if handler is not None:
            self.handlers.add(handler)
            handler.add_done_callback(self.handlers.discard)
        self.writers.add(writer)
        try:
            if self.ctx.stopping:
                return
            if not self._allowed(peer):
                self.ctx.refused(
                    GATEWAY,
                    ProtocolError(POLICY, "the peer is not in speech_audiosocket_networks"),
                    peer,
                )
                return
            await self._serve(reader, peer)
        except ProtocolError as exc:
            self.ctx.refused(GATEWAY, exc, peer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the socket dropped: the call ends as dropped, its last words still final
        finally:
            self.writers.discard(writer)
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, peer: object) -> None:
        ctx = self.ctx
        idle = IdleClock(ctx.settings.speech_gateway_idle_timeout_s)
        limit = ctx.settings.speech_gateway_max_frame_bytes
        try:
            kind, payload = await idle.receive(read_frame(reader, limit))
        except HangUpError:
            return  # a connection check: nothing was sent
        if kind != UUID or len(payload) != 16:
            raise ProtocolError(POLICY, "the first frame must be the call's UUID (16 bytes)")
        call_id, track, role = leg_of(uuid.UUID(bytes=payload))
        shared = self.shared.get(call_id) if role != speech_pb2.CHANNEL_ROLE_UNSPECIFIED else None
        if shared is not None:
            if track in shared.call.tracks or track in shared.legs or shared.call.ended:
                raise ProtocolError(POLICY, f"call {call_id}: a second {track} leg")
            await self._leg(reader, shared, track, role)
            return
        # Both legs of a paired call are known from the first one's UUID.
        tracks = [(track, role)]
        if role != speech_pb2.CHANNEL_ROLE_UNSPECIFIED:
            tracks += [leg for leg in LEGS.values() if leg[0] != track]
        async with ctx.call(GATEWAY, Caller(call_id=call_id), None, tracks) as call:
            shared = SharedCall(call)
            if role != speech_pb2.CHANNEL_ROLE_UNSPECIFIED:
                self.shared[call_id] = shared
            failure: BaseException | None = None
            try:
                try:
                    await self._leg(reader, shared, track, role)
                except (ProtocolError, asyncio.IncompleteReadError, ConnectionError) as exc:
                    failure = exc
                # The other leg may still be talking: the call ends with its last leg.
                while shared.legs and not ctx.stopping:
                    shared.done.clear()
                    await shared.done.wait()
            finally:
                self.shared.pop(call_id, None)
            if failure is not None:
                raise failure

    async def _leg(
        self, reader: asyncio.StreamReader, shared: SharedCall, track: str, role: int
    ) -> None:
        idle = IdleClock(self.ctx.settings.speech_gateway_idle_timeout_s)
        limit = self.ctx.settings.speech_gateway_max_frame_bytes
        metrics, call = self.ctx.metrics, shared.call
        rate: int | None = None
        shared.legs.add(track)
        try:
            while True:
                try:
                    kind, payload = await idle.receive(read_frame(reader, limit))
                except HangUpError:
                    return
                idle.reset()
                if kind in RATES:
                    if rate is None:
                        rate = RATES[kind]
                        law = self.law if kind == SLIN_8K else None
                        call.add_track(track, role, rate=rate, law=law)
                    elif RATES[kind] != rate:
                        raise ProtocolError(UNSUPPORTED, "the audio rate changed mid-call")
                    if len(payload) % 2 and not (kind == SLIN_8K and self.law):
                        raise ProtocolError(BAD_DATA, "an audio frame of an odd number of bytes")
                    metrics.frames.labels(GATEWAY).inc()
                    await call.feed(track, payload)
                elif kind == HANGUP:
                    return
                elif kind == ERROR:
                    log.warning(
                        "asterisk reported an error",
                        extra={"call_id": call.call_id, "code": payload[:1].hex()},
                    )
                    return
                elif kind == UUID:
                    raise ProtocolError(POLICY, "a second UUID frame")
                elif kind != DTMF:  # keys pressed are not logged (card numbers, PINs)
                    raise ProtocolError(UNSUPPORTED, f"unknown frame kind 0x{kind:02x}")
        finally:
            if rate is not None:
                await call.end_track(track)
            shared.legs.discard(track)
            shared.done.set()
