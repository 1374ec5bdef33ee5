"""`percept leads ...` against a real `percept serve leads` process."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest
from leads_harness import PHONE, customer_journey
from typer.testing import CliRunner

from percept.cli import app
from percept.v1 import leads_pb2, leads_pb2_grpc

pytestmark = pytest.mark.slow
runner = CliRunner()
PERCEPT = shutil.which("percept") or str(Path(__file__).resolve().parents[2] / ".venv/bin/percept")
WIDE = {"COLUMNS": "250"}


@pytest.fixture
def server(free_port: Callable[[], int], tmp_path: Path) -> Iterator[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PERCEPT_")}
    port = free_port()
    env.update(
        PERCEPT_LEADS_PORT=str(port),
        PERCEPT_LEADS_METRICS_PORT=str(free_port()),
        PERCEPT_DATA_DIR=str(tmp_path),
    )
    proc = subprocess.Popen(
        [PERCEPT, "serve", "leads"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    address = f"127.0.0.1:{port}"
    try:
        subprocess.run(
            [PERCEPT, "health", "--wait", "60", address],
            check=True,
            capture_output=True,
            timeout=90,
        )
        # The journey happened yesterday (the server's clock is real).
        journey = customer_journey()
        shift = datetime.now(UTC) - timedelta(days=1) - journey[0].occurred_at.ToDatetime(UTC)
        for s in journey:
            s.occurred_at.FromDatetime(s.occurred_at.ToDatetime(UTC) + shift)
        with grpc.insecure_channel(address) as channel:
            leads_pb2_grpc.LeadsStub(channel).IngestBatch(
                leads_pb2.IngestBatchRequest(signals=journey), timeout=10
            )
        yield address
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)


def lead_id_of(address: str) -> str:
    with grpc.insecure_channel(address) as channel:
        page = leads_pb2_grpc.LeadsStub(channel).ListLeads(leads_pb2.ListLeadsRequest(), timeout=10)
    return str(page.leads[0].lead_id)


def test_list_show_explain_export_and_forget(server: str, tmp_path: Path) -> None:
    listed = runner.invoke(app, ["leads", "list", "--server", server], env=WIDE)
    assert listed.exit_code == 0, listed.output
    lead_id = lead_id_of(server)
    row = next(line for line in listed.output.splitlines() if lead_id in line)
    for words in ("hot", "opportunity", "phone call, store visit, website chat", PHONE):
        assert words in row

    cold_only = runner.invoke(
        app, ["leads", "list", "--server", server, "--class", "cold"], env=WIDE
    )
    assert "0 leads" in cold_only.output

    shown = runner.invoke(app, ["leads", "show", lead_id, "--server", server], env=WIDE)
    assert shown.exit_code == 0, shown.output
    assert "budget: 1500 USD" in shown.output
    assert "phone call: intent purchase_intent" in shown.output

    why = runner.invoke(app, ["leads", "explain", lead_id, "--server", server], env=WIDE)
    assert why.exit_code == 0, why.output
    assert "wants to buy" in why.output
    assert "lingered 240 s at the phone display" in why.output

    exported = runner.invoke(
        app, ["leads", "export", "--out", str(tmp_path / "leads.csv"), "--server", server], env=WIDE
    )
    assert exported.exit_code == 0, exported.output
    with (tmp_path / "leads.csv").open(newline="") as fh:
        (exported_row,) = list(csv.DictReader(fh))
    assert (
        exported_row["lead_id"],
        exported_row["class"],
        exported_row["stage"],
        exported_row["phone"],
    ) == (
        lead_id,
        "hot",
        "opportunity",
        PHONE,
    )
    assert json.loads(exported_row["qualification"])["budget"] == "1500 USD"

    gone = runner.invoke(
        app,
        ["leads", "forget", lead_id, "--reason", "asked by customer", "--yes", "--server", server],
        env=WIDE,
    )
    assert gone.exit_code == 0, gone.output
    assert "erased: 6 signals" in gone.output

    missing = runner.invoke(app, ["leads", "show", lead_id, "--server", server], env=WIDE)
    assert missing.exit_code == 1
    assert "NOT_FOUND" in missing.output
