"""`percept serve` and `percept demo`: run services until Ctrl-C or SIGTERM."""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import Sequence
from enum import StrEnum
from typing import Annotated

import grpc
import typer
from rich.table import Table

from percept.cli.common import console, fail, settings_or_exit
from percept.console.gateway import ConsoleGateway
from percept.runtime.clients import bearer_of
from percept.runtime.logs import configure_logging
from percept.runtime.server import ServiceHost, serve
from percept.runtime.settings import SERVICE_NAMES, Settings
from percept.suite import build_service


class Target(StrEnum):
    speech = "speech"
    vision = "vision"
    nlp = "nlp"
    leads = "leads"
    all = "all"
    console = "console"


def _hosts(names: Sequence[str], settings: Settings, port: int | None) -> list[ServiceHost]:
    return [ServiceHost(build_service(n, settings), settings, port=port) for n in names]


def _run(
    hosts: list[ServiceHost],
    settings: Settings,
    on_started: object = None,
    gateway: ConsoleGateway | None = None,
) -> None:
    companions = [gateway] if gateway is not None else []
    try:
        asyncio.run(
            serve(hosts, settings.grace_period_s, on_started, companions)  # type: ignore[arg-type]
        )
    except OSError as exc:
        fail(str(exc))


def _status_table(hosts: Sequence[ServiceHost], title: str) -> Table:
    table = Table(title=title)
    for column in ("service", "gRPC address", "metrics", "health"):
        table.add_column(column)
    for h in hosts:
        metrics = f":{h.metrics_endpoint.port}/metrics" if h.metrics_endpoint else "off"
        state = "[green]SERVING[/]" if h.ready.is_set() else "[yellow]loading[/]"
        table.add_row(h.service.name, h.address, metrics, state)
    return table


def serve_command(
    service: Annotated[
        Target,
        typer.Argument(help="which service to run; 'all' runs the four; 'console' the web console"),
    ],
    host: Annotated[str | None, typer.Option(help="bind address [env: PERCEPT_HOST]")] = None,
    port: Annotated[
        int | None, typer.Option(help="gRPC port (single service only) [env: PERCEPT_<NAME>_PORT]")
    ] = None,
) -> None:
    """Serve one service, or all four in one process (the embedded default), or the console."""
    if service is Target.all and port is not None:
        fail("--port needs a single service; with 'all' set PERCEPT_<NAME>_PORT per service", 2)
    settings = settings_or_exit(host=host)
    configure_logging(settings.log_level, settings.log_format)
    gateway = None
    if service is Target.console:
        if port is not None:
            settings = settings.model_copy(update={"console_port": port})
        gateway = ConsoleGateway(settings)
        names: Sequence[str] = ()
    else:
        names = SERVICE_NAMES if service is Target.all else (service.value,)
    started_at = time.perf_counter()

    async def announce(hosts: Sequence[ServiceHost]) -> bool:
        elapsed = time.perf_counter() - started_at
        if hosts:
            console.print(_status_table(hosts, f"percept listening after {elapsed:.2f} s"))
        if gateway is not None:
            console.print(f"percept console at {gateway.url}")
        console.print("Press Ctrl-C to stop (in-flight calls drain first).")
        return False

    _run(_hosts(names, settings, port), settings, announce, gateway)


def demo_settings(settings: Settings) -> Settings:
    """A fresh data dir for each demo (its leads start empty); models from the usual place."""
    data = settings.data_dir / "demo"
    if data.exists():
        shutil.rmtree(data)
    return settings.model_copy(
        update={"data_dir": data, "model_dir": settings.resolved_model_dir, "database_url": None}
    )


def demo_command(
    check_only: Annotated[
        bool, typer.Option("--check-only", help="exit once every service reports SERVING")
    ] = False,
    fast: Annotated[
        bool, typer.Option("--fast", help="play the story as fast as possible (no real-time call)")
    ] = False,
    no_console: Annotated[
        bool, typer.Option("--no-console", help="exit when the story is over")
    ] = False,
    timeout: Annotated[float, typer.Option(help="seconds to wait for SERVING")] = 180.0,
) -> None:
    """Start the four services on embedded defaults and play the demo story through them:
    a call, a Spanish chat and a store visit become one hot lead."""
    settings = demo_settings(settings_or_exit())
    configure_logging("WARNING" if not check_only else settings.log_level, settings.log_format)
    hosts = _hosts(SERVICE_NAMES, settings, None)
    gateway = None if check_only or no_console else ConsoleGateway(settings)
    outcome: dict[str, bool] = {}

    async def check(started: Sequence[ServiceHost]) -> bool:
        begin = time.perf_counter()
        try:
            await asyncio.wait_for(asyncio.gather(*(h.ready.wait() for h in started)), timeout)
        except TimeoutError:
            outcome["healthy"] = False
            console.print(
                _status_table(started, f"not every service is SERVING after {timeout:.0f} s")
            )
            return True
        outcome["healthy"] = True
        took = time.perf_counter() - begin
        console.print(
            _status_table(started, f"all services SERVING ({took:.2f} s after listening)")
        )
        if check_only:
            return True
        from percept.demo.story import Addresses, Story

        by_name = {h.service.name: h.address for h in started}
        story = Story(
            Addresses(**by_name), console, fast=fast, metadata=bearer_of(settings.api_keys)
        )
        try:
            await story.play()
        except (grpc.aio.AioRpcError, RuntimeError) as exc:
            outcome["healthy"] = False
            console.print(f"[bold red]the demo story failed:[/] {exc}")
            return True
        if gateway is None:
            return True
        console.print(
            f"\n[bold]The console is at {gateway.url}[/] (leads board, lead pages, cameras, "
            f"chat widget). The services keep running (leads at {by_name['leads']}: try "
            f"`percept leads list --server {by_name['leads']}`). Press Ctrl-C to stop."
        )
        return False

    _run(hosts, settings, check, gateway)
    if not outcome.get("healthy", False):
        raise typer.Exit(1)
