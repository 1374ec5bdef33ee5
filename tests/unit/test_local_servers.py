"""The ports tests hand to servers in subprocesses must not be ones the kernel hands out too."""

from __future__ import annotations

import random
import socket

import pytest
from local_servers import _ephemeral_low, _handed_out, free_port, port_range


def test_free_ports_lie_below_the_kernels_own_and_never_repeat() -> None:
    ports = [free_port() for _ in range(200)]
    assert len(set(ports)) == len(ports)
    assert all(1024 <= port < _ephemeral_low() for port in ports)
    with socket.socket() as sock:  # what the kernel picks for port 0 lies elsewhere
        sock.bind(("127.0.0.1", 0))
        assert sock.getsockname()[1] >= _ephemeral_low()


def test_a_port_in_use_is_passed_over(monkeypatch: pytest.MonkeyPatch) -> None:
    first, span = port_range()
    port = next(p for p in range(first, first + span) if p not in _handed_out)
    monkeypatch.setattr(random, "randrange", lambda span: port - first)
    with socket.create_server(("127.0.0.1", port)):
        assert free_port() != port
    assert free_port() == port  # the same first pick, once the port is free again
