"""Fits the lead score on recorded won/lost outcomes, and activates it only if it beats the prior.

Each lead's features are taken as they were when its outcome was recorded
(signals after that moment are left out), so the model learns what predicted
the outcome, not what followed it. Logistic regression keeps the score
explainable (weight x value per feature) and is calibrated by its log-loss
fit; calibration is reported on the held-out split.
"""

from __future__ import annotations

import csv
import math
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from percept.leads.scoring import (
    CONTACT,
    INTENTS,
    SLOTS,
    Features,
    LinearModel,
    assess_features,
    feature_values,
)
from percept.leads.store import LeadStore

MODEL_FEATURES: tuple[str, ...] = (
    *(f"intent:{name}" for name in INTENTS),
    *(f"slot:{name}" for name in SLOTS),
    *(f"contact:{key}" for key in CONTACT),
    "dwell",
    "returning_visits",
    "channels",
)
REQUIRED_COLUMNS = ("lead_id", "outcome")
MIN_HELD_OUT = 20
MIN_AUC_GAIN = 0.02  # the model must beat the prior by this much to replace it...
MIN_CONFIDENCE = 0.95  # ...in this share of bootstrap resamples of the held-out leads
BOOTSTRAP_ROUNDS = 500


class OutcomesError(ValueError):
    """The outcomes file cannot be used; the message says where and why."""


@dataclass(frozen=True)
class Outcome:
    lead_id: str
    won: bool
    recorded_at: datetime | None


@dataclass
class TrainingReport:
    model: LinearModel
    activated: bool
    reason: str
    metrics: dict[str, Any] = field(default_factory=dict)


def read_outcomes(path: Path) -> list[Outcome]:
    """Parses `lead_id,outcome[,recorded_at]` (outcome: won or lost; time ISO 8601)."""
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        columns = [c.strip() for c in reader.fieldnames or []]
        missing = [c for c in REQUIRED_COLUMNS if c not in columns]
        if missing:
            found = ", ".join(columns) or "none"
            raise OutcomesError(f"{path}: missing column(s) {', '.join(missing)}; found {found}")
        outcomes = []
        for line, row in enumerate(reader, start=2):
            row = {k.strip(): (v or "").strip() for k, v in row.items() if k}
            outcome = row["outcome"].lower()
            if outcome not in ("won", "lost"):
                raise OutcomesError(
                    f"{path}:{line}: outcome must be 'won' or 'lost', not {outcome!r}"
                )
            if not row["lead_id"]:
                raise OutcomesError(f"{path}:{line}: lead_id is empty")
            when = None
            if row.get("recorded_at"):
                try:
                    when = datetime.fromisoformat(row["recorded_at"])
                except ValueError as exc:
                    raise OutcomesError(f"{path}:{line}: recorded_at: {exc}") from exc
                when = when if when.tzinfo else when.replace(tzinfo=UTC)
            outcomes.append(Outcome(row["lead_id"], outcome == "won", when))
    if not outcomes:
        raise OutcomesError(f"{path}: no outcomes")
    return outcomes


def model_vector(f: Features, at: datetime) -> list[float]:
    values = feature_values(f, at)
    values["dwell"] = sum(v for k, v in values.items() if k.startswith("dwell:"))
    return [values.get(name, 0.0) for name in MODEL_FEATURES]


def _features_at(
    store: LeadStore, outcomes: Sequence[Outcome]
) -> tuple[list[Features], list[datetime], list[bool], list[str]]:
    features, times, labels, unknown = [], [], [], []
    for outcome in outcomes:
        view = store.get(outcome.lead_id)
        if view is None:
            unknown.append(outcome.lead_id)
            continue
        facts = store.facts_of(view.row["lead_id"])
        at = outcome.recorded_at or max(s.occurred_at for s in facts)
        before = [s for s in facts if s.occurred_at <= at]
        features.append(Features.of(before, store.policy.half_life))
        times.append(at)
        labels.append(outcome.won)
    return features, times, labels, unknown


def precision_at_k(scores: Sequence[float], labels: Sequence[bool], k: int) -> float:
    top = np.argsort(-np.asarray(scores), kind="stable")[:k]
    return float(np.mean(np.asarray(labels)[top]))


def calibration_bins(
    scores: Sequence[float], labels: Sequence[bool], bins: int = 5
) -> list[dict[str, float]]:
    """Mean predicted vs observed win rate per score quantile."""
    order = np.argsort(np.asarray(scores))
    table = []
    for part in np.array_split(order, bins):
        if len(part):
            table.append(
                {
                    "predicted": float(np.mean(np.asarray(scores)[part])),
                    "observed": float(np.mean(np.asarray(labels)[part])),
                    "leads": len(part),
                }
            )
    return table


def bootstrap_better(
    labels: Sequence[bool], model: Sequence[float], prior: Sequence[float], seed: int
) -> float:
    """Share of paired bootstrap resamples in which the model's ROC-AUC beats the prior's."""
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(seed)
    y, a, b = np.asarray(labels), np.asarray(model), np.asarray(prior)
    wins = rounds = 0
    for _ in range(BOOTSTRAP_ROUNDS):
        pick = rng.integers(0, len(y), len(y))
        if y[pick].all() or not y[pick].any():
            continue
        rounds += 1
        wins += roc_auc_score(y[pick], a[pick]) > roc_auc_score(y[pick], b[pick])
    return wins / rounds if rounds else 0.0


def train(store: LeadStore, outcomes: Sequence[Outcome], *, seed: int = 0) -> TrainingReport:
    # scikit-learn takes a second to import: only training pays for it.
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import brier_score_loss, roc_auc_score
    from sklearn.model_selection import train_test_split

    features, times, labels, unknown = _features_at(store, outcomes)
    if len(set(labels)) < 2:
        raise OutcomesError("outcomes need both won and lost leads")
    x = np.asarray([model_vector(f, t) for f, t in zip(features, times, strict=True)])
    y = np.asarray(labels)
    idx = np.arange(len(y))
    train_idx, test_idx = train_test_split(idx, test_size=0.3, random_state=seed, stratify=y)
    fitted = LogisticRegression(C=1.0, max_iter=2000).fit(x[train_idx], y[train_idx])
    model = LinearModel(
        version=f"lr-{datetime.now(UTC):%Y%m%d%H%M%S}-{uuid.uuid4().hex[:6]}",
        intercept=float(fitted.intercept_[0]),
        weights={n: float(w) for n, w in zip(MODEL_FEATURES, fitted.coef_[0], strict=True) if w},
    )
    y_test = y[test_idx]
    model_scores = [
        assess_features(features[i], times[i], store.policy, explain=False, model=model).score
        for i in test_idx
    ]
    prior_scores = [
        assess_features(features[i], times[i], store.policy, explain=False).score for i in test_idx
    ]
    k = max(1, math.ceil(0.1 * len(test_idx)))
    metrics: dict[str, Any] = {
        "leads": len(y),
        "unknown_leads": len(unknown),
        "train": len(train_idx),
        "held_out": len(test_idx),
        "won_rate": float(np.mean(y)),
        "roc_auc": float(roc_auc_score(y_test, model_scores)),
        "prior_roc_auc": float(roc_auc_score(y_test, prior_scores)),
        "precision_at_k": precision_at_k(model_scores, list(y_test), k),
        "prior_precision_at_k": precision_at_k(prior_scores, list(y_test), k),
        "k": k,
        "brier": float(brier_score_loss(y_test, model_scores)),
        "prior_brier": float(brier_score_loss(y_test, prior_scores)),
        "calibration": calibration_bins(model_scores, list(y_test)),
        "p_better": bootstrap_better(list(y_test), model_scores, prior_scores, seed),
    }
    if len(test_idx) < MIN_HELD_OUT:
        activated, reason = False, f"only {len(test_idx)} held-out leads; need {MIN_HELD_OUT}"
    elif (
        metrics["roc_auc"] < metrics["prior_roc_auc"] + MIN_AUC_GAIN
        or metrics["p_better"] < MIN_CONFIDENCE
    ):
        activated = False
        reason = (
            f"ROC-AUC {metrics['roc_auc']:.3f} does not beat the prior's "
            f"{metrics['prior_roc_auc']:.3f} by {MIN_AUC_GAIN} in {MIN_CONFIDENCE:.0%} of "
            f"bootstrap resamples (only {metrics['p_better']:.0%})"
        )
    else:
        activated = True
        reason = (
            f"ROC-AUC {metrics['roc_auc']:.3f} beats the prior's {metrics['prior_roc_auc']:.3f} "
            f"(in {metrics['p_better']:.0%} of bootstrap resamples)"
        )
    store.save_model(model, metrics, activate=activated)
    return TrainingReport(model, activated, reason, metrics)
