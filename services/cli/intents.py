"""`percept intents`: how well intents are recognised, and what a sentence says."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from percept.cli.common import console, fail, settings_or_exit
from percept.understanding.classifier import Understanding, evaluate, held_out_examples
from percept.understanding.loading import UnderstandingDataError, load_understanding

app = typer.Typer(help="Intent recognition: evaluate on held-out examples, or tag a sentence.")


def understanding_or_exit(*, sentiment_too: bool = False) -> Understanding:
    """The understanding as the services load it; a bad data file exits 2, named."""
    try:
        return load_understanding(settings_or_exit(), sentiment_too=sentiment_too)
    except UnderstandingDataError as exc:
        fail(str(exc), 2)


@app.command("evaluate")
def evaluate_command(
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object")] = False,
) -> None:
    """Precision and recall per intent on intent_heldout.yaml (never trained on)."""
    understanding = understanding_or_exit()
    assert understanding.classifier is not None
    held = held_out_examples()
    report = evaluate(understanding.classifier, held)
    if as_json:
        payload = {
            method: {
                s.intent: {"precision": s.precision, "recall": s.recall, "n": s.support}
                for s in scores
            }
            for method, scores in report.items()
        }
        typer.echo(json.dumps(payload, indent=2))
        return
    table = Table(title=f"intents on {len(held)} held-out examples")
    table.add_column("intent")
    for method in report:
        table.add_column(f"{method} P", justify="right")
        table.add_column(f"{method} R", justify="right")
    table.add_column("n", justify="right")
    rows = zip(*report.values(), strict=True)
    for scores in rows:
        cells = [f"{v:.2f}" for s in scores for v in (s.precision, s.recall)]
        table.add_row(scores[0].intent, *cells, str(scores[0].support))
    means = [
        f"{sum(getattr(s, f) for s in scores) / len(scores):.2f}"
        for scores in report.values()
        for f in ("precision", "recall")
    ]
    table.add_row("[bold]macro mean", *means, str(sum(s.support for s in report["rules"])))
    console.print(table)


@app.command("tag")
def tag_command(
    text: Annotated[str, typer.Argument(help="a sentence, as a caller would say it")],
) -> None:
    """Intents and entities of one sentence."""
    understanding = understanding_or_exit()
    for i in understanding.intents(text):
        console.print(f"intent  [bold]{i.name}[/] {i.confidence:.2f} ({i.method}: {i.evidence!r})")
    for e in understanding.entities(text):
        console.print(f"entity  [bold]{e.type}[/] {e.normalized} ({e.text!r})")
