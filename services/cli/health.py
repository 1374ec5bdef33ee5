"""`percept health`: ask services for their standard gRPC health status."""

from __future__ import annotations

import time
from typing import Annotated

import grpc
import typer
from grpc_health.v1 import health_pb2, health_pb2_grpc
from rich.table import Table

from percept.cli.common import console, settings_or_exit
from percept.runtime.settings import SERVICE_NAMES


def check_health(address: str, timeout: float = 2.0) -> str:
    """The overall health status of the server at `address`, or the transport error."""
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            reply = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=timeout)
        except grpc.RpcError as exc:
            return f"{exc.code().name}: {exc.details()}"
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))


def health_command(
    addresses: Annotated[
        list[str] | None,
        typer.Argument(help="host:port to check; default: the four services from settings"),
    ] = None,
    wait: Annotated[float, typer.Option(help="retry for up to this many seconds")] = 0.0,
) -> None:
    """Check that services answer SERVING; exits 1 otherwise."""
    if addresses:
        targets = [(a, a) for a in addresses]
    else:
        settings = settings_or_exit()
        host = "127.0.0.1" if settings.host in ("0.0.0.0", "[::]", "::") else settings.host
        targets = [(n, f"{host}:{settings.port_for(n)}") for n in SERVICE_NAMES]
    deadline = time.monotonic() + wait
    while True:
        results = [(name, addr, check_health(addr)) for name, addr in targets]
        healthy = all(status == "SERVING" for _, _, status in results)
        if healthy or time.monotonic() >= deadline:
            break
        time.sleep(0.5)
    table = Table(title="percept health")
    for column in ("service", "address", "status"):
        table.add_column(column)
    for name, addr, status in results:
        colour = "green" if status == "SERVING" else "red"
        table.add_row(name, addr, f"[{colour}]{status}[/]")
    console.print(table)
    if not healthy:
        raise typer.Exit(1)
