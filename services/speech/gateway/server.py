"""The telephony gateway: the platforms' own protocols, served beside the gRPC port.

One WebSocket port routes by path (`/twilio` for Twilio Media Streams and
its Telnyx and SignalWire dialects, `/audiohook` for Genesys AudioHook);
Asterisk's AudioSocket is raw TCP on a port of its own. The HTTP upgrade is
where a platform learns it was refused (401 for a credential, 503 while
the model loads or the gateway is full), since none of them reads a close
reason. Stopping closes every socket (1001 Going Away), which ends each call
with its last finals, and cancels what is still running past the grace.
"""

from __future__ import annotations

import asyncio
import http
import logging
import ssl
import weakref
from urllib.parse import urlsplit

from prometheus_client import CollectorRegistry
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.http11 import Request, Response

from percept.runtime.settings import Settings
from percept.speech.gateway import audiohook, audiosocket, twilio
from percept.speech.gateway.context import GatewayContext
from percept.speech.gateway.errors import GOING_AWAY, AuthError, ProtocolError
from percept.speech.gateway.metrics import GatewayMetrics
from percept.speech.servicer import SpeechServicer

log = logging.getLogger("percept.speech.gateway")
ROUTES = {"/twilio": twilio.GATEWAY, "/audiohook": audiohook.GATEWAY}


def _route(request: Request) -> str | None:
    return ROUTES.get(urlsplit(request.path).path.rstrip("/") or "/")


def _refuse(
    connection: ServerConnection, status: http.HTTPStatus, text: str, **headers: str
) -> Response:
    response = connection.respond(status, text + "\n")
    for name, value in headers.items():
        response.headers[name.replace("_", "-")] = value
    return response


def _ssl_context(settings: Settings) -> ssl.SSLContext | None:
    """The gRPC port's certificate. Platforms present no client certificate, so
    the client CA of mutual TLS does not apply here: keys and signatures do."""
    if settings.tls_cert_file is None or settings.tls_key_file is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(settings.tls_cert_file, settings.tls_key_file)
    return context


class MediaGateway:
    def __init__(
        self, servicer: SpeechServicer, settings: Settings, registry: CollectorRegistry
    ) -> None:
        self.settings = settings
        self.ctx = GatewayContext(servicer, settings, GatewayMetrics.create(registry))
        self.websocket: Server | None = None
        self.audiosocket: audiosocket.AudioSocketServer | None = None
        self._handshakes: weakref.WeakKeyDictionary[ServerConnection, object] = (
            weakref.WeakKeyDictionary()
        )
        self._twilio: set[ServerConnection] = set()
        self._audiohook: set[audiohook.Session] = set()

    @property
    def port(self) -> int:
        assert self.websocket is not None
        return int(self.websocket.sockets[0].getsockname()[1])

    @property
    def audiosocket_port(self) -> int:
        assert self.audiosocket is not None
        return self.audiosocket.port

    async def start(self) -> None:
        settings = self.settings
        try:
            self.websocket = await serve(
                self._handle,
                settings.host,
                settings.speech_gateway_port,
                process_request=self._process_request,
                max_size=settings.speech_gateway_max_frame_bytes,
                ssl=_ssl_context(settings),
                server_header="percept-speech",
            )
        except OSError as exc:
            raise OSError(
                f"speech gateway: cannot listen on {settings.host}:"
                f"{settings.speech_gateway_port} ({exc.strerror}); "
                "set PERCEPT_SPEECH_GATEWAY_PORT"
            ) from exc
        self.audiosocket = audiosocket.AudioSocketServer(self.ctx)
        try:
            await self.audiosocket.start()
        except OSError:
            self.websocket.close()
            raise
        log.info(
            "speech gateway listening",
            extra={"port": self.port, "audiosocket_port": self.audiosocket_port},
        )

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        """Refuses at the upgrade what can be refused before a call begins."""
        gateway = _route(request)
        if gateway is None:
            return _refuse(connection, http.HTTPStatus.NOT_FOUND, "paths: /twilio, /audiohook")
        ctx = self.ctx
        if ctx.stopping:
            return _refuse(connection, http.HTTPStatus.SERVICE_UNAVAILABLE, "stopping")
        if ctx.servicer.engine is None:
            return _refuse(
                connection,
                http.HTTPStatus.SERVICE_UNAVAILABLE,
                "the speech model is still loading",
                retry_after="5",
            )
        try:
            if gateway == twilio.GATEWAY:
                self._handshakes[connection] = twilio.check_handshake(ctx, request)
            else:
                self._handshakes[connection] = audiohook.check_handshake(ctx, request)
        except AuthError as exc:
            ctx.refused(gateway, exc, connection.remote_address)
            return _refuse(connection, http.HTTPStatus.UNAUTHORIZED, str(exc))
        except ProtocolError as exc:
            ctx.refused(gateway, exc, connection.remote_address)
            return _refuse(connection, http.HTTPStatus.BAD_REQUEST, exc.reason)
        return None

    async def _handle(self, ws: ServerConnection) -> None:
        handshake = self._handshakes.pop(ws)
        if isinstance(handshake, twilio.Handshake):
            self._twilio.add(ws)
            try:
                await twilio.serve(ws, self.ctx, handshake)
            finally:
                self._twilio.discard(ws)
        else:
            assert isinstance(handshake, audiohook.Handshake)
            session = audiohook.Session(ws, self.ctx, handshake)
            self._audiohook.add(session)
            try:
                await session.serve()
            finally:
                self._audiohook.discard(session)

    async def stop(self, grace: float | None) -> None:
        """Ends every call with its finals within `grace`, then cancels the rest.

        A Media Stream is closed (1001); an AudioHook session is asked to
        disconnect, as its protocol has the server do; AudioSocket connections
        are closed (Asterisk then hangs up only its side of the bridge)."""
        self.ctx.stopping = True
        closing: list[asyncio.Task[None]] = []
        if self.websocket is not None:
            self.websocket.close(close_connections=False)
            for ws in list(self._twilio):
                closing.append(asyncio.create_task(ws.close(GOING_AWAY, "server stopping")))
            for session in list(self._audiohook):
                closing.append(asyncio.create_task(session.goodbye()))
            closing.append(asyncio.create_task(self.websocket.wait_closed()))
        if self.audiosocket is not None:
            closing.append(asyncio.create_task(self.audiosocket.stop()))
        if not closing:
            return
        _, pending = await asyncio.wait(closing, timeout=grace)
        if pending:
            calls = list(self.ctx.calls)
            log.warning("gateway calls cut off past the grace", extra={"calls": len(calls)})
            for call in calls:
                await call.cancel()
            if self.websocket is not None:  # every socket, mid-handshake ones included
                for connection in list(self.websocket.all_connections):
                    connection.transport.abort()
            if self.audiosocket is not None:
                self.audiosocket.abort()
            _, still = await asyncio.wait(pending, timeout=5)
            for task in still:
                task.cancel()
