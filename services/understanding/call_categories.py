"""Call categories: rules over a call's finals, matched as the call goes.

A category names something a contact center wants counted or acted on ("the
customer asked to cancel after a negative turn", "long hold", "agent talked over
the customer"). Its `when` holds conditions that one final must meet together:
who spoke (`role`; "customer" takes the unnamed channel of a mono call too), what
was said (`phrases`, `regex`, `intent`), how it sounded (`sentiment`), where in
the call (`after_s`, `before_s`), the silence before it
(`silence_before_s`), the speaker's interruptions so far (`interruptions_at_least`),
and `earlier`: conditions some earlier final of the call met. A category matches
once per call, at the first final that meets it.

The rules live in `call_categories.yaml` (packaged; an operator's own in
PERCEPT_UNDERSTANDING_DIR). A mistake is refused at load with the file, the line
and the field: an unknown field, a regex that does not compile, an intent or a
sentiment nobody knows, or conditions no final can meet together.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from percept.runtime.yaml_lines import first_error, line_of, load_with_lines, strip_lines

# who a role condition takes: a mono call's unnamed channel speaks for the customer
SPEAKERS = {
    "customer": ("customer", "unspecified"),
    "agent": ("agent",),
    "unspecified": ("unspecified",),
}
SENTIMENTS = ("positive", "neutral", "negative")


# an overlap shorter than this is the end of one turn meeting the next, not a barge-in
OVERLAP_S = 0.3


class Spoken(Protocol):  # a final, or a summary's turn: who spoke, from when to when
    @property
    def channel(self) -> int: ...
    @property
    def start(self) -> float: ...
    @property
    def end(self) -> float: ...


def barges_in(turn: Spoken, others: Iterable[Spoken]) -> bool:
    """The turn began while another channel's turn went on (by more than OVERLAP_S):
    an interruption, for the rules and for a call's summary alike."""
    return any(
        o.channel != turn.channel and o.start < turn.start and o.end - turn.start > OVERLAP_S
        for o in others
    )


class CategoriesError(ValueError):
    """The categories file is wrong; the message names the line and the field."""


class Condition(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    role: Literal["customer", "agent", "unspecified", "any"] = "any"
    phrases: tuple[str, ...] = ()
    regex: str | None = None
    intent: str | None = None
    sentiment: Literal["positive", "neutral", "negative"] | None = None
    after_s: float | None = Field(None, ge=0)
    before_s: float | None = Field(None, gt=0)
    silence_before_s: float | None = Field(None, gt=0)
    interruptions_at_least: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _possible(self) -> Condition:
        if self.after_s is not None and self.before_s is not None and self.before_s <= self.after_s:
            raise ValueError(
                f"before_s {self.before_s} is not after after_s {self.after_s}: no final "
                "can be in both"
            )
        if self.regex is not None:
            try:
                re.compile(self.regex)
            except re.error as exc:
                raise ValueError(f"regex {self.regex!r} does not compile: {exc}") from None
        if any(not p.strip() for p in self.phrases):
            raise ValueError("phrases: an empty phrase matches everything; remove it")
        return self

    def compiled(self) -> re.Pattern[str] | None:
        parts = [r"\b" + re.escape(p.strip()) + r"\b" for p in self.phrases]
        return re.compile("|".join(parts), re.IGNORECASE) if parts else None


class When(Condition):
    earlier: Condition | None = None

    @model_validator(mode="after")
    def _something(self) -> When:
        if not self.model_dump(exclude_defaults=True):
            raise ValueError("when: at least one condition is needed")
        return self


class Category(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")
    description: str = ""
    when: When


@dataclass(frozen=True)
class Final:
    """What the rules read of a final (from an event, or a past call's JSON)."""

    index: int
    channel: int
    role: str  # customer, agent, unspecified
    text: str
    start: float
    end: float
    intents: frozenset[str] = frozenset()
    sentiment: str = ""  # positive, neutral, negative, or "" when not read


@dataclass(frozen=True)
class Match:
    category: Category
    final: Final


class _Rule:
    def __init__(self, category: Category) -> None:
        self.category = category
        self.phrases = category.when.compiled()
        earlier = category.when.earlier
        self.earlier = (earlier, earlier.compiled()) if earlier is not None else None


def _meets(
    condition: Condition,
    phrases: re.Pattern[str] | None,
    final: Final,
    silence_before: float,
    interruptions: int,
) -> bool:
    c = condition
    if c.role != "any" and final.role not in SPEAKERS[c.role]:
        return False
    if phrases is not None and not phrases.search(final.text):
        return False
    if c.regex is not None and not re.search(c.regex, final.text, re.IGNORECASE):
        return False
    if c.intent is not None and c.intent not in final.intents:
        return False
    if c.sentiment is not None and final.sentiment != c.sentiment:
        return False
    if c.after_s is not None and final.start < c.after_s:
        return False
    if c.before_s is not None and final.start >= c.before_s:
        return False
    if c.silence_before_s is not None and silence_before < c.silence_before_s:
        return False
    return c.interruptions_at_least is None or interruptions >= c.interruptions_at_least


@dataclass
class CallCategorizer:
    """One call's matching: the finals so far, and what has matched already."""

    rules: Sequence[_Rule]
    finals: list[Final] = field(default_factory=list)
    matched: set[str] = field(default_factory=set)
    interruptions: dict[int, int] = field(default_factory=dict)  # per channel
    reached: float = 0.0  # where speech ended so far, every channel

    def add(self, final: Final) -> list[Match]:
        silence = max(0.0, final.start - self.reached)
        if barges_in(final, self.finals):
            self.interruptions[final.channel] = self.interruptions.get(final.channel, 0) + 1
        count = self.interruptions.get(final.channel, 0)
        found = []
        for rule in self.rules:
            name = rule.category.name
            if name in self.matched:
                continue
            if not _meets(rule.category.when, rule.phrases, final, silence, count):
                continue
            if rule.earlier is not None:
                condition, words = rule.earlier
                if not any(
                    _meets(condition, words, f, 1e9, self.interruptions.get(f.channel, 0))
                    for f in self.finals
                ):
                    continue
            self.matched.add(name)
            found.append(Match(rule.category, final))
        self.finals.append(final)
        self.reached = max(self.reached, final.end)
        return found


class Categories:
    def __init__(self, categories: Iterable[Category]) -> None:
        self.categories = tuple(categories)
        self._rules = [_Rule(c) for c in self.categories]

    def for_call(self) -> CallCategorizer:
        return CallCategorizer(self._rules)

    def categorize(self, finals: Iterable[Final]) -> list[Match]:
        """A finished call's matches, the finals in the order they were said."""
        call = self.for_call()
        return [m for f in sorted(finals, key=lambda f: f.start) for m in call.add(f)]


def parse_categories(
    text: str, source: str = "call_categories.yaml", intents: Iterable[str] = ()
) -> Categories:
    """The categories of a file; `intents`: the names an `intent` may take."""
    try:
        content = load_with_lines(text)
    except yaml.YAMLError as exc:
        raise CategoriesError(f"{source}: not YAML: {exc}") from None
    if not isinstance(content, dict) or not isinstance(content.get("categories"), list):
        raise CategoriesError(f"{source}: a 'categories' list is required")
    known_intents = set(intents)
    out: list[Category] = []
    for number, entry in enumerate(content["categories"], 1):
        where = f"{source}:{line_of(entry)}: categories[{number}]"
        try:
            category = Category.model_validate(strip_lines(entry))
        except ValidationError as exc:
            raise CategoriesError(f"{where}: {first_error(exc)}") from None
        for condition, at in ((category.when, "when"), (category.when.earlier, "when.earlier")):
            intent = condition.intent if condition is not None else None
            if intent is not None and known_intents and intent not in known_intents:
                raise CategoriesError(
                    f"{where} ({category.name}): {at}.intent: {intent!r} is not "
                    f"an intent ({', '.join(sorted(known_intents))})"
                )
        if any(c.name == category.name for c in out):
            raise CategoriesError(f"{where}: name {category.name!r} is used twice")
        out.append(category)
    return Categories(out)
