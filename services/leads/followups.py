"""Follow-up rules: who to contact next, when, how and why, as data the company edits.

`followups.yaml` (packaged; an operator's own in PERCEPT_UNDERSTANDING_DIR) lists
rules in order; the first one a lead meets gives its next follow-up: an action,
a priority, a due time counted from the lead's last signal (or from a promised
callback), the reason in words, and an owner: the team in turn, the people of the
lead's product or territory (its phone number's country), or one named person. A
mistake is refused at load with the file, the line and the field: a condition nobody
knows, an owner nobody defined, an intent or category that does not exist.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any, Literal, Protocol

import phonenumbers
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from percept.runtime.yaml_lines import LINE, first_error, line_of, load_with_lines, strip_lines

CLASSES = ("hot", "warm", "cold")
SENTIMENTS = ("positive", "neutral", "negative")
STRONG = 0.5  # an intent or a category counts from this decayed strength on
GROUPS = ("team", "product", "territory")  # owners a rule names by their group


class LeadFacts(Protocol):
    """What the rules read of a lead's aggregates (scoring.Features)."""

    outcome: list[Any] | None
    last_signal_at: float
    call_sentiment: list[Any] | None
    callback_promised_at: float
    salesperson_wrote_at: float


class FollowUpRulesError(ValueError):
    """The rules file is wrong; the message names the file, the line and the field."""


class Conditions(BaseModel):
    """What a lead must show, all together."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    lead_class: list[Literal["hot", "warm", "cold"]] | None = Field(None, alias="class")
    intent: str | None = None
    category: str | None = None
    call_sentiment: Literal["positive", "neutral", "negative"] | None = None
    callback_promised: bool | None = None


class Rule(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str = Field(min_length=1, max_length=64)
    when: Conditions
    action: Literal["call", "email", "send_quote", "support_call", "retention_call"]
    priority: int = Field(ge=1, le=5)
    within_h: float = Field(gt=0, le=24 * 365)
    since: Literal["last_signal", "callback_promise"] = "last_signal"
    reason: str = Field(min_length=1, max_length=300)
    owner: str = "team"


class Owners(BaseModel):
    model_config = ConfigDict(extra="forbid")
    team: list[str] = []
    by_product: dict[str, list[str]] = {}
    # ISO 3166 region (the lead's phone number's country) -> its people
    by_territory: dict[str, list[str]] = {}

    @field_validator("by_territory")
    @classmethod
    def _regions(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        for region in value:
            if region not in phonenumbers.SUPPORTED_REGIONS:
                raise ValueError(f"{region!r} is not an ISO 3166 region code (ES, MX, US...)")
        return value

    def people(self) -> set[str]:
        groups = (*self.by_product.values(), *self.by_territory.values())
        return {*self.team, *(p for names in groups for p in names)}


def territory_of(phone: str) -> str:
    """The region (ES, MX...) an E.164 phone number belongs to, or ''."""
    try:
        return phonenumbers.region_code_for_number(phonenumbers.parse(phone)) or ""
    except phonenumbers.NumberParseException:
        return ""


@dataclass(frozen=True)
class FollowUp:
    rule: str
    action: str
    priority: int
    due_at: datetime
    reason: str
    owner_rule: str

    def owner(self, owners: Owners, lead_id: str, product: str, territory: str = "") -> str:
        """Who does it: a name, the product's or the territory's people, or the team, in
        turn (stable per lead: the same lead goes to the same person); '' when nobody is
        listed."""
        if self.owner_rule not in GROUPS:
            return self.owner_rule
        people = owners.team
        if self.owner_rule == "product" and owners.by_product.get(product):
            people = owners.by_product[product]
        if self.owner_rule == "territory" and owners.by_territory.get(territory):
            people = owners.by_territory[territory]
        if not people:
            return ""
        turn = int(hashlib.sha256(lead_id.encode()).hexdigest()[:8], 16)
        return people[turn % len(people)]


@dataclass(frozen=True)
class FollowUpRules:
    rules: tuple[Rule, ...]
    owners: Owners

    def next_for(
        self, f: LeadFacts, values: dict[str, float], lead_class: str, contacted_at: float = 0.0
    ) -> FollowUp | None:
        """The first rule the lead meets, or None (won, lost, or no rule). `contacted_at`:
        when a salesperson last completed a follow-up for the lead (epoch seconds); it keeps
        a promise made before it and, like the lead's own signal, restarts the clock."""
        if f.outcome is not None or not f.last_signal_at:
            return None
        sentiment = f.call_sentiment[0] if f.call_sentiment else ""
        promised = f.callback_promised_at > max(f.salesperson_wrote_at, contacted_at)
        for rule in self.rules:
            when = rule.when
            if when.lead_class is not None and lead_class not in when.lead_class:
                continue
            if when.intent is not None and values.get(f"intent:{when.intent}", 0.0) < STRONG:
                continue
            if when.category is not None and values.get(f"category:{when.category}", 0.0) < STRONG:
                continue
            if when.call_sentiment is not None and sentiment != when.call_sentiment:
                continue
            if when.callback_promised is not None and promised != when.callback_promised:
                continue
            if rule.since == "callback_promise":
                start = f.callback_promised_at or f.last_signal_at
            else:  # a salesperson's contact restarts the clock, as the lead's signal does
                start = max(f.last_signal_at, contacted_at)
            due = datetime.fromtimestamp(start, tz=UTC) + timedelta(hours=rule.within_h)
            return FollowUp(
                rule.id,
                rule.action,
                rule.priority,
                due,
                rule.reason,
                rule.owner,
            )
        return None


def parse_rules(
    text: str,
    source: str = "followups.yaml",
    intents: Iterable[str] = (),
    categories: Iterable[str] = (),
) -> FollowUpRules:
    """The rules of a file; `intents` and `categories`: the names conditions may take."""
    try:
        content = load_with_lines(text)
    except yaml.YAMLError as exc:
        raise FollowUpRulesError(f"{source}: not YAML: {exc}") from None
    if not isinstance(content, dict) or not isinstance(content.get("rules"), list):
        raise FollowUpRulesError(f"{source}: a 'rules' list is required")
    unknown = sorted(set(content) - {"owners", "rules", LINE})
    if unknown:
        raise FollowUpRulesError(f"{source}: {unknown[0]!r} is not 'owners' or 'rules'")
    raw_owners = content.get("owners") or {}
    try:
        owners = Owners.model_validate(strip_lines(raw_owners))
    except ValidationError as exc:
        where = f"{source}:{line_of(raw_owners)}: owners"
        raise FollowUpRulesError(f"{where}: {first_error(exc)}") from None
    known = {"intent": set(intents), "category": set(categories)}
    people = owners.people()
    rules: list[Rule] = []
    for number, entry in enumerate(content["rules"], 1):
        where = f"{source}:{line_of(entry)}: rules[{number}]"
        try:
            rule = Rule.model_validate(strip_lines(entry))
        except ValidationError as exc:
            raise FollowUpRulesError(f"{where}: {first_error(exc)}") from None
        for kind in ("intent", "category"):
            name = getattr(rule.when, kind)
            if name is not None and known[kind] and name not in known[kind]:
                raise FollowUpRulesError(
                    f"{where} ({rule.id}): when.{kind}: {name!r} is not one of "
                    f"{', '.join(sorted(known[kind]))}"
                )
        if rule.owner not in GROUPS and rule.owner not in people:
            raise FollowUpRulesError(
                f"{where} ({rule.id}): owner: {rule.owner!r} is nobody in owners "
                f"(team, by_product, by_territory) and not 'team', 'product' or 'territory'"
            )
        if any(r.id == rule.id for r in rules):
            raise FollowUpRulesError(f"{where}: id {rule.id!r} is used twice")
        rules.append(rule)
    return FollowUpRules(tuple(rules), owners)


def load_rules(
    understanding_dir: Path | None = None,
    intents: Iterable[str] = (),
    categories: Iterable[str] = (),
) -> FollowUpRules:
    """The operator's followups.yaml in the understanding dir, else the packaged one."""
    if understanding_dir is not None and (understanding_dir / "followups.yaml").is_file():
        path = understanding_dir / "followups.yaml"
        return parse_rules(path.read_text(encoding="utf-8"), str(path), intents, categories)
    packaged = resources.files("percept.leads").joinpath("followups.yaml")
    return parse_rules(
        packaged.read_text(encoding="utf-8"), "followups.yaml (packaged)", intents, categories
    )
