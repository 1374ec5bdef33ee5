"""A restartable leads server for tests, a realistic customer journey, and a business
whose outcomes follow its own pattern (training)."""

from __future__ import annotations

import asyncio
import math
import random
import threading
import uuid
from collections.abc import Awaitable
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from leads_signals import NOW, signal

from percept.leads.service import LeadsService
from percept.leads.store import LeadFilter, LeadStore
from percept.runtime.server import ServiceHost
from percept.runtime.settings import Settings
from percept.v1 import common_pb2 as c
from percept.v1 import leads_pb2 as lp
from percept.v1 import leads_pb2_grpc

PHONE, EMAIL = "+14155552671", "ana@example.com"


class Leads:
    """A running leads host with a stub; restartable on the same database."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.host: ServiceHost | None = None
        self.channel: grpc.aio.Channel | None = None

    async def start(self) -> leads_pb2_grpc.LeadsAsyncStub:
        service = LeadsService(self.settings)
        # Scenario time is fixed, a day after the story; decay is tested in the unit tests.
        service.store.clock = lambda: NOW + timedelta(days=1)
        self.host = ServiceHost(service, self.settings)
        await self.host.start()
        await asyncio.wait_for(self.host.ready.wait(), 30)
        self.channel = grpc.aio.insecure_channel(self.host.address)
        return leads_pb2_grpc.LeadsStub(self.channel)

    async def stop(self) -> None:
        if self.channel is not None:
            await self.channel.close()
        if self.host is not None:
            await self.host.stop(grace=5)


def customer_journey() -> list[c.Signal]:
    """A caller phones, later chats (same phone + e-mail), then visits the store."""
    return [
        signal(
            name="purchase_intent",
            confidence=0.93,
            minutes=0,
            phone=PHONE,
            call_id="call-1",
            evidence="I want to buy two phones",
        ),
        signal(
            kind=c.SIGNAL_KIND_ENTITY,
            name="product",
            value="phone",
            minutes=0.1,
            phone=PHONE,
            call_id="call-1",
        ),
        signal(
            source=c.SOURCE_CHAT,
            kind=c.SIGNAL_KIND_QUALIFICATION_SLOT,
            name="budget",
            value="1500 USD",
            minutes=60,
            chat_session_id="chat-9",
        ),
        signal(
            source=c.SOURCE_CHAT,
            kind=c.SIGNAL_KIND_CONTACT_CAPTURED,
            name="",
            minutes=61,
            chat_session_id="chat-9",
            phone="+1 415-555-2671",
            email="Ana@Example.com",
        ),
        signal(
            source=c.SOURCE_CHAT,
            kind=c.SIGNAL_KIND_QUALIFICATION_SLOT,
            name="product",
            value="phone",
            minutes=62,
            chat_session_id="chat-9",
        ),
        signal(
            source=c.SOURCE_VISION,
            kind=c.SIGNAL_KIND_DWELL,
            name="phones",
            value="phone",
            numeric_value=240,
            minutes=180,
            visitor_id="v-7",
            email=EMAIL,
        ),
    ]


async def next_change(stream: object, limit_s: float = 10) -> lp.LeadChange:
    """The next LeadChange of a WatchLeads stream."""
    async with asyncio.timeout(limit_s):
        change = await stream.read()  # type: ignore[attr-defined]
    assert isinstance(change, lp.LeadChange), change
    return change


class Receiver:
    """A CRM endpoint on loopback that fails the first `failures` requests."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.requests: list[tuple[dict[str, str], bytes, int]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                status = 500 if len(receiver.requests) < receiver.failures else 200
                receiver.requests.append(
                    ({k.lower(): v for k, v in self.headers.items()}, body, status)
                )
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/percept"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


INTENTS = ("competitor_mention", "price_inquiry", "demo_or_meeting_request", "product_question")


def business(
    store: LeadStore, leads: int, seed: int, *, random_outcomes: bool
) -> list[tuple[str, bool]]:
    """Leads whose wins follow this business's own pattern, unlike the prior's guess:
    mentioning a competitor and asking prices convert; demo requests do not."""
    rng = random.Random(seed)
    outcomes = []
    for person in range(leads):
        shown = {name: rng.random() < 0.45 for name in INTENTS}
        signals = []
        for name, present in shown.items():
            if present:
                stamp = Timestamp()
                stamp.FromDatetime(NOW - timedelta(days=rng.uniform(1, 20)))
                signals.append(
                    c.Signal(
                        signal_id=uuid.uuid4().hex,
                        source=c.SOURCE_CHAT,
                        kind=c.SIGNAL_KIND_INTENT,
                        name=name,
                        confidence=1.0,
                        occurred_at=stamp,
                        identity=c.IdentityKeys(chat_session_id=f"s-{seed}-{person}"),
                    )
                )
        if not signals:
            continue
        store.ingest(signals)
        logit = (
            -1.0
            + 3.0 * shown["competitor_mention"]
            + 1.5 * shown["price_inquiry"]
            - 2.5 * shown["demo_or_meeting_request"]
        )
        won = rng.random() < (0.5 if random_outcomes else 1 / (1 + math.exp(-logit)))
        outcomes.append((f"s-{seed}-{person}", won))
    rows, token = store.page(LeadFilter(), 500, "")
    while token:
        more, token = store.page(LeadFilter(), 500, token)
        rows += more
    lead_of = {r["keys"][0].value: r["lead_id"] for r in rows}
    return [(lead_of[session], won) for session, won in outcomes]


async def code_of(call: Awaitable[object]) -> tuple[grpc.StatusCode, str]:
    """The status and details an RPC ends with (OK and '' when it succeeds)."""
    try:
        await call
    except grpc.aio.AioRpcError as exc:
        return exc.code(), exc.details() or ""
    return grpc.StatusCode.OK, ""
