"""`percept models`: list the models, where each comes from, and pull them."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from percept.cli.common import console, fail, settings_or_exit
from percept.models import model_store
from percept.runtime.model_store import ModelNotFoundError

app = typer.Typer(help="List and pull the models the services use (offline sources first).")


@app.command("list")
def list_models() -> None:
    """Show every model, whether it is present, and where it resolves from."""
    store = model_store(settings_or_exit())
    table = Table(title=f"models (model dir: {store.model_dir})")
    for column in ("name", "task", "status", "source", "path"):
        table.add_column(column, overflow="fold")
    for status in store.status():
        spec, found = status.spec, status.resolved
        if found is None:
            ways = [f"pip install {spec.packaged.requirement}"] if spec.packaged else []
            if spec.puller is not None:
                ways.append(f"percept models pull {spec.name}")
            if spec.hint:
                ways.append(spec.hint)
            state = "[yellow]optional[/]" if spec.optional else "[red]missing[/]"
            table.add_row(spec.name, spec.task, state, "; ".join(ways), "")
        else:
            where = (
                f"package {spec.packaged.requirement}"
                if found.origin == "package" and spec.packaged
                else "model dir"
            )
            table.add_row(spec.name, spec.task, "[green]present[/]", where, str(found.path))
    console.print(table)


@app.command("pull")
def pull(
    names: Annotated[
        list[str] | None, typer.Argument(help="model names, as `percept models list` shows them")
    ] = None,
    all_models: Annotated[
        bool,
        typer.Option(
            "--all", help="every model the default configuration uses; name optional ones too"
        ),
    ] = False,
    skip: Annotated[
        list[str] | None, typer.Option(help="with --all: leave this model out (repeatable)")
    ] = None,
    force: Annotated[bool, typer.Option(help="replace a copy already in the model dir")] = False,
) -> None:
    """Copy, convert or download models into the model dir (e.g. a Kubernetes volume),
    with checksums."""
    if not names and not all_models:
        fail("give model names or --all", 2)
    store = model_store(settings_or_exit())
    skipped = set(skip or ())
    unknown = sorted(skipped - {spec.name for spec in store.specs})
    if unknown:
        fail(f"--skip: unknown model {unknown[0]!r}", 2)
    required = [s.name for s in store.specs if not s.optional and s.name not in skipped]
    wanted = list(dict.fromkeys([*(required if all_models else []), *(names or [])]))
    for name in wanted:
        try:
            resolved = store.pull(name, force=force)
        except ModelNotFoundError as exc:
            fail(str(exc))
        console.print(f"[green]{name}[/] is in {resolved.path}")
    optional = [s.name for s in store.specs if s.optional and s.name not in wanted]
    if all_models and optional:
        console.print(f"[dim]optional, pulled by name: {', '.join(optional)}[/]")
