"""Service-to-service channels balance across every address a name resolves to."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from percept.leads.service import LeadsService
from percept.runtime.clients import channel_target, service_channel
from percept.runtime.server import Service, ServiceHost
from percept.runtime.settings import Settings
from percept.v1 import leads_pb2, leads_pb2_grpc


def test_targets_use_the_dns_resolver() -> None:
    assert channel_target("percept-leads-headless:50054") == "dns:///percept-leads-headless:50054"
    assert channel_target("dns:///x:1") == "dns:///x:1"
    assert channel_target("unix:///tmp/s") == "unix:///tmp/s"


async def test_calls_are_spread_over_every_server_behind_a_name(
    make_settings: Callable[..., Settings],
    start_host: Callable[[Service, Settings], Awaitable[ServiceHost]],
    free_port: Callable[[], int],
    tmp_path: object,
) -> None:
    # Two leads servers on one port number: one on 127.0.0.1 and one on [::1];
    # "localhost" resolves to both, as a headless Service name resolves to every pod.
    port = free_port()
    hosts = []
    for address, db in (("127.0.0.1", "a"), ("[::1]", "b")):
        settings = make_settings(
            host=address, leads_port=port, database_url=f"sqlite:///{tmp_path}/{db}.db"
        )
        host = await start_host(LeadsService(settings), settings)
        await asyncio.wait_for(host.ready.wait(), 30)
        hosts.append(host)
    async with service_channel(f"localhost:{port}") as channel:
        stub = leads_pb2_grpc.LeadsStub(channel)
        for _ in range(20):
            await stub.ListLeads(leads_pb2.ListLeadsRequest(), timeout=5)
    served = [
        h.metrics.registry.get_sample_value(
            "grpc_server_handled_total",
            {
                "grpc_service": "percept.v1.Leads",
                "grpc_method": "ListLeads",
                "grpc_type": "unary",
                "grpc_code": "OK",
            },
        )
        or 0
        for h in hosts
    ]
    assert sum(served) == 20
    assert min(served) >= 5, served  # round-robin, not pinned to one connection
