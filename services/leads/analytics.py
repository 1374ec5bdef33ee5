"""Segments of leads and campaign reports.

Segments: k-means over the leads' feature vectors (standardised), k chosen by
silhouette, each cluster named after the features that set it apart from
everyone else. Campaigns: conversion per campaign (and segment) with Wilson
95 % intervals, and uplift against the campaign's control group when one was
recorded (signals with attribute `campaign_group=control`).
"""

from __future__ import annotations

import math
import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np

from percept.leads.scoring import Features
from percept.leads.training import MODEL_FEATURES, model_vector

LABELS = {
    "intent:purchase_intent": "ready to buy",
    "intent:demo_or_meeting_request": "want a demo",
    "intent:price_inquiry": "price-conscious",
    "intent:product_question": "researching",
    "intent:competitor_mention": "comparing competitors",
    "intent:support_request": "need support",
    "intent:objection_timing": "not now",
    "intent:objection_budget": "budget-limited",
    "intent:complaint": "unhappy",
    "intent:cancellation_risk": "about to leave",
    "slot:budget": "budget known",
    "slot:timeline": "timeline known",
    "slot:decision_role": "decision maker known",
    "slot:need": "need known",
    "slot:product": "product chosen",
    "slot:quantity": "quantity known",
    "contact:phone": "phone known",
    "contact:email": "e-mail known",
    "dwell": "store browsers",
    "returning_visits": "returning visitors",
    "channels": "multi-channel",
}
MAX_K, MIN_LEADS = 6, 10
Z_NOTABLE = 0.5  # how far above the average a feature must stand to name a segment


@dataclass(frozen=True)
class SegmentResult:
    segment_id: str
    name: str
    dominant_features: list[str]
    lead_ids: list[str]


def segment(
    lead_ids: Sequence[str], features: Sequence[Features], now: datetime, *, seed: int = 0
) -> list[SegmentResult]:
    # scikit-learn takes a second to import: only the commands that cluster pay for it.
    from sklearn.cluster import KMeans
    from sklearn.metrics import silhouette_score
    from sklearn.preprocessing import StandardScaler

    if len(lead_ids) < MIN_LEADS:
        raise ValueError(
            f"segmenting needs at least {MIN_LEADS} leads; the store has {len(lead_ids)}"
        )
    x = np.asarray([model_vector(f, now) for f in features])
    scaled = StandardScaler().fit_transform(x)
    best: tuple[float, np.ndarray] | None = None
    sample = min(len(x), 5000)
    distinct = len(np.unique(scaled, axis=0))  # k-means cannot find more clusters than this
    for k in range(2, min(MAX_K, distinct, len(x) - 1) + 1):
        labels = KMeans(n_clusters=k, n_init=5, random_state=seed).fit_predict(scaled)
        if len(set(labels)) < 2:
            continue
        quality = silhouette_score(scaled, labels, sample_size=sample, random_state=seed)
        if best is None or quality > best[0]:
            best = (float(quality), labels)
    labels = np.zeros(len(x), dtype=int) if best is None else best[1]
    results = []
    for cluster in sorted(set(labels.tolist())):
        members = labels == cluster
        z = scaled[members].mean(axis=0)
        order = np.argsort(-z)
        dominant = [MODEL_FEATURES[i] for i in order[:3] if z[i] >= Z_NOTABLE]
        name = " & ".join(LABELS.get(f, f) for f in dominant[:2]) or "low engagement"
        results.append(
            SegmentResult(
                uuid.uuid4().hex,
                name,
                dominant,
                [lead for lead, m in zip(lead_ids, members, strict=True) if m],
            )
        )
    return results


def wilson(won: int, total: int, z: float = 1.96) -> tuple[float, float]:
    """95 % Wilson score interval of a conversion rate (sound for small counts)."""
    if total == 0:
        return 0.0, 0.0
    p = won / total
    centre = p + z * z / (2 * total)
    margin = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total))
    denominator = 1 + z * z / total
    return max(0.0, (centre - margin) / denominator), min(1.0, (centre + margin) / denominator)


@dataclass(frozen=True)
class Membership:
    lead_id: str
    campaign_id: str
    control: bool
    won: bool
    segment: str  # segment name, "" when not segmented


@dataclass(frozen=True)
class CampaignStats:
    campaign_id: str
    segment: str
    leads: int
    won: int
    rate: float
    ci_low: float
    ci_high: float
    uplift: float
    has_control: bool


def campaign_report(members: Sequence[Membership]) -> list[CampaignStats]:
    """Per campaign, then per campaign and segment: treated leads' conversion and uplift."""
    groups: dict[tuple[str, str], dict[bool, set[str]]] = defaultdict(
        lambda: {True: set(), False: set()}
    )
    won: set[str] = {m.lead_id for m in members if m.won}
    for m in members:
        # A lead seen in a campaign's control group counts as control.
        for key in (
            ((m.campaign_id, ""), (m.campaign_id, m.segment))
            if m.segment
            else ((m.campaign_id, ""),)
        ):
            groups[key][m.control].add(m.lead_id)
    stats = []
    for (campaign, seg), sides in sorted(groups.items()):
        control = sides[True]
        treated = sides[False] - control
        n, w = len(treated), len(treated & won)
        rate = w / n if n else 0.0
        low, high = wilson(w, n)
        control_rate = len(control & won) / len(control) if control else 0.0
        stats.append(
            CampaignStats(
                campaign,
                seg,
                n,
                w,
                rate,
                low,
                high,
                rate - control_rate if control else 0.0,
                bool(control),
            )
        )
    return stats
