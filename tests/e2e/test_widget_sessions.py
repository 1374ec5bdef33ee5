"""The chat widget's session in Debian's Chromium, over a real console and nlp (MiniLM,
Apertium) with chats that expire after a few seconds: messages typed before the first
answer open one chat, not one each, and the widget follows the chat it writes to; a chat
that expired is replaced by a new one with the visitor's message, never shown as an error."""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc
import pytest
import pytest_asyncio
from local_servers import local_settings
from playwright.async_api import Browser, Page

from percept.console.gateway import ConsoleGateway
from percept.nlp.service import NlpService
from percept.runtime.server import ServiceHost
from percept.v1 import nlp_pb2, nlp_pb2_grpc

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
TTL_S = 6.0
SHOWN = (
    "() => [...document.querySelector('#percept-chat').shadowRoot"
    ".querySelectorAll('.msg')].map((m) => [m.className.replace('msg ', ''), m.textContent])"
)
STORED = "() => sessionStorage.getItem('percept-chat-session')"


@dataclass
class Stack:
    url: str
    nlp: nlp_pb2_grpc.NlpAsyncStub


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    root = tmp_path_factory.mktemp("widget")
    settings = local_settings(root / "nlp", nlp_session_ttl_s=TTL_S)
    nlp = ServiceHost(NlpService(settings), settings)
    await nlp.start()
    await asyncio.wait_for(nlp.ready.wait(), 180)
    gateway = ConsoleGateway(
        local_settings(
            root / "console",
            console_port=0,
            console_chat_burst=50,
            console_chat_per_minute=600,
            console_chat_address_burst=100,
        )
    )
    await gateway.start([nlp])
    async with grpc.aio.insecure_channel(nlp.address) as channel:
        yield Stack(gateway.url.rstrip("/"), nlp_pb2_grpc.NlpStub(channel))
    await gateway.stop()
    await nlp.stop(grace=1)


@pytest_asyncio.fixture(loop_scope="module")
async def browser() -> AsyncIterator[Browser]:
    if CHROMIUM is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed: scripts/setup.sh installs it")
        pytest.skip("chromium is not installed (scripts/setup.sh installs it)")
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"]
        )
        yield chromium
        await chromium.close()


async def _open(browser: Browser, url: str) -> Page:
    page = await browser.new_page(viewport={"width": 1280, "height": 800})
    await page.goto(url + "/chat")
    await page.locator("#percept-chat .open").click()
    return page


async def _type(page: Page, *texts: str) -> None:
    """Each text typed and sent at once, without waiting for an answer."""
    field = page.locator("#percept-chat input")
    for text in texts:
        await field.fill(text)
        await field.press("Enter")


async def _answered(page: Page, replies: int) -> list[list[str]]:
    """What the widget shows, once `replies` answers are in and none is awaited."""
    await page.wait_for_function(
        f"() => {{ const m = ({SHOWN})(); return m.filter(([k]) => k === 'bot').length "
        f">= {replies} && !m.some(([, t]) => t === '…'); }}",
        timeout=30_000,
    )
    shown: list[list[str]] = await page.evaluate(SHOWN)
    return shown


async def _live_chats(stack: Stack) -> set[str]:
    found = await stack.nlp.ListChats(
        nlp_pb2.ListChatsRequest(
            statuses=[nlp_pb2.CHAT_STATUS_ASSISTANT, nlp_pb2.CHAT_STATUS_WAITING]
        )
    )
    return {chat.session_id for chat in found.chats}


async def _salesperson_writes(stack: Stack, page: Page, session: str, text: str) -> None:
    await stack.nlp.ClaimChat(nlp_pb2.ClaimChatRequest(session_id=session, salesperson="Ana"))
    await stack.nlp.SendSalespersonMessage(
        nlp_pb2.SalespersonMessage(session_id=session, salesperson="Ana", text=text)
    )
    person = page.locator("#percept-chat .msg.person")
    await person.wait_for(timeout=15_000)
    assert text in await person.inner_text()


async def test_messages_typed_before_the_first_answer_open_one_chat(
    stack: Stack, browser: Browser
) -> None:
    before = await _live_chats(stack)
    page = await _open(browser, stack.url)
    await _type(page, "Hi", "Do you sell laptops?")
    shown = await _answered(page, 2)
    session = await page.evaluate(STORED)
    assert (await _live_chats(stack)) - before == {session}  # one chat, the one stored
    chat = await stack.nlp.GetChat(nlp_pb2.GetChatRequest(session_id=session))
    visitor = [m.text for m in chat.messages if m.role == nlp_pb2.CHAT_ROLE_VISITOR]
    assert visitor == ["Hi", "Do you sell laptops?"]
    assert [kind for kind, _ in shown] == ["me", "bot", "me", "bot"], shown
    assert shown[0][1] == "Hi" and shown[2][1] == "Do you sell laptops?"
    # the widget follows that chat: a salesperson's words reach the visitor
    await _salesperson_writes(stack, page, session, "Hello, Ana here. How can I help?")
    await page.close()


async def test_an_expired_chat_is_replaced_by_a_new_one_without_an_error(
    stack: Stack, browser: Browser
) -> None:
    page = await _open(browser, stack.url)
    await _type(page, "How much is the laptop?")
    await _answered(page, 1)
    old = await page.evaluate(STORED)
    await asyncio.sleep(TTL_S + 1.5)  # the chat expires
    await _type(page, "We need ten laptops")
    shown = await _answered(page, 2)
    new = await page.evaluate(STORED)
    assert new and new != old
    kinds = [kind for kind, _ in shown]
    assert kinds == ["me", "bot", "note", "me", "bot"], shown
    assert shown[2][1] == "A new conversation has started."
    assert shown[3][1] == "We need ten laptops"
    assert not any("session" in text or "expired" in text for _, text in shown), shown
    chat = await stack.nlp.GetChat(nlp_pb2.GetChatRequest(session_id=new))
    assert [m.text for m in chat.messages if m.role == nlp_pb2.CHAT_ROLE_VISITOR] == [
        "We need ten laptops"
    ]
    await _type(page, "hello?")  # the new chat goes on
    shown = await _answered(page, 3)
    assert await page.evaluate(STORED) == new
    assert [kind for kind, _ in shown] == ["me", "bot", "note", "me", "bot", "me", "bot"]
    # the widget follows the new chat, not the expired one
    await _salesperson_writes(stack, page, new, "Ana here: ten laptops, noted.")
    await page.close()
