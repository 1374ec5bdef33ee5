"""Scoped API keys over real gRPC: each key reaches the methods of its scopes only."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from leads_signals import recent

from percept.leads.service import LeadsService
from percept.runtime.clients import bearer
from percept.runtime.server import Service, ServiceHost
from percept.runtime.settings import Settings
from percept.v1 import common_pb2 as c
from percept.v1 import leads_pb2, leads_pb2_grpc
from percept.v1 import leads_pb2 as lp

INGEST, READ, ADMIN = "i" * 24, "r" * 24, "a" * 24
HostFactory = Callable[[Service, Settings], Awaitable[ServiceHost]]


def _signal() -> c.Signal:
    return recent(source=c.SOURCE_CHAT, name="price_inquiry", email="scoped@example.com")


async def _code(call: Awaitable[object]) -> grpc.StatusCode:
    try:
        await call
    except grpc.aio.AioRpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


async def test_each_key_reaches_the_methods_of_its_scopes_only(
    start_host: HostFactory, make_settings: Callable[..., Settings]
) -> None:
    settings = make_settings(api_keys=[f"{INGEST}:ingest", f"{READ}:read", f"{ADMIN}:read+admin"])
    host = await start_host(LeadsService(settings), settings)
    await asyncio.wait_for(host.ready.wait(), 30)
    async with grpc.aio.insecure_channel(host.address) as channel:
        stub = leads_pb2_grpc.LeadsStub(channel)
        batch = leads_pb2.IngestBatchRequest(signals=[_signal()])
        listing = leads_pb2.ListLeadsRequest()
        forget = leads_pb2.ForgetLeadRequest(lead_id="nobody", reason="test")

        def calls(key: str) -> list[Awaitable[object]]:
            m = bearer(key)
            return [
                stub.IngestBatch(batch, metadata=m, timeout=10),
                stub.ListLeads(listing, metadata=m, timeout=10),
                stub.ForgetLead(forget, metadata=m, timeout=10),
            ]

        ok, denied, missing = grpc.StatusCode.OK, grpc.StatusCode.PERMISSION_DENIED, None
        missing = grpc.StatusCode.NOT_FOUND  # allowed in, and told there is no such lead
        assert [await _code(x) for x in calls(INGEST)] == [ok, denied, denied]
        assert [await _code(x) for x in calls(READ)] == [denied, ok, denied]
        assert [await _code(x) for x in calls(ADMIN)] == [denied, ok, missing]
        with pytest.raises(grpc.aio.AioRpcError) as excinfo:
            await stub.ListLeads(listing, metadata=bearer(INGEST), timeout=10)
        assert excinfo.value.details() == (
            "this API key may not call percept.v1.Leads/ListLeads: it needs the 'read' scope "
            "and has ingest"
        )
        unknown = await _code(stub.ListLeads(listing, metadata=bearer("x" * 24), timeout=10))
        assert unknown is grpc.StatusCode.UNAUTHENTICATED

        health = health_pb2_grpc.HealthStub(channel)  # open: probes carry no key
        reply = await health.Check(health_pb2.HealthCheckRequest(), timeout=10)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING

        async def reflect(key: str) -> grpc.StatusCode:
            stream = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(
                iter([reflection_pb2.ServerReflectionRequest(list_services="")]),
                metadata=bearer(key),
                timeout=10,
            )
            return await _code(stream.read())

        assert await reflect(READ) is grpc.StatusCode.OK
        assert await reflect(INGEST) is grpc.StatusCode.PERMISSION_DENIED


async def test_one_key_may_hold_only_so_many_streams(
    start_host: HostFactory, make_settings: Callable[..., Settings]
) -> None:
    settings = make_settings(api_keys=[READ, ADMIN], max_streams_per_key=2)
    host = await start_host(LeadsService(settings), settings)
    await asyncio.wait_for(host.ready.wait(), 30)
    async with grpc.aio.insecure_channel(host.address) as channel:
        stub = leads_pb2_grpc.LeadsStub(channel)

        def watch(key: str) -> grpc.aio.UnaryStreamCall[lp.WatchLeadsRequest, lp.LeadChange]:
            return stub.WatchLeads(leads_pb2.WatchLeadsRequest(), metadata=bearer(key))

        held = [watch(READ), watch(READ)]
        await asyncio.sleep(0.5)  # both are open on the server
        third = watch(READ)
        with pytest.raises(grpc.aio.AioRpcError) as excinfo:
            await third.read()
        assert excinfo.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "this API key has 2 streams open" in (excinfo.value.details() or "")
        other = watch(ADMIN)  # another key is not affected
        held[0].cancel()
        await asyncio.sleep(0.5)
        again = watch(READ)  # a slot is free again
        await _ingest_one(stub)
        for call in (again, other):
            change = await asyncio.wait_for(call.read(), 10)
            assert isinstance(change, lp.LeadChange) and change.lead.lead_id
        for call in (held[1], other, again):
            call.cancel()


async def _ingest_one(stub: leads_pb2_grpc.LeadsAsyncStub) -> None:
    ack = await stub.IngestBatch(
        leads_pb2.IngestBatchRequest(signals=[_signal()]),
        metadata=bearer(ADMIN),
        timeout=10,
    )
    assert ack.accepted == 1
