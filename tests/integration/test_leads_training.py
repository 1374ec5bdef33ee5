"""Training the score on outcomes: it replaces the prior only when it predicts better."""

from __future__ import annotations

import csv
import math
import random
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from leads_signals import NOW
from typer.testing import CliRunner

from percept.cli import app
from percept.leads.store import LeadFilter, LeadStore
from percept.leads.training import OutcomesError, read_outcomes, train
from percept.v1 import common_pb2 as c

INTENTS = ("competitor_mention", "price_inquiry", "demo_or_meeting_request", "product_question")


def business(
    store: LeadStore, leads: int, seed: int, *, random_outcomes: bool
) -> list[tuple[str, bool]]:
    """Leads whose wins follow this business's own pattern, unlike the prior's guess:
    mentioning a competitor and asking prices convert; demo requests do not."""
    rng = random.Random(seed)
    outcomes = []
    for person in range(leads):
        shown = {name: rng.random() < 0.45 for name in INTENTS}
        signals = []
        for name, present in shown.items():
            if present:
                stamp = Timestamp()
                stamp.FromDatetime(NOW - timedelta(days=rng.uniform(1, 20)))
                signals.append(
                    c.Signal(
                        signal_id=uuid.uuid4().hex,
                        source=c.SOURCE_CHAT,
                        kind=c.SIGNAL_KIND_INTENT,
                        name=name,
                        confidence=1.0,
                        occurred_at=stamp,
                        identity=c.IdentityKeys(chat_session_id=f"s-{seed}-{person}"),
                    )
                )
        if not signals:
            continue
        store.ingest(signals)
        logit = (
            -1.0
            + 3.0 * shown["competitor_mention"]
            + 1.5 * shown["price_inquiry"]
            - 2.5 * shown["demo_or_meeting_request"]
        )
        won = rng.random() < (0.5 if random_outcomes else 1 / (1 + math.exp(-logit)))
        outcomes.append((f"s-{seed}-{person}", won))
    rows, token = store.page(LeadFilter(), 500, "")
    while token:
        more, token = store.page(LeadFilter(), 500, token)
        rows += more
    lead_of = {r["keys"][0].value: r["lead_id"] for r in rows}
    return [(lead_of[session], won) for session, won in outcomes]


def write_outcomes(path: Path, outcomes: list[tuple[str, bool]]) -> Path:
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["lead_id", "outcome", "recorded_at"])
        for lead, won in outcomes:
            writer.writerow([lead, "won" if won else "lost", NOW.isoformat()])
    return path


@pytest.fixture
def store(database_url: str) -> LeadStore:
    s = LeadStore(database_url, clock=lambda: NOW)
    s.migrate()
    return s


def test_a_model_that_beats_the_prior_is_activated_and_explains_scores(
    store: LeadStore, tmp_path: Path
) -> None:
    outcomes = business(store, 500, seed=5, random_outcomes=False)
    report = train(store, read_outcomes(write_outcomes(tmp_path / "o.csv", outcomes)))
    m = report.metrics
    assert report.activated, report.reason
    assert m["roc_auc"] >= m["prior_roc_auc"] + 0.02
    assert m["roc_auc"] > 0.75
    assert 0 <= m["brier"] < m["prior_brier"]
    assert sum(b["leads"] for b in m["calibration"]) == m["held_out"]
    weights = report.model.weights
    assert weights["intent:competitor_mention"] > 0 > weights["intent:demo_or_meeting_request"]

    lead_id = outcomes[0][0]
    view = store.get(lead_id)
    assert view is not None and view.assessment.model == report.model.version
    store.close()


def test_a_model_that_does_not_beat_the_prior_stays_inactive(
    store: LeadStore, tmp_path: Path
) -> None:
    outcomes = business(store, 300, seed=6, random_outcomes=True)
    report = train(store, read_outcomes(write_outcomes(tmp_path / "o.csv", outcomes)))
    assert not report.activated
    assert "does not beat the prior" in report.reason
    view = store.get(outcomes[0][0])
    assert view is not None and view.assessment.model == "prior"
    store.close()


def test_outcome_files_with_problems_are_named(tmp_path: Path) -> None:
    missing = tmp_path / "missing.csv"
    missing.write_text("lead,result\nx,won\n")
    with pytest.raises(
        OutcomesError, match=r"missing column\(s\) lead_id, outcome; found lead, result"
    ):
        read_outcomes(missing)
    bad = tmp_path / "bad.csv"
    bad.write_text("lead_id,outcome\na,won\nb,maybe\n")
    with pytest.raises(
        OutcomesError, match=r"bad.csv:3: outcome must be 'won' or 'lost', not 'maybe'"
    ):
        read_outcomes(bad)
    when = tmp_path / "when.csv"
    when.write_text("lead_id,outcome,recorded_at\na,won,yesterday\n")
    with pytest.raises(OutcomesError, match=r"when.csv:2: recorded_at"):
        read_outcomes(when)


def test_cli_reports_metrics_and_the_decision(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'leads.db'}"
    store = LeadStore(url)  # real clock: the CLI's store uses it too
    store.migrate()
    outcomes = business(store, 400, seed=7, random_outcomes=False)
    store.close()
    path = write_outcomes(tmp_path / "o.csv", outcomes)
    result = CliRunner().invoke(
        app,
        ["leads", "train", "--outcomes", str(path)],
        env={"PERCEPT_DATABASE_URL": url, "COLUMNS": "200"},
    )
    assert result.exit_code == 0, result.output
    assert "ROC-AUC" in result.output and "calibration" in result.output
    assert "activated: ROC-AUC" in result.output
    assert "beats the prior" in result.output
    bad = tmp_path / "bad.csv"
    bad.write_text("id,won\n1,yes\n")
    result = CliRunner().invoke(
        app, ["leads", "train", "--outcomes", str(bad)], env={"PERCEPT_DATABASE_URL": url}
    )
    assert result.exit_code == 2
    assert "missing column(s) lead_id, outcome" in result.output
