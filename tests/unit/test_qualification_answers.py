"""Answers to the qualification questions as visitors write them: budgets in the
conventions of several countries, counts beside phone numbers, and timelines."""

from __future__ import annotations

import pytest

from percept.nlp.qualification import read_slots
from percept.understanding.entities import extract_entities
from percept.understanding.intents import tag_intents


def slots_of(text: str, asked: str | None = None) -> dict[str, str]:
    found = read_slots(text, tag_intents(text), extract_entities(text), asked)
    return {name: slot.value for name, slot in found.items()}


@pytest.mark.parametrize(
    ("text", "budget"),
    [
        ("my budget is around 2k", "2000.00 USD"),
        ("about 2k", "2000.00 USD"),
        ("around 2 thousand", "2000.00 USD"),
        ("5-10k", "10000.00 USD"),  # a range: its upper bound
        ("between 5 and 10 thousand euros", "10000.00 EUR"),
        ("15.000€", "15000.00 EUR"),
        ("1.500 €", "1500.00 EUR"),
        ("2 000 euros", "2000.00 EUR"),
        ("Our estimate is of 2 000 euros", "2000.00 EUR"),  # "Notre budget est de 2 000 euros"
        ("Have an estimate of 1.500 euros", "1500.00 EUR"),  # "un presupuesto de 1.500 euros"
        ("$1,500.50", "1500.50 USD"),
        ("€1.500", "1500.00 EUR"),
        ("£2,000", "2000.00 GBP"),
        ("under $1,500", "1500.00 USD"),
        ("around 2000", "2000.00 USD"),
    ],
)
def test_a_budget_answer_in_any_convention(text: str, budget: str) -> None:
    assert slots_of(text, "budget").get("budget") == budget


def test_a_budget_said_unasked_needs_a_currency_and_a_budget_word() -> None:
    assert slots_of("Our budget is 2 000 euros")["budget"] == "2000.00 EUR"
    assert "budget" not in slots_of("around 2k")
    assert "budget" not in slots_of("no budget yet", "budget")


def test_digits_of_a_contact_or_date_are_no_budget() -> None:
    assert "budget" not in slots_of("call me at 415 555 0134", "budget")
    assert "budget" not in slots_of("write to ana2024@acme.com", "budget")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("call me at 415 555 0134", {"phone": "+14155550134"}),
        ("+34 612 345 678", {"phone": "+34612345678"}),
        ("06 12 34 56 78", {}),  # a French number: no valid phone for region US, no count
        ("my email is ana2024@acme.com", {"email": "ana2024@acme.com"}),
        ("on 12/05 at 10:30", {}),
        ("the 3rd", {}),
        ("about $2k", {}),
        ("about 20, call me at 415 555 0134", {"quantity": "20", "phone": "+14155550134"}),
        ("415 555 0134, we need 25", {"phone": "+14155550134", "quantity": "25"}),
        ("twelve", {"quantity": "12"}),
    ],
)
def test_a_count_is_never_read_from_a_phone_address_date_or_amount(
    text: str, expected: dict[str, str]
) -> None:
    found = slots_of(text, "quantity")
    assert {k: v for k, v in found.items() if k in ("quantity", "phone", "email")} == expected


@pytest.mark.parametrize(
    ("text", "timeline"),
    [
        ("in 2 weeks", "in 2 weeks"),
        ("within 2 weeks", "within 2 weeks"),
        ("in about three months", "in about three months"),
        ("In roughly three month", "in roughly three month"),  # Apertium's "dans environ..."
        ("in ten days", "in ten days"),
        ("within a year", "within a year"),
        ("over the next 6 months", "over the next 6 months"),
        ("in a couple of weeks", "in a couple of weeks"),
        ("next month", "next month"),
    ],
)
def test_timelines_with_numbers_and_plural_units(text: str, timeline: str) -> None:
    assert slots_of(text, "timeline").get("timeline") == timeline
