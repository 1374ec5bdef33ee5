from __future__ import annotations

from datetime import datetime

import pytest

from percept.understanding.entities import extract_entities
from percept.understanding.intents import TaxonomyError, parse_taxonomy, tag_intents

NOW = datetime(2026, 11, 23, 10, 0)


def intents(text: str) -> set[str]:
    return {i.name for i in tag_intents(text)}


def entities(text: str) -> set[tuple[str, str]]:
    return {(e.type, e.normalized) for e in extract_entities(text, now=NOW)}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("I want to buy two phones", {"purchase_intent"}),
        ("How much does the iPad cost?", {"price_inquiry"}),
        ("Can we schedule a meeting with your team?", {"demo_or_meeting_request"}),
        ("The laptop I got is broken and I want a refund", {"complaint"}),
        ("I want to cancel my contract", {"cancellation_risk"}),
        ("That's too expensive for us", {"objection_budget"}),
        ("We're not ready yet", {"objection_timing"}),
        ("Samsung offered us a better deal", {"competitor_mention"}),
        ("I can't log in to my account", {"support_request"}),
        ("Does it come in black?", {"product_question"}),
        ("Thanks, have a nice day", set()),
        ("I have a display of buying habits", set()),  # whole words only: no "buy" in "buying"
    ],
)
def test_call_center_sentences_get_their_intents(text: str, expected: set[str]) -> None:
    assert intents(text) == expected


def test_entities_are_normalised() -> None:
    found = entities(
        "I'd like three laptops and a dozen phones, budget $2,500, call 415-555-2671 "
        "or ana.garcia@Example.com next Friday."
    )
    assert {
        ("quantity", "3"),
        ("product", "laptop"),
        ("quantity", "12"),
        ("product", "phone"),
        ("money", "2500.00 USD"),
        ("phone", "+14155552671"),
        ("email", "ana.garcia@example.com"),
    } <= found
    dates = [value for kind, value in found if kind == "datetime"]
    assert dates == ["2026-11-27T00:00:00"]


@pytest.mark.parametrize(
    ("text", "money"),
    [("about 2k dollars", "2000.00 USD"), ("€1.200", "1200.00 EUR"), ("500 pounds", "500.00 GBP")],
)
def test_money_amounts_and_currencies(text: str, money: str) -> None:
    assert ("money", money) in entities(text)


def test_counts_and_prices_are_not_read_as_dates() -> None:
    assert not [
        e
        for e in extract_entities("Maybe next year, 3 laptops at 2k dollars", now=NOW)
        if e.type == "datetime" and "3" in e.text
    ]


def test_entity_offsets_point_at_the_text() -> None:
    text = "We need 4 TVs, call +34 612 34 56 78"
    for e in extract_entities(text, now=NOW):
        assert text[e.start : e.end] == e.text


def test_malformed_taxonomy_names_the_entry() -> None:
    with pytest.raises(TaxonomyError, match=r"intents\.buy has no phrases"):
        parse_taxonomy({"intents": {"buy": {"phrases": []}}})
    with pytest.raises(TaxonomyError, match=r"intents\.buy\.phrases must be a list"):
        parse_taxonomy({"intents": {"buy": {"phrases": "buy"}}})
    with pytest.raises(TaxonomyError, match="'intents' mapping is required"):
        parse_taxonomy({})


@pytest.mark.parametrize(
    ("text", "email"),
    [
        ("my email is ana dot silva at example dot com", "ana.silva@example.com"),
        ("write to sales at acme dot co dot uk", "sales@acme.co.uk"),
    ],
)
def test_spoken_email_addresses_are_written_out(text: str, email: str) -> None:
    assert [(e.type, e.normalized) for e in extract_entities(text)] == [("email", email)]


def test_at_alone_is_not_an_address() -> None:
    assert all(e.type != "email" for e in extract_entities("look at the phone at home dot"))


@pytest.mark.parametrize(
    ("text", "companies"),
    [
        ("Samsung offered us a better deal", ["Samsung"]),
        ("This is Ana from Globex.", ["Globex"]),
        ("I work at Initech Ltd and we need phones", ["Initech Ltd"]),
        ("we saw a better price at Best Buy", ["Best Buy"]),
        ("We spoke with Acme Corp. yesterday", ["Acme Corp"]),
        ("I am calling from home.", []),
        ("Can you call me back on Friday.", []),
    ],
)
def test_companies_are_named_by_catalog_suffix_or_phrase(text: str, companies: list[str]) -> None:
    assert [e.normalized for e in extract_entities(text) if e.type == "company"] == companies
