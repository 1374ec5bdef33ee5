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
            source = f"pip install {spec.packaged.requirement}" if spec.packaged else spec.hint
            table.add_row(spec.name, spec.task, "[red]missing[/]", source, "")
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
    name: Annotated[
        str | None, typer.Argument(help="model name, as `percept models list` shows it")
    ] = None,
    all_models: Annotated[
        bool, typer.Option("--all", help="every model that has an installed source")
    ] = False,
    force: Annotated[bool, typer.Option(help="replace a copy already in the model dir")] = False,
) -> None:
    """Copy or convert models into the model dir (e.g. a Kubernetes volume), with checksums."""
    if (name is None) == (not all_models):
        fail("give a model name or --all", 2)
    store = model_store(settings_or_exit())
    if name is not None:
        try:
            resolved = store.pull(name, force=force)
        except ModelNotFoundError as exc:
            fail(str(exc))
        console.print(f"[green]{name}[/] is in {resolved.path}")
        return
    pulled, skipped = 0, []
    for status in store.status():
        spec = status.spec
        if status.resolved is None and spec.puller is None:
            skipped.append(spec.name)
            continue
        try:
            resolved = store.pull(spec.name, force=force)
        except ModelNotFoundError as exc:
            fail(str(exc))
        pulled += 1
        console.print(f"[green]{spec.name}[/] is in {resolved.path}")
    if skipped:
        console.print(f"[yellow]no installed source for:[/] {', '.join(skipped)}")
    if not pulled:
        fail("no model could be pulled")
