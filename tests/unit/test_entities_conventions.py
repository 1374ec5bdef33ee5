"""Money, dates and products as the shared understanding reads them (speech and chat):
the conventions of several countries for amounts, relative dates with plural units, and
the catalog's words in several languages."""

from __future__ import annotations

from datetime import datetime

import pytest

from percept.understanding.entities import CatalogError, extract_entities, parse_catalog
from percept.understanding.money import amounts

NOW = datetime(2026, 11, 23, 10, 0)


def money_in(text: str) -> list[str]:
    return [e.normalized for e in extract_entities(text, now=NOW) if e.type == "money"]


@pytest.mark.parametrize(
    ("text", "money"),
    [
        # thousands: comma, dot, space, no-break space, narrow no-break space
        ("$1,500.50", "1500.50 USD"),
        ("under $1,500", "1500.00 USD"),
        ("€1.500", "1500.00 EUR"),
        ("£2,000", "2000.00 GBP"),
        ("15.000€", "15000.00 EUR"),
        ("1.500 €", "1500.00 EUR"),
        ("1.500,50 €", "1500.50 EUR"),
        ("2 000 euros", "2000.00 EUR"),
        ("Our estimate is of 2 000 euros", "2000.00 EUR"),  # Apertium's French budget
        ("1 500,50 €", "1500.50 EUR"),
        ("2\u00a0000 €", "2000.00 EUR"),
        ("2\u202f000 €", "2000.00 EUR"),
        ("12.50 euros", "12.50 EUR"),
        ("1299 $", "1299.00 USD"),
        # multipliers, with the currency before or after, as a symbol, code or word
        ("$2k", "2000.00 USD"),
        ("2k USD", "2000.00 USD"),
        ("USD 2K", "2000.00 USD"),
        ("1.5k dollars", "1500.00 USD"),
        ("1,5k €", "1500.00 EUR"),
        ("two thousand dollars", "2000.00 USD"),
        ("a thousand euros", "1000.00 EUR"),
        ("5 mil euros", "5000.00 EUR"),
        ("2 mille euros", "2000.00 EUR"),
        ("Have 2 one thousand euros", "2000.00 EUR"),  # Apertium's Spanish "2 mil euros"
        ("$2m", "2000000.00 USD"),
        ("3 million pounds", "3000000.00 GBP"),
        # a range is its upper bound, its multiplier and currency shared
        ("5-10k dollars", "10000.00 USD"),
        ("$5,000 - $10,000", "10000.00 USD"),
        ("between 2 and 3 thousand euros", "3000.00 EUR"),
        ("€5k to €8k", "8000.00 EUR"),
        ("$5-10m", "10000000.00 USD"),
        ("two to three thousand euros", "3000.00 EUR"),
        ("ten to twenty dollars", "20.00 USD"),
        ("$500 to ten people", "500.00 USD"),  # no range: the amount alone
    ],
)
def test_money_in_every_convention(text: str, money: str) -> None:
    assert money_in(text) == [money]


@pytest.mark.parametrize(
    "text",
    [
        "call me at 415-555-2671",
        "+34 612 345 678",
        "at 10:30 on 12/05/2026",
        "a pound of coffee",  # a word alone is no amount
        "5 m of cable",  # metres; "$5m" is money
        "around 2k",  # no currency: money only when the budget was asked (qualification)
        "version 1.2.3",
    ],
)
def test_no_money_where_there_is_none(text: str) -> None:
    assert money_in(text) == []


def test_amounts_without_a_currency_are_read_for_an_answer() -> None:
    found = [(a.text, str(a.value), a.currency) for a in amounts("around 2k, maybe 5-10k")]
    assert found == [("2k", "2000", ""), ("5-10k", "10000", "")]
    assert [a.normalized for a in amounts("around 2 thousand")] == ["2000.00 USD"]


def test_money_offsets_point_at_the_text() -> None:
    text = "Our budget is 2 000 euros, maybe €2.500"
    for e in extract_entities(text, now=NOW):
        assert text[e.start : e.end] == e.text


def test_a_phone_number_before_a_product_is_no_count() -> None:
    found = {(e.type, e.normalized) for e in extract_entities("call 415 555 0134 about phones")}
    assert ("product", "phone") in found
    assert not [kind for kind, _ in found if kind == "quantity"]


@pytest.mark.parametrize(
    "text",
    ["in 2 weeks", "in about three months", "in 10 days", "in two years", "in 6 months"],
)
def test_relative_dates_with_plural_units(text: str) -> None:
    found = [e for e in extract_entities(text, now=NOW) if e.type == "datetime"]
    assert found and found[0].normalized > NOW.isoformat(), found


@pytest.mark.parametrize(
    ("text", "product"),
    [
        ("How much costs the portable computer ?", "laptop"),  # Apertium: ordinateur portable
        ("Have need of ten portable computers.", "laptop"),
        ("Greeting, what costs the tablette ?", "tablet"),  # a word MT leaves as it was
        ("How much costs the portable telephone ?", "phone"),
        ("¿Cuánto cuesta el portátil?", "laptop"),  # a transcript in Spanish
        ("Combien coûte la montre ?", "watch"),
    ],
)
def test_products_named_in_other_languages_or_by_mt(text: str, product: str) -> None:
    assert ("product", product) in {(e.type, e.normalized) for e in extract_entities(text)}


def test_a_catalog_names_products_per_language_or_in_one_list() -> None:
    catalog = parse_catalog(
        {"products": {"printer": {"en": ["printer"], "fr": ["imprimante"]}, "ink": ["ink"]}}
    )
    assert catalog["products"] == {"printer": ["printer", "imprimante"], "ink": ["ink"]}
    with pytest.raises(CatalogError, match=r"products.printer.French: 'French' is not a"):
        parse_catalog({"products": {"printer": {"French": ["imprimante"]}}})
    with pytest.raises(CatalogError, match=r"products.ink.fr: 'Printer' already names 'printer'"):
        parse_catalog({"products": {"printer": ["printer"], "ink": {"fr": ["Printer"]}}})
    with pytest.raises(CatalogError, match=r"products.ink.en must be a list of words"):
        parse_catalog({"products": {"ink": {"en": "ink"}}})
