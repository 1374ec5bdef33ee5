"""The demo story end to end: the four real services, a call, a chat and a store visit
become one hot lead whose explanation names the three channels."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import HostFactory
from local_servers import serve_all_env
from rich.console import Console
from vision_harness import MODEL_DIR

from percept.demo.story import EMAIL, PHONE, Addresses, Story
from percept.runtime.settings import SERVICE_NAMES, Settings
from percept.suite import build_service
from percept.v1 import common_pb2, leads_pb2

pytestmark = pytest.mark.slow
K = common_pb2


# What the story tells the services about Ana, in the forms it appears in.
PERSONAL = (PHONE, PHONE[1:], "612 34 56 78", EMAIL, "empresa.example", "García", "Garcia")
STANDARD_RECORD = set(vars(logging.makeLogRecord({})))


def _logged(record: logging.LogRecord) -> str:
    """A record as the JSON formatter writes it: the message and every extra field."""
    extras = {k: v for k, v in vars(record).items() if k not in STANDARD_RECORD}
    return f"{record.getMessage()} {extras} {record.exc_text or ''}"


async def test_the_story_fuses_three_channels_into_one_hot_lead(
    make_settings: Callable[..., Settings],
    start_host: HostFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)  # every record any service writes, DEBUG included
    settings = make_settings(model_dir=MODEL_DIR)
    addresses: dict[str, str] = {}
    hosts = []
    for name in ("leads", "speech", "vision", "nlp"):  # leads first: the others call it
        if name != "leads":
            settings = settings.model_copy(update={"leads_address": addresses["leads"]})
        host = await start_host(build_service(name, settings), settings)
        await asyncio.wait_for(host.ready.wait(), 240)
        addresses[name] = host.address
        hosts.append(host)
    assert set(addresses) == set(SERVICE_NAMES)
    printed = Console(record=True, width=200)
    outcome = await Story(Addresses(**addresses), printed, fast=True).play()

    lead = outcome.lead
    assert [x.identity.phone for x in outcome.leads] == [PHONE]  # one lead, nobody else
    assert lead.lead_class == leads_pb2.LEAD_CLASS_HOT
    assert lead.product_interest == "laptop"
    assert set(lead.channels) == {K.SOURCE_SPEECH, K.SOURCE_CHAT, K.SOURCE_VISION}
    identity = lead.identity
    assert (identity.phone, identity.email) == (PHONE, EMAIL)
    assert identity.call_id == "demo-call-1"
    assert identity.chat_session_id and identity.face_identity_id.startswith("face-")
    assert identity.visitor_id.startswith("visit-")
    said = {c.description for c in outcome.explanation.contributions}
    assert "reached us through 3 channels: phone call, store visit, website chat" in said
    text = printed.export_text()
    assert "laptops for our new office." in text  # Whisper writes "ten" or "10"
    assert "camera: a consenting visitor recognised" in text
    assert "visitor left laptops after" in text

    # Privacy: what she said and gave reached leads, and no log line or metric label.
    assert len(caplog.records) > 50  # the calls were logged: the scan had something to scan
    for record in caplog.records:
        line = _logged(record)
        assert not [p for p in PERSONAL if p in line], (record.name, line[:300])
    for host in hosts:
        for metric in host.metrics.registry.collect():
            for sample in metric.samples:
                labels = " ".join(sample.labels.values())
                assert not [p for p in PERSONAL if p in labels], (sample.name, labels)


def test_percept_demo_plays_the_story_and_exits(tmp_path: Path) -> None:
    env, _ = serve_all_env(tmp_path, MODEL_DIR, COLUMNS="200")
    percept = str(Path(sys.executable).parent / "percept")
    done = subprocess.run(
        [percept, "demo", "--fast", "--no-console"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "4. One lead, from three channels" in done.stdout
    assert "reached us through 3 channels: phone call, store visit, website chat" in done.stdout
    assert " hot " in done.stdout
