"""`percept calls`: try call categories on calls kept from before."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from percept.cli.common import console, fail, settings_or_exit
from percept.speech.categorizing import CallFileError, finals_from_json
from percept.understanding.call_categories import CategoriesError, parse_categories
from percept.understanding.loading import UnderstandingDataError, known_intents, load_categories

app = typer.Typer(help="Calls kept as JSON: which categories they meet.")


@app.command("categorize")
def categorize_command(
    files: Annotated[
        list[Path],
        typer.Argument(help="calls as JSON events (`percept transcribe --json` output)"),
    ],
    rules: Annotated[
        Path | None,
        typer.Option("--rules", help="a categories file to try (default: the configured one)"),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object a call")] = False,
) -> None:
    """The categories each call meets, with the final that met each."""
    settings = settings_or_exit()
    try:
        if rules is None:
            categories = load_categories(settings)
        else:
            if not rules.is_file():
                fail(f"--rules: {rules} is not a file", 2)
            categories = parse_categories(rules.read_text(), str(rules), known_intents())
    except (UnderstandingDataError, CategoriesError) as exc:
        fail(str(exc), 2)
    for file in files:
        if not file.is_file():
            fail(f"{file}: no such file", 2)
        try:
            finals = finals_from_json(file.read_text(), str(file))
        except CallFileError as exc:
            fail(str(exc), 2)
        matches = categories.categorize(finals)
        if as_json:
            found = [
                {
                    "category": m.category.name,
                    "utterance": m.final.index,
                    "channel": m.final.channel,
                    "role": m.final.role,
                    "start_s": round(m.final.start, 2),
                    "text": m.final.text,
                }
                for m in matches
            ]
            typer.echo(json.dumps({"call": str(file), "categories": found}, ensure_ascii=False))
            continue
        table = Table(
            title=f"{file.name}: {len(matches)} of {len(categories.categories)} categories"
        )
        for column in ("category", "at", "who", "said"):
            table.add_column(column)
        for m in matches:
            table.add_row(m.category.name, f"{m.final.start:.1f} s", m.final.role, m.final.text)
        console.print(table)
