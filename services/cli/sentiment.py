"""`percept sentiment`: how well call sentiment is recognised, and what a sentence feels like."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from percept.cli.common import console
from percept.cli.intents import understanding_or_exit
from percept.understanding.sentiment import evaluate, held_out_examples

app = typer.Typer(help="Sentiment of call utterances: evaluate on held-out examples, or read one.")


@app.command("evaluate")
def evaluate_command(
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object")] = False,
) -> None:
    """Precision and recall per label on sentiment_heldout.yaml (never trained on)."""
    classifier = understanding_or_exit(sentiment_too=True).sentiment_classifier
    assert classifier is not None
    held = held_out_examples()
    predicted = [m.label for m in classifier.predict([e.text for e in held])]
    scores, accuracy = evaluate(predicted, held)
    if as_json:
        labels = {
            s.label: {"precision": s.precision, "recall": s.recall, "n": s.support} for s in scores
        }
        payload = {"labels": labels, "accuracy": accuracy, "n": len(held)}
        typer.echo(json.dumps(payload, indent=2))
        return
    table = Table(title=f"sentiment on {len(held)} held-out utterances")
    for column in ("label", "precision", "recall", "n"):
        table.add_column(column, justify="left" if column == "label" else "right")
    for s in scores:
        table.add_row(s.label, f"{s.precision:.2f}", f"{s.recall:.2f}", str(s.support))
    table.add_row("[bold]accuracy", f"{accuracy:.2f}", "", str(len(held)))
    console.print(table)


@app.command("read")
def read_command(
    text: Annotated[str, typer.Argument(help="an utterance, as said on a call")],
) -> None:
    """The sentiment of one utterance."""
    found = understanding_or_exit(sentiment_too=True).sentiment(text)
    assert found is not None
    console.print(f"[bold]{found.label}[/] (score {found.score:+.2f}, p {found.confidence:.2f})")
