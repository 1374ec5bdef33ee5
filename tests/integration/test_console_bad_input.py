"""The console's JSON API against hostile bodies, over HTTP on the real app (uvicorn,
its auth and CORS middleware) with leads on SQLite behind it: oversize uploads are
refused without being read whole, and bodies no protobuf takes (lone surrogates, deep
nesting) are a 400 naming the problem, never a 500."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import pytest_asyncio
from local_servers import free_port, local_settings

from percept.console.api import MAX_BODY_BYTES
from percept.console.gateway import ConsoleGateway
from percept.leads.service import LeadsService
from percept.runtime.server import ServiceHost

pytestmark = pytest.mark.asyncio(loop_scope="module")
KEY = "console-bad-input-key-0123456789"
AUTH = {"Authorization": f"Bearer {KEY}"}
ANSWER_S = 10.0  # a refusal comes at once; the old console waited for the whole upload


@dataclass
class Console:
    url: str
    host: str
    port: int


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def console(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Console]:
    root = tmp_path_factory.mktemp("console_bad_input")
    leads_settings = local_settings(root / "leads", api_keys=[KEY])
    leads = ServiceHost(LeadsService(leads_settings), leads_settings)
    await leads.start()
    await asyncio.wait_for(leads.ready.wait(), 60)
    nowhere = f"127.0.0.1:{free_port()}"  # nothing listens: no request here may reach nlp
    gateway = ConsoleGateway(
        local_settings(
            root / "console",
            api_keys=[KEY],
            console_port=0,
            console_chat_address_burst=1000,
            nlp_address=nowhere,
            vision_address=nowhere,
            speech_address=nowhere,
        )
    )
    await gateway.start([leads])
    try:
        yield Console(gateway.url.rstrip("/"), gateway.settings.console_host, gateway.port)
    finally:
        await gateway.stop()
        await leads.stop(grace=1)


async def _post(console: Console, path: str, content: bytes) -> httpx.Response:
    async with httpx.AsyncClient(base_url=console.url, headers=AUTH, timeout=30) as client:
        return await client.post(
            path, content=content, headers={"content-type": "application/json"}
        )


async def _raw_upload(console: Console, path: str, head: str, sent: bytes) -> tuple[int, Any]:
    """POSTs `head` and `sent`, a first part of an upload that would go on, and reads the
    answer to its end without sending more: (status, JSON body). Fails when the console
    does not answer (it waits for the rest) or keeps the connection open for it."""
    reader, writer = await asyncio.open_connection(console.host, console.port)
    try:
        writer.write(
            f"POST {path} HTTP/1.1\r\nHost: {console.host}\r\n"
            f"Authorization: Bearer {KEY}\r\nContent-Type: application/json\r\n{head}\r\n".encode()
            + sent
        )
        await writer.drain()
        try:
            answer = await asyncio.wait_for(reader.read(), ANSWER_S)  # to the server's close
        except TimeoutError:
            pytest.fail(f"no answer and no close in {ANSWER_S} s: the console waits for the rest")
    finally:
        writer.close()
    headers, _, body = answer.partition(b"\r\n\r\n")
    assert b"connection: close" in headers.lower()
    return int(headers.split()[1]), json.loads(body)


async def test_a_declared_oversize_body_is_refused_before_any_of_it_is_read(
    console: Console,
) -> None:
    """A 300 MB Content-Length: 413 at once and the connection closed, with 1 KB of the
    body sent. A body just too large (1 MiB) is refused as well, and its sender, which
    writes it all before it reads, still gets the 413 (the rest is read and dropped)."""
    size = 300 * 1024 * 1024
    status, body = await _raw_upload(
        console, "/api/chat", f"Content-Length: {size}\r\n", b'{"text": "' + b"a" * 1000
    )
    assert status == 413
    assert body == {"error": f"request body: {size} bytes, at most {MAX_BODY_BYTES}"}

    mib = 1024 * 1024
    answer = await _post(console, "/api/chat", b'{"text": "' + b"a" * (mib - 12) + b'"}')
    assert answer.status_code == 413
    assert answer.json() == {"error": f"request body: {mib} bytes, at most {MAX_BODY_BYTES}"}


async def _chunks(body: bytes, size: int) -> AsyncIterator[bytes]:
    for start in range(0, len(body), size):
        yield body[start : start + size]


@pytest.mark.parametrize("path", ["/api/chat", "/api/leads/nobody/forget"])
async def test_a_chunked_body_is_refused_once_it_grows_past_the_limit(
    console: Console, path: str
) -> None:
    """No Content-Length: the console counts what arrives, and answers 413 while the
    upload is still going (five 4 KiB chunks sent, no last chunk). A chunked body of
    exactly the limit is still read whole (leads is asked, and knows no such lead)."""
    reason = b'{"reason": "asked to be forgotten"}'
    whole = reason.ljust(MAX_BODY_BYTES)
    async with httpx.AsyncClient(base_url=console.url, headers=AUTH, timeout=30) as client:
        fits = await client.post("/api/leads/nobody/forget", content=_chunks(whole, 1000))
    assert fits.status_code == 404, fits.text

    chunk = b"%x\r\n%s\r\n" % (4096, b" " * 4096)
    status, body = await _raw_upload(console, path, "Transfer-Encoding: chunked\r\n", chunk * 5)
    assert status == 413
    assert body == {"error": f"request body: over {MAX_BODY_BYTES} bytes, the most accepted"}


LONE = '"hi \\ud800 there"'  # JSON for a string no UTF-8 (and no protobuf string) can hold


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/api/chat", '{"text": ' + LONE + "}", "text"),
        ("/api/chat", '{"text": "hi", "page_url": ' + LONE + "}", "page_url"),
        ("/api/leads/nobody/forget", '{"reason": ' + LONE + "}", "reason"),
        ("/api/inbox/nobody/messages", '{"salesperson": "Ana", "text": ' + LONE + "}", "text"),
        ("/api/follow-ups/nobody/complete", '{"note": ' + LONE + "}", "note"),
        ("/api/suggestions/nobody/dismiss", '{"reason": ' + LONE + "}", "reason"),
        (
            "/api/follow-ups/nobody/complete",
            '{"note": "", "x": [1, {"y": ' + LONE + "}]}",
            "x[1].y",
        ),
        ("/api/leads/nobody/forget", '{"reason": "r", "\\udfff": 1}', "\\udfff"),
    ],
)
async def test_a_lone_surrogate_is_a_400_naming_its_field(
    console: Console, path: str, body: str, field: str
) -> None:
    answer = await _post(console, path, body.encode())
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert error.startswith(f"request body: '{field}' holds \\u"), error
    assert "lone surrogate" in error
    plain = await _post(
        console, path, body.replace("\\ud800", "x").replace("\\udfff", "x").encode()
    )
    assert plain.status_code in (404, 503), plain.text  # on to leads (no such id) or nlp (down)


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/chat", b"[" * 5000),
        ("/api/chat", b'{"a":' * 2000 + b"1" + b"}" * 2000),
        ("/api/leads/nobody/forget", b"[" * 5000 + b"]" * 5000),
    ],
)
async def test_a_body_nested_past_what_json_parses_is_a_400(
    console: Console, path: str, body: bytes
) -> None:
    answer = await _post(console, path, body)
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"] == "request body: not JSON (nested too deeply)"
