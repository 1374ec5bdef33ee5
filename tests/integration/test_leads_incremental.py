"""Incremental score updates agree with a full recompute from the signals."""

from __future__ import annotations

import random
import uuid
from datetime import timedelta

import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from leads_signals import NOW

from percept.leads import schema
from percept.leads.scoring import Features, assess_features
from percept.leads.store import LeadFilter, LeadStore
from percept.v1 import common_pb2 as c

KINDS = [
    (c.SIGNAL_KIND_INTENT, "purchase_intent", ""),
    (c.SIGNAL_KIND_INTENT, "price_inquiry", ""),
    (c.SIGNAL_KIND_INTENT, "complaint", ""),
    (c.SIGNAL_KIND_QUALIFICATION_SLOT, "budget", "1000 USD"),
    (c.SIGNAL_KIND_QUALIFICATION_SLOT, "product", "laptop"),
    (c.SIGNAL_KIND_ENTITY, "product", "phone"),
    (c.SIGNAL_KIND_DWELL, "tvs", "tv"),
    (c.SIGNAL_KIND_RETURNING_VISIT, "", ""),
]


def random_signals(count: int, people: int, seed: int) -> list[c.Signal]:
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        person = rng.randrange(people)
        identity = c.IdentityKeys()
        channel = rng.choice(["chat", "visit", "call"])
        if channel == "chat":
            identity.chat_session_id = f"chat-{person}"
        elif channel == "visit":
            identity.visitor_id = f"visitor-{person}"
        else:
            identity.phone = f"+1415555{person:04d}"
        if rng.random() < 0.15:  # a second key links channels: merges
            identity.email = f"p{person}@example.com"
        kind, name, value = rng.choice(KINDS)
        stamp = Timestamp()
        stamp.FromDatetime(NOW - timedelta(hours=rng.uniform(0, 24 * 30)))
        out.append(
            c.Signal(
                signal_id=uuid.uuid4().hex,
                source={"chat": c.SOURCE_CHAT, "visit": c.SOURCE_VISION, "call": c.SOURCE_SPEECH}[
                    channel
                ],
                kind=kind,
                name=name,
                value=value,
                confidence=rng.uniform(0.3, 1.0),
                numeric_value=rng.uniform(5, 200),
                occurred_at=stamp,
                identity=identity,
            )
        )
    return out


@pytest.mark.parametrize("seed", [1, 2])
def test_incremental_state_equals_full_recompute(database_url: str, seed: int) -> None:
    store = LeadStore(database_url, clock=lambda: NOW)
    store.migrate()
    signals = random_signals(600, 60, seed)
    for start in range(0, len(signals), 37):  # batches that cut through people's histories
        assert store.ingest(signals[start : start + 37]).rejected == 0
    rows, _ = store.page(LeadFilter(), 500, "")
    assert 0 < len(rows) < 60 * 3  # merges happened
    assert sum(r["signal_count"] for r in rows) == 600
    with store.engine.connect() as conn:
        facts = store._facts(conn, [r["lead_id"] for r in rows])
        merges = conn.execute(schema.merges.select()).all()
    assert merges, "the scenario must exercise merges"
    for row in rows:
        full = assess_features(
            Features.of(facts[row["lead_id"]], store.policy.half_life), NOW, store.policy
        )
        assert row["score"] == pytest.approx(full.score, rel=1e-9)
        assert (row["lead_class"], row["stage"], row["product_interest"]) == (
            full.lead_class,
            full.stage,
            full.product_interest,
        )
        assert row["qualification"] == full.qualification
        assert row["signal_count"] == len(facts[row["lead_id"]])
        view = store.get(row["lead_id"])
        assert view is not None and view.assessment.score == pytest.approx(full.score, rel=1e-9)
    store.close()


def test_rows_without_aggregates_are_recomputed(database_url: str) -> None:
    """Rows written before migration 0003 (features NULL) heal on their next signal."""
    store = LeadStore(database_url, clock=lambda: NOW)
    store.migrate()
    signals = random_signals(50, 1, seed=3)
    store.ingest(signals[:40])
    with store.engine.begin() as conn:
        conn.execute(schema.leads.update().values(features=None))
    store.ingest(signals[40:])
    (row,), _ = store.page(LeadFilter(), 10, "")
    assert row["signal_count"] == 50
    assert row["features"]["signal_count"] == 50
    store.close()
