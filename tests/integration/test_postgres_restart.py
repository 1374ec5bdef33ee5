"""Leads on a real PostgreSQL that goes down and comes back: calls in between get
UNAVAILABLE (retryable, no SQL in the message), an outbox keeps what perception services
publish meanwhile, and everything arrives exactly once after the restart."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import grpc
import pytest
from leads_signals import recent
from pg_cluster import ThrowawayCluster
from prometheus_client import CollectorRegistry

from percept.leads.service import LeadsService
from percept.runtime.outbox import Outbox, leads_sender
from percept.runtime.server import Service, ServiceHost
from percept.runtime.settings import Settings
from percept.v1 import common_pb2 as c
from percept.v1 import leads_pb2, leads_pb2_grpc

pytestmark = pytest.mark.slow
HostFactory = Callable[[Service, Settings], Awaitable[ServiceHost]]


def _signal(n: int) -> c.Signal:
    return recent(source=c.SOURCE_CHAT, confidence=0.8, chat_session_id=f"restart-{n % 10}")


async def _stored(stub: leads_pb2_grpc.LeadsAsyncStub) -> int:
    page = await stub.ListLeads(leads_pb2.ListLeadsRequest(page_size=500), timeout=10)
    return sum(lead.signal_count for lead in page.leads)


async def test_a_postgres_restart_loses_nothing(
    postgres_cluster: ThrowawayCluster,
    start_host: HostFactory,
    make_settings: Callable[..., Settings],
    tmp_path: Path,
) -> None:
    settings = make_settings(database_url=postgres_cluster.new_database())
    host = await start_host(LeadsService(settings), settings)
    await asyncio.wait_for(host.ready.wait(), 30)
    async with grpc.aio.insecure_channel(host.address) as channel:
        stub = leads_pb2_grpc.LeadsStub(channel)
        outbox = Outbox(
            tmp_path / "outbox.db",
            leads_sender(channel, timeout_s=5),
            min_backoff_s=0.1,
            max_backoff_s=0.5,
            registry=CollectorRegistry(),
        )
        outbox.start()
        try:
            for n in range(20):
                outbox.publish(_signal(n))
            await _until(lambda: _equals(_stored(stub), 20))
            postgres_cluster.pause()
            try:
                with pytest.raises(grpc.aio.AioRpcError) as down:
                    await stub.IngestBatch(
                        leads_pb2.IngestBatchRequest(signals=[_signal(99)]), timeout=30
                    )
                assert down.value.code() is grpc.StatusCode.UNAVAILABLE
                assert (down.value.details() or "").startswith("the database is unreachable")
                for n in range(20, 50):  # published during the outage
                    outbox.publish(_signal(n))
                await asyncio.sleep(1.0)
                assert outbox.pending() == 30
            finally:
                postgres_cluster.resume()
            await _until(lambda: _equals(_stored(stub), 50), limit_s=60)
            await _until(lambda: _true(outbox.pending() == 0))
            await asyncio.sleep(1.0)
            assert await _stored(stub) == 50  # each exactly once
        finally:
            await outbox.close()


async def _until(check: Callable[[], Awaitable[bool]], limit_s: float = 30) -> None:
    deadline = asyncio.get_running_loop().time() + limit_s
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.2)


async def _equals(value: Awaitable[int], expected: int) -> bool:
    try:
        return await value == expected
    except grpc.aio.AioRpcError:
        return False


async def _true(value: bool) -> bool:
    return value


def test_the_change_listener_probes_a_peer_gone_quiet(postgres_cluster: ThrowawayCluster) -> None:
    """The listening session only reads: a PostgreSQL gone without a reset (failover, a
    NAT entry dropped) looks like a quiet channel until TCP keepalive probes it, after
    the kernel's default of two hours unless the connection asks for sooner."""
    import os
    import socket

    from sqlalchemy.engine import make_url

    from percept.leads.listen import KEEPALIVE_IDLE_S, ChangeListener

    url = make_url(postgres_cluster.new_database())
    dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
    with ChangeListener(dsn, lambda changes: None, lambda: None).connect() as conn:
        sock = socket.socket(fileno=os.dup(conn.pgconn.socket))
    with sock:
        assert sock.family in (socket.AF_INET, socket.AF_INET6)  # TCP, as in a cluster
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == KEEPALIVE_IDLE_S
