"""What every protocol handler of the gateway shares: keys, limits, metrics, calls.

A handler parses its protocol and, once it knows who calls, opens a call
here: the config is checked as StreamingRecognize checks it, the call is
admitted against the limits, and whatever way the handler leaves (a stop, a
protocol error, a dropped socket, a server stop) the call ends with its last
finals and is counted by how it ended.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from websockets.exceptions import ConnectionClosed

from percept.leads.identity import InvalidIdentityError, normalize_phone
from percept.runtime.auth import KeyRing
from percept.runtime.logs import redact_quoted
from percept.runtime.settings import Settings
from percept.speech.audio import AudioError
from percept.speech.gateway.call import GatewayCall
from percept.speech.gateway.errors import (
    BAD_DATA,
    POLICY,
    TOO_BIG,
    TRY_LATER,
    AuthError,
    ProtocolError,
)
from percept.speech.gateway.limits import Admission, CallRefusedError
from percept.speech.gateway.metrics import GatewayMetrics
from percept.speech.servicer import WHISPER_LANGUAGES, SpeechServicer
from percept.v1 import speech_pb2

log = logging.getLogger("percept.speech.gateway")
T = TypeVar("T")
PERCEIVE = "perceive"


@dataclass(frozen=True)
class Caller:
    """Who is on the line, as a platform says it (every field may be empty)."""

    call_id: str = ""
    phone: str = ""
    campaign_id: str = ""
    language: str = ""


def key_bucket(secret: str) -> str:
    """A key's name in limits and logs: a digest prefix, never the key."""
    return hashlib.sha256(secret.encode()).hexdigest()[:12]


class GatewayContext:
    def __init__(
        self, servicer: SpeechServicer, settings: Settings, metrics: GatewayMetrics
    ) -> None:
        self.servicer, self.settings, self.metrics = servicer, settings, metrics
        self.keys = KeyRing(settings.api_keys)
        self.admission = Admission(
            settings.speech_gateway_max_calls, settings.speech_gateway_max_calls_per_key
        )
        self.calls: set[GatewayCall] = set()
        self.stopping = False

    def check_key(self, given: str | None, where: str) -> str | None:
        """The key's bucket for a presented key (`where` says how it was sent). With no
        keys configured every caller is let in (as on the gRPC port) and has none."""
        if not self.keys:
            return None
        if not given:
            raise AuthError(f"an API key is required ({where})")
        key = self.keys.find(given)
        if key is None:
            raise AuthError(f"the API key ({where}) is not one of this server's keys")
        if PERCEIVE not in key.scopes:
            raise AuthError(f"the API key ({where}) lacks the {PERCEIVE!r} scope")
        return key_bucket(key.secret)

    def languages(self) -> list[str]:
        """What calls may be recognised in: English only, or Whisper's languages."""
        engine = self.servicer.engine
        if engine is not None and engine.transcriber.english_only:
            return ["en"]
        return list(WHISPER_LANGUAGES)

    def config(self, caller: Caller) -> speech_pb2.RecognitionConfig:
        config = speech_pb2.RecognitionConfig(
            call_id=caller.call_id,
            campaign_id=caller.campaign_id,
            language_code=caller.language or self.settings.speech_gateway_language,
            separate_channel_recognition=True,
        )
        if caller.phone:
            try:
                normalize_phone(caller.phone, self.servicer.phone_region)
                config.caller.phone = caller.phone
            except InvalidIdentityError:
                # "anonymous", "client:alice", a SIP URI: the platform's caller id is not
                # always a number. The call goes on without one (a number leads refuses
                # would cost every signal of the call).
                log.info(
                    "the caller id is not a phone number; the call has none",
                    extra={"call_id": caller.call_id},
                )
        return config

    @contextlib.asynccontextmanager
    async def call(
        self,
        gateway: str,
        caller: Caller,
        bucket: str | None,
        tracks: Sequence[tuple[str, int]] = (),
    ) -> AsyncIterator[GatewayCall]:
        """A call admitted, on the board with the `tracks` known so far (name, role),
        ended however the block is left."""
        config = self.config(caller)
        try:
            self.servicer.check_config(config)
        except AudioError as exc:
            raise ProtocolError(POLICY if self.servicer.engine else TRY_LATER, str(exc)) from None
        try:
            self.admission.admit(bucket)
        except CallRefusedError as exc:
            self.metrics.calls.labels(gateway, "refused").inc()
            raise ProtocolError(TRY_LATER, f"{exc}; try again later") from None
        try:
            call = GatewayCall(self.servicer, config, gateway, tracks)
        except BaseException:
            self.admission.release(bucket)
            raise
        self.calls.add(call)
        active = self.metrics.active.labels(gateway)
        active.inc()
        started = time.monotonic()
        reason = "dropped"
        log.info("gateway call started", extra={"gateway": gateway, "call_id": call.call_id})
        try:
            yield call
            reason = "completed"
        except ProtocolError:
            reason = "error"
            raise
        except asyncio.CancelledError:
            reason = "shutdown"
            await asyncio.shield(call.cancel())
            raise
        finally:
            # a call this server's stop cut looks dropped, or (a socket closed between
            # frames, as AudioSocket hangs up) completed: it ended because we stopped
            if self.stopping and reason in ("dropped", "completed"):
                reason = "shutdown"
            try:
                await call.end(reason)  # a no-op when the handler ended it already
            finally:  # the call's place is given back whatever ending it raised
                self.calls.discard(call)
                active.dec()
                self.admission.release(bucket)
                self.metrics.calls.labels(gateway, call.reason or reason).inc()
                log.info(
                    "gateway call ended",
                    extra={
                        "gateway": gateway,
                        "call_id": call.call_id,
                        "reason": call.reason or reason,
                        "seconds": round(time.monotonic() - started, 1),
                        "tracks": len(call.tracks),
                    },
                )

    def refused(self, gateway: str, error: ProtocolError | AuthError, peer: object) -> None:
        if isinstance(error, ProtocolError) and error.code == BAD_DATA:
            self.metrics.decode_errors.labels(gateway).inc()
        log.warning(
            "gateway connection refused",
            extra={
                "gateway": gateway,
                "reason": redact_quoted(str(error)),
                "code": getattr(error, "code", 401),
                "peer": str(peer),
            },
        )


def ended_how(ctx: GatewayContext, gateway: str, closed: ConnectionClosed, peer: object) -> str:
    """How a call whose socket closed under it ends: an oversized frame (websockets
    closed it with 1009) is the peer's error and is logged as one; otherwise the
    line went dead (or the server is stopping)."""
    if closed.sent is not None and closed.sent.code == TOO_BIG:
        limit = ctx.settings.speech_gateway_max_frame_bytes
        ctx.refused(gateway, ProtocolError(TOO_BIG, f"a frame over {limit} bytes"), peer)
        return "error"
    return "shutdown" if ctx.stopping else "dropped"


class IdleClock:
    """A connection is idle when nothing that counts came for `seconds`: audio, or
    what starts a call. Keepalives and marks do not count, so a socket cannot be held
    open without a call, nor a call without audio."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.reset()

    def reset(self) -> None:
        self.deadline = time.monotonic() + self.seconds

    async def receive(self, receive: Awaitable[T]) -> T:
        """Awaits `receive`, or ends the connection as idle."""
        try:
            async with asyncio.timeout(max(0.0, self.deadline - time.monotonic())):
                return await receive
        except TimeoutError:
            raise ProtocolError(
                POLICY, f"no audio for {self.seconds:g} s: the call is idle"
            ) from None
