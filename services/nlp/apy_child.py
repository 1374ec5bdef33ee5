"""apertium-apy as a child that dies with the nlp service, its pipelines with it.

APY runs a dozen Apertium processes per pair; if the service is killed (SIGKILL,
the OOM killer), a plain child APY lives on, pipelines and all. Here Linux is
asked to send APY SIGTERM when its parent dies (PR_SET_PDEATHSIG); APY's own
handler then exits, and its pipelines end when their input pipes close.

APY itself listens on every interface; unauthenticated, it would let anyone on the pod
network translate past the nlp service's API key. Here it listens on loopback only.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from typing import Any

PR_SET_PDEATHSIG = 1
PARENT = "PERCEPT_APY_PARENT"  # the pid that started us: gone already means exit
LOOPBACK = "127.0.0.1"


def _listen_on_loopback_only() -> None:
    from tornado.httpserver import HTTPServer

    bind = HTTPServer.bind

    def bind_loopback(self: HTTPServer, port: int, address: str | None = None, **kw: Any) -> None:
        bind(self, port, LOOPBACK, **kw)

    setattr(HTTPServer, "bind", bind_loopback)  # noqa: B010 (a method, replaced on purpose)


def main() -> None:
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    expected = os.environ.get(PARENT)
    if expected and os.getppid() != int(expected):  # died before prctl took effect
        sys.exit(1)
    from apertium_apy import apy

    _listen_on_loopback_only()
    apy.main()


if __name__ == "__main__":
    main()
