"""The web console over the real services (leads on SQLite, nlp on MiniLM and Apertium,
vision on NanoDet, MTCNN and dlib, speech on tiny.en with its telephony gateway), with
API keys on everywhere: its JSON API and live event streams over HTTP, then its pages
in Debian's Chromium driven by Playwright.

Screenshots are kept in test-artifacts/console/ and checked by their pixels."""

from __future__ import annotations

import asyncio
import base64
import csv
import io
import json
import os
import re
import shutil
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np
import pytest
import pytest_asyncio
from leads_signals import recent
from local_servers import local_settings
from PIL import Image
from playwright.async_api import Browser, FloatRect
from speech_audio import mulaw8k, speak
from telephony_clients import twilio_call
from vision_harness import start_vision, vision_settings

from percept.console.gateway import ConsoleGateway
from percept.demo import media
from percept.leads.analytics import segment
from percept.leads.service import LeadsService
from percept.nlp.service import NlpService
from percept.runtime.clients import bearer
from percept.runtime.server import ServiceHost
from percept.runtime.settings import Settings
from percept.speech.service import SpeechService
from percept.v1 import common_pb2 as c
from percept.v1 import leads_pb2, leads_pb2_grpc, vision_pb2, vision_pb2_grpc
from percept.vision.client import lockstep
from percept.vision.images import decode_image, encode_jpeg

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]
KEY = "console-test-key-0123456789"
READER = "console-reader-key-0123456789"  # the console accepts it with the read scope only
AUTH = {"Authorization": f"Bearer {KEY}"}
META = bearer(KEY)
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "console"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
HOT_RED = (0xD9, 0x2D, 0x20)  # .badge.hot in console.css
WARM_ORANGE = (0xF7, 0x90, 0x09)  # .priority.p2, a control group's mark
BAR_BLUE = (0x2E, 0x90, 0xFA)  # the reports' campaign bars
ZONE_GREEN = (0x32, 0xD5, 0x83)  # product zones on the camera page


@dataclass
class Stack:
    url: str
    leads: leads_pb2_grpc.LeadsAsyncStub
    leads_service: LeadsService
    vision: vision_pb2_grpc.VisionAsyncStub
    gateway: ConsoleGateway
    telephony: str  # the speech gateway's WebSocket base URL


def _settings(data: Path, **overrides: object) -> Settings:
    return local_settings(data, **{"api_keys": [KEY], **overrides})


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    root = tmp_path_factory.mktemp("console")
    leads_settings = _settings(root / "leads")
    leads_service = LeadsService(leads_settings)
    leads = ServiceHost(leads_service, leads_settings)
    await leads.start()
    await asyncio.wait_for(leads.ready.wait(), 60)
    nlp_settings = _settings(root / "nlp", leads_address=leads.address)
    nlp = ServiceHost(NlpService(nlp_settings), nlp_settings)
    await nlp.start()
    _, vision = await start_vision(
        vision_settings(root / "vision", api_keys=[KEY], leads_address=leads.address)
    )
    speech_settings = _settings(root / "speech", leads_address=leads.address)
    speech_service = SpeechService(speech_settings)
    speech = ServiceHost(speech_service, speech_settings)
    await speech.start()
    await asyncio.wait_for(nlp.ready.wait(), 180)
    await asyncio.wait_for(speech.ready.wait(), 120)
    assert speech_service.gateway is not None
    gateway_settings = _settings(
        root / "console",
        console_port=0,
        console_chat_burst=3,
        console_chat_per_minute=2,
        console_chat_address_burst=60,  # every test's chat comes from 127.0.0.1
        api_keys=[KEY, f"{READER}:read"],
    )
    gateway = ConsoleGateway(gateway_settings)
    await gateway.start([leads, nlp, vision, speech])
    async with (
        grpc.aio.insecure_channel(leads.address) as leads_channel,
        grpc.aio.insecure_channel(vision.address) as vision_channel,
    ):
        yield Stack(
            gateway.url.rstrip("/"),
            leads_pb2_grpc.LeadsStub(leads_channel),
            leads_service,
            vision_pb2_grpc.VisionStub(vision_channel),
            gateway,
            f"ws://127.0.0.1:{speech_service.gateway.port}",
        )
    await gateway.stop()
    await speech.stop(grace=1)
    await vision.stop(grace=1)
    await nlp.stop(grace=1)
    await leads.stop(grace=1)


def _signal(email: str, name: str, kind: int = c.SIGNAL_KIND_INTENT, value: str = "") -> c.Signal:
    return recent(
        source=c.SOURCE_CHAT, kind=kind, name=name, value=value, confidence=0.95, email=email
    )


async def _ingest(stack: Stack, *signals: c.Signal) -> None:
    ack = await stack.leads.IngestBatch(
        leads_pb2.IngestBatchRequest(signals=signals), metadata=META
    )
    assert ack.accepted == len(signals), ack


def _hot_signals(email: str) -> list[c.Signal]:
    slot = c.SIGNAL_KIND_QUALIFICATION_SLOT
    return [
        _signal(email, "purchase_intent"),
        _signal(email, "demo_or_meeting_request"),
        _signal(email, "price_inquiry"),
        _signal(email, "budget", slot, value="5000 EUR"),
        _signal(email, "timeline", slot, value="next week"),
        _signal(email, "product", slot, value="laptop"),
    ]


# -- the JSON API ---------------------------------------------------------------------


async def test_every_data_call_needs_the_key_but_the_chat_does_not(stack: Stack) -> None:
    async with httpx.AsyncClient(base_url=stack.url) as client:
        for path in (
            "/api/leads",
            "/api/leads/x",
            "/api/cameras",
            "/api/leads/events",
            "/api/calls/events",
        ):
            refused = await client.get(path)
            assert refused.status_code == 401, path
            assert "API key is required" in refused.json()["error"]
        wrong = await client.get("/api/leads", headers={"Authorization": "Bearer wrong-key-wrong"})
        assert wrong.status_code == 401
        assert (await client.get("/api/leads", headers=AUTH)).status_code == 200
        bad_login = await client.post("/api/login", json={"key": "not-the-key-at-all"})
        assert bad_login.status_code == 401 and "not valid" in bad_login.json()["error"]
        login = await client.post("/api/login", json={"key": KEY})
        cookie = login.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie
        assert (await client.get("/api/leads")).status_code == 200  # the cookie now
        page = await httpx.AsyncClient(base_url=stack.url).get("/")  # pages hold no data
        assert page.status_code == 200 and "percept" in page.text


async def test_leads_list_filter_and_lead_page_data(stack: Stack) -> None:
    email = "list-filter@example.com"
    await _ingest(stack, *_hot_signals(email))
    async with httpx.AsyncClient(base_url=stack.url, headers=AUTH) as client:
        hot = (await client.get("/api/leads", params={"class": "hot"})).json()["leads"]
        mine = [x for x in hot if x["identity"].get("email") == email]
        assert len(mine) == 1 and mine[0]["class"] == "hot"
        assert mine[0]["product_interest"] == "laptop" and mine[0]["channels"] == ["website chat"]
        cold = (await client.get("/api/leads", params={"class": "cold"})).json()["leads"]
        assert all(x["class"] == "cold" for x in cold)
        lead = (await client.get(f"/api/leads/{mine[0]['lead_id']}")).json()
        signals = [x for x in lead["timeline"] if not x["follow_up_id"]]
        assert len(signals) == 6
        (step,) = [x for x in lead["timeline"] if x["follow_up_id"]]
        assert step["follow_up_id"] == lead["next_follow_up_id"]  # the hot lead's call
        said = [x["description"] for x in lead["explanation"]["contributions"]]
        assert "wants to buy (95% strength, by website chat)" in said
        assert lead["qualification"]["budget"]


@pytest.mark.parametrize(
    ("path", "status", "message"),
    [
        ("/api/leads?class=lukewarm", 400, "class: 'lukewarm' is not one of hot, warm, cold"),
        ("/api/leads?page_size=0", 400, "page_size: '0' is not a number from 1 to 500"),
        ("/api/leads?page=forged-token", 400, "page_token"),
        ("/api/leads/no-such-lead", 404, "not found"),
        ("/api/cameras/no-such-camera", 404, "configured: store-front"),
    ],
)
async def test_bad_requests_get_a_status_and_a_message(
    stack: Stack, path: str, status: int, message: str
) -> None:
    async with httpx.AsyncClient(base_url=stack.url, headers=AUTH) as client:
        answer = await client.get(path)
    assert answer.status_code == status, answer.text
    assert message in answer.json()["error"]


async def test_forget_needs_a_reason_and_erases(stack: Stack) -> None:
    email = "forget-me@example.com"
    await _ingest(stack, _signal(email, "price_inquiry"))
    async with httpx.AsyncClient(base_url=stack.url, headers=AUTH) as client:
        leads = (await client.get("/api/leads")).json()["leads"]
        lead_id = next(x["lead_id"] for x in leads if x["identity"].get("email") == email)
        path = f"/api/leads/{lead_id}/forget"
        assert (await client.post(path, json={})).status_code == 400
        not_json = await client.post(path, content=b"{nope")
        assert not_json.status_code == 400 and "not JSON" in not_json.json()["error"]
        huge = await client.post(path, content=b" " * 20_000)
        assert huge.status_code == 413
        reader = {"Authorization": f"Bearer {READER}"}
        assert (await client.get(f"/api/leads/{lead_id}", headers=reader)).status_code == 200
        looker = await client.post(path, json={"reason": "x"}, headers=reader)
        assert looker.status_code == 403 and "'admin' scope" in looker.json()["error"]
        done = await client.post(path, json={"reason": "asked to be forgotten"})
        assert done.status_code == 200 and done.json()["signals_erased"] == 1
        assert (await client.get(f"/api/leads/{lead_id}")).status_code == 404


async def test_the_event_stream_carries_lead_changes_as_they_happen(stack: Stack) -> None:
    email = "live-events@example.com"
    async with (
        httpx.AsyncClient(base_url=stack.url, headers=AUTH, timeout=30) as client,
        client.stream("GET", "/api/leads/events") as events,
    ):
        assert events.headers["content-type"].startswith("text/event-stream")
        lines = events.aiter_lines()
        assert await anext(lines) == "retry: 2000"
        await _ingest(stack, _signal(email, "product_question"))
        while True:
            line = await asyncio.wait_for(anext(lines), 20)
            if line.startswith("data: ") and email in line:
                change = json.loads(line.removeprefix("data: "))
                break
    assert change["type"] == "created"
    assert change["lead"]["identity"]["email"] == email


async def test_chat_is_answered_validated_and_rate_limited_per_session(stack: Stack) -> None:
    async with httpx.AsyncClient(base_url=stack.url, timeout=60) as client:
        first = await client.post("/api/chat", json={"text": "How much is the laptop?"})
        assert first.status_code == 200, first.text
        reply = first.json()
        assert "1,299" in reply["text"] and reply["session_id"]
        assert set(reply) == {  # no slot values: who answers, and the transcript's numbers
            "session_id",
            "text",
            "language_code",
            "handoff",
            "status",
            "salesperson",
            "visitor_seq",
            "reply_seq",
        }
        session = reply["session_id"]
        for _ in range(2):  # the burst is 3
            more = await client.post("/api/chat", json={"text": "Thanks", "session_id": session})
            assert more.status_code == 200, more.text
        refused = await client.post("/api/chat", json={"text": "Hello?", "session_id": session})
        assert refused.status_code == 429
        assert refused.json()["error"].startswith("too many chat messages: try again in")
        for body, message in [
            ({"text": ""}, "text: required"),
            ({"text": "x" * 2001}, "at most 2000"),
            ({"text": "hi", "session_id": 5}, "session_id"),
        ]:
            answer = await client.post("/api/chat", json=body)
            assert answer.status_code == 400 and message in answer.json()["error"]


async def test_only_the_chat_answers_other_origins(stack: Stack) -> None:
    shop = {"Origin": "https://shop.example"}
    async with httpx.AsyncClient(base_url=stack.url) as client:
        preflight = await client.options(
            "/api/chat", headers=shop | {"Access-Control-Request-Method": "POST"}
        )
        assert preflight.status_code == 204
        assert preflight.headers["access-control-allow-origin"] == "https://shop.example"
        leads = await client.get("/api/leads", headers=shop | AUTH)
        assert "access-control-allow-origin" not in leads.headers


async def test_the_inbox_api_needs_the_respond_scope_and_says_what_is_wrong(
    stack: Stack,
) -> None:
    reader = {"Authorization": f"Bearer {READER}"}
    async with httpx.AsyncClient(base_url=stack.url, timeout=30) as client:
        first = await client.post("/api/chat", json={"text": "How much is the watch?"})
        session = first.json()["session_id"]
        assert first.json()["reply_seq"] > first.json()["visitor_seq"] > 0
        listed = await client.get("/api/inbox?status=assistant", headers=reader)
        assert session in [c["session_id"] for c in listed.json()["chats"]]
        claim = f"/api/inbox/{session}/claim"
        refused = await client.post(claim, json={"salesperson": "Ana"}, headers=reader)
        assert refused.status_code == 403 and "'respond' scope" in refused.json()["error"]
        present = await client.get("/api/inbox/events?salesperson=Ana", headers=reader)
        assert present.status_code == 403  # only a salesperson's key keeps one present
        nameless = await client.post(claim, json={}, headers=AUTH)
        assert nameless.status_code == 400
        assert nameless.json()["error"].startswith("salesperson: required")
        unclaimed = await client.post(
            f"/api/inbox/{session}/messages",
            json={"salesperson": "Ana", "text": "Hi"},
            headers=AUTH,
        )
        assert unclaimed.status_code == 409 and "is not claimed" in unclaimed.json()["error"]
        bad = await client.get("/api/inbox?status=lost", headers=AUTH)
        assert bad.status_code == 400 and "'lost' is not one of" in bad.json()["error"]
        # the widget's own stream needs no key, and starts with who answers the chat
        async with client.stream("GET", f"/api/chat/{session}/events?after=0") as events:
            assert events.status_code == 200
            lines = events.aiter_lines()
            data = [line async for line in _first(lines, 3, "data:")]
        said = [json.loads(line.removeprefix("data: ")) for line in data]
        assert said[0] == {"type": "status", "status": "assistant", "salesperson": ""}
        assert said[1]["role"] == "visitor" and said[1]["text"] == "How much is the watch?"
        assert said[2]["role"] == "assistant" and "$299" in said[2]["text"]
        wrong = await client.get(f"/api/chat/{session}/events?after=-1")
        assert wrong.status_code == 400


def _aged(hours: float, *signals: c.Signal) -> list[c.Signal]:
    """The signals as if said `hours` ago: a hot lead nobody called since is overdue."""
    when = datetime.now(UTC) - timedelta(hours=hours)
    for s in signals:
        s.occurred_at.FromDatetime(when)
    return list(signals)


async def _follow_up_of(client: httpx.AsyncClient, email: str) -> dict[str, Any]:
    listed = await client.get("/api/follow-ups?unassigned=1&page_size=500", headers=AUTH)
    assert listed.status_code == 200, listed.text
    (found,) = [f for f in listed.json()["follow_ups"] if f["identity"].get("email") == email]
    return dict(found)


async def test_the_follow_up_api_needs_respond_to_act_and_says_what_is_wrong(
    stack: Stack,
) -> None:
    email = "today-api@example.com"
    await _ingest(stack, *_aged(30, *_hot_signals(email)))
    reader = {"Authorization": f"Bearer {READER}"}
    async with httpx.AsyncClient(base_url=stack.url, timeout=30) as client:
        f = await _follow_up_of(client, email)
        assert (f["action"], f["class"], f["overdue"]) == ("call", "hot", True)
        assert f["reason"] == "hot lead: call within a day" and f["owner"] == ""
        done = f"/api/follow-ups/{f['follow_up_id']}/complete"
        snooze = f"/api/follow-ups/{f['follow_up_id']}/snooze"
        refused = await client.post(done, json={"outcome": "won"}, headers=reader)
        assert refused.status_code == 403 and "'respond' scope" in refused.json()["error"]
        maybe = await client.post(done, json={"outcome": "maybe"}, headers=AUTH)
        assert maybe.status_code == 400 and "is neither won nor lost" in maybe.json()["error"]
        for until, error in (
            ("tomorrow", "until: 'tomorrow' is not an ISO 8601 time"),
            ("2031-01-01T09:00:00", "has no time zone"),
            ("2001-01-01T09:00:00Z", "is not in the future"),
            ("9999-12-31T23:00:00-05:00", "is out of range"),
        ):
            bad = await client.post(snooze, json={"until": until}, headers=AUTH)
            assert bad.status_code == 400 and error in bad.json()["error"], bad.text
        later = datetime.now(UTC) + timedelta(days=2)
        snoozed = await client.post(
            snooze, json={"until": later.isoformat(), "note": "on holiday"}, headers=AUTH
        )
        assert snoozed.status_code == 200, snoozed.text
        assert datetime.fromisoformat(snoozed.json()["due_at"]) == later
        assert not snoozed.json()["overdue"]
        exported = await client.get("/api/follow-ups.csv", headers=reader)
        assert exported.status_code == 200
        assert exported.headers["content-type"].startswith("text/csv")
        rows = list(csv.DictReader(io.StringIO(exported.text)))
        (mine,) = [r for r in rows if r["follow_up_id"] == f["follow_up_id"]]
        assert (mine["lead"], mine["action"], mine["class"]) == (email, "call", "hot")
        won = await client.post(done, json={"outcome": "won", "note": "signed"}, headers=AUTH)
        assert won.status_code == 200 and won.json()["stage"] == "won"
        twice = await client.post(done, json={"outcome": "won"}, headers=AUTH)
        assert twice.status_code == 409 and "was completed at" in twice.json()["error"]
        bad_size = await client.get("/api/follow-ups?page_size=0", headers=AUTH)
        assert bad_size.status_code == 400


async def _first(lines: AsyncIterator[str], n: int, prefix: str) -> AsyncIterator[str]:
    """The first n lines that start with prefix."""
    async with asyncio.timeout(15):
        async for line in lines:
            if line.startswith(prefix):
                yield line
                n -= 1
                if not n:
                    return


async def test_camera_views_show_zones_counts_and_no_face(stack: Stack) -> None:
    person = media.astronaut_person()
    frames = media.walk(person, [430, 436, 430, 436, 430], height=440)  # at the laptops

    def camera() -> list[vision_pb2.Frame]:
        out = []
        for i, image in enumerate(frames):
            frame = vision_pb2.Frame(
                camera_id="store-front",
                sequence=i,
                image=vision_pb2.Image(encoded=encode_jpeg(image)),
            )
            frame.captured_at.FromNanoseconds(round((time.time() - 10 + i) * 1e9))
            out.append(frame)
        return out

    results = [r async for r in lockstep(stack.vision, camera(), META)]
    assert results[-1].people_count == 1
    async with httpx.AsyncClient(base_url=stack.url, headers=AUTH) as client:
        cameras = (await client.get("/api/cameras")).json()["cameras"]
        view = (await client.get("/api/cameras/store-front")).json()
    assert [x["camera_id"] for x in cameras] == ["store-front"]
    assert cameras[0]["source"] is None  # pushed over StreamFrames: no reader of its own
    assert {z["name"] for z in view["zones"]} == {"entrance", "phones", "laptops", "checkout"}
    shown = view["frame"]
    assert shown["people_count"] == 1 and shown["zones"]["laptops"]["people"] == 1
    assert (shown["width"], shown["height"]) == (frames[-1].shape[1], frames[-1].shape[0])
    assert sum(shown["density"]["cells"]) > 0
    # The frame itself shows a face to MTCNN; the console's copy of it does not.
    console_jpeg = base64.b64decode(shown["image"].split(",", 1)[1])
    seen = await stack.vision.Detect(
        vision_pb2.DetectRequest(
            image=vision_pb2.Image(encoded=encode_jpeg(frames[-1])), detect_faces=True
        ),
        metadata=META,
    )
    blurred = await stack.vision.Detect(
        vision_pb2.DetectRequest(image=vision_pb2.Image(encoded=console_jpeg), detect_faces=True),
        metadata=META,
    )
    assert len(seen.faces) == 1 and len(blurred.faces) == 0
    assert decode_image(vision_pb2.Image(encoded=console_jpeg), 10**7).shape == frames[-1].shape


async def test_the_camera_footfall_of_the_last_hours(stack: Stack) -> None:
    person = media.astronaut_person()
    frames = media.walk(person, [300, 330, 360, 390, 420], height=440)
    start = time.time() - 5

    def camera() -> list[vision_pb2.Frame]:
        out = []
        for i, image in enumerate(frames):
            frame = vision_pb2.Frame(
                camera_id="store-front", image=vision_pb2.Image(encoded=encode_jpeg(image))
            )
            frame.captured_at.FromNanoseconds(round((start + i) * 1e9))
            out.append(frame)
        return out

    [r async for r in lockstep(stack.vision, camera(), META)]
    async with httpx.AsyncClient(base_url=stack.url, headers=AUTH) as client:
        async with asyncio.timeout(20):  # the closed stream's minute is written in the background
            while True:
                got = await client.get("/api/cameras/store-front/footfall?hours=24")
                assert got.status_code == 200, got.text
                footfall = got.json()
                if footfall["hourly"]:
                    break
                await asyncio.sleep(0.2)
        assert max(b["occupancy_peak"] for b in footfall["hourly"]) >= 1
        assert set(footfall["zones"]) == {"entrance", "phones", "laptops", "checkout"}
        bad = await client.get("/api/cameras/store-front/footfall?hours=soon")
        assert bad.status_code == 400 and "hours: 'soon'" in bad.json()["error"]
        unknown = await client.get("/api/cameras/back-door/footfall")
        assert unknown.status_code == 404 and "back-door" in unknown.json()["error"]


# -- the pages in Chromium ------------------------------------------------------------


@pytest_asyncio.fixture(loop_scope="module")
async def browser() -> AsyncIterator[Browser]:
    if CHROMIUM is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed: scripts/setup.sh installs it")
        pytest.skip("chromium is not installed (scripts/setup.sh installs it)")
    from playwright.async_api import async_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"]
        )
        yield chromium
        await chromium.close()


def _share(path: Path, box: FloatRect, colour: tuple[int, int, int], tol: int = 40) -> float:
    """The share of pixels within `box` (CSS pixels, device scale 1) close to `colour`."""
    with Image.open(path) as image:
        crop = np.asarray(image.convert("RGB"))[
            int(box["y"]) : int(box["y"] + box["height"]),
            int(box["x"]) : int(box["x"] + box["width"]),
        ].astype(int)
    near = np.all(np.abs(crop - np.array(colour)) <= tol, axis=2)
    return float(near.mean())


async def test_the_board_signs_in_shows_leads_and_updates_live(
    stack: Stack, browser: Browser
) -> None:
    page = await browser.new_page(viewport={"width": 1280, "height": 800})
    await page.goto(stack.url + "/")
    await page.wait_for_selector("#key-dialog[open]")  # no key yet: the sign-in form
    await page.fill("#key-input", KEY)
    await page.click("#key-dialog button[type=submit]")
    await page.wait_for_selector("#live.on")  # reloaded, signed in, watching
    email = "board-live@example.com"
    await _ingest(stack, _signal(email, "product_question"))  # a new lead, after the page loaded
    row = page.locator("tr", has_text=email)
    await row.wait_for(timeout=15_000)
    assert await row.get_attribute("data-class") == "cold"
    await _ingest(stack, *_hot_signals(email))  # she becomes hot: the same row, now red
    await page.wait_for_selector(f"tr[data-class=hot]:has-text('{email}')", timeout=15_000)
    assert await page.locator("tr", has_text=email).count() == 1
    shot = ARTIFACTS / "board.png"
    await page.screenshot(path=str(shot))
    badge = await page.locator("tr", has_text=email).locator(".badge").bounding_box()
    assert badge is not None
    assert _share(shot, badge, HOT_RED) > 0.5  # the badge is drawn, and drawn red
    await page.locator("tr", has_text=email).locator("a").click()
    await page.wait_for_selector(".contrib")
    assert "wants to buy" in await page.inner_text("#explanation")
    assert await page.locator("#timeline li").count() == 8  # 7 signals, 1 follow-up step
    assert await page.locator("#timeline li", has_text="follow-up call created").count() == 1
    await page.screenshot(path=str(ARTIFACTS / "lead.png"), full_page=True)
    await page.close()


async def test_today_lists_the_overdue_call_first_and_winning_it_clears_it(
    stack: Stack, browser: Browser
) -> None:
    overdue, upcoming = "today-overdue@example.com", "today-upcoming@example.com"
    await _ingest(stack, *_aged(30, *_hot_signals(overdue)))
    await _ingest(stack, *_hot_signals(upcoming))  # due a day from now
    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    await context.add_cookies([{"name": "percept_key", "value": KEY, "url": stack.url}])
    page = await context.new_page()
    await page.goto(stack.url + "/today")
    await page.check("#unassigned")  # the packaged rules name no owner
    late = page.locator("#overdue tr", has_text=overdue)
    await late.wait_for(timeout=15_000)
    assert "hot lead: call within a day" in await late.inner_text()
    await page.locator("#week tr", has_text=upcoming).wait_for(timeout=15_000)
    assert await page.locator("#overdue tr", has_text=upcoming).count() == 0
    shot = ARTIFACTS / "today.png"
    await page.screenshot(path=str(shot))
    pill = await late.locator(".priority").bounding_box()
    badge = await late.locator(".badge").bounding_box()
    assert pill is not None and badge is not None
    assert _share(shot, pill, WARM_ORANGE) > 0.4  # P2, drawn in the priority's colour
    assert _share(shot, badge, HOT_RED) > 0.5
    await late.locator("button.suggest").click()  # what to say on the call
    await page.wait_for_selector("#draft[open]")
    said = await page.inner_text("#draft-text")
    assert "I am following up on your interest in the Percept Laptop." in said
    assert "You mentioned you need it next week." in said
    assert "email · en · the company's words" in await page.inner_text("#draft-how")
    await page.screenshot(path=str(ARTIFACTS / "today-message.png"))
    await page.click("#draft button:not(#draft-copy)")
    await late.locator("input.note").fill("ordered")
    await late.locator("button[data-outcome=won]").click()
    await late.wait_for(state="detached", timeout=15_000)
    async with httpx.AsyncClient(base_url=stack.url, timeout=30) as client:
        lead = (await client.get("/api/leads?page_size=500", headers=AUTH)).json()["leads"]
        (won,) = [x for x in lead if x["identity"].get("email") == overdue]
        assert won["stage"] == "won"
    await context.close()


def _campaign_lead(email: str, campaign: str, control: bool, won: bool) -> list[c.Signal]:
    seen = _signal(email, "product_question")
    seen.campaign_id = campaign
    if control:
        seen.attributes["campaign_group"] = "control"
    if not won:
        return [seen]
    outcome = recent(source=c.SOURCE_CRM, kind=c.SIGNAL_KIND_OUTCOME, name="", value="won")
    outcome.identity.email = email
    return [seen, outcome]


async def test_reports_chart_campaigns_segments_and_the_backlog(
    stack: Stack, browser: Browser
) -> None:
    signals: list[c.Signal] = []
    for i in range(10):  # spring: 6 of 10 won, its control group 2 of 10
        signals += _campaign_lead(f"spring-{i}@example.com", "spring", False, i < 6)
        signals += _campaign_lead(f"spring-control-{i}@example.com", "spring", True, i < 2)
    for i in range(8):  # summer: 2 of 8, no control group
        signals += _campaign_lead(f"summer-{i}@example.com", "summer", False, i < 2)
    await _ingest(stack, *signals)
    await _ingest(stack, *_aged(30, *_hot_signals("reports-overdue@example.com")))
    store = stack.leads_service.store
    store.save_segments(segment(*store.active_features(), store.clock()))

    async with httpx.AsyncClient(base_url=stack.url, headers=AUTH, timeout=30) as client:
        campaigns = (await client.get("/api/reports/campaigns")).json()["campaigns"]
        (spring,) = [x for x in campaigns if x["campaign_id"] == "spring" and not x["segment"]]
        assert (spring["leads"], spring["won"], spring["control_rate"]) == (10, 6, 0.2)
        assert spring["uplift"] == pytest.approx(0.4) and spring["ci_low"] < 0.6 < spring["ci_high"]
        exported = await client.get("/api/reports/campaigns?format=csv")
        assert exported.headers["content-type"].startswith("text/csv")
        rows = list(csv.DictReader(io.StringIO(exported.text)))
        assert {"campaign_id": "spring", "leads": "10", "won": "6"}.items() <= next(
            r for r in rows if r["campaign_id"] == "spring" and not r["segment"]
        ).items()
        for name in ("segments", "backlog", "opportunities"):
            got = await client.get(f"/api/reports/{name}?format=csv")
            assert got.status_code == 200 and got.text.count("\n") >= 2, (name, got.text)
        bad = await client.get("/api/reports/backlog?format=xls")
        assert bad.status_code == 400 and "'xls' is not json or csv" in bad.json()["error"]

    context = await browser.new_context(viewport={"width": 1280, "height": 1400})
    await context.add_cookies([{"name": "percept_key", "value": KEY, "url": stack.url}])
    page = await context.new_page()
    await page.goto(stack.url + "/reports")
    await page.wait_for_selector("body[data-ready=true]", timeout=15_000)
    shot = ARTIFACTS / "reports.png"
    await page.screenshot(path=str(shot), full_page=True)
    spring_bar = await page.locator("rect[data-campaign=spring]").bounding_box()
    summer_bar = await page.locator("rect[data-campaign=summer]").bounding_box()
    assert spring_bar is not None and summer_bar is not None
    assert _share(shot, _inset(spring_bar), BAR_BLUE) > 0.6  # drawn, in the bars' blue
    # bar lengths are the conversion rates: 6/10 against 2/8
    assert spring_bar["width"] / summer_bar["width"] == pytest.approx(0.6 / 0.25, rel=0.03)
    control = await page.locator("#campaigns-chart rect.mark").first.bounding_box()
    assert control is not None and _share(shot, control, WARM_ORANGE) > 0.5
    assert await page.locator("#campaigns-chart line.ci").count() == 2  # an interval each
    overdue = await page.locator("rect[data-owner=''][data-kind=overdue]").bounding_box()
    assert overdue is not None and _share(shot, _inset(overdue), HOT_RED) > 0.6
    assert await page.locator("rect[data-segment]").count() >= 2
    assert await page.locator("#opportunities tr").count() >= 1
    await context.close()


def _inset(box: FloatRect, margin: float = 3) -> FloatRect:
    """The box without its edges (anti-aliased against the background)."""
    return {
        "x": box["x"] + margin,
        "y": box["y"] + margin,
        "width": max(box["width"] - 2 * margin, 1),
        "height": max(box["height"] - 2 * margin, 1),
    }


async def test_the_chat_widget_sends_a_message_and_shows_the_reply(
    stack: Stack, browser: Browser
) -> None:
    page = await browser.new_page(viewport={"width": 1280, "height": 800})
    await page.goto(stack.url + "/chat")  # a page embedding the widget with one script tag
    widget = page.locator("#percept-chat")
    await widget.locator(".open").click()
    await widget.locator("input").fill("Do you sell phones? What do they cost?")
    await widget.locator("input").press("Enter")
    reply = widget.locator(".msg.bot")
    await page.wait_for_function(
        "() => { const r = document.querySelector('#percept-chat').shadowRoot"
        ".querySelectorAll('.msg.bot'); return r.length && r[0].textContent !== '…'; }",
        timeout=30_000,
    )
    text = await reply.first.inner_text()
    assert "Phone" in text and "$" in text, text
    session = await page.evaluate("() => sessionStorage.getItem('percept-chat-session')")
    assert session
    shot = ARTIFACTS / "chat-widget.png"
    await page.screenshot(path=str(shot))
    mine = await widget.locator(".msg.me").bounding_box()
    assert mine is not None and _share(shot, mine, (0x4E, 0x5B, 0xA6)) > 0.4
    await page.close()


async def test_a_salesperson_takes_over_a_chat_the_assistant_handed_off(
    stack: Stack, browser: Browser
) -> None:
    """Two browsers: a visitor's widget on a shop page, a signed-in salesperson's inbox.
    The assistant misses twice and hands off; the salesperson claims, answers, reads the
    visitor's answer and releases; the widget shows every message once, in order."""
    shown = (
        "() => [...document.querySelector('#percept-chat').shadowRoot"
        ".querySelectorAll('.msg')].map((m) => [m.className.replace('msg ', ''), m.textContent])"
    )
    visitor = await browser.new_context(viewport={"width": 1280, "height": 800})
    shop = await visitor.new_page()
    await shop.goto(stack.url + "/chat")
    widget = shop.locator("#percept-chat")
    await widget.locator(".open").click()

    async def say(text: str, replies: int) -> None:
        await widget.locator("input").fill(text)
        await widget.locator("input").press("Enter")
        await shop.wait_for_function(  # the reply is in (not '…'), or none came
            f"() => {{ const m = ({shown})(); return m.filter(([k]) => k === 'bot').length "
            f">= {replies} && !m.some(([, t]) => t === '…'); }}",
            timeout=30_000,
        )

    await say("Do you sell cars?", 1)
    await say("What is the capital of France?", 2)
    session = await shop.evaluate("() => sessionStorage.getItem('percept-chat-session')")
    handoff = (await shop.evaluate(shown))[-1][1]
    assert "A colleague will help you now" in handoff

    seller = await browser.new_context(viewport={"width": 1280, "height": 900})
    await seller.add_cookies([{"name": "percept_key", "value": KEY, "url": stack.url}])
    await seller.add_init_script("localStorage.setItem('percept-salesperson', 'Ana')")
    inbox = await seller.new_page()
    await inbox.goto(stack.url + "/inbox")
    await inbox.wait_for_selector("#live.on")
    waiting = inbox.locator(f"li[data-session='{session}']")
    await waiting.wait_for(timeout=15_000)
    assert "waiting" in (await waiting.inner_text()).lower()
    await waiting.click()
    await inbox.wait_for_selector("#transcript li.visitor")
    assert "low_confidence" not in await inbox.inner_text("#lead-card")  # words, not codes
    await inbox.click("#claim")
    await inbox.wait_for_selector("#reply:not([hidden])")
    await inbox.fill("#reply-text", "Hi, I am Ana from sales. Which car do you mean?")
    await inbox.press("#reply-text", "Enter")

    person = widget.locator(".msg.person")
    await person.wait_for(timeout=15_000)
    assert "Ana" in await person.locator(".by").inner_text()
    await say("Sorry, I meant laptops. I need 20.", 3)  # the assistant stays quiet
    await inbox.wait_for_selector(
        "#transcript li.visitor:has-text('I meant laptops')", timeout=15_000
    )
    await inbox.screenshot(path=str(ARTIFACTS / "inbox.png"), full_page=True)
    await inbox.click("#release")
    await inbox.wait_for_selector("#claim:not([hidden])")
    await shop.wait_for_function(
        f"() => ({shown})().some(([, t]) => t.includes('has left the chat'))", timeout=15_000
    )
    await shop.screenshot(path=str(ARTIFACTS / "widget-takeover.png"))

    messages = await shop.evaluate(shown)
    texts = [text for _, text in messages]
    assert len(texts) == len(set(texts)), messages  # each message once
    assert [kind for kind, _ in messages] == [
        "me",
        "bot",
        "me",
        "bot",
        "bot",
        "person",
        "me",
        "bot",
    ], messages
    assert texts[0] == "Do you sell cars?" and texts[2] == "What is the capital of France?"
    assert texts[4] == "Ana from our sales team has joined the chat."
    assert texts[5].endswith("Hi, I am Ana from sales. Which car do you mean?")
    assert texts[6] == "Sorry, I meant laptops. I need 20."
    assert texts[7].startswith("Ana has left the chat.")
    # the inbox's transcript has the same conversation, once each
    lines = await inbox.locator("#transcript li").all_inner_texts()
    assert sum("I meant laptops" in line for line in lines) == 1
    assert sum("Which car do you mean?" in line for line in lines) == 1
    await visitor.close()
    await seller.close()


async def test_the_camera_page_draws_zones_and_counts_over_the_frame(
    stack: Stack, browser: Browser
) -> None:
    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    await context.add_cookies([{"name": "percept_key", "value": KEY, "url": stack.url}])
    page = await context.new_page()
    await page.goto(stack.url + "/cameras")
    card = page.locator("section.camera[data-camera=store-front]")
    await page.wait_for_selector("section.camera[data-sequence]", timeout=15_000)
    assert await card.get_attribute("data-people") == "1"
    assert await card.locator("[data-zone=laptops]").inner_text() == "laptops: 1"
    # footfall of the last 24 h under the view: hourly bars and each zone's totals
    await card.locator(".footfall .bar-h").first.wait_for(timeout=15_000)
    laptops = await card.locator("[data-footfall=laptops]").inner_text()
    assert re.fullmatch(r"laptops: \d+ in, \d+ out.*", laptops), laptops
    shot = ARTIFACTS / "cameras.png"
    await page.screenshot(path=str(shot))
    canvas = await card.locator("canvas").bounding_box()
    assert canvas is not None
    assert _share(shot, canvas, ZONE_GREEN, tol=30) > 0.002  # the product zones' outlines
    await context.close()


async def test_the_calls_page_follows_a_telephone_call_live(
    stack: Stack, browser: Browser, tmp_path: Path
) -> None:
    said = "Hello. I would like to purchase two laptops for my office."
    customer = mulaw8k(speak(said, tmp_path / "c.wav"))
    agent = mulaw8k(speak("Thank you for calling. How can I help you today?", tmp_path / "a.wav"))
    quiet = b"\xff" * 8000
    context = await browser.new_context(viewport={"width": 1280, "height": 800})
    await context.add_cookies([{"name": "percept_key", "value": KEY, "url": stack.url}])
    page = await context.new_page()
    await page.goto(stack.url + "/calls")
    await page.wait_for_selector("#live.on")
    call = asyncio.create_task(
        twilio_call(
            f"{stack.telephony}/twilio",
            {"inbound": quiet * 4 + customer + quiet, "outbound": agent + quiet * 5},
            call_sid="CA-console-live",
            parameters={"caller": "+14155550199"},
            headers={"X-API-KEY": KEY},
            pace=2.0,
        )
    )
    card = page.locator("section.call[data-call=CA-console-live]")
    await card.wait_for(timeout=15_000)  # on the page while the call is going on
    assert not call.done()
    customer_turn = card.locator("li.final[data-role=customer]")
    await customer_turn.first.wait_for(timeout=60_000)
    turn = await customer_turn.first.inner_text()
    assert "laptops" in turn and "product: laptop" in turn, turn  # the words and their tags
    assert await card.locator("li.final[data-role=agent]").count() >= 1
    # the customer's purchase is a call category, tagged on the call as it matches
    await card.locator(".tag.category", has_text="buying signal").wait_for(timeout=10_000)
    await call
    ended = page.locator("section.call.ended[data-call=CA-console-live]")
    await ended.wait_for(timeout=30_000)
    # what the call came to: each side's talk, speed and feeling, the silences
    summary = ended.locator(".summary")
    await summary.wait_for(timeout=10_000)
    said = await summary.inner_text()
    assert "customer" in said and "agent" in said and "wpm" in said and "silence" in said, said
    await page.screenshot(path=str(ARTIFACTS / "calls.png"))
    # and the caller's lead page lists the call's summary
    async with httpx.AsyncClient(base_url=stack.url, headers=AUTH) as client:
        for _ in range(100):
            listed = (await client.get("/api/leads", params={"page_size": 500})).json()["leads"]
            lead = next((x for x in listed if x["identity"].get("phone") == "+14155550199"), None)
            if lead is not None:
                full = (await client.get(f"/api/leads/{lead['lead_id']}")).json()
                if any(t["kind"] == "call_summary" for t in full["timeline"]):
                    break
            await asyncio.sleep(0.2)
    assert lead is not None
    await page.goto(f"{stack.url}/leads/{lead['lead_id']}")
    calls = page.locator("#calls-panel:not([hidden]) li.call-summary")
    await calls.first.wait_for(timeout=15_000)
    assert "customer talked" in await calls.first.inner_text()
    await context.close()


async def test_the_lead_page_offers_merge_suggestions_and_a_person_decides(
    stack: Stack, browser: Browser
) -> None:
    """Two people sharing an office phone: two leads and a suggestion; on the lead page
    "Same person: merge" joins them, and the API refuses a decision it does not know."""
    phone = "+14155550142"
    for n, email in enumerate(("dora@example.com", "eli@example.com")):
        contact = recent(
            source=c.SOURCE_CHAT,
            kind=c.SIGNAL_KIND_CONTACT_CAPTURED,
            name="",
            email=email,
            phone=phone,
        )
        contact.occurred_at.FromSeconds(contact.occurred_at.seconds - 60 + n)
        await _ingest(stack, contact)
    async with httpx.AsyncClient(base_url=stack.url, headers=AUTH) as client:
        listed = (await client.get("/api/leads", params={"page_size": 500})).json()["leads"]
        dora = next(x for x in listed if x["identity"].get("email") == "dora@example.com")
        found = (await client.get(f"/api/leads/{dora['lead_id']}/suggestions")).json()
        (suggestion,) = found["suggestions"]
        assert (suggestion["key_type"], suggestion["key_value"]) == ("phone", phone)
        wrong = await client.post(f"/api/suggestions/{suggestion['suggestion_id']}/maybe", json={})
        assert wrong.status_code == 404 and "/merge or /dismiss" in wrong.json()["error"]
        missing = await client.post("/api/suggestions/nope/dismiss", json={})
        assert missing.status_code == 404 and "'nope' not found" in missing.json()["error"]

    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    await context.add_cookies([{"name": "percept_key", "value": KEY, "url": stack.url}])
    page = await context.new_page()
    await page.goto(f"{stack.url}/leads/{dora['lead_id']}")
    item = page.locator(f"li[data-suggestion='{suggestion['suggestion_id']}']")
    await item.wait_for(timeout=15_000)
    assert phone in await item.inner_text()
    await item.locator("button", has_text="Same person: merge").click()
    await page.wait_for_selector("#suggestions-panel[hidden]", state="attached", timeout=15_000)
    async with httpx.AsyncClient(base_url=stack.url, headers=AUTH) as client:
        merged = (await client.get(f"/api/leads/{dora['lead_id']}")).json()
    assert merged["signal_count"] >= 2
    await context.close()
