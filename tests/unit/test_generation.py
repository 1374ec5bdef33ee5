"""The optional answer phraser: only grounded text replaces a knowledge answer."""

from __future__ import annotations

from pathlib import Path

import pytest
from nlp_models import build_tiny_gpt2

from percept.nlp.generation import CausalLMPhraser, grounded

FACTS = "The Percept Phone costs $699, or $649 each when you buy five or more."
QUESTION = "How much is the phone?"


@pytest.mark.parametrize(
    ("text", "ok"),
    [
        ("The Percept Phone costs $699, or $649 each if you buy five or more.", True),
        ("It costs $699 each, and $649 each when you buy five or more phones.", True),
        ("The Percept Phone costs $599.", False),  # a price the facts do not state
        ("It comes with free wireless earbuds and a leather case.", False),  # invented
        ("", False),
    ],
)
def test_grounded_text_keeps_to_the_facts(text: str, ok: bool) -> None:
    assert grounded(text, FACTS, QUESTION) is ok


def test_a_random_model_is_never_let_through(tmp_path: Path) -> None:
    phraser = CausalLMPhraser(build_tiny_gpt2(tmp_path / "gpt2"), "cpu", max_new_tokens=12)
    assert phraser.phrase(QUESTION, FACTS) is None  # noise: the facts go out as written


def test_a_folder_without_a_model_is_named(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"generator model: no config.json in"):
        CausalLMPhraser(tmp_path, "cpu")
