"""Helpers shared by the CLI commands."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, NoReturn

import typer
from rich.console import Console

from percept.runtime.settings import Settings, SettingsError, load_settings

if TYPE_CHECKING:
    from percept.runtime.server import Service

console = Console()
errors = Console(stderr=True)


def fail(message: str, code: int = 1) -> NoReturn:
    errors.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code)


def settings_or_exit(**overrides: object) -> Settings:
    try:
        return load_settings(**{k: v for k, v in overrides.items() if v is not None})
    except SettingsError as exc:
        fail(str(exc), code=2)


@contextlib.asynccontextmanager
async def served(
    server: str | None, make: Callable[[Settings], Service], settings: Settings
) -> AsyncIterator[str]:
    """The address to call: `server` as given, or a service started in this process."""
    if server is not None:
        yield server
        return
    from percept.runtime.server import ServiceHost

    local = settings.model_copy(update={"metrics_enabled": False})
    host = ServiceHost(make(local), local, port=0, metrics_port=0)
    await host.start()
    try:
        await host.ready.wait()
        yield host.address
    finally:
        await host.stop(grace=1)
