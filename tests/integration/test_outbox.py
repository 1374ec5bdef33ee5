"""The signal outbox against a real leads server: nothing lost, nothing duplicated."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path

import grpc
import pytest
from leads_signals import recent
from prometheus_client import CollectorRegistry

from percept.leads.service import LeadsService
from percept.leads.store import LeadFilter
from percept.runtime.outbox import Outbox, Send, leads_sender
from percept.runtime.server import ServiceHost
from percept.runtime.settings import Settings
from percept.v1 import common_pb2 as c
from percept.v1 import leads_pb2


async def until(check: Callable[[], Awaitable[bool]], limit_s: float = 20) -> None:
    async with asyncio.timeout(limit_s):
        while not await check():  # noqa: ASYNC110 - polls state in another store, no event to await
            await asyncio.sleep(0.05)


class World:
    """A leads server that can be down or up on a fixed port, and outboxes talking to it."""

    def __init__(self, settings: Settings, outbox_path: Path) -> None:
        self.settings = settings
        self.outbox_path = outbox_path
        self.host: ServiceHost | None = None
        self.channel = grpc.aio.insecure_channel(f"127.0.0.1:{settings.leads_port}")
        self.outboxes: list[Outbox] = []
        self.registry = CollectorRegistry()

    async def leads_up(self) -> None:
        self.host = ServiceHost(LeadsService(self.settings), self.settings)
        await self.host.start()
        await asyncio.wait_for(self.host.ready.wait(), 30)

    def outbox(self, send: Send | None = None, **options: int) -> Outbox:
        box = Outbox(
            self.outbox_path,
            send or leads_sender(self.channel, timeout_s=2),
            min_backoff_s=0.05,
            max_backoff_s=0.2,
            registry=self.registry if not self.outboxes else CollectorRegistry(),
            **options,
        )
        box.start()
        self.outboxes.append(box)
        return box

    async def stored(self) -> int:
        assert self.host is not None
        service = self.host.service
        assert isinstance(service, LeadsService)
        rows, _ = await asyncio.to_thread(service.store.page, LeadFilter(), 500, "")
        return sum(r["signal_count"] for r in rows)

    def metric(self, name: str) -> float:
        return self.registry.get_sample_value(name) or 0.0

    async def close(self) -> None:
        for box in self.outboxes:
            await box.close()
        await self.channel.close()
        if self.host is not None:
            await self.host.stop(grace=1)


@pytest.fixture
async def world(
    make_settings: Callable[..., Settings], tmp_path: Path, free_port: Callable[[], int]
) -> AsyncIterator[World]:
    settings = make_settings(
        database_url=f"sqlite:///{tmp_path / 'leads.db'}", leads_port=free_port()
    )
    w = World(settings, tmp_path / "outbox.db")
    yield w
    await w.close()


async def test_published_signals_reach_leads(world: World) -> None:
    await world.leads_up()
    box = world.outbox()
    for i in range(50):
        box.publish(recent(chat_session_id=f"chat-{i % 7}"))
    await until(lambda: _eq(world.stored(), 50))
    await until(lambda: _true(box.pending() == 0))
    assert world.metric("percept_outbox_delivered_total") == 50


async def test_a_leads_outage_loses_nothing(world: World) -> None:
    box = world.outbox()
    for i in range(20):
        box.publish(recent(phone=f"+1415555{1000 + i}"))
    await asyncio.sleep(0.5)
    assert box.pending() == 20
    assert world.metric("percept_outbox_send_failures_total") >= 1
    await world.leads_up()
    await until(lambda: _eq(world.stored(), 20))
    await until(lambda: _true(box.pending() == 0))


async def test_signals_survive_an_outbox_restart(world: World) -> None:
    first = world.outbox()
    for i in range(10):
        first.publish(recent(visitor_id=f"v-{i}"))
    await first.close()  # the process "crashes" with leads down
    await world.leads_up()
    second = world.outbox()
    assert second.pending() == 10
    await until(lambda: _eq(world.stored(), 10))


async def test_a_lost_ack_causes_redelivery_without_duplicates(world: World) -> None:
    await world.leads_up()
    real = leads_sender(world.channel)
    calls = 0

    async def ack_lost_once(signals: Sequence[c.Signal]) -> leads_pb2.IngestAck:
        nonlocal calls
        calls += 1
        ack = await real(signals)  # leads commits...
        if calls == 1:  # ...but the answer never arrives
            raise grpc.aio.AioRpcError(
                grpc.StatusCode.UNAVAILABLE, grpc.aio.Metadata(), grpc.aio.Metadata(), "lost"
            )
        return ack

    box = world.outbox(send=ack_lost_once)
    signals = [recent(email=f"buyer{i}@example.com") for i in range(15)]
    for s in signals:
        box.publish(s)
    await until(lambda: _true(box.pending() == 0))
    assert calls >= 2
    assert await world.stored() == 15  # redelivered, but stored once


async def test_the_outbox_is_bounded_and_drops_the_oldest(world: World) -> None:
    box = world.outbox(max_items=5)
    signals = [recent(crm_id=f"crm-{i}") for i in range(8)]
    for s in signals:
        box.publish(s)
    assert box.pending() == 5
    assert world.metric("percept_outbox_dropped_total") == 3
    await world.leads_up()
    await until(lambda: _true(box.pending() == 0))
    service = world.host.service if world.host else None
    assert isinstance(service, LeadsService)
    rows, _ = await asyncio.to_thread(service.store.page, LeadFilter(), 500, "")
    kept = sorted(key.value for r in rows for key in r["keys"])
    assert kept == sorted(f"crm-{i}" for i in range(3, 8))


async def test_invalid_signals_are_dropped_not_retried_forever(world: World) -> None:
    await world.leads_up()
    box = world.outbox()
    box.publish(recent())  # no identity key: leads refuses it
    await until(lambda: _true(box.pending() == 0))
    assert world.metric("percept_outbox_rejected_total") == 1
    box.publish(recent(phone="+14155552671"))
    await until(lambda: _eq(world.stored(), 1))


async def _eq(value: Awaitable[int], expected: int) -> bool:
    return await value == expected


async def _true(value: bool) -> bool:
    return value


async def test_a_full_disk_loses_new_signals_counted_and_never_fails_the_caller(
    world: World,
) -> None:
    box = world.outbox()  # leads is down: everything stays queued
    for i in range(5):
        box.publish(recent(crm_id=f"before-{i}"))
    # The database may not grow from now on: SQLite answers SQLITE_FULL ("database or disk
    # is full"), as it does when the disk itself is full.
    pages = box._db.execute("PRAGMA page_count").fetchone()[0]
    box._db.execute(f"PRAGMA max_page_count={pages}")
    for i in range(300):
        box.publish(recent(crm_id=f"full-{i}", email=f"someone{i}@example.com"))  # no raise
    lost = world.metric("percept_outbox_lost_total")
    assert lost > 0
    assert box.pending() == 5 + 300 - lost
    box._db.execute("PRAGMA max_page_count=1073741823")  # space is freed
    box.publish(recent(crm_id="after"))
    await world.leads_up()
    await until(lambda: _true(box.pending() == 0))
    assert await world.stored() == 5 + 300 - lost + 1  # all that was stored was delivered


@pytest.mark.slow
async def test_a_minute_long_leads_outage_loses_nothing_with_production_backoff(
    world: World,
) -> None:
    registry = CollectorRegistry()
    box = Outbox(  # the services' own back-off: 0.5 s doubling to 30 s
        world.outbox_path, leads_sender(world.channel, timeout_s=2), registry=registry
    )
    box.start()
    world.outboxes.append(box)
    began = asyncio.get_running_loop().time()
    for i in range(60):  # a signal a second while leads is down
        box.publish(recent(call_id=f"outage-call-{i % 6}"))
        await asyncio.sleep(1.0)
    assert box.pending() == 60
    failures = registry.get_sample_value("percept_outbox_send_failures_total") or 0
    assert 5 <= failures <= 15  # backed off: a handful of attempts, not a busy loop
    await world.leads_up()
    back = asyncio.get_running_loop().time()
    await until(lambda: _eq(world.stored(), 60), limit_s=45)  # within one capped back-off
    assert asyncio.get_running_loop().time() - began >= 60
    print(f"delivered {asyncio.get_running_loop().time() - back:.1f} s after leads came back")


async def test_a_sender_that_fails_unexpectedly_pauses_delivery_not_ends_it(world: World) -> None:
    """Not every failure is a gRPC status (a channel closed under it raises its own):
    the delivery task must outlive it, or signals pile up unsent until a restart."""
    await world.leads_up()
    real = leads_sender(world.channel, timeout_s=2)
    calls = 0

    async def flaky(signals: Sequence[c.Signal]) -> leads_pb2.IngestAck:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("the channel was closed")
        return await real(signals)

    box = world.outbox(flaky)
    box.publish(recent(phone="+14155550190"))
    await until(lambda: _stored_at_least(world, 1))
    assert calls >= 2 and world.metric("percept_outbox_send_failures_total") >= 1


async def _stored_at_least(world: World, count: int) -> bool:
    return await world.stored() >= count
