"""The web console's gateway: pages, a JSON API over the gRPC services, the chat widget.

One small ASGI app (Starlette, served by uvicorn). The leads board follows
`WatchLeads` and the calls page speech's `WatchCalls` through server-sent
events, so both update without a reload; the camera page polls
`GetCameraView`; the embeddable widget talks to nlp's `Chat` and follows its own
chat's `WatchChats` (a salesperson's messages), and the inbox lets salespeople
claim, answer and release the chats the assistant hands off.
With API keys configured, every data call needs one (a bearer header, or the
cookie the key form sets); the public chat is open but rate-limited per chat
session and per client address, and is the only path other origins may call.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import re
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

import grpc
import uvicorn
from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from percept.console.api import (
    ApiError,
    call_backend,
    handled,
    json_body,
    page_size,
    person_name,
)
from percept.console.chat_hub import ChatHub
from percept.console.fan_in import FanIn
from percept.console.follow_ups import FollowUpsApi
from percept.console.messages import (
    call_update_json,
    camera_json,
    change_json,
    chat_event_json,
    chat_message_json,
    explanation_json,
    footfall_json,
    lead_json,
    live_chat_json,
    reply_json,
    suggestion_json,
    view_json,
    widget_event_json,
)
from percept.console.reports import ReportsApi
from percept.leads.scoring import class_name
from percept.runtime.auth import KeyRing, bearer_token
from percept.runtime.clients import Metadata, bearer_of, service_channel
from percept.runtime.ratelimit import RateLimiter
from percept.runtime.server import ServiceHost
from percept.runtime.settings import Settings
from percept.runtime.tls import channel_credentials
from percept.v1 import (
    common_pb2,
    leads_pb2,
    leads_pb2_grpc,
    nlp_pb2,
    nlp_pb2_grpc,
    speech_pb2,
    speech_pb2_grpc,
    vision_pb2,
    vision_pb2_grpc,
)

log = logging.getLogger("percept.console")

COOKIE = "percept_key"
MAX_CHAT_TEXT = 2000
KEEPALIVE_S = 15.0  # a comment line on idle event streams keeps proxies from closing them
WATCH_OPEN_S = 10.0  # how long an event stream waits for the service to start watching
PAGES = {
    "/": "board.html",
    "/leads/{lead_id}": "lead.html",
    "/calls": "calls.html",
    "/cameras": "cameras.html",
    "/chat": "chat.html",
    "/inbox": "inbox.html",
    "/today": "today.html",
    "/reports": "reports.html",
}
ASSETS = {
    "/static/console.css": ("console.css", "text/css"),
    "/static/console.js": ("console.js", "text/javascript"),
    "/widget.js": ("widget.js", "text/javascript"),
}
MAX_WIDGET_STREAMS = 3  # per chat session (tabs of one visitor)
CHAT_STATUSES = {
    name: getattr(nlp_pb2, f"CHAT_STATUS_{name.upper()}")
    for name in ("assistant", "waiting", "claimed", "callback")
}
CLASSES = {
    class_name(c): c
    for c in (leads_pb2.LEAD_CLASS_HOT, leads_pb2.LEAD_CLASS_WARM, leads_pb2.LEAD_CLASS_COLD)
}


def _asset(name: str) -> bytes:
    return (resources.files("percept.console") / "static" / name).read_bytes()


@dataclass(frozen=True)
class Addresses:
    leads: str
    nlp: str
    vision: str
    speech: str

    @classmethod
    def of(cls, settings: Settings, hosts: Sequence[ServiceHost] = ()) -> Addresses:
        """Services hosted in this process by their address; the others from settings."""
        here = {h.service.name: h.address for h in hosts}
        return cls(
            here.get("leads", settings.leads_address),
            here.get("nlp", settings.nlp_address),
            here.get("vision", settings.vision_address),
            here.get("speech", settings.speech_address),
        )


class Backends:
    """gRPC stubs of the services the console shows, with this process's credentials
    (speech is watched on each of its pods: `fan_in`)."""

    def __init__(self, settings: Settings, addresses: Addresses) -> None:
        credentials = channel_credentials(settings)
        self.addresses, self.credentials = addresses, credentials
        self._channels = [
            service_channel(address, credentials)
            for address in (addresses.leads, addresses.nlp, addresses.vision)
        ]
        self.leads = leads_pb2_grpc.LeadsStub(self._channels[0])
        self.nlp = nlp_pb2_grpc.NlpStub(self._channels[1])
        self.vision = vision_pb2_grpc.VisionStub(self._channels[2])
        self.metadata: Metadata = bearer_of(settings.api_keys)

    async def close(self) -> None:
        for channel in self._channels:
            await channel.close()


def _is_chat_events(path: str) -> bool:
    """/api/chat/<session>/events: a visitor's widget following its own chat."""
    parts = path.split("/")
    return len(parts) == 5 and parts[1:3] == ["api", "chat"] and parts[4] == "events"


def _salesperson(body: dict[str, Any]) -> str:
    name = body.get("salesperson")
    if not isinstance(name, str) or not name.strip():
        raise ApiError(400, "salesperson: required, the name the visitor sees")
    return person_name(name, "salesperson")


def _client_address(request: Request, trust_forwarded: bool) -> str:
    if trust_forwarded:
        forwarded = request.headers.get("x-forwarded-for", "")
        first = forwarded.split(",")[0].strip()
        if first:
            return first
    return request.client.host if request.client else "unknown"


class _Auth(BaseHTTPMiddleware):
    """With keys configured, `/api/` calls (but the public chat and its own event stream)
    need one: with the `read` scope to look, `respond` to answer chats from the inbox and
    complete or snooze follow-ups, `admin` to change (erase)."""

    def __init__(self, app: Any, keys: KeyRing) -> None:
        super().__init__(app)
        self.keys = keys

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        path = request.url.path
        open_path = (
            path in ("/api/chat", "/api/login")
            or _is_chat_events(path)
            or not path.startswith("/api/")
        )
        if not self.keys or open_path:
            return await call_next(request)
        given = bearer_token(request.headers.get("authorization", ""))
        if given is None:
            given = request.cookies.get(COOKIE, "")
        key = self.keys.find(given) if given else None
        if key is None:
            return JSONResponse(
                {"error": "an API key is required: send 'Authorization: Bearer <key>' or sign in"},
                status_code=401,
            )
        scope = "read" if request.method in ("GET", "HEAD") else "admin"
        if scope == "admin" and path.startswith(("/api/inbox/", "/api/follow-ups/")):
            scope = "respond"
        if path == "/api/inbox/events" and request.query_params.get("salesperson"):
            scope = "respond"  # an open inbox keeps its salesperson present
        if scope not in key.scopes:
            return JSONResponse(
                {"error": f"this API key lacks the {scope!r} scope this needs"}, status_code=403
            )
        return await call_next(request)


class Api:
    """The console's HTTP handlers."""

    def __init__(self, settings: Settings, backends: Backends) -> None:
        self.settings, self.backends = settings, backends
        self.hub = ChatHub(
            lambda after: backends.nlp.WatchChats(
                nlp_pb2.WatchChatsRequest(after_seq=after), metadata=backends.metadata
            )
        )
        self.keys = KeyRing(settings.api_keys)
        self.per_session = RateLimiter(
            settings.console_chat_per_minute, settings.console_chat_burst
        )
        self.per_address = RateLimiter(
            settings.console_chat_per_address_per_minute, settings.console_chat_address_burst
        )

    # -- leads ----------------------------------------------------------------------

    async def list_leads(self, request: Request) -> Response:
        where = leads_pb2.LeadFilter()
        wanted = request.query_params.get("class", "")
        if wanted:
            if wanted not in CLASSES:
                raise ApiError(400, f"class: {wanted!r} is not one of hot, warm, cold")
            where.classes.append(CLASSES[wanted])
        where.product_interest = request.query_params.get("product", "")
        call = leads_pb2.ListLeadsRequest(
            filter=where,
            page_size=page_size(request),
            page_token=request.query_params.get("page", ""),
        )
        page = await call_backend(self.backends.leads.ListLeads, call, self.backends)
        return JSONResponse(
            {"leads": [lead_json(x) for x in page.leads], "next_page": page.next_page_token}
        )

    async def get_lead(self, request: Request) -> Response:
        lead_id = request.path_params["lead_id"]
        lead, explanation = await asyncio.gather(
            call_backend(
                self.backends.leads.GetLead,
                leads_pb2.GetLeadRequest(lead_id=lead_id, include_timeline=True),
                self.backends,
            ),
            call_backend(
                self.backends.leads.ExplainScore,
                leads_pb2.ExplainScoreRequest(lead_id=lead_id),
                self.backends,
            ),
        )
        return JSONResponse(lead_json(lead) | {"explanation": explanation_json(explanation)})

    async def forget_lead(self, request: Request) -> Response:
        body = await json_body(request)
        reason = str(body.get("reason", "")).strip()
        if not reason:
            raise ApiError(400, "reason: required (it is kept in the audit record)")
        done = await call_backend(
            self.backends.leads.ForgetLead,
            leads_pb2.ForgetLeadRequest(lead_id=request.path_params["lead_id"], reason=reason),
            self.backends,
        )
        return JSONResponse(
            {
                "audit_id": done.audit_id,
                "signals_erased": done.signals_erased,
                "embeddings_erased": done.embeddings_erased,
            }
        )

    async def lead_suggestions(self, request: Request) -> Response:
        """Leads that may be this lead's person (merge suggestions still open)."""
        found = await call_backend(
            self.backends.leads.ListMergeSuggestions,
            leads_pb2.ListMergeSuggestionsRequest(lead_id=request.path_params["lead_id"]),
            self.backends,
        )
        return JSONResponse(
            {"suggestions": [suggestion_json(x) for x in found.suggestions]},
            headers={"Cache-Control": "no-store"},
        )

    async def decide_suggestion(self, request: Request) -> Response:
        """A person's decision: `merge` (MergeLeads with the suggestion) or `dismiss`."""
        suggestion_id = request.path_params["suggestion_id"]
        if request.path_params["decision"] not in ("merge", "dismiss"):
            raise ApiError(404, "a suggestion is decided with /merge or /dismiss")
        body = await json_body(request)
        reason = str(body.get("reason", ""))[:500]
        if request.path_params["decision"] == "merge":
            lead = await call_backend(
                self.backends.leads.MergeLeads,
                leads_pb2.MergeLeadsRequest(suggestion_id=suggestion_id, reason=reason),
                self.backends,
            )
            return JSONResponse({"lead_id": lead.lead_id})
        decided = await call_backend(
            self.backends.leads.DismissMergeSuggestion,
            leads_pb2.DismissMergeSuggestionRequest(suggestion_id=suggestion_id, reason=reason),
            self.backends,
        )
        return JSONResponse(suggestion_json(decided))

    async def lead_events(self, request: Request) -> Response:
        """Server-sent events: one `change` event per LeadChange from WatchLeads."""
        stream = self.backends.leads.WatchLeads(
            leads_pb2.WatchLeadsRequest(), metadata=self.backends.metadata
        )
        return await _event_stream(stream, "change", change_json, "watching leads")

    # -- calls ----------------------------------------------------------------------

    async def call_events(self, request: Request) -> Response:
        """Server-sent events: one `call` event per CallUpdate from speech's WatchCalls
        (live calls first, then starts, partial and final text, pauses and ends)."""
        where = speech_pb2.WatchCallsRequest(include_partials=True)
        metadata = self.backends.metadata
        stream = FanIn(  # every speech pod: each knows only its own calls
            self.backends.addresses.speech,
            self.backends.credentials,
            lambda channel: speech_pb2_grpc.SpeechStub(channel).WatchCalls(
                where, metadata=metadata
            ),
        )
        return await _event_stream(stream, "call", call_update_json, "watching calls")

    # -- cameras --------------------------------------------------------------------

    async def list_cameras(self, request: Request) -> Response:
        found = await call_backend(
            self.backends.vision.ListCameras, vision_pb2.ListCamerasRequest(), self.backends
        )
        return JSONResponse({"cameras": [camera_json(c) for c in found.cameras]})

    async def camera_view(self, request: Request) -> Response:
        view = await call_backend(
            self.backends.vision.GetCameraView,
            vision_pb2.GetCameraViewRequest(camera_id=request.path_params["camera_id"]),
            self.backends,
        )
        return JSONResponse(view_json(view), headers={"Cache-Control": "no-store"})

    async def camera_footfall(self, request: Request) -> Response:
        """The last `hours` (24) of a camera: its whole view hour by hour, and the total of
        each zone and line (entries, exits, median dwell), for the camera page's chart."""
        camera_id = request.path_params["camera_id"]
        raw = request.query_params.get("hours", "24")
        try:
            hours = float(raw)
        except ValueError:
            hours = -1.0
        if not 1 <= hours <= 24 * 31:
            raise ApiError(400, f"hours: {raw!r} is not a number from 1 to {24 * 31}")
        view = await call_backend(
            self.backends.vision.GetCameraView,
            vision_pb2.GetCameraViewRequest(camera_id=camera_id),
            self.backends,
        )
        start = Timestamp()
        start.FromSeconds(int(time.time() - hours * 3600))

        def ask(zone: str, bucket_s: int) -> Awaitable[vision_pb2.Footfall]:
            request = vision_pb2.GetFootfallRequest(
                camera_id=camera_id, zone=zone, start=start, bucket=Duration(seconds=bucket_s)
            )
            return call_backend(self.backends.vision.GetFootfall, request, self.backends)

        whole_span = math.ceil(hours * 60) * 60 + 3600  # one bucket over it, however aligned
        zones = [z.name for z in view.camera.zones]
        answers = await asyncio.gather(
            ask("", 3600), *(ask(zone, min(whole_span, 31 * 86400)) for zone in zones)
        )
        totals = {}
        for zone, answer in zip(zones, answers[1:], strict=True):
            buckets = footfall_json(answer)
            left = sum(b["dwell_count"] for b in buckets)
            totals[zone] = {
                "entries": sum(b["entries"] for b in buckets),
                "exits": sum(b["exits"] for b in buckets),
                "dwell_count": left,
                "dwell_median_s": round(
                    sum(b["dwell_median_s"] * b["dwell_count"] for b in buckets) / max(1, left), 1
                ),
            }
        hourly = footfall_json(answers[0])
        return JSONResponse(
            {"camera_id": camera_id, "hours": hours, "hourly": hourly, "zones": totals},
            headers={"Cache-Control": "no-store"},
        )

    # -- chat (public) ----------------------------------------------------------------

    async def chat(self, request: Request) -> Response:
        body = await json_body(request)
        text = body.get("text")
        if not isinstance(text, str) or not text.strip():
            raise ApiError(400, "text: required, a non-empty string")
        if len(text) > MAX_CHAT_TEXT:
            raise ApiError(400, f"text: {len(text)} characters, at most {MAX_CHAT_TEXT}")
        session = body.get("session_id", "")
        if not isinstance(session, str) or len(session) > 128:
            raise ApiError(400, "session_id: a string of at most 128 characters")
        address = _client_address(request, self.settings.console_trust_forwarded_for)
        wait = max(
            self.per_address.allow(address), self.per_session.allow(session) if session else 0.0
        )
        if wait > 0:
            raise ApiError(429, f"too many chat messages: try again in {wait:.0f} s")
        turn = nlp_pb2.ChatTurn(
            session_id=session,
            text=text,
            language_code=str(body.get("language_code", ""))[:16],
            page_url=str(body.get("page_url", ""))[:2000],
            campaign_id=str(body.get("campaign_id", ""))[:128],
        )
        reply = await call_backend(self.backends.nlp.Chat, turn, self.backends)
        if not session:  # the first message counts against the session it opened
            self.per_session.allow(reply.session_id)
        return JSONResponse(reply_json(reply))

    async def chat_events(self, request: Request) -> Response:
        """Server-sent events of one chat for its visitor's widget: the messages after
        `after` (a salesperson's among them) and who answers. The session id is the
        widget's secret: only its holder follows the chat. Every widget stream of this
        process is fed by one watch (ChatHub), not a watch each."""
        session = request.path_params["session_id"]
        after = request.query_params.get("after", "0")
        if not re.fullmatch(r"[0-9]{1,18}", after):
            raise ApiError(400, f"after: {after[:20]!r} is not a message number")
        address = _client_address(request, self.settings.console_trust_forwarded_for)
        wait = self.per_address.allow(address)  # each stream is held open: not free
        if wait > 0:
            raise ApiError(429, f"too many chat requests: try again in {wait:.0f} s")
        if self.hub.streams(session) >= MAX_WIDGET_STREAMS:
            raise ApiError(429, f"this chat already has {MAX_WIDGET_STREAMS} open streams")
        queue = self.hub.subscribe(session)
        try:
            await self.hub.opened(WATCH_OPEN_S)
            chat = await call_backend(
                self.backends.nlp.GetChat, nlp_pb2.GetChatRequest(session_id=session), self.backends
            )
        except TimeoutError:
            self.hub.unsubscribe(session, queue)
            raise ApiError(503, "the chat service is not answering") from None
        except BaseException:
            self.hub.unsubscribe(session, queue)
            raise

        def sse(event: nlp_pb2.ChatEvent) -> str:
            return _sse("chat", widget_event_json(event))

        async def events() -> AsyncIterator[str]:
            try:
                yield "retry: 2000\n: watching the chat\n\n"
                state = nlp_pb2.LiveChat(status=chat.status, salesperson=chat.salesperson)
                yield sse(nlp_pb2.ChatEvent(chat=state))
                last = int(after)
                for message in chat.messages:
                    if message.seq > last:
                        yield sse(nlp_pb2.ChatEvent(message=message))
                        last = message.seq
                while True:
                    try:
                        event = await asyncio.wait_for(queue.get(), KEEPALIVE_S)
                    except TimeoutError:
                        yield ": keepalive\n\n"
                        continue
                    if event is None:  # fell behind: the widget resumes after `last`
                        yield _sse("gone", {"error": "resume"})
                        return
                    if event.HasField("message"):
                        if event.message.seq <= last:
                            continue
                        last = event.message.seq
                    yield sse(event)
            finally:
                self.hub.unsubscribe(session, queue)

        return _sse_response(events())

    # -- inbox (salespeople) ---------------------------------------------------------

    async def list_chats(self, request: Request) -> Response:
        wanted = [s for s in request.query_params.get("status", "").split(",") if s]
        unknown = [s for s in wanted if s not in CHAT_STATUSES]
        if unknown:
            raise ApiError(400, f"status: {unknown[0]!r} is not one of {', '.join(CHAT_STATUSES)}")
        found = await call_backend(
            self.backends.nlp.ListChats,
            nlp_pb2.ListChatsRequest(statuses=[CHAT_STATUSES[s] for s in wanted]),
            self.backends,
        )
        return JSONResponse(
            {"chats": [live_chat_json(c) for c in found.chats]},
            headers={"Cache-Control": "no-store"},
        )

    async def get_chat(self, request: Request) -> Response:
        """The chat with its transcript, and the visitor's lead card when leads has one."""
        session = request.path_params["session_id"]
        chat = await call_backend(
            self.backends.nlp.GetChat, nlp_pb2.GetChatRequest(session_id=session), self.backends
        )
        lead = None
        with contextlib.suppress(ApiError):  # no lead yet: the chat said nothing that makes one
            found = await call_backend(
                self.backends.leads.GetLead,
                leads_pb2.GetLeadRequest(key=common_pb2.IdentityKeys(chat_session_id=session)),
                self.backends,
            )
            lead = lead_json(found)
        return JSONResponse(
            live_chat_json(chat) | {"lead": lead}, headers={"Cache-Control": "no-store"}
        )

    async def claim_chat(self, request: Request) -> Response:
        body = await json_body(request)
        session, name = request.path_params["session_id"], _salesperson(body)
        claim = nlp_pb2.ClaimChatRequest(session_id=session, salesperson=name)
        chat = await call_backend(self.backends.nlp.ClaimChat, claim, self.backends)
        return JSONResponse(live_chat_json(chat))

    async def release_chat(self, request: Request) -> Response:
        body = await json_body(request)
        session, name = request.path_params["session_id"], _salesperson(body)
        release = nlp_pb2.ReleaseChatRequest(session_id=session, salesperson=name)
        chat = await call_backend(self.backends.nlp.ReleaseChat, release, self.backends)
        return JSONResponse(live_chat_json(chat))

    async def send_chat_message(self, request: Request) -> Response:
        body = await json_body(request)
        text = body.get("text")
        if not isinstance(text, str) or not text.strip():
            raise ApiError(400, "text: required, a non-empty string")
        if len(text) > MAX_CHAT_TEXT:
            raise ApiError(400, f"text: {len(text)} characters, at most {MAX_CHAT_TEXT}")
        sent = await call_backend(
            self.backends.nlp.SendSalespersonMessage,
            nlp_pb2.SalespersonMessage(
                session_id=request.path_params["session_id"],
                salesperson=_salesperson(body),
                text=text,
            ),
            self.backends,
        )
        return JSONResponse(chat_message_json(sent))

    async def inbox_events(self, request: Request) -> Response:
        """Server-sent events of every chat for the inbox; with `salesperson`, their inbox
        counts as connected while the stream is open."""
        name = person_name(request.query_params.get("salesperson", ""), "salesperson")
        stream = self.backends.nlp.WatchChats(
            nlp_pb2.WatchChatsRequest(salesperson=name), metadata=self.backends.metadata
        )
        return await _event_stream(stream, "chat", chat_event_json, "watching chats")

    async def login(self, request: Request) -> Response:
        """Checks a key and keeps it in an HttpOnly cookie for the pages' calls."""
        body = await json_body(request)
        key = str(body.get("key", ""))
        if not self.keys:
            return JSONResponse({"ok": True, "auth": "off"})
        found = self.keys.find(key) if key else None
        if found is None:
            raise ApiError(401, "that API key is not valid")
        if "read" not in found.scopes:
            raise ApiError(403, "that API key lacks the 'read' scope the console needs")
        response = JSONResponse({"ok": True})
        response.set_cookie(
            COOKIE,
            key,
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
            max_age=12 * 3600,
        )
        return response


async def _event_stream(
    stream: Any, name: str, to_json: Callable[[Any], dict[str, Any]], hello: str
) -> Response:
    """A gRPC server stream as server-sent events named `name`; a `gone` event when the
    service goes away (the browser reconnects and reloads), keepalives while idle.

    The response starts once the service's headers say its watch is in place: the
    browser's `open`, on which a page reloads what it shows, comes after that, so no
    change falls between the reload and the watch.

    The stream is cancelled however the request ends: a browser gone while the watch
    opens, or before the first event, never runs the events' own `finally`, and every
    pod's watch would stay open."""
    try:
        with contextlib.suppress(TimeoutError, grpc.aio.AioRpcError, OSError):  # it says why
            await asyncio.wait_for(stream.initial_metadata(), WATCH_OPEN_S)
    except BaseException:
        stream.cancel()
        raise

    async def events() -> AsyncIterator[str]:
        yield f"retry: 2000\n: {hello}\n\n"
        messages = stream.__aiter__()
        try:
            while True:
                try:
                    message = await asyncio.wait_for(messages.__anext__(), KEEPALIVE_S)
                except TimeoutError:
                    yield ": keepalive\n\n"
                    continue
                except StopAsyncIteration:
                    return
                yield _sse(name, to_json(message))
        except grpc.aio.AioRpcError as exc:
            yield _sse("gone", {"error": exc.details()})
        except OSError as exc:  # the address did not resolve (FanIn)
            yield _sse("gone", {"error": str(exc)})
        finally:
            stream.cancel()

    return _sse_response(events(), BackgroundTask(stream.cancel))


def _sse(name: str, data: dict[str, Any]) -> str:
    """One server-sent event named `name` with `data` as JSON."""
    return f"event: {name}\ndata: {json.dumps(data)}\n\n"


def _sse_response(events: AsyncIterator[str], ended: BackgroundTask | None = None) -> Response:
    return StreamingResponse(
        events,
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        background=ended,
    )


class _ChatCors(BaseHTTPMiddleware):
    """Only the chat endpoint answers other origins (the widget lives on the shop's pages)."""

    def __init__(self, app: Any, origins: Sequence[str]) -> None:
        super().__init__(app)
        self.origins = set(origins)

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        origin = request.headers.get("origin", "")
        public = request.url.path == "/api/chat" or _is_chat_events(request.url.path)
        allowed = public and ("*" in self.origins or origin in self.origins)
        if request.method == "OPTIONS" and request.url.path == "/api/chat":
            response: Response = Response(status_code=204 if allowed else 403)
        else:
            response = await call_next(request)
        if allowed and origin:
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Vary"] = "Origin"
            response.headers["Access-Control-Allow-Methods"] = "GET, POST, OPTIONS"
            response.headers["Access-Control-Allow-Headers"] = "Content-Type"
        return response


def create_app(settings: Settings, backends: Backends) -> Starlette:
    api = Api(settings, backends)

    def page(name: str) -> Callable[[Request], Awaitable[Response]]:
        body = _asset(name)

        async def serve(_request: Request) -> Response:
            return Response(body, media_type="text/html", headers={"Cache-Control": "no-store"})

        return serve

    def asset(name: str, media_type: str) -> Callable[[Request], Awaitable[Response]]:
        body = _asset(name)

        async def serve(_request: Request) -> Response:
            return Response(body, media_type=media_type)

        return serve

    async def healthz(_request: Request) -> Response:
        return JSONResponse({"ok": True})

    routes = [Route(path, page(name)) for path, name in PAGES.items()]
    routes += [Route(path, asset(name, kind)) for path, (name, kind) in ASSETS.items()]
    routes += [
        Route("/healthz", healthz),
        Route("/api/leads", handled(api.list_leads)),
        Route("/api/leads/events", api.lead_events),
        Route("/api/leads/{lead_id}", handled(api.get_lead)),
        Route("/api/leads/{lead_id}/forget", handled(api.forget_lead), methods=["POST"]),
        Route("/api/leads/{lead_id}/suggestions", handled(api.lead_suggestions)),
        Route(
            "/api/suggestions/{suggestion_id}/{decision:str}",
            handled(api.decide_suggestion),
            methods=["POST"],
        ),
        Route("/api/calls/events", api.call_events),
        Route("/api/cameras", handled(api.list_cameras)),
        Route("/api/cameras/{camera_id}", handled(api.camera_view)),
        Route("/api/cameras/{camera_id}/footfall", handled(api.camera_footfall)),
        Route("/api/chat", handled(api.chat), methods=["POST", "OPTIONS"]),
        Route("/api/chat/{session_id}/events", handled(api.chat_events)),
        Route("/api/inbox", handled(api.list_chats)),
        Route("/api/inbox/events", handled(api.inbox_events)),
        Route("/api/inbox/{session_id}", handled(api.get_chat)),
        Route("/api/inbox/{session_id}/claim", handled(api.claim_chat), methods=["POST"]),
        Route("/api/inbox/{session_id}/release", handled(api.release_chat), methods=["POST"]),
        Route("/api/inbox/{session_id}/messages", handled(api.send_chat_message), methods=["POST"]),
        Route("/api/login", handled(api.login), methods=["POST"]),
        *FollowUpsApi(backends).routes(),
        *ReportsApi(backends).routes(),
    ]
    middleware = [
        Middleware(_ChatCors, origins=settings.console_chat_origins),
        Middleware(_Auth, keys=api.keys),
    ]
    app = Starlette(routes=routes, middleware=middleware)
    app.state.api = api
    return app


class _Server(uvicorn.Server):
    """uvicorn on a loop that is not its own: the services' runner handles the signals."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class ConsoleGateway:
    """Runs the console on the current event loop, beside the gRPC services."""

    name = "console"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.backends: Backends | None = None
        self._server: uvicorn.Server | None = None
        self._app: Starlette | None = None
        self._task: asyncio.Task[None] | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://{self.settings.console_host}:{self.port}/"

    async def start(self, hosts: Sequence[ServiceHost] = ()) -> None:
        self.backends = Backends(self.settings, Addresses.of(self.settings, hosts))
        self._app = create_app(self.settings, self.backends)
        config = uvicorn.Config(
            self._app,
            host=self.settings.console_host,
            port=self.settings.console_port,
            log_level="warning",
            access_log=False,
            lifespan="off",
        )
        # Bound here, so a busy port is a plain OSError (uvicorn itself would exit the process).
        host, port = self.settings.console_host, self.settings.console_port
        try:
            sock = socket.create_server((host, port))
        except OSError as exc:
            raise OSError(
                f"the console cannot listen on {host}:{port} (PERCEPT_CONSOLE_HOST/"
                f"PERCEPT_CONSOLE_PORT): {exc.strerror}"
            ) from exc
        self.port = sock.getsockname()[1]
        server = _Server(config)
        self._server = server
        self._task = asyncio.create_task(server.serve(sockets=[sock]), name="console")
        while not server.started:
            if self._task.done():
                await self._task  # raises what stopped it
                raise OSError(f"the console could not start on port {self.port}")
            await asyncio.sleep(0.02)
        log.info("console listening", extra={"url": self.url})

    async def stop(self) -> None:
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(self._task, 5.0)
        if self._app is not None:
            await self._app.state.api.hub.close()
        if self.backends is not None:
            await self.backends.close()
