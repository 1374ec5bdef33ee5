"""Training the score on outcomes: it replaces the prior only when it predicts better."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from leads_harness import business
from leads_signals import NOW
from typer.testing import CliRunner

from percept.cli import app
from percept.leads.store import LeadStore
from percept.leads.training import OutcomesError, read_outcomes, train


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
    # Without a file it trains on the store's own outcomes: none were recorded here.
    result = CliRunner().invoke(app, ["leads", "train"], env={"PERCEPT_DATABASE_URL": url})
    assert result.exit_code == 2
    assert "no outcomes recorded in the store yet" in result.output
