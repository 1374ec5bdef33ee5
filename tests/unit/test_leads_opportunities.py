"""What an open lead is worth, and association rules over won leads' baskets."""

from __future__ import annotations

import random

import pytest

from percept.leads.opportunities import amount, associations, cross_sell, expected_value

PRICES = {"laptop": 1299.0, "phone": 699.0, "headphones": 249.0}


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("1500 USD", 1500.0),
        ("$2,000", 2000.0),
        ("5k", 5000.0),
        ("2.500 €", 2500.0),
        ("about 1.2 million", 1_200_000.0),
        ("12.50", 12.5),
        ("$1,299.99", 1299.99),
        ("1.500,50 EUR", 1500.5),
        ("no budget yet", None),
    ],
)
def test_budgets_as_people_write_them(text: str, value: float | None) -> None:
    assert amount(text) == value


def test_expected_value_is_score_times_budget_else_list_price_times_quantity() -> None:
    by_budget = expected_value(0.8, {"budget": "2000 USD", "quantity": "3"}, "laptop", PRICES)
    assert by_budget is not None and by_budget.value == pytest.approx(1600.0)
    assert by_budget.reason == "score 0.80 x budget 2000 USD"
    by_price = expected_value(0.5, {"quantity": "3 units"}, "laptop", PRICES)
    assert by_price is not None and by_price.value == pytest.approx(0.5 * 1299 * 3)
    assert by_price.reason == "score 0.50 x 3 laptop at list price 1,299"
    one = expected_value(0.5, {}, "phone", PRICES)
    assert one is not None and one.value == pytest.approx(349.5)
    assert expected_value(0.9, {}, "tv", PRICES) is None  # no price, no budget: unknown


def test_the_planted_pair_is_found_with_its_lift() -> None:
    rng = random.Random(3)
    baskets = []
    for _ in range(400):
        basket = {p for p in ("phone", "tv", "watch", "tablet") if rng.random() < 0.25}
        if rng.random() < 0.3:  # laptop buyers mostly take headphones too
            basket.add("laptop")
            if rng.random() < 0.8:
                basket.add("headphones")
        elif rng.random() < 0.1:
            basket.add("headphones")
        baskets.append(frozenset(basket))
    rules = associations(baskets)
    won = [b for b in baskets if b]
    laptops = [b for b in won if "laptop" in b]
    both = sum("headphones" in b for b in laptops)
    share = sum("headphones" in b for b in won) / len(won)
    (rule,) = [r for r in rules if (r.given, r.then) == ("laptop", "headphones")]
    assert rule.leads == both
    assert rule.confidence == pytest.approx(both / len(laptops))
    assert rule.lift == pytest.approx(both / len(laptops) / share)
    assert rule.support == pytest.approx(both / len(won))
    assert rule.lift > 1.5 and rules[0].lift >= rule.lift
    assert all(r.lift > 1.0 for r in rules)
    # independent products: no rule worth a suggestion between them
    assert not [r for r in rules if {r.given, r.then} == {"phone", "tv"} and r.lift > 1.3]
    offered = cross_sell({"laptop"}, rules)
    assert offered[0].then == "headphones"
    assert "leads who bought laptop also bought headphones" in offered[0].reason
    assert not cross_sell({"laptop", "headphones"}, rules) or all(
        r.then not in {"laptop", "headphones"} for r in cross_sell({"laptop", "headphones"}, rules)
    )


def test_too_few_won_leads_make_no_rule() -> None:
    assert associations([frozenset({"a", "b"}), frozenset({"a", "b"})]) == []
    assert associations([]) == []
