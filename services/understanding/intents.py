"""Intent tagging from the taxonomy's phrases (the rule layer).

Rules catch the obvious cases with high precision; the embedding classifier
(classifier.py) catches paraphrases.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from typing import Any

import yaml

from percept.understanding import data

RULE_CONFIDENCE = 0.9


@dataclass(frozen=True)
class IntentMatch:
    name: str
    confidence: float
    method: str  # "rule" or "classifier"
    evidence: str  # the phrase that matched


@dataclass(frozen=True)
class IntentRule:
    name: str
    description: str
    pattern: re.Pattern[str]


def _phrase_pattern(phrases: list[str]) -> re.Pattern[str]:
    alternatives = sorted(
        (re.escape(p.lower()).replace(r"\ ", r"\s+") for p in phrases), key=len, reverse=True
    )
    return re.compile(r"(?<![\w'])(" + "|".join(alternatives) + r")(?![\w'])", re.IGNORECASE)


class TaxonomyError(ValueError):
    """The taxonomy file is malformed; the message names the entry."""


def parse_taxonomy(data: Any) -> list[IntentRule]:
    intents = (data or {}).get("intents")
    if not isinstance(intents, dict) or not intents:
        raise TaxonomyError("taxonomy: an 'intents' mapping is required")
    rules = []
    for name, spec in intents.items():
        phrases = (spec or {}).get("phrases") or []
        if not isinstance(phrases, list) or not all(
            isinstance(p, str) and p.strip() for p in phrases
        ):
            raise TaxonomyError(f"taxonomy: intents.{name}.phrases must be a list of phrases")
        if not phrases:
            raise TaxonomyError(f"taxonomy: intents.{name} has no phrases")
        rules.append(
            IntentRule(
                name,
                str(spec.get("description", name)),
                _phrase_pattern(phrases),
            )
        )
    return rules


def default_rules() -> tuple[IntentRule, ...]:
    return _rules(data.read("taxonomy.yaml"))


@cache
def _rules(text: str) -> tuple[IntentRule, ...]:
    return tuple(parse_taxonomy(yaml.safe_load(text)))


def tag_intents(text: str, rules: tuple[IntentRule, ...] | None = None) -> list[IntentMatch]:
    """Every intent whose phrases occur in the text (once each, first phrase as evidence)."""
    found = []
    for rule in rules or default_rules():
        match = rule.pattern.search(text)
        if match:
            found.append(IntentMatch(rule.name, RULE_CONFIDENCE, "rule", match.group(0)))
    return found
