"""Background loops must outlive a failing round (a database away for a while)."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from typing import Any

import httpx
import pytest
from sqlalchemy.exc import OperationalError

from percept.runtime.periodic import every, survive
from percept.runtime.webhooks import WebhookDelivery


def database_away() -> OperationalError:
    return OperationalError("SELECT", {}, Exception("server closed the connection"))


async def test_every_runs_on_after_a_failing_round(caplog: pytest.LogCaptureFixture) -> None:
    rounds: list[int] = []
    four = asyncio.Event()

    async def round_() -> None:
        rounds.append(len(rounds))
        if len(rounds) == 2:
            raise database_away()
        if len(rounds) == 4:
            four.set()

    task = asyncio.create_task(every(0.01, round_, "test expiry"))
    await asyncio.wait_for(four.wait(), 10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert "test expiry failed" in caplog.text


async def test_survive_gives_the_rounds_value_or_none() -> None:
    async def fine() -> int:
        return 7

    async def broken() -> int:
        raise database_away()

    assert await survive(fine, "x") == 7
    assert await survive(broken, "x") is None


async def test_survive_lets_cancellation_through() -> None:
    async def slow() -> None:
        await asyncio.sleep(10)

    task = asyncio.create_task(survive(slow, "x"))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


class FlakyQueue:
    """One event; the claim fails once, then the first record of an attempt fails."""

    def __init__(self) -> None:
        self.claims = 0
        self.recorded: list[bool] = []
        self.record_failures = 1

    def due_webhooks(self, now: datetime, limit: int) -> list[dict[str, Any]]:
        self.claims += 1
        if self.claims == 1:
            raise database_away()
        if self.recorded and self.recorded[-1]:
            return []
        return [{"event_id": "e1", "payload": {"url": "http://crm.test/hook"}, "attempts": 0}]

    def purge_settled(self, before: datetime) -> int:
        return 0

    def webhook_attempted(self, event_id: str, *, delivered: bool, **_: Any) -> None:
        if self.record_failures:
            self.record_failures -= 1
            raise database_away()
        self.recorded.append(delivered)


async def test_webhook_delivery_outlives_database_errors(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    posted: list[str] = []

    async def post(self: httpx.AsyncClient, url: str, **_: Any) -> httpx.Response:
        posted.append(url)
        return httpx.Response(200)

    monkeypatch.setattr(httpx.AsyncClient, "post", post)
    queue = FlakyQueue()
    task = asyncio.create_task(WebhookDelivery(queue, "s" * 32, poll_s=0.01).run())
    async with asyncio.timeout(20):
        while queue.recorded != [True]:  # noqa: ASYNC110 - recorded by the delivery task
            await asyncio.sleep(0.01)
    task.cancel()
    with caplog.at_level(logging.ERROR), pytest.raises(asyncio.CancelledError):
        await task
    assert queue.recorded == [True]  # claimed again after both failures, and delivered
    assert len(posted) == 2  # the attempt whose record failed is sent again (ids dedupe)
    assert "webhook claim failed" in caplog.text
    assert "webhook delivery failed" in caplog.text


async def test_every_at_start_runs_a_round_before_the_first_interval() -> None:
    ran = asyncio.Event()

    async def round_() -> None:
        ran.set()

    task = asyncio.create_task(every(3600, round_, "test", at_start=True))
    await asyncio.wait_for(ran.wait(), 10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
