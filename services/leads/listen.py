"""Every replica's lead changes, heard by every replica (PostgreSQL LISTEN/NOTIFY).

A write transaction that changes leads sends `pg_notify('percept_leads', ...)` with
the changed lead ids; PostgreSQL delivers notifications when the transaction commits,
in commit order, to every listening session. One thread per replica listens and hands
each notification's changes on (the servicer re-reads those leads and tells its
watchers). If the listening connection is lost, notifications sent meanwhile are
lost with it: the watchers are told to reload (`on_gap`), then listening resumes.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import psycopg

from percept.leads.changes import Change, decode

log = logging.getLogger("percept.leads.listen")
CHANNEL = "percept_leads"
KEEPALIVE_IDLE_S = 10


class ChangeListener:
    def __init__(
        self,
        dsn: str,
        on_changes: Callable[[list[Change]], None],
        on_gap: Callable[[], None],
        retry_s: float = 1.0,
    ) -> None:
        self.dsn, self.on_changes, self.on_gap, self.retry_s = dsn, on_changes, on_gap, retry_s
        self.listening = threading.Event()  # set while LISTEN is in force
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="leads-listen", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def connect(self) -> psycopg.Connection[tuple[object, ...]]:
        """The listening session. It only ever reads, so a peer gone without a reset (a
        failover, a NAT entry dropped) would look like a quiet channel for the kernel's
        default two hours of keepalive: probes find it within about 25 s instead."""
        return psycopg.connect(
            self.dsn,
            autocommit=True,
            connect_timeout=10,
            keepalives=1,
            keepalives_idle=KEEPALIVE_IDLE_S,
            keepalives_interval=5,
            keepalives_count=3,
        )

    def _run(self) -> None:
        lost = False
        while not self._stop.is_set():
            try:
                with self.connect() as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    self.listening.set()
                    if lost:  # what was sent while nobody listened is gone: reload
                        self.on_gap()
                    while not self._stop.is_set():
                        for notify in conn.notifies(timeout=0.5):
                            self._hand_on(notify.payload)
            except psycopg.Error as exc:
                self.listening.clear()
                lost = True
                log.warning("listening for lead changes lost", extra={"error": type(exc).__name__})
                self.on_gap()
                self._stop.wait(self.retry_s)
        self.listening.clear()

    def _hand_on(self, payload: str) -> None:
        try:
            changes = decode(payload)
        except (ValueError, TypeError, IndexError):
            log.warning("a lead-change notification could not be read; watchers reload")
            self.on_gap()
            return
        try:
            self.on_changes(changes)
        except Exception:
            log.exception("lead changes not announced; watchers reload")
            self.on_gap()
