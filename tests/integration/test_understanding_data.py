"""Operators override the understanding data files without a new image."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from percept.cli import app
from percept.understanding import data

runner = CliRunner()
TAXONOMY = """
intents:
  warranty_claim:
    description: wants a repair under warranty
    phrases: [under warranty, repair it for free]
  purchase_intent:
    description: wants to buy
    phrases: [want to buy]
"""
CATALOG = """
products:
  printer: [printer, printers, laser printer]
companies: [Initech]
"""


@pytest.fixture(autouse=True)
def packaged_data_again() -> Iterator[None]:
    yield
    data.use_directory(None)


def test_files_in_the_understanding_dir_replace_the_packaged_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "taxonomy.yaml").write_text(TAXONOMY)
    (tmp_path / "catalog.yaml").write_text(CATALOG)  # examples stay the packaged ones
    monkeypatch.setenv("PERCEPT_UNDERSTANDING_DIR", str(tmp_path))
    result = runner.invoke(
        app, ["intents", "tag", "My Initech laser printer is under warranty, repair it for free"]
    )
    assert result.exit_code == 0, result.output
    assert "warranty_claim" in result.output
    assert "entity  product printer" in result.output
    assert "entity  company Initech" in result.output
    monkeypatch.delenv("PERCEPT_UNDERSTANDING_DIR")
    result = runner.invoke(app, ["intents", "tag", "repair my laser printer under warranty"])
    assert "warranty_claim" not in result.output  # back on the packaged taxonomy
    assert "entity  product" not in result.output


@pytest.mark.parametrize(
    ("name", "text", "words"),
    [
        ("taxonomy.yaml", "intents: [oops]", "taxonomy.yaml: taxonomy: an 'intents' mapping"),
        ("catalog.yaml", "products: {phone: 3}", "catalog.yaml: catalog: products.phone must"),
        ("intent_examples.yaml", "none: [ok]\nbuy: nope", "intent examples: buy must be a list"),
        ("taxonomy.yaml", "intents: {a: [", "taxonomy.yaml: while parsing"),
    ],
)
def test_a_malformed_file_is_named_and_nothing_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, text: str, words: str
) -> None:
    (tmp_path / name).write_text(text)
    monkeypatch.setenv("PERCEPT_UNDERSTANDING_DIR", str(tmp_path))
    result = runner.invoke(app, ["intents", "tag", "hello"])
    assert result.exit_code == 2
    said = "".join(result.output.split())  # Rich wraps long lines anywhere
    assert str(tmp_path) in said
    assert "".join(words.split()) in said
