"""The day-one lead score: a transparent rule-based prior over signal features.

Every feature's contribution is kept, so `ExplainScore` can say in words why a
lead is hot. Signals fade with a half-life: what someone said last month counts
less than what they said today.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

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
DWELL_WEIGHT, DWELL_FULL_SECONDS = 0.8, 120.0
RETURN_WEIGHT, RETURN_CAP = 0.4, 3
CHANNEL_WEIGHT = 0.35
QUALIFYING_SLOTS = ("budget", "timeline")


@dataclass(frozen=True)
class ScoringPolicy:
    half_life: timedelta = timedelta(days=14)
    hot_threshold: float = 0.7
    warm_threshold: float = 0.4
    bias: float = -2.5


@dataclass(frozen=True)
class SignalFacts:
    """What scoring needs of a stored signal."""

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


def _decay(age: timedelta, half_life: timedelta) -> float:
    return float(0.5 ** (max(age.total_seconds(), 0.0) / half_life.total_seconds()))


def assess(
    signals: Sequence[SignalFacts], now: datetime, policy: ScoringPolicy = ScoringPolicy()
) -> Assessment:
    """Score, class, stage and product interest of one lead from its signals."""
    ordered = sorted(signals, key=lambda s: s.occurred_at)
    weight = {id(s): _decay(now - s.occurred_at, policy.half_life) for s in ordered}
    contributions: list[Contribution] = []

    def add(feature: str, description: str, value: float, coef: float) -> None:
        if value > 0 and coef != 0:
            contributions.append(Contribution(feature, description, value, value * coef))

    intent_strength: dict[str, float] = defaultdict(float)
    intent_channels: dict[str, set[int]] = defaultdict(set)
    slots: dict[str, str] = {}
    slot_strength: dict[str, float] = defaultdict(float)
    dwell: dict[str, float] = defaultdict(float)  # decayed seconds: the feature
    dwell_seconds: dict[str, float] = defaultdict(float)  # real seconds: the words
    returns = 0.0
    interest: dict[str, float] = defaultdict(float)
    key_types: set[str] = set()
    outcome = ""
    for s in ordered:
        w = weight[id(s)]
        key_types.update(s.key_types)
        if s.kind == K.SIGNAL_KIND_INTENT:
            strength = (s.confidence or 1.0) * w
            intent_strength[s.name] = max(intent_strength[s.name], strength)
            intent_channels[s.name].add(s.source)
        elif s.kind == K.SIGNAL_KIND_QUALIFICATION_SLOT:
            slots[s.name] = s.value
            slot_strength[s.name] = max(slot_strength[s.name], w)
            if s.name in ("product", "need") and s.value:
                interest[s.value.lower()] += 1.0 * w
        elif s.kind == K.SIGNAL_KIND_ENTITY and s.name == "product" and s.value:
            interest[s.value.lower()] += (s.confidence or 1.0) * w
        elif s.kind == K.SIGNAL_KIND_DWELL:
            zone = s.value or s.name
            dwell[zone] += max(s.numeric_value, 0.0) * w
            dwell_seconds[zone] += max(s.numeric_value, 0.0)
            interest[zone.lower()] += min(s.numeric_value / DWELL_FULL_SECONDS, 1.0) * w
        elif s.kind == K.SIGNAL_KIND_RETURNING_VISIT:
            returns += w
        elif s.kind == K.SIGNAL_KIND_OUTCOME:
            outcome = s.value

    for name, strength in intent_strength.items():
        coef, words = INTENTS.get(name, (0.3, f"showed {name.replace('_', ' ')}"))
        via = ", ".join(sorted(CHANNEL_NAMES.get(c, "?") for c in intent_channels[name]))
        add(
            f"intent:{name}",
            f"{words} ({round(strength * 100)}% strength, by {via})",
            strength,
            coef,
        )
    for name, strength in slot_strength.items():
        coef, words = SLOTS.get(name, (0.2, f"told us their {name}"))
        add(f"slot:{name}", f"{words}: {slots[name]}" if slots[name] else words, strength, coef)
    for key, (coef, words) in CONTACT.items():
        add(f"contact:{key}", words, 1.0 if key in key_types else 0.0, coef)
    for zone, seconds in dwell.items():
        add(
            f"dwell:{zone}",
            f"lingered {dwell_seconds[zone]:.0f} s at the {zone} display",
            min(seconds / DWELL_FULL_SECONDS, 1.5),
            DWELL_WEIGHT,
        )
    add(
        "returning_visits",
        f"came back to the store ({returns:.1f} recent visits)",
        min(returns, RETURN_CAP),
        RETURN_WEIGHT,
    )
    channels = sorted({s.source for s in ordered})
    if len(channels) > 1:
        names = ", ".join(CHANNEL_NAMES.get(c, "?") for c in channels)
        add(
            "channels",
            f"reached us through {len(channels)} channels: {names}",
            float(len(channels) - 1),
            CHANNEL_WEIGHT,
        )

    logit = policy.bias + sum(c.contribution for c in contributions)
    score = 1.0 / (1.0 + math.exp(-logit))
    contributions.sort(key=lambda c: abs(c.contribution), reverse=True)
    return Assessment(
        score=score,
        lead_class=_classify(score, policy),
        stage=_stage(ordered, intent_strength, slots, key_types, outcome),
        product_interest=max(interest, key=lambda k: interest[k]) if interest else "",
        qualification=slots,
        channels=channels,
        contributions=contributions,
    )


def _classify(score: float, policy: ScoringPolicy) -> leads_pb2.LeadClass.ValueType:
    if score >= policy.hot_threshold:
        return leads_pb2.LEAD_CLASS_HOT
    if score >= policy.warm_threshold:
        return leads_pb2.LEAD_CLASS_WARM
    return leads_pb2.LEAD_CLASS_COLD


def _stage(
    signals: Sequence[SignalFacts],
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
    if intents or slots or len(signals) > 1:
        return leads_pb2.LEAD_STAGE_ENGAGED
    return leads_pb2.LEAD_STAGE_NEW
