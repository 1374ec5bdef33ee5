"""apertium-apy as a child that dies with the nlp service, its pipelines with it.

APY runs a dozen Apertium processes per pair; if the service is killed (SIGKILL,
the OOM killer), a plain child APY lives on, pipelines and all. Here Linux is
asked to send APY SIGTERM when its parent dies (PR_SET_PDEATHSIG); APY's own
handler then exits, and its pipelines end when their input pipes close.

APY itself would bind a port on every interface; unauthenticated, it would let anyone on
the pod network translate past the nlp service's API key. Here it serves the loopback
socket its parent bound and passed down (SOCKET names the descriptor), so no other process
can take the port in between either.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from typing import Any

PR_SET_PDEATHSIG = 1
PARENT = "PERCEPT_APY_PARENT"  # the pid that started us: gone already means exit
SOCKET = "PERCEPT_APY_SOCKET"  # the listening socket's descriptor, inherited


def _serve_the_inherited_socket(fd: int) -> None:
    import socket

    from tornado.httpserver import HTTPServer

    def bind_inherited(self: HTTPServer, port: int, *args: Any, **kwargs: Any) -> None:
        listener = socket.socket(fileno=fd)
        listener.setblocking(False)
        self.add_sockets([listener])  # what start() does with bound sockets (one process)

    setattr(HTTPServer, "bind", bind_inherited)  # noqa: B010 (a method, replaced on purpose)


def main() -> None:
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    expected = os.environ.get(PARENT)
    if expected and os.getppid() != int(expected):  # died before prctl took effect
        sys.exit(1)
    from apertium_apy import apy

    if SOCKET in os.environ:
        _serve_the_inherited_socket(int(os.environ[SOCKET]))
    apy.main()


if __name__ == "__main__":
    main()
