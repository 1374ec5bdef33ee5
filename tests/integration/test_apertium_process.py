"""apertium-apy and its pipelines end with the nlp service, even when it is killed."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from percept.nlp.apertium import ApertiumBackend, ApertiumError, ApyClient, ApyProcess

pytestmark = pytest.mark.slow
MODES = Path("/usr/share/apertium/modes")


def group_members(group: int) -> list[int]:
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.getpgid(int(entry.name)) == group:
                    members.append(int(entry.name))
            except ProcessLookupError:
                pass
    return members


def wait_gone(group: int, seconds: float = 15.0) -> list[int]:
    deadline = time.monotonic() + seconds
    while group_members(group) and time.monotonic() < deadline:
        time.sleep(0.2)
    return group_members(group)


def test_close_ends_apy_and_every_pipeline() -> None:
    apy = ApyProcess(MODES)
    group = apy.pid
    assert "teléfono" in ApyClient(apy.url).translate("the phone", "eng|spa").lower()
    assert len(group_members(group)) > 5  # APY and the pipeline it started
    apy.close()
    assert wait_gone(group) == []


def test_a_killed_service_leaves_no_apertium_behind() -> None:
    script = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from percept.nlp.apertium import ApertiumBackend, ApertiumError, ApyClient, ApyProcess\n"
        f"apy = ApyProcess(Path({str(MODES)!r}))\n"
        "ApyClient(apy.url).translate('the phone', 'eng|spa')\n"
        "print(apy.pid, flush=True)\n"
        "time.sleep(600)\n"
    )
    service = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert service.stdout is not None
    group = int(service.stdout.readline())
    assert len(group_members(group)) > 5
    service.send_signal(signal.SIGKILL)  # no close(), no cleanup: as the OOM killer does
    service.wait()
    assert wait_gone(group) == []


def test_apy_keeps_answering_past_a_pipe_full_of_its_request_log() -> None:
    """APY logs each request to stderr (~72 bytes): unread, a 64 KiB pipe fills after some
    900 requests and APY blocks on the write, every later translation with it."""
    apy = ApyProcess(MODES)
    client = ApyClient(apy.url, timeout_s=10)
    try:
        for i in range(1200):
            assert client.translate(f"the phone {i}", "eng|spa")
    finally:
        apy.close()


def test_a_failed_start_says_why(monkeypatch: pytest.MonkeyPatch) -> None:
    from percept.nlp import apertium

    monkeypatch.setattr(apertium, "_APY_OPTIONS", ("--no-such-option",))
    why = r"(?s)exited with 2: .*unrecognized arguments: --no-such-option"
    with pytest.raises(ApertiumError, match=why):
        ApyProcess(MODES, start_timeout_s=30)


def listening_addresses(pids: list[int]) -> set[str]:
    """The `address:port` (hex, as /proc/net/tcp* writes them) the processes listen on."""
    inodes = set()
    for pid in pids:
        with contextlib.suppress(OSError):
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                with contextlib.suppress(OSError):
                    target = str(fd.readlink())
                    if target.startswith("socket:["):
                        inodes.add(target[8:-1])
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                found.add(fields[1])
    return found


def test_apy_listens_on_loopback_only() -> None:
    """Unauthenticated APY must not be reachable past the nlp service's API key: not on
    the port it was given, nor on any other (APY's own default would be 2737 on all)."""
    apy = ApyProcess(MODES)
    try:
        ApyClient(apy.url).translate("the phone", "eng|spa")  # its pipelines started too
        port = int(apy.url.rsplit(":", 1)[1])
        assert listening_addresses(group_members(apy.pid)) == {f"0100007F:{port:04X}"}
    finally:
        apy.close()


def killed(backend: ApertiumBackend) -> ApyProcess:
    """Its APY, killed as the OOM killer would (the whole group) and gone."""
    process = backend._process
    assert process is not None
    os.killpg(process.pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while process.alive and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not process.alive
    return process


def test_an_apy_that_died_is_started_again_on_the_next_translation() -> None:
    """The OOM killer or a crash ends APY: translations must not fail until the pod
    restarts (health would still say SERVING)."""
    backend = ApertiumBackend(modes_dir=MODES)
    try:
        assert "teléfono" in backend.translate(["the phone"], "en", "es")[0].lower()
        first = killed(backend)
        assert "teléfono" in backend.translate(["the phone"], "en", "es")[0].lower()
        assert backend._process is not first and backend._process is not None
        assert backend._process.alive
    finally:
        backend.close()


def test_a_restart_that_fails_is_not_tried_again_by_every_translation(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Were APY's start failing (memory short again), each waiting translation would try
    it in turn, each up to a minute, holding the executor's threads."""
    from percept.nlp import apertium

    backend = ApertiumBackend(modes_dir=MODES)
    starts = []

    def failing_start(modes_dir: Path) -> ApyProcess:
        starts.append(modes_dir)
        raise ApertiumError("apertium-apy exited with -9: ")

    try:
        killed(backend)
        monkeypatch.setattr(apertium, "ApyProcess", failing_start)
        with pytest.raises(ApertiumError, match="exited with -9"):
            backend.translate(["the phone"], "en", "es")
        with pytest.raises(ApertiumError, match="could not be started again yet"):
            backend.translate(["the phone"], "en", "es")
        assert len(starts) == 1
    finally:
        backend.close()
