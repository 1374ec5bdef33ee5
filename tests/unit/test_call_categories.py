"""Call categories: the rules file's mistakes named by line, and matching on finals."""

# ruff: noqa: E501 (the tables of finals and mistakes read best one to a line)

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from percept.cli.app import app
from percept.understanding import data
from percept.understanding.call_categories import CategoriesError, Final, parse_categories

INTENTS = {"purchase_intent", "cancellation_risk", "complaint"}


def final(index: int, role: str, text: str, start: float, end: float, **kw: object) -> Final:
    return Final(index, 0 if role == "agent" else 1, role, text, start, end, **kw)  # type: ignore[arg-type]


RULES = """\
categories:
  - name: cancel_after_negative
    when:
      role: customer
      intent: cancellation_risk
      earlier: {role: customer, sentiment: negative}
  - name: manager
    when: {role: customer, phrases: [manager, supervisor]}
  - name: long_silence
    when: {silence_before_s: 10}
  - name: barging_agent
    when: {role: agent, interruptions_at_least: 2}
  - name: early_price
    when: {before_s: 30, regex: "how much|price"}
"""


def test_categories_match_once_as_the_call_goes() -> None:
    categories = parse_categories(RULES, "rules.yaml", INTENTS)
    call = categories.for_call()
    said = [
        final(0, "agent", "Thanks for calling, how can I help?", 0.5, 2.0),
        final(0, "customer", "How much is the premium plan?", 2.5, 4.0),
        final(1, "customer", "This is ridiculous, it never works.", 5.0, 7.0, sentiment="negative"),
        final(1, "agent", "I understand.", 6.5, 8.0),  # began 0.5 s into the customer: one
        final(2, "customer", "I'm so sorry, can I talk to your manager?", 20.0, 22.0),
        final(2, "agent", "Of course.", 21.0, 23.0),  # two: the agent has barged in twice
        final(3, "customer", "Then cancel my account.", 24.0, 25.0, intents=frozenset({"cancellation_risk"})),
        final(4, "customer", "Cancel it, and get me a supervisor.", 26.0, 28.0, intents=frozenset({"cancellation_risk"})),
    ]  # fmt: skip
    matched = [(m.category.name, m.final.start) for f in said for m in call.add(f)]
    assert matched == [
        ("early_price", 2.5),
        ("manager", 20.0),  # at one final, in the file's order
        ("long_silence", 20.0),  # 12 s nobody spoke
        ("barging_agent", 21.0),
        ("cancel_after_negative", 24.0),
    ]
    # the same rules over the finished call give the same
    assert [(m.category.name, m.final.start) for m in categories.categorize(said)] == matched


def test_cancel_without_an_earlier_negative_turn_is_not_that_category() -> None:
    categories = parse_categories(RULES, "rules.yaml", INTENTS)
    said = [
        final(0, "customer", "Cancel it please.", 1, 2, intents=frozenset({"cancellation_risk"}))
    ]
    assert categories.categorize(said) == []


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("  - name: a\n    when: {role: customer}\n    colour: red\n", r"rules.yaml:2: categories\[1\]: colour: Extra inputs"),
        ("  - name: a\n    when: {regex: '(unclosed'}\n", r"rules.yaml:2: categories\[1\]: when: regex '\(unclosed' does not compile"),
        ("  - name: a\n    when: {after_s: 60, before_s: 30}\n", r"categories\[1\]: when: before_s 30.0 is not after after_s 60.0"),
        ("  - name: a\n    when: {intent: refund}\n", r"categories\[1\] \(a\): when.intent: 'refund' is not an intent"),
        ("  - name: a\n    when: {sentiment: angry}\n", r"when.sentiment: Input should be 'positive', 'neutral' or 'negative'"),
        ("  - name: a\n    when: {}\n", r"when: at least one condition is needed"),
        ("  - name: a\n    when: {earlier: {roles: agent}, role: agent}\n", r"when.earlier.roles: Extra inputs"),
        ("  - name: Bad Name\n    when: {role: agent}\n", r"name: String should match pattern"),
        ("  - name: a\n    when: {role: agent}\n  - name: a\n    when: {role: customer}\n", r"rules.yaml:4: categories\[2\]: name 'a' is used twice"),
    ],
)  # fmt: skip
def test_a_mistake_in_the_rules_is_named_with_its_line(entry: str, message: str) -> None:
    with pytest.raises(CategoriesError, match=message):
        parse_categories("categories:\n" + entry, "rules.yaml", INTENTS)


def test_the_packaged_categories_load() -> None:
    from percept.understanding.loading import known_intents

    categories = parse_categories(data.read("call_categories.yaml"), "packaged", known_intents())
    assert "cancellation_after_negative_turn" in {c.name for c in categories.categories}


def test_percept_calls_categorize_tries_rules_on_a_kept_call(tmp_path: Path) -> None:
    events = [
        {"type": "EVENT_TYPE_FINAL", "transcript": "This is useless.", "role": "customer",
         "channel": 1, "startOffset": "1s", "endOffset": "2s", "sentiment": "SENTIMENT_NEGATIVE"},
        {"type": "EVENT_TYPE_END_OF_UTTERANCE", "utteranceIndex": 1},
        {"type": "EVENT_TYPE_FINAL", "transcript": "I want to cancel.", "role": "customer",
         "utteranceIndex": 1, "channel": 1, "startOffset": "3s", "endOffset": "4s",
         "intents": [{"name": "cancellation_risk"}]},
    ]  # fmt: skip
    call = tmp_path / "call.json"
    call.write_text("\n".join(json.dumps(e) for e in events))  # as `transcribe --json` prints
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    runner = CliRunner()
    result = runner.invoke(app, ["calls", "categorize", str(call), "--rules", str(rules), "--json"])
    assert result.exit_code == 0, result.output
    found = json.loads(result.output)["categories"]
    assert [(f["category"], f["utterance"], f["role"]) for f in found] == [
        ("cancel_after_negative", 1, "customer")
    ]
    bad = tmp_path / "bad.yaml"
    bad.write_text("categories:\n  - name: x\n    when: {regex: '['}\n")
    result = runner.invoke(app, ["calls", "categorize", str(call), "--rules", str(bad)])
    assert (
        result.exit_code == 2
        and "bad.yaml:2" in result.output
        and "does not compile" in result.output
    )
    (tmp_path / "empty.json").write_text("[]")
    result = runner.invoke(app, ["calls", "categorize", str(tmp_path / "empty.json")])
    assert result.exit_code == 2 and "no FINAL events" in " ".join(result.output.split())
