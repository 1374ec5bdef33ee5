"""kill -9 of leads in the middle of delivery: nothing lost, nothing duplicated, no PII in logs."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import shutil
import signal as signals_
import subprocess
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import grpc
import pytest
from prometheus_client import CollectorRegistry

from percept.runtime.outbox import Outbox, leads_sender
from percept.v1 import common_pb2 as c
from percept.v1 import leads_pb2, leads_pb2_grpc

pytestmark = pytest.mark.slow
PERCEPT = shutil.which("percept") or str(Path(__file__).resolve().parents[2] / ".venv/bin/percept")
PEOPLE = 400
SIGNALS = 2000
NAME = "Ana García"


def person_signal(i: int) -> c.Signal:
    p = i % PEOPLE
    message = c.Signal(
        signal_id=uuid.uuid4().hex,
        source=c.SOURCE_CHAT,
        kind=c.SIGNAL_KIND_INTENT,
        name="price_inquiry",
        confidence=0.8,
        identity=c.IdentityKeys(phone=f"+1415555{p:04d}", email=f"buyer{p}@example.com"),
        evidence=f"Hi, I am {NAME}, call me on +1415555{p:04d}",
    )
    message.occurred_at.FromDatetime(datetime.now(UTC))
    return message


class LeadsProcess:
    def __init__(self, port: int, metrics_port: int, data: Path) -> None:
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("PERCEPT_")}
        self.env.update(
            PERCEPT_LEADS_PORT=str(port),
            PERCEPT_LEADS_METRICS_PORT=str(metrics_port),
            PERCEPT_DATA_DIR=str(data),
            PERCEPT_LOG_LEVEL="DEBUG",
        )
        self.address = f"127.0.0.1:{port}"
        self.logs = data / "leads.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.logs.open("ab") as log:
            self.proc = subprocess.Popen(
                [PERCEPT, "serve", "leads"], env=self.env, stdout=log, stderr=log
            )
        subprocess.run(
            [PERCEPT, "health", "--wait", "60", self.address],
            check=True,
            capture_output=True,
            timeout=90,
        )

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signals_.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signals_.SIGTERM)
            self.proc.wait(timeout=30)


async def stored_signals(address: str) -> tuple[int, int]:
    """(signals stored over all leads, number of leads)."""
    async with grpc.aio.insecure_channel(address) as channel:
        stub = leads_pb2_grpc.LeadsStub(channel)
        total = leads = 0
        token = ""
        while True:
            page = await stub.ListLeads(leads_pb2.ListLeadsRequest(page_size=500, page_token=token))
            total += sum(x.signal_count for x in page.leads)
            leads += len(page.leads)
            token = page.next_page_token
            if not token:
                return total, leads


async def test_kill_9_during_delivery_loses_and_duplicates_nothing(
    free_port: Callable[[], int], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    leads = LeadsProcess(free_port(), free_port(), tmp_path)
    leads.start()
    channel = grpc.aio.insecure_channel(leads.address)
    registry = CollectorRegistry()
    outbox = Outbox(
        tmp_path / "outbox.db",
        leads_sender(channel, timeout_s=5),
        batch_size=25,
        min_backoff_s=0.05,
        max_backoff_s=0.5,
        registry=registry,
    )
    outbox.start()
    try:
        for i in range(SIGNALS):
            outbox.publish(person_signal(i))
        bad = person_signal(0)
        bad.identity.phone = "call me maybe"
        outbox.publish(bad)  # refused by leads: its reason quotes the bad value
        async with asyncio.timeout(60):
            while outbox.pending() > SIGNALS * 0.7:  # noqa: ASYNC110 - waits on another process
                await asyncio.sleep(0.005)
        leads.kill()  # mid-delivery, possibly mid-commit
        killed_with = outbox.pending()
        await asyncio.sleep(1.0)  # the outbox keeps failing and backing off
        leads.start()
        async with asyncio.timeout(120):
            while outbox.pending():  # noqa: ASYNC110 - waits on another process
                await asyncio.sleep(0.05)
        total, lead_count = await stored_signals(leads.address)
    finally:
        await outbox.close()
        await channel.close()
        leads.stop()
    assert 0 < killed_with < SIGNALS
    assert total == SIGNALS  # exactly: no loss, no duplicate
    assert lead_count == PEOPLE
    assert registry.get_sample_value("percept_outbox_rejected_total") == 1

    logs = leads.logs.read_text() + "\n".join(
        r.getMessage() + " " + " ".join(map(str, r.__dict__.values())) for r in caplog.records
    )
    assert "delivery to leads failed" in logs  # the outage was seen...
    assert (
        "leads refused a" in logs
    )  # ...and the refusal logged (batch or signal), without its value
    assert "rpc finished" in logs
    for pattern in (r"\+1415555\d{4}", r"buyer\d+@example\.com", re.escape(NAME), "call me maybe"):
        assert not re.search(pattern, logs), pattern
