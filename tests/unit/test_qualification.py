"""Qualification slots read from visitors' words, and the asking policy."""

from __future__ import annotations

import pytest

from percept.nlp.qualification import Qualification, read_slots
from percept.understanding.entities import extract_entities
from percept.understanding.intents import tag_intents


def slots_of(text: str, asked: str | None = None) -> dict[str, str]:
    found = read_slots(text, tag_intents(text), extract_entities(text), asked)
    return {name: slot.value for name, slot in found.items()}


@pytest.mark.parametrize(
    ("text", "asked", "expected"),
    [
        (
            "We need ten laptops.",
            None,
            {"product": "laptop", "quantity": "10", "need": "ten laptops"},
        ),
        ("My budget is 5000 euros", None, {"budget": "5000.00 EUR"}),
        ("around 2000", "budget", {"budget": "2000.00 USD"}),
        ("around 2000", None, {}),  # a bare number only answers the question asked
        ("25 people", "quantity", {"quantity": "25"}),
        ("a few", "quantity", {}),
        ("as soon as possible", "timeline", {"timeline": "as soon as possible"}),
        ("My name is John Miller", None, {"name": "John Miller"}),
        ("Ana García", "name", {"name": "Ana García"}),
        ("I'm Bob", "name", {"name": "Bob"}),
        ("Ana García", None, {}),
        ("I'm the CTO and I make the decision", None, {"decision_role": "cto (decision maker)"}),
        ("I decide", None, {"decision_role": "decision maker"}),
        ("my boss decides", None, {"decision_role": "influencer"}),
        ("I am the head of procurement", None, {"decision_role": "head of procurement"}),
        ("reach me at ana@example.com", None, {"email": "ana@example.com"}),
        ("my number is +1 415 555 0123", None, {"phone": "+14155550123"}),
        ("my email is ana@@example", None, {}),  # not a valid address: not a contact
    ],
)
def test_slots_read_from_a_message(text: str, asked: str | None, expected: dict[str, str]) -> None:
    assert slots_of(text, asked) == expected


def test_questions_wait_for_interest_then_follow_the_order_and_stop_when_known() -> None:
    q = Qualification()
    q.update("What are your opening hours?", [], [], None)
    assert q.next_question() is None  # no buying interest: nothing is asked
    text = "I want to buy laptops"
    q.update(text, tag_intents(text), extract_entities(text), None)
    assert q.next_question() == "quantity"  # product is known, so it is not asked
    q.asked["quantity"] = 2
    assert q.next_question() == "timeline"  # asked twice without an answer: moves on
    for slot in ("timeline", "budget", "decision_role", "name"):
        q.slots[slot].value = "x"
    assert q.next_question() == "contact"
    q.slots["phone"].value = "+14155550123"
    assert q.next_question() is None
