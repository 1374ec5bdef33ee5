"""Opportunities: what an open lead is worth, and what else to offer it.

An open lead's expected value is its score times its budget, or, without a budget,
times the catalog's list price of its product and the quantity it named (one when it
named none). Cross-sell comes from what won leads bought together: association rules
(support, confidence, lift) over their baskets, "leads who bought a laptop also bought
headphones, lift 2.1".
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from itertools import combinations

_AMOUNT = re.compile(r"(\d+(?:[.,]\d{3})*(?:[.,]\d{1,2})?)\s*(k|m|thousand|million|mil)?\b", re.I)
_SCALE = {"k": 1e3, "thousand": 1e3, "mil": 1e3, "m": 1e6, "million": 1e6}
MIN_PAIR_LEADS = 3  # a pair bought together by fewer won leads says nothing yet


def amount(text: str) -> float | None:
    """The first amount in a budget as people write it ('1500 USD', '$2,000', '5k')."""
    found = _AMOUNT.search(text)
    if found is None:
        return None
    digits, scale = found.groups()
    whole, cents = digits, ""
    decimals = re.search(r"[.,](\d{1,2})$", digits)  # 12.50, 1,299.99, 1.500,50
    if decimals is not None:
        whole, cents = digits[: decimals.start()], decimals.group(1)
    number = float(re.sub(r"[.,]", "", whole) or "0")
    if cents:
        number += int(cents) / 10 ** len(cents)
    return number * _SCALE.get((scale or "").lower(), 1.0)


def quantity(text: str) -> int:
    found = re.search(r"\d+", text)
    return max(int(found.group()), 1) if found else 1


@dataclass(frozen=True)
class Value:
    value: float
    reason: str


def expected_value(
    score: float, qualification: Mapping[str, str], product: str, prices: Mapping[str, float]
) -> Value | None:
    """Score x budget, else score x list price x quantity; None when neither is known."""
    budget = amount(qualification.get("budget", ""))
    if budget is not None:
        return Value(score * budget, f"score {score:.2f} x budget {qualification['budget']}")
    price = prices.get(product)
    if price is None:
        return None
    count = quantity(qualification.get("quantity", ""))
    return Value(
        score * price * count,
        f"score {score:.2f} x {count} {product} at list price {price:,.0f}",
    )


@dataclass(frozen=True)
class Association:
    """Leads who bought `given` also bought `then`."""

    given: str
    then: str
    support: float  # share of won leads that bought both
    confidence: float  # share of `given`'s buyers that bought `then`
    lift: float  # confidence over `then`'s share: above 1, more than chance
    leads: int  # won leads that bought both

    @property
    def reason(self) -> str:
        return (
            f"leads who bought {self.given} also bought {self.then} "
            f"({self.confidence:.0%} of them, lift {self.lift:.1f})"
        )


def associations(
    baskets: Iterable[frozenset[str]], min_leads: int = MIN_PAIR_LEADS
) -> list[Association]:
    """Every rule A -> B with lift above 1 among won leads' baskets, strongest first."""
    baskets = [b for b in baskets if b]
    total = len(baskets)
    if not total:
        return []
    single: Counter[str] = Counter(p for b in baskets for p in b)
    pairs: Counter[tuple[str, str]] = Counter(
        pair for b in baskets for pair in combinations(sorted(b), 2)
    )
    rules = []
    for (a, b), both in pairs.items():
        if both < min_leads:
            continue
        for given, then in ((a, b), (b, a)):
            confidence = both / single[given]
            lift = confidence / (single[then] / total)
            if lift > 1.0:
                rules.append(Association(given, then, both / total, confidence, lift, both))
    rules.sort(key=lambda r: (-r.lift, -r.confidence, r.given, r.then))
    return rules


def cross_sell(
    interests: Iterable[str], rules: Iterable[Association], limit: int = 3
) -> list[Association]:
    """What to offer a lead interested in these products: the best rule to each product
    it has not shown interest in."""
    held = set(interests)
    best: dict[str, Association] = {}
    for rule in rules:
        if rule.given in held and rule.then not in held and rule.then not in best:
            best[rule.then] = rule
    return sorted(best.values(), key=lambda r: (-r.lift, -r.confidence))[:limit]
