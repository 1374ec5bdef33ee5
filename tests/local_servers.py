"""Settings for the servers tests and benchmarks start on loopback, in or out of process."""

from __future__ import annotations

import os
import random
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from percept.runtime.settings import SERVICE_NAMES, Settings


def _ephemeral_low() -> int:
    """The lowest port the kernel hands out by itself (to `bind(0)` and outgoing connections)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


_FIRST_PORT = 20000
_handed_out: set[int] = set()


def port_range() -> tuple[int, int]:
    """Where free_port draws from (first port, how many): below the kernel's own."""
    first = _FIRST_PORT if _ephemeral_low() >= _FIRST_PORT + 1000 else 1024
    span = _ephemeral_low() - first
    if span < 1000:
        raise RuntimeError(f"the kernel's ephemeral ports start at {_ephemeral_low()}: no room")
    return first, span


def free_port() -> int:
    """A port free on loopback now, for a server in a subprocess, which must be told one.

    It comes from below the kernel's ephemeral range: a port `bind(0)` returns is released
    before the subprocess binds it, and in between the kernel may give it to an outgoing
    connection or to another server's port 0 (a CI run lost a whole session so). Ports below
    that range are only ever taken by name, and this process never names one twice."""
    first, span = port_range()
    start = random.randrange(span)
    for step in range(span):
        port = first + (start + step) % span
        if port in _handed_out:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise RuntimeError(f"no free loopback port in {first}-{first + span - 1}")


def local_settings(data_dir: Path, **overrides: object) -> Settings:
    """In-process servers: every port chosen by the OS, text logs, data under `data_dir`."""
    values: dict[str, object] = {
        f"{name}_{kind}": 0 for name in SERVICE_NAMES for kind in ("port", "metrics_port")
    }
    values.update(speech_gateway_port=0, speech_audiosocket_port=0)
    values.update(data_dir=data_dir, log_format="text")
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


def serve_all_env(
    data_dir: Path | str, model_dir: Path | str, **extra: str
) -> tuple[dict[str, str], dict[str, str]]:
    """The environment of a `percept serve all` (or `demo`) subprocess on free loopback ports,
    without the caller's own PERCEPT_* settings; and each service's address."""
    ports = {name: free_port() for name in SERVICE_NAMES}
    addresses = {name: f"127.0.0.1:{port}" for name, port in ports.items()}
    env: dict[str, str] = {k: v for k, v in os.environ.items() if not k.startswith("PERCEPT_")}
    env |= {f"PERCEPT_{n.upper()}_PORT": str(p) for n, p in ports.items()}
    env |= {f"PERCEPT_{n.upper()}_METRICS_PORT": "0" for n in SERVICE_NAMES}
    env |= {
        "PERCEPT_SPEECH_GATEWAY_PORT": str(free_port()),
        "PERCEPT_SPEECH_AUDIOSOCKET_PORT": str(free_port()),
    }
    env |= {
        "PERCEPT_DATA_DIR": str(data_dir),
        "PERCEPT_MODEL_DIR": str(model_dir),
        "PERCEPT_LEADS_ADDRESS": addresses["leads"],
        "PERCEPT_VISION_ADDRESS": addresses["vision"],
        **extra,
    }
    return env, addresses


PERCEPT = str(Path(sys.executable).parent / "percept")


@contextmanager
def serve_all(
    data_dir: Path, model_dir: Path | str, log: Path, **extra: str
) -> Iterator[tuple[subprocess.Popen[bytes], dict[str, str], dict[str, str]]]:
    """`percept serve all` in a subprocess, SERVING on free loopback ports (its output in
    `log`): the process, its environment and each service's address. Stopped at the end."""
    env, addresses = serve_all_env(data_dir, model_dir, **extra)
    with log.open("wb") as out:
        process = subprocess.Popen([PERCEPT, "serve", "all"], env=env, stdout=out, stderr=out)
    try:
        health = subprocess.run(
            [PERCEPT, "health", "--wait", "240", *addresses.values()],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert health.returncode == 0, health.stdout + log.read_text()[-3000:]
        yield process, env, addresses
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
