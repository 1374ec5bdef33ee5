"""The day-one lead score: a transparent rule-based prior over signal features.

Every feature's contribution is kept, so `ExplainScore` can say in words why a
lead is hot. Signals fade with a half-life: what someone said last month counts
less than what they said today.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta
from functools import cache, lru_cache
from typing import Any, NamedTuple

from percept.leads.followups import FollowUp, FollowUpRules, load_rules
from percept.v1 import common_pb2, leads_pb2

K = common_pb2  # signal kinds and sources

INTENTS: dict[str, tuple[float, str]] = {
    "purchase_intent": (2.2, "wants to buy"),
    "demo_or_meeting_request": (1.6, "asked for a demo or a meeting"),
    "price_inquiry": (1.1, "asked about prices"),
    "product_question": (0.6, "asked about a product"),
    "competitor_mention": (0.2, "mentioned a competitor"),
    "support_request": (0.0, "asked for support"),
    "objection_timing": (-0.4, "said the timing is not right"),
    "objection_budget": (-0.5, "said the budget is a problem"),
    "complaint": (-0.7, "complained"),
    "cancellation_risk": (-1.2, "talked about cancelling"),
}
SLOTS: dict[str, tuple[float, str]] = {
    "budget": (0.8, "gave a budget"),
    "timeline": (0.7, "gave a timeline"),
    "decision_role": (0.5, "said who decides"),
    "need": (0.4, "described a need"),
    "product": (0.4, "named a product"),
    "quantity": (0.3, "gave a quantity"),
}
CONTACT: dict[str, tuple[float, str]] = {
    "phone": (0.4, "left a phone number"),
    "email": (0.4, "left an e-mail address"),
}
CHANNEL_NAMES: dict[int, str] = {
    K.SOURCE_SPEECH: "phone call",
    K.SOURCE_CHAT: "website chat",
    K.SOURCE_VISION: "store visit",
    K.SOURCE_CRM: "CRM",
}
# How a call's end moves the score: the customer's mean sentiment over the call
# (the latest call), and the call categories met (the rest are listed, not scored).
CALL_SENTIMENT: dict[str, tuple[float, str]] = {
    "positive": (0.5, "sounded positive on the last call"),
    "negative": (-0.6, "sounded negative on the last call"),
}
CATEGORIES: dict[str, tuple[float, str]] = {
    "cancellation_after_negative_turn": (-0.8, "asked to cancel after a negative turn"),
    "escalation_request": (-0.3, "asked for a manager"),
    "recovered_call": (0.4, "ended a call positive after a negative turn"),
}
DWELL_WEIGHT, DWELL_FULL_SECONDS = 0.8, 120.0
RETURN_WEIGHT, RETURN_CAP = 0.4, 3
CHANNEL_WEIGHT = 0.35
QUALIFYING_SLOTS = ("budget", "timeline")
CLOSED_STAGES = (leads_pb2.LEAD_STAGE_WON, leads_pb2.LEAD_STAGE_LOST)  # nothing to follow up


@dataclass(frozen=True)
class ScoringPolicy:
    half_life: timedelta = timedelta(days=14)
    hot_threshold: float = 0.7
    warm_threshold: float = 0.4
    bias: float = -2.5
    follow_ups: FollowUpRules | None = None  # None: the packaged followups.yaml
    prices: Mapping[str, float] | None = None  # list prices by product; None: the catalog's


class SignalFacts(NamedTuple):
    """What scoring needs of a stored signal (a tuple: built once per ingested signal)."""

    source: int
    kind: int
    name: str
    value: str
    numeric_value: float
    confidence: float
    occurred_at: datetime
    key_types: tuple[str, ...]


@dataclass(frozen=True)
class Contribution:
    feature: str
    description: str
    value: float
    contribution: float


@dataclass
class Assessment:
    score: float
    lead_class: leads_pb2.LeadClass.ValueType
    stage: leads_pb2.LeadStage.ValueType
    product_interest: str
    qualification: dict[str, str]
    channels: list[int]
    contributions: list[Contribution] = field(default_factory=list)
    model: str = "prior"
    follow_up: FollowUp | None = None  # who should contact the lead next, when and why


def _lse(a: float | None, b: float) -> float:
    """log2(2**a + 2**b) without overflow; None is log2(0)."""
    if a is None:
        return b
    high, low = max(a, b), min(a, b)
    return high + math.log2(1.0 + 2.0 ** (low - high))


def _later(mine: list[Any] | None, theirs: list[Any] | None) -> list[Any] | None:
    """Of two [value, t, ...] records, the later one (theirs on a tie); a copy."""
    if theirs is None or (mine is not None and mine[1] > theirs[1]):
        return mine
    return list(theirs)


@dataclass
class Features:
    """Aggregates of a lead's signals, ready to be decayed to any moment.

    Decayed values are kept as log2(value) + t / half_life ("anchored"), so the
    decay to time `now` is one subtraction, and max and sum stay exact when
    signals are added one by one or two leads are merged: a new signal costs
    O(1) however long the lead's history is.
    """

    half_life_s: float
    intents: dict[str, float] = field(default_factory=dict)  # anchored max strength
    intent_channels: dict[str, list[int]] = field(default_factory=dict)
    slots: dict[str, list[Any]] = field(default_factory=dict)  # [value, anchored, t of value]
    dwell: dict[str, float] = field(default_factory=dict)  # anchored sum of seconds
    dwell_seconds: dict[str, float] = field(default_factory=dict)  # plain sum, for the words
    interest: dict[str, float] = field(default_factory=dict)  # anchored sum per product
    returns: float | None = None  # anchored sum of returning visits
    key_types: list[str] = field(default_factory=list)
    channels: list[int] = field(default_factory=list)
    outcome: list[Any] | None = None  # [value, t]
    # the latest call's customer sentiment: [label, t, score] (speech's label)
    call_sentiment: list[Any] | None = None
    categories: dict[str, float] = field(default_factory=dict)  # anchored, latest
    callback_promised_at: float = 0.0  # epoch seconds of the latest promise, 0 if none
    salesperson_wrote_at: float = 0.0  # the latest chat message of a salesperson
    signal_count: int = 0
    last_signal_at: float = 0.0  # epoch seconds

    @classmethod
    def of(cls, signals: Sequence[SignalFacts], half_life: timedelta) -> Features:
        features = cls(half_life.total_seconds())
        for s in signals:
            features.add(s)
        return features

    def add(self, s: SignalFacts) -> None:
        t = s.occurred_at.timestamp()
        anchor = t / self.half_life_s
        strength = s.confidence or 1.0
        if s.kind == K.SIGNAL_KIND_INTENT:
            self.intents[s.name] = max(
                self.intents.get(s.name, -math.inf), math.log2(strength) + anchor
            )
            self.intent_channels[s.name] = sorted({*self.intent_channels.get(s.name, []), s.source})
        elif s.kind == K.SIGNAL_KIND_QUALIFICATION_SLOT:
            value, weight, when = self.slots.get(s.name, ["", -math.inf, -math.inf])
            if t >= when:
                value, when = s.value, t
            self.slots[s.name] = [value, max(weight, anchor), when]
            if s.name == "product" and s.value:  # "need" is free text, not a product id
                self._interest(s.value, anchor)
        elif s.kind == K.SIGNAL_KIND_ENTITY and s.name == "product" and s.value:
            self._interest(s.value, math.log2(strength) + anchor)
        elif s.kind == K.SIGNAL_KIND_DWELL and s.numeric_value > 0:
            zone = s.value or s.name
            self.dwell[zone] = _lse(self.dwell.get(zone), math.log2(s.numeric_value) + anchor)
            self.dwell_seconds[zone] = self.dwell_seconds.get(zone, 0.0) + s.numeric_value
            share = min(s.numeric_value / DWELL_FULL_SECONDS, 1.0)
            self._interest(zone, math.log2(share) + anchor)
        elif s.kind == K.SIGNAL_KIND_RETURNING_VISIT:
            self.returns = _lse(self.returns, anchor)
        elif s.kind == K.SIGNAL_KIND_OUTCOME:
            self.outcome = _later(self.outcome, [s.value, t])
        elif s.kind == K.SIGNAL_KIND_CALL_SENTIMENT:
            self.call_sentiment = _later(self.call_sentiment, [s.value, t, s.numeric_value])
        elif s.kind == K.SIGNAL_KIND_CALL_CATEGORY:
            self.categories[s.name] = max(self.categories.get(s.name, -math.inf), anchor)
        elif s.kind == K.SIGNAL_KIND_CALLBACK_PROMISED:
            self.callback_promised_at = max(self.callback_promised_at, t)
        elif s.kind == K.SIGNAL_KIND_CHAT_MESSAGE and s.name == "salesperson":
            self.salesperson_wrote_at = max(self.salesperson_wrote_at, t)
        self.key_types = sorted({*self.key_types, *s.key_types})
        self.channels = sorted({*self.channels, s.source})
        self.signal_count += 1
        self.last_signal_at = max(self.last_signal_at, t)

    def _interest(self, product: str, anchored: float) -> None:
        key = product.lower()
        self.interest[key] = _lse(self.interest.get(key), anchored)

    def merge(self, other: Features) -> None:
        """Folds another lead's aggregates into this one (same half-life)."""
        for name, value in other.intents.items():
            self.intents[name] = max(self.intents.get(name, -math.inf), value)
            self.intent_channels[name] = sorted(
                {*self.intent_channels.get(name, []), *other.intent_channels.get(name, [])}
            )
        for name, (value, weight, when) in other.slots.items():
            mine = self.slots.get(name, ["", -math.inf, -math.inf])
            latest = [value, when] if when >= mine[2] else [mine[0], mine[2]]
            self.slots[name] = [latest[0], max(weight, mine[1]), latest[1]]
        for zone, anchored in other.dwell.items():
            self.dwell[zone] = _lse(self.dwell.get(zone), anchored)
            self.dwell_seconds[zone] = self.dwell_seconds.get(zone, 0.0) + other.dwell_seconds[zone]
        for product, anchored in other.interest.items():
            self.interest[product] = _lse(self.interest.get(product), anchored)
        if other.returns is not None:
            self.returns = _lse(self.returns, other.returns)
        self.outcome = _later(self.outcome, other.outcome)
        self.call_sentiment = _later(self.call_sentiment, other.call_sentiment)
        for name, anchored in other.categories.items():
            self.categories[name] = max(self.categories.get(name, -math.inf), anchored)
        self.callback_promised_at = max(self.callback_promised_at, other.callback_promised_at)
        self.salesperson_wrote_at = max(self.salesperson_wrote_at, other.salesperson_wrote_at)
        self.key_types = sorted({*self.key_types, *other.key_types})
        self.channels = sorted({*self.channels, *other.channels})
        self.signal_count += other.signal_count
        self.last_signal_at = max(self.last_signal_at, other.last_signal_at)

    def to_json(self) -> dict[str, Any]:
        # Shallow on purpose: it is serialised at once (asdict's deep copy cost 25 % of ingest).
        return dict(self.__dict__)  # exactly the fields: a plain dataclass has no other state

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Features:
        if data.keys() != _FEATURE_FIELDS:  # stored by another version: defaults, or an error
            return cls(**data)
        features = cls.__new__(cls)  # read for every lead of every ingest batch
        features.__dict__.update(data)
        return features


_FEATURE_FIELDS = {f.name for f in fields(Features)}


def assess(
    signals: Sequence[SignalFacts], now: datetime, policy: ScoringPolicy = ScoringPolicy()
) -> Assessment:
    """Score, class, stage and product interest of one lead from its signals."""
    return assess_features(Features.of(signals, policy.half_life), now, policy)


@lru_cache(maxsize=4096)  # asked for every feature of every lead an ingest batch touches
def prior_weight(feature: str) -> float:
    """The day-one weight of a feature (see the tables above)."""
    kind, _, name = feature.partition(":")
    if kind == "intent":
        return INTENTS.get(name, (0.3, ""))[0]
    if kind == "slot":
        return SLOTS.get(name, (0.2, ""))[0]
    if kind == "contact":
        return CONTACT[name][0]
    if kind == "dwell":
        return DWELL_WEIGHT
    if kind == "call_sentiment":
        return CALL_SENTIMENT[name][0]
    if kind == "category":
        return CATEGORIES.get(name, (0.0, ""))[0]
    return {"returning_visits": RETURN_WEIGHT, "channels": CHANNEL_WEIGHT}.get(feature, 0.0)


@dataclass(frozen=True)
class LinearModel:
    """A model fitted on recorded outcomes (`percept leads train`); replaces the prior's weights."""

    version: str
    intercept: float
    weights: dict[str, float]  # by model feature; every dwell zone shares "dwell"

    def weight(self, feature: str) -> float:
        return self.weights.get("dwell" if feature.startswith("dwell:") else feature, 0.0)


def feature_values(f: Features, now: datetime) -> dict[str, float]:
    """Each feature's value for a lead at `now` (signals decayed), before any weighting."""
    now_anchor = now.timestamp() / f.half_life_s
    values = {f"intent:{name}": 2.0 ** (a - now_anchor) for name, a in f.intents.items()}
    for name, (_, weight, _) in f.slots.items():
        values[f"slot:{name}"] = 2.0 ** (weight - now_anchor)
    for key in CONTACT:
        values[f"contact:{key}"] = float(key in f.key_types)
    for zone, a in f.dwell.items():
        values[f"dwell:{zone}"] = min(2.0 ** (a - now_anchor) / DWELL_FULL_SECONDS, 1.5)
    returns = 0.0 if f.returns is None else 2.0 ** (f.returns - now_anchor)
    values["returning_visits"] = min(returns, RETURN_CAP)
    values["channels"] = float(max(len(f.channels) - 1, 0))
    if f.call_sentiment is not None and f.call_sentiment[0] in CALL_SENTIMENT:
        label, t, score = f.call_sentiment  # a neutral call moves nothing
        values[f"call_sentiment:{label}"] = abs(score) * 2.0 ** (t / f.half_life_s - now_anchor)
    for name, a in f.categories.items():
        values[f"category:{name}"] = 2.0 ** (a - now_anchor)
    return values


def describe(feature: str, value: float, f: Features) -> str:
    """A feature in words a salesperson understands."""
    kind, _, name = feature.partition(":")
    if kind == "intent":
        words = INTENTS.get(name, (0, f"showed {name.replace('_', ' ')}"))[1]
        via = ", ".join(sorted(CHANNEL_NAMES.get(c, "?") for c in f.intent_channels.get(name, [])))
        return f"{words} ({value:.0%} strength, by {via})"
    if kind == "slot":
        words = SLOTS.get(name, (0, f"told us their {name}"))[1]
        answer = f.slots[name][0]
        return f"{words}: {answer}" if answer else words
    if kind == "contact":
        return CONTACT[name][1]
    if kind == "dwell":
        return f"lingered {f.dwell_seconds[name]:.0f} s at the {name} display"
    if kind == "call_sentiment":
        score = f.call_sentiment[2] if f.call_sentiment else 0.0
        return f"{CALL_SENTIMENT[name][1]} ({score:+.2f})"
    if kind == "category":
        return CATEGORIES.get(name, (0, f"the call was {name.replace('_', ' ')}"))[1]
    if feature == "returning_visits":
        return f"came back to the store ({value:.1f} recent visits)"
    names = ", ".join(CHANNEL_NAMES.get(c, "?") for c in f.channels)
    return f"reached us through {len(f.channels)} channels: {names}"


def assess_features(
    f: Features,
    now: datetime,
    policy: ScoringPolicy = ScoringPolicy(),
    *,
    explain: bool = True,
    model: LinearModel | None = None,
    contacted_at: float = 0.0,
) -> Assessment:
    """Score, class, stage and product interest from a lead's aggregates, decayed to `now`.

    With a trained `model` its weights replace the prior's; with explain=False no
    contributions are listed (ingest needs only the score). `contacted_at`: when a
    salesperson last completed a follow-up for the lead (epoch seconds), which keeps a
    promise it answered from being due again.
    """
    values = feature_values(f, now)
    weight = model.weight if model else prior_weight
    contributions = []
    total = 0.0
    for feature, value in values.items():
        coef = weight(feature)
        if value > 0 and coef != 0:
            total += value * coef
            if explain:
                words = describe(feature, value, f)
                contributions.append(Contribution(feature, words, value, value * coef))
    logit = (model.intercept if model else policy.bias) + total
    score = 1.0 / (1.0 + math.exp(-max(min(logit, 50.0), -50.0)))
    contributions.sort(key=lambda c: abs(c.contribution), reverse=True)
    now_anchor = now.timestamp() / f.half_life_s
    interest = {k: 2.0 ** (a - now_anchor) for k, a in f.interest.items()}
    intents = {name: values[f"intent:{name}"] for name in f.intents}
    slots = {name: str(value) for name, (value, _, _) in f.slots.items()}
    return Assessment(
        score=score,
        lead_class=_classify(score, policy),
        stage=_stage(
            f.signal_count, intents, slots, set(f.key_types), f.outcome[0] if f.outcome else ""
        ),
        product_interest=max(interest, key=lambda k: interest[k]) if interest else "",
        qualification=slots,
        channels=list(f.channels),
        contributions=contributions,
        model=model.version if model else "prior",
        follow_up=follow_up_rules(policy).next_for(
            f, values, class_name(_classify(score, policy)), contacted_at
        ),
    )


@cache
def _packaged_rules() -> FollowUpRules:
    return load_rules()


def follow_up_rules(policy: ScoringPolicy) -> FollowUpRules:
    """The policy's follow-up rules, or the packaged ones."""
    return policy.follow_ups if policy.follow_ups is not None else _packaged_rules()


def list_prices(policy: ScoringPolicy) -> Mapping[str, float]:
    """The policy's list prices, or the catalog's."""
    if policy.prices is not None:
        return policy.prices
    from percept.understanding.entities import prices  # the catalog file, read once

    return prices()


def class_name(value: int) -> str:
    """'hot', 'warm', 'cold' (and 'unspecified' for 0), as people and JSON say it."""
    return leads_pb2.LeadClass.Name(value).removeprefix("LEAD_CLASS_").lower()  # type: ignore[arg-type]


def stage_name(value: int) -> str:
    return leads_pb2.LeadStage.Name(value).removeprefix("LEAD_STAGE_").lower()  # type: ignore[arg-type]


def _classify(score: float, policy: ScoringPolicy) -> leads_pb2.LeadClass.ValueType:
    if score >= policy.hot_threshold:
        return leads_pb2.LEAD_CLASS_HOT
    if score >= policy.warm_threshold:
        return leads_pb2.LEAD_CLASS_WARM
    return leads_pb2.LEAD_CLASS_COLD


def _stage(
    signal_count: int,
    intents: dict[str, float],
    slots: dict[str, str],
    key_types: set[str],
    outcome: str,
) -> leads_pb2.LeadStage.ValueType:
    if outcome == "won":
        return leads_pb2.LEAD_STAGE_WON
    if outcome == "lost":
        return leads_pb2.LEAD_STAGE_LOST
    knows_need = bool(slots.get("need") or slots.get("product"))
    qualified = (
        knows_need
        and any(slots.get(s) for s in QUALIFYING_SLOTS)
        and bool({"phone", "email"} & key_types)
    )
    if (
        qualified
        and max(intents.get("purchase_intent", 0), intents.get("demo_or_meeting_request", 0)) >= 0.5
    ):
        return leads_pb2.LEAD_STAGE_OPPORTUNITY
    if qualified:
        return leads_pb2.LEAD_STAGE_QUALIFIED
    if intents or slots or signal_count > 1:
        return leads_pb2.LEAD_STAGE_ENGAGED
    return leads_pb2.LEAD_STAGE_NEW
