"""`percept translate` and `percept chat` against an in-process nlp service."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from percept.cli import app

pytestmark = pytest.mark.slow
runner = CliRunner()


def test_translate_prints_each_translation_and_its_route() -> None:
    result = runner.invoke(
        app, ["translate", "I want to buy two phones.", "Where is my order?", "--to", "es"]
    )
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "Quiero comprar dos teléfonos."
    assert lines[1] == "en -> es (apertium)"
    assert "orden" in lines[2].lower() or "pedido" in lines[2].lower()


def test_translate_json_names_the_pivot_and_errors_name_the_pairs() -> None:
    result = runner.invoke(
        app,
        [
            "translate",
            "Je voudrais acheter deux téléphones.",
            "--to",
            "en",
            "--from",
            "fr",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    done = json.loads(result.output)
    assert done["pivotLanguage"] == "es" and "buy two telephones" in done["text"]
    failed = runner.invoke(app, ["translate", "hello", "--from", "en", "--to", "ja"])
    assert failed.exit_code == 1
    message = " ".join(failed.output.split())
    assert "FAILED_PRECONDITION: no translation path from 'en' to 'ja'" in message
    assert "en->es" in message


def test_chat_shows_replies_and_what_was_learnt() -> None:
    result = runner.invoke(
        app, ["chat"], input="How much is the phone?\nWe want to buy 5 phones\n\n"
    )
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "assistant> The Percept Phone costs $699" in text
    assert "assistant> Thank you. When do you need them?" in text
    assert "quantity 5" in text and "product phone" in text
