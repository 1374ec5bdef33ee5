from __future__ import annotations

import json
from datetime import timedelta

import pytest
from leads_signals import NOW

from percept.leads.scoring import Features, ScoringPolicy, SignalFacts, assess, assess_features
from percept.v1 import common_pb2 as c
from percept.v1 import leads_pb2 as lp


def fact(
    kind: int,
    name: str = "",
    value: str = "",
    *,
    source: int = c.SOURCE_SPEECH,
    confidence: float = 0.9,
    numeric: float = 0.0,
    days_ago: float = 0.0,
    keys: tuple[str, ...] = ("phone",),
) -> SignalFacts:
    return SignalFacts(
        source, kind, name, value, numeric, confidence, NOW - timedelta(days=days_ago), keys
    )


def test_a_bare_sighting_is_a_cold_new_lead() -> None:
    a = assess(
        [fact(c.SIGNAL_KIND_ZONE_VISIT, "entrance", source=c.SOURCE_VISION, keys=("visitor_id",))],
        NOW,
    )
    assert a.lead_class == lp.LEAD_CLASS_COLD
    assert a.stage == lp.LEAD_STAGE_NEW
    assert a.score < 0.2


def test_a_qualified_buyer_across_three_channels_is_a_hot_opportunity() -> None:
    signals = [
        fact(c.SIGNAL_KIND_INTENT, "purchase_intent", confidence=0.95),
        fact(c.SIGNAL_KIND_ENTITY, "product", "phone"),
        fact(
            c.SIGNAL_KIND_QUALIFICATION_SLOT,
            "budget",
            "1500 USD",
            source=c.SOURCE_CHAT,
            keys=("chat_session_id", "phone", "email"),
        ),
        fact(c.SIGNAL_KIND_QUALIFICATION_SLOT, "product", "phone", source=c.SOURCE_CHAT),
        fact(
            c.SIGNAL_KIND_DWELL, "phones", numeric=180, source=c.SOURCE_VISION, keys=("visitor_id",)
        ),
    ]
    a = assess(signals, NOW)
    assert a.lead_class == lp.LEAD_CLASS_HOT
    assert a.stage == lp.LEAD_STAGE_OPPORTUNITY
    assert a.product_interest == "phone"
    assert a.qualification == {"budget": "1500 USD", "product": "phone"}
    channels = next(x for x in a.contributions if x.feature == "channels")
    assert "3 channels: phone call, store visit, website chat" in channels.description
    assert a.contributions[0].feature == "intent:purchase_intent"  # largest effect first
    assert sum(x.contribution for x in a.contributions) > 0


def test_signals_fade_with_the_half_life() -> None:
    fresh = assess([fact(c.SIGNAL_KIND_INTENT, "purchase_intent")], NOW)
    old = assess([fact(c.SIGNAL_KIND_INTENT, "purchase_intent", days_ago=14)], NOW)
    intent = {a.contributions[0].feature: a.contributions[0].contribution for a in (fresh,)}
    assert old.score < fresh.score
    halved = old.contributions[0].contribution
    assert abs(halved - intent["intent:purchase_intent"] / 2) < 1e-9
    short = assess(
        [fact(c.SIGNAL_KIND_INTENT, "purchase_intent", days_ago=14)],
        NOW,
        ScoringPolicy(half_life=timedelta(days=1)),
    )
    assert short.score < old.score


def test_negative_intents_lower_the_score() -> None:
    base = assess([fact(c.SIGNAL_KIND_INTENT, "price_inquiry")], NOW)
    risky = assess(
        [
            fact(c.SIGNAL_KIND_INTENT, "price_inquiry"),
            fact(c.SIGNAL_KIND_INTENT, "cancellation_risk"),
        ],
        NOW,
    )
    assert risky.score < base.score


def test_outcomes_set_won_or_lost() -> None:
    won = assess(
        [
            fact(c.SIGNAL_KIND_INTENT, "purchase_intent"),
            fact(c.SIGNAL_KIND_OUTCOME, value="won", source=c.SOURCE_CRM),
        ],
        NOW,
    )
    assert won.stage == lp.LEAD_STAGE_WON


def test_class_thresholds_are_configurable() -> None:
    signals = [fact(c.SIGNAL_KIND_INTENT, "price_inquiry")]
    default = assess(signals, NOW)
    strict = assess(signals, NOW, ScoringPolicy(warm_threshold=0.99, hot_threshold=0.999))
    lenient = assess(signals, NOW, ScoringPolicy(warm_threshold=0.01, hot_threshold=0.02))
    assert strict.lead_class == lp.LEAD_CLASS_COLD
    assert lenient.lead_class == lp.LEAD_CLASS_HOT
    assert default.score == strict.score


def journey() -> list[SignalFacts]:
    return [
        fact(c.SIGNAL_KIND_INTENT, "purchase_intent", confidence=0.8, days_ago=3),
        fact(c.SIGNAL_KIND_INTENT, "purchase_intent", confidence=0.6, days_ago=0.5),
        fact(
            c.SIGNAL_KIND_QUALIFICATION_SLOT,
            "budget",
            "900 EUR",
            source=c.SOURCE_CHAT,
            days_ago=2,
            keys=("chat_session_id", "email"),
        ),
        fact(
            c.SIGNAL_KIND_QUALIFICATION_SLOT, "budget", "1200 EUR", source=c.SOURCE_CHAT, days_ago=1
        ),
        fact(
            c.SIGNAL_KIND_DWELL,
            "tvs",
            "tv",
            numeric=90,
            source=c.SOURCE_VISION,
            days_ago=7,
            keys=("visitor_id",),
        ),
        fact(c.SIGNAL_KIND_DWELL, "tvs", "tv", numeric=60, source=c.SOURCE_VISION, days_ago=0),
        fact(
            c.SIGNAL_KIND_RETURNING_VISIT, source=c.SOURCE_VISION, days_ago=0, keys=("visitor_id",)
        ),
        fact(c.SIGNAL_KIND_ENTITY, "product", "TV", days_ago=0.2),
    ]


def test_dwell_seconds_decay_as_a_sum() -> None:
    a = assess(journey(), NOW)
    dwell = next(x for x in a.contributions if x.feature == "dwell:tv")
    expected_seconds = 90 * 0.5 ** (7 / 14) + 60
    assert dwell.value == pytest.approx(expected_seconds / 120)
    assert "lingered 150 s at the tv display" in dwell.description
    assert a.qualification == {"budget": "1200 EUR"}  # the latest answer wins
    assert a.product_interest == "tv"


def test_incremental_merged_and_batch_aggregates_agree() -> None:
    signals = journey()
    policy = ScoringPolicy()
    batch = assess_features(Features.of(signals, policy.half_life), NOW, policy)
    one_by_one = Features(policy.half_life.total_seconds())
    for s in reversed(signals):  # order must not matter
        one_by_one.add(s)
    left = Features.of(signals[::2], policy.half_life)
    left.merge(Features.of(signals[1::2], policy.half_life))
    restored = Features.from_json(json.loads(json.dumps(left.to_json())))
    for other in (one_by_one, left, restored):
        again = assess_features(other, NOW, policy)
        assert again.score == pytest.approx(batch.score)
        assert again.qualification == batch.qualification
        assert again.stage == batch.stage
        assert again.product_interest == batch.product_interest
        assert [(x.feature, round(x.contribution, 9)) for x in again.contributions] == [
            (x.feature, round(x.contribution, 9)) for x in batch.contributions
        ]


def test_stored_aggregates_read_back_equal_and_older_ones_take_defaults() -> None:
    policy = ScoringPolicy()
    stored = Features.of(journey(), policy.half_life).to_json()
    assert Features.from_json(json.loads(json.dumps(stored))) == Features.of(
        journey(), policy.half_life
    )
    older = json.loads(json.dumps(stored))
    del older["outcome"], older["dwell_seconds"]  # written before these fields existed
    restored = Features.from_json(older)
    assert restored.outcome is None and restored.dwell_seconds == {}
    assert restored.intents == stored["intents"]
    with pytest.raises(TypeError, match="colour"):
        Features.from_json({**stored, "colour": "blue"})


def test_a_negative_call_about_cancelling_asks_for_a_retention_call_within_hours() -> None:
    """The call's end (sentiment, categories) moves the score and sets the follow-up."""
    base = [fact(c.SIGNAL_KIND_INTENT, "purchase_intent", days_ago=3, confidence=0.9)]
    calm = assess(base, NOW)
    assert calm.follow_up is not None and not calm.follow_up.reason.startswith("retention")
    at_risk = [
        *base,
        fact(c.SIGNAL_KIND_INTENT, "cancellation_risk", confidence=0.9),
        fact(c.SIGNAL_KIND_CALL_SENTIMENT, value="negative", numeric=-0.7),
        fact(c.SIGNAL_KIND_CALL_CATEGORY, "cancellation_after_negative_turn"),
    ]
    risky = assess(at_risk, NOW)
    assert risky.score < calm.score
    assert risky.follow_up is not None and risky.follow_up.due_at == NOW + timedelta(hours=4)
    assert risky.follow_up.reason.startswith("retention call")
    features = {x.feature: x for x in risky.contributions}
    assert features["call_sentiment:negative"].contribution < 0
    assert (
        "sounded negative on the last call (-0.70)"
        in features["call_sentiment:negative"].description
    )
    assert features["category:cancellation_after_negative_turn"].contribution < 0
    # the same words, but the customer sounded fine: no retention call
    fine = [
        *base,
        fact(c.SIGNAL_KIND_INTENT, "cancellation_risk"),
        fact(c.SIGNAL_KIND_CALL_SENTIMENT, value="positive", numeric=0.6),
    ]
    fine_follow_up = assess(fine, NOW).follow_up
    assert fine_follow_up is None or not fine_follow_up.reason.startswith("retention")
    # a later call decides: the latest call's sentiment counts, merged or not
    later = [
        *at_risk,
        fact(c.SIGNAL_KIND_CALL_SENTIMENT, value="positive", numeric=0.8, days_ago=-0.01),
    ]
    left = Features.of(later[::2], ScoringPolicy().half_life)
    left.merge(Features.of(later[1::2], ScoringPolicy().half_life))
    assert left.call_sentiment is not None and left.call_sentiment[2] == 0.8
    # won and lost leads need no follow-up
    assert assess([*at_risk, fact(c.SIGNAL_KIND_OUTCOME, value="lost")], NOW).follow_up is None
