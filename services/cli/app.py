"""The Typer application behind the `percept` console script."""

from __future__ import annotations

from typing import Annotated

import typer

from percept import __version__
from percept.cli import calls, intents, leads, models, sentiment
from percept.cli.cameras import cameras_command, footfall_command
from percept.cli.health import health_command
from percept.cli.nlp import chat_command, translate_command
from percept.cli.serve import demo_command, serve_command
from percept.cli.transcribe import transcribe_command
from percept.cli.vision import detect_command, watch_command

app = typer.Typer(
    name="percept",
    help="Perception suite for sales teams: speech, vision and chat signals fused into leads.",
    no_args_is_help=True,
    rich_markup_mode="rich",
)
app.command("serve")(serve_command)
app.command("demo")(demo_command)
app.command("health")(health_command)
app.command("transcribe")(transcribe_command)
app.command("translate")(translate_command)
app.command("chat")(chat_command)
app.command("detect")(detect_command)
app.command("watch")(watch_command)
app.command("cameras")(cameras_command)
app.command("footfall")(footfall_command)
app.add_typer(models.app, name="models")
app.add_typer(leads.app, name="leads")
app.add_typer(intents.app, name="intents")
app.add_typer(sentiment.app, name="sentiment")
app.add_typer(calls.app, name="calls")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"percept {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="print the version")
    ] = False,
) -> None:
    """Perception suite for sales teams."""
