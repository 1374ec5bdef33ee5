"""Entities in an utterance, normalised with well-kept parsers where they exist."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any

import phonenumbers
import yaml
from email_validator import EmailNotValidError, validate_email

from percept.understanding import data, money
from percept.understanding.money import NUMBER_WORDS

EMAIL_CANDIDATE = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
# An address said aloud, as transcripts write it: the domain needs "dot" and a
# top-level domain, so "look at the phone" is no address.
SPOKEN_EMAIL = re.compile(
    r"\b([a-z0-9][a-z0-9_+-]*(?:\s+dot\s+[a-z0-9_+-]+)*)\s+at\s+"
    r"([a-z0-9-]+(?:\s+dot\s+[a-z0-9-]+)*\s+dot\s+[a-z]{2,})\b",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class EntityMatch:
    type: str  # product, quantity, money, phone, email, datetime
    text: str
    normalized: str
    start: int
    end: int
    confidence: float


class CatalogError(ValueError):
    """The catalog file is malformed; the message names the entry."""


# A BCP-47 language tag, as the catalog's per-language names are keyed: en, es, fr, pt-BR.
_LANGUAGE_TAG = re.compile(r"[a-z]{2,3}(?:-[A-Za-z0-9]{2,8})*")


def parse_catalog(data: Any) -> dict[str, Any]:
    """The catalog, checked. A product's words are a list, or a mapping from language tags
    to lists ({en: [laptop], fr: [ordinateur portable]}); `products` maps each product to
    all its words. Every word of every language is looked for in any text: a chat reads
    the machine translation, which keeps words it does not know ("tablette"), and a call
    may be transcribed in its own language. A word naming two products is refused."""
    products = (data or {}).get("products")
    if not isinstance(products, dict) or not products:
        raise CatalogError("catalog: a 'products' mapping of product -> words is required")
    flat: dict[str, list[str]] = {}
    owners: dict[str, str] = {}
    for product, words in products.items():
        by_language = words if isinstance(words, dict) else {"": words}
        if not by_language:
            raise CatalogError(f"catalog: products.{product} must be a list of words")
        flat[product] = []
        for tag, said in by_language.items():
            where = f"products.{product}" + (f".{tag}" if tag else "")
            if tag and not (isinstance(tag, str) and _LANGUAGE_TAG.fullmatch(tag)):
                raise CatalogError(f"catalog: {where}: {tag!r} is not a language tag (en, fr)")
            if not isinstance(said, list) or not all(isinstance(w, str) and w for w in said):
                raise CatalogError(f"catalog: {where} must be a list of words")
            for word in said:
                key = " ".join(word.lower().split())
                if owners.setdefault(key, product) != product:
                    raise CatalogError(f"catalog: {where}: {word!r} already names {owners[key]!r}")
                flat[product].append(word)
    companies = data.get("companies") or []
    if not isinstance(companies, list) or not all(isinstance(c, str) and c for c in companies):
        raise CatalogError("catalog: companies must be a list of names")
    prices = data.get("prices") or {}
    if not isinstance(prices, dict):
        raise CatalogError("catalog: prices must map a product to its list price")
    for product, price in prices.items():
        if product not in products:
            raise CatalogError(f"catalog: prices.{product}: not a product of the catalog")
        if isinstance(price, bool) or not isinstance(price, int | float) or price < 0:
            raise CatalogError(f"catalog: prices.{product} must be a number >= 0, not {price!r}")
    return {"products": flat, "companies": companies, "prices": prices}


@cache
def _catalog(text: str) -> dict[str, Any]:
    return parse_catalog(yaml.safe_load(text))


def _catalog_data() -> dict[str, Any]:
    return _catalog(data.read("catalog.yaml"))


def catalog() -> dict[str, tuple[str, ...]]:
    return {product: tuple(words) for product, words in _catalog_data()["products"].items()}


def prices() -> dict[str, float]:
    """Each product's list price (the catalog's `prices`; a product without one: none)."""
    return {product: float(p) for product, p in _catalog_data()["prices"].items()}


def _company_patterns() -> tuple[re.Pattern[str], re.Pattern[str]]:
    return _company_patterns_of(tuple(_catalog_data()["companies"]))


@cache
def _company_patterns_of(companies: tuple[str, ...]) -> tuple[re.Pattern[str], re.Pattern[str]]:
    names = sorted(companies, key=len, reverse=True)
    known = re.compile(r"\b(" + "|".join(re.escape(n) for n in names) + r")\b", re.IGNORECASE)
    # Capitalised words before a legal suffix, or after "from/at/with/for" + a
    # capitalised name ending the phrase: "Ana from Globex", "at Initech Ltd".
    name = r"[A-Z][\w&'-]*(?:\s+[A-Z][\w&'-]*){0,3}"
    suffix = r"(?:Inc|Corp|Corporation|LLC|Ltd|GmbH|Co|Company|Group|Holdings|SA|AG|PLC)\b\.?"
    unknown = re.compile(
        rf"\b({name}\s+{suffix})|\b(?:from|at|with|for)\s+({name})(?=\s*[,.?!;]|\s*$)"
    )
    return known, unknown


def _companies(text: str) -> list[EntityMatch]:
    known, unknown = _company_patterns()
    found = [
        EntityMatch("company", m.group(0), m.group(0), m.start(), m.end(), 0.9)
        for m in known.finditer(text)
    ]
    for m in unknown.finditer(text):
        group = 1 if m.group(1) else 2
        span = m.group(group)
        start = m.start(group)
        match = EntityMatch("company", span, span.rstrip("."), start, start + len(span), 0.6)
        if span.split()[0].lower() in _NOT_NAMES or any(_overlap(match, f) for f in found):
            continue
        found.append(match)
    return found


# Capitalised words that follow "from"/"for" without naming a company.
_NOT_NAMES = {
    "i",
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
    "me",
    "us",
}


def _product_pattern() -> tuple[re.Pattern[str], dict[str, str]]:
    return _product_pattern_of(data.read("catalog.yaml"))


@cache
def _product_pattern_of(text: str) -> tuple[re.Pattern[str], dict[str, str]]:
    products = _catalog(text)["products"]
    owner = {
        " ".join(word.lower().split()): product
        for product, words in products.items()
        for word in words
    }
    alternatives = sorted(
        (re.escape(w).replace(r"\ ", r"\s+") for w in owner), key=len, reverse=True
    )
    return re.compile(r"\b(" + "|".join(alternatives) + r")\b", re.IGNORECASE), owner


_QUANTITY = re.compile(
    r"\b(\d{1,4}|"
    + "|".join(sorted(map(re.escape, NUMBER_WORDS), key=len, reverse=True))
    + r")\s+(?:\w+\s+)?$",
    re.IGNORECASE,
)


def extract_entities(
    text: str, *, region: str = "US", now: datetime | None = None
) -> list[EntityMatch]:
    found: list[EntityMatch] = []
    pattern, owner = _product_pattern()
    for m in pattern.finditer(text):
        product = owner[re.sub(r"\s+", " ", m.group(0).lower())]
        found.append(EntityMatch("product", m.group(0), product, m.start(), m.end(), 0.9))
        q = _QUANTITY.search(text[max(0, m.start() - 30) : m.start()])
        if q:
            word = q.group(1).lower()
            value = int(word) if word.isdigit() else NUMBER_WORDS[word]
            start = max(0, m.start() - 30) + q.start(1)
            found.append(
                EntityMatch("quantity", q.group(1), str(value), start, start + len(q.group(1)), 0.8)
            )
    for match in phonenumbers.PhoneNumberMatcher(text, region):
        e164 = phonenumbers.format_number(match.number, phonenumbers.PhoneNumberFormat.E164)
        found.append(EntityMatch("phone", match.raw_string, e164, match.start, match.end, 0.95))
    for m in EMAIL_CANDIDATE.finditer(text):
        try:
            email = validate_email(m.group(0), check_deliverability=False).normalized.lower()
        except EmailNotValidError:
            continue
        found.append(EntityMatch("email", m.group(0), email, m.start(), m.end(), 0.95))
    for m in SPOKEN_EMAIL.finditer(text):  # "ana dot silva at example dot com"
        written = re.sub(r"\s+dot\s+", ".", f"{m.group(1)}@{m.group(2)}", flags=re.IGNORECASE)
        try:
            email = validate_email(written, check_deliverability=False).normalized.lower()
        except EmailNotValidError:
            continue
        found.append(EntityMatch("email", m.group(0), email, m.start(), m.end(), 0.8))
    for amount in money.money(text):  # see money.py: separators, multipliers, ranges
        found.append(
            EntityMatch("money", amount.text, amount.normalized, amount.start, amount.end, 0.85)
        )
    # A count before a product word that is a part of a phone number, address or amount
    # ("call 415 555 0134 about phones") is none.
    found = [
        e
        for e in found
        if e.type != "quantity"
        or not any(_overlap(e, o) for o in found if o.type in ("phone", "email", "money"))
    ]
    found += [c for c in _companies(text) if not any(_overlap(c, e) for e in found)]
    # dateparser also reads counts and prices as dates: other entities win overlaps.
    found += [d for d in _dates(text, now) if not any(_overlap(d, e) for e in found)]
    return sorted(found, key=lambda e: (e.start, e.type))


def _overlap(a: EntityMatch, b: EntityMatch) -> bool:
    return a.start < b.end and b.start < a.end


def _dates(text: str, now: datetime | None) -> list[EntityMatch]:
    from dateparser.search import search_dates  # slow to import: only on first use

    settings = {"PREFER_DATES_FROM": "future", "RETURN_AS_TIMEZONE_AWARE": False}
    if now is not None:
        settings["RELATIVE_BASE"] = now
    hits = search_dates(text, languages=["en"], settings=settings) or []
    out = []
    cursor = 0
    for span, when in hits:
        # dateparser also reads bare numbers as dates: keep phrases with a date word.
        if not re.search(
            r"(?i)\b(today|tomorrow|monday|tuesday|wednesday|thursday|friday|saturday|sunday|days?|weeks?|months?|years?|fortnights?|january|february|march|april|may|june|july|august|september|october|november|december|\d{1,2}(st|nd|rd|th)|morning|afternoon|evening|next|\d{1,2}:\d{2}|[ap]\.?m\.?)\b",
            span,
        ):
            continue
        start = text.find(span, cursor)
        if start < 0:
            continue
        cursor = start + len(span)
        out.append(EntityMatch("datetime", span, when.isoformat(), start, cursor, 0.7))
    return out
