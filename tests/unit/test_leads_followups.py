"""Follow-up rules as data: the first rule a lead meets gives what to do, when, why and
who; mistakes in the file are refused with the line and the field."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from leads_signals import NOW

from percept.leads.followups import FollowUpRulesError, load_rules, parse_rules, territory_of
from percept.leads.scoring import ScoringPolicy, SignalFacts, assess
from percept.understanding.loading import known_intents
from percept.v1 import common_pb2 as c


def fact(
    kind: int, name: str = "", value: str = "", *, confidence: float = 0.9, days_ago: float = 0.0
) -> SignalFacts:
    when = NOW - timedelta(days=days_ago)
    return SignalFacts(c.SOURCE_CHAT, kind, name, value, 0.0, confidence, when, ("email",))


HOT = [
    fact(c.SIGNAL_KIND_INTENT, "purchase_intent", confidence=0.95),
    fact(c.SIGNAL_KIND_INTENT, "demo_or_meeting_request", confidence=0.95),
    fact(c.SIGNAL_KIND_INTENT, "price_inquiry", confidence=0.95),
    fact(c.SIGNAL_KIND_QUALIFICATION_SLOT, "budget", "5000 EUR"),
    fact(c.SIGNAL_KIND_QUALIFICATION_SLOT, "timeline", "next week"),
    fact(c.SIGNAL_KIND_QUALIFICATION_SLOT, "product", "laptop"),
]
RULES = """\
owners:
  team: [Ana, Luis, Marta]
  by_product: {laptop: [Marta]}
rules:
  - id: quote
    when: {intent: price_inquiry, class: [warm, cold]}
    action: send_quote
    priority: 2
    within_h: 48
    owner: Luis
    reason: asked for a price
  - id: hot
    when: {class: [hot]}
    action: call
    priority: 1
    within_h: 24
    owner: product
    reason: hot lead
"""


def test_the_packaged_rules_give_each_lead_its_follow_up() -> None:
    hot = assess(HOT, NOW)
    assert hot.follow_up is not None
    assert (hot.follow_up.rule, hot.follow_up.action, hot.follow_up.priority) == ("hot", "call", 2)
    assert hot.follow_up.due_at == NOW + timedelta(hours=24)
    promised = assess([*HOT, fact(c.SIGNAL_KIND_CALLBACK_PROMISED, days_ago=0.5)], NOW)
    assert promised.follow_up is not None and promised.follow_up.rule == "callback"
    assert promised.follow_up.due_at == NOW - timedelta(days=0.5) + timedelta(hours=1)
    called = assess(
        [
            *HOT,
            fact(c.SIGNAL_KIND_CALLBACK_PROMISED, days_ago=0.5),
            fact(c.SIGNAL_KIND_CHAT_MESSAGE, "salesperson", "Hi, Ana here", days_ago=0.1),
        ],
        NOW,
    )
    assert called.follow_up is not None and called.follow_up.rule == "hot"  # promise kept


def test_a_territory_goes_to_its_people_by_the_leads_phone() -> None:
    rules = parse_rules(
        RULES.replace("  by_product: {laptop: [Marta]}", "  by_territory: {ES: [Ana], MX: [Luis]}")
        .replace("owner: Luis", "owner: territory")
        .replace("owner: product", "owner: territory"),
        "followups.yaml",
        known_intents(),
    )
    hot = assess(HOT, NOW, ScoringPolicy(follow_ups=rules))
    assert hot.follow_up is not None
    assert territory_of("+34912345678") == "ES" and territory_of("+525512345678") == "MX"
    assert hot.follow_up.owner(rules.owners, "l", "tv", territory_of("+34912345678")) == "Ana"
    assert hot.follow_up.owner(rules.owners, "l", "tv", "MX") == "Luis"
    assert hot.follow_up.owner(rules.owners, "l", "tv", "") in {"Ana", "Luis", "Marta"}  # team
    assert territory_of("not a phone") == ""
    with pytest.raises(
        FollowUpRulesError,
        match=r"followups.yaml:\d+: owners: by_territory: .*'Spain' is not an ISO 3166",
    ):
        parse_rules(
            RULES.replace("  by_product: {laptop: [Marta]}", "  by_territory: {Spain: [Ana]}")
        )


def test_a_companys_rules_and_owners_decide_what_and_who() -> None:
    rules = parse_rules(RULES, "followups.yaml", known_intents())
    policy = ScoringPolicy(follow_ups=rules)
    hot = assess(HOT, NOW, policy)
    assert hot.follow_up is not None and hot.follow_up.action == "call"
    assert hot.follow_up.owner(rules.owners, "lead-1", "laptop") == "Marta"  # the product's
    # the team in turn, the same person for the same lead
    owners = {hot.follow_up.owner(rules.owners, f"lead-{i}", "tv") for i in range(30)}
    assert owners == {"Ana", "Luis", "Marta"}
    assert hot.follow_up.owner(rules.owners, "lead-7", "tv") == hot.follow_up.owner(
        rules.owners, "lead-7", "tv"
    )
    asked = assess([fact(c.SIGNAL_KIND_INTENT, "price_inquiry", confidence=0.9)], NOW, policy)
    assert asked.follow_up is not None
    assert (asked.follow_up.action, asked.follow_up.reason) == ("send_quote", "asked for a price")
    assert asked.follow_up.owner(rules.owners, "lead-1", "") == "Luis"
    assert asked.follow_up.due_at == NOW + timedelta(hours=48)
    won = assess([*HOT, fact(c.SIGNAL_KIND_OUTCOME, value="won")], NOW, policy)
    assert won.follow_up is None


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            ("when: {intent: price_inquiry, class: [warm, cold]}", "when: {intnet: price_inquiry}"),
            "followups.yaml:5: rules[1]: when.intnet: Extra inputs are not permitted",
        ),
        (
            ("owner: Luis", "owner: Pedro"),
            "followups.yaml:5: rules[1] (quote): owner: 'Pedro' is nobody in owners",
        ),
        (
            ("intent: price_inquiry", "intent: price_inquiries"),
            "followups.yaml:5: rules[1] (quote): when.intent: 'price_inquiries' is not one of",
        ),
        (
            ("action: send_quote", "action: fax"),
            "followups.yaml:5: rules[1]: action: Input should be 'call', 'email'",
        ),
        (("id: hot", "id: quote"), "followups.yaml:12: rules[2]: id 'quote' is used twice"),
        (("owners:", "owner:"), "followups.yaml: 'owner' is not 'owners' or 'rules'"),
    ],
    ids=["unknown-condition", "unknown-owner", "unknown-intent", "unknown-action", "twice", "key"],
)
def test_a_mistake_in_the_rules_is_refused_with_its_line(
    change: tuple[str, str], message: str
) -> None:
    text = RULES.replace(*change)
    with pytest.raises(FollowUpRulesError) as raised:
        parse_rules(text, "followups.yaml", known_intents(), ["long_hold"])
    assert str(raised.value).startswith(message), str(raised.value)


def test_the_understanding_dir_replaces_the_packaged_rules(tmp_path: Path) -> None:
    (tmp_path / "followups.yaml").write_text(RULES, encoding="utf-8")
    assert [r.id for r in load_rules(tmp_path).rules] == ["quote", "hot"]
    assert load_rules(None).rules[0].id == "callback"
