"""Durable local outbox of lead signals: publishing never blocks or fails the caller.

Perception services `publish()` signals into a small SQLite file (WAL; a row
survives a process crash once `publish` returns). A background task delivers
them to leads in batches, retrying transient failures with capped exponential
back-off. `signal_id` makes delivery idempotent, so redelivery after a crash
or a leads restart duplicates nothing. The queue is bounded: past `max_items`
the oldest signals are dropped, counted and logged, never unbounded memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import sqlite3
import threading
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

import grpc
from prometheus_client import CollectorRegistry, Counter, Gauge

from percept.runtime.logs import redact_quoted
from percept.v1 import common_pb2, leads_pb2

log = logging.getLogger("percept.outbox")

Send = Callable[[Sequence[common_pb2.Signal]], Awaitable[leads_pb2.IngestAck]]
# The only answer that means the signals themselves are bad. Every other failure
# (network, overload, a wrong API key...) is retried: dropping would lose data.
BAD_BATCH = grpc.StatusCode.INVALID_ARGUMENT


class OutboxMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.pending = Gauge(
            "percept_outbox_pending", "Signals waiting for delivery.", registry=registry
        )
        self.delivered = Counter(
            "percept_outbox_delivered_total", "Signals acknowledged by leads.", registry=registry
        )
        self.dropped = Counter(
            "percept_outbox_dropped_total",
            "Oldest signals dropped because the outbox was full.",
            registry=registry,
        )
        self.rejected = Counter(
            "percept_outbox_rejected_total",
            "Signals leads refused as invalid (not retried).",
            registry=registry,
        )
        self.failures = Counter(
            "percept_outbox_send_failures_total",
            "Delivery attempts that failed and will be retried.",
            registry=registry,
        )
        self.lost = Counter(
            "percept_outbox_lost_total",
            "Signals that could not be stored (the outbox's disk is full or failing).",
            registry=registry,
        )


class Outbox:
    def __init__(
        self,
        path: Path,
        send: Send,
        *,
        max_items: int = 100_000,
        batch_size: int = 500,
        min_backoff_s: float = 0.5,
        max_backoff_s: float = 30.0,
        registry: CollectorRegistry | None = None,
    ) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, "
            "signal_id TEXT NOT NULL, body BLOB NOT NULL)"
        )
        self._lock = threading.Lock()
        self._send = send
        self.max_items = max_items
        self.batch_size = batch_size
        self.min_backoff_s, self.max_backoff_s = min_backoff_s, max_backoff_s
        self.metrics = OutboxMetrics(registry or CollectorRegistry())
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()  # set while the queue is empty
        self._task: asyncio.Task[None] | None = None
        # Counted once; then kept in step with every insert and delete (publish is a hot path).
        self._count = int(self._db.execute("SELECT count(*) FROM outbox").fetchone()[0])
        self.metrics.pending.set(self._count)

    def pending(self) -> int:
        with self._lock:
            return self._count

    def publish(self, signal: common_pb2.Signal) -> None:
        """Queues a signal durably; returns at once, never raises for delivery problems.

        Call it from the event loop's thread (it wakes the delivery task).
        """
        body = signal.SerializeToString()
        with self._lock:
            try:
                self._db.execute(
                    "INSERT INTO outbox (signal_id, body) VALUES (?, ?)", (signal.signal_id, body)
                )
            except sqlite3.Error as exc:  # disk full or failing: the caller must not feel it
                self.metrics.lost.inc()
                log.error("outbox cannot store a signal; lost", extra={"reason": str(exc)})
                return
            self._count += 1
            excess = self._count - self.max_items
            if excess > 0:
                dropped = self._db.execute(
                    "DELETE FROM outbox WHERE seq IN (SELECT seq FROM outbox ORDER BY seq LIMIT ?)",
                    (excess,),
                ).rowcount
                self._count -= dropped
            count = self._count
        if excess > 0:
            self.metrics.dropped.inc(excess)
            log.warning("outbox full: dropped oldest signals", extra={"dropped": excess})
        self.metrics.pending.set(count)
        self._idle.clear()
        self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._deliver_forever(), name="outbox-delivery")

    async def close(self, drain_timeout_s: float = 0.0) -> None:
        """Stops delivery (after trying to drain for up to `drain_timeout_s`); keeps the rest."""
        if drain_timeout_s > 0:
            try:
                await asyncio.wait_for(self._drained(), drain_timeout_s)
            except TimeoutError:
                log.warning("outbox not drained at shutdown", extra={"pending": self.pending()})
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with self._lock:
            self._db.close()

    async def _drained(self) -> None:
        await self._idle.wait()

    def _oldest(self) -> list[tuple[int, common_pb2.Signal]]:
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, body FROM outbox ORDER BY seq LIMIT ?", (self.batch_size,)
            ).fetchall()
        return [(seq, common_pb2.Signal.FromString(body)) for seq, body in rows]

    def _remove(self, seqs: Sequence[int]) -> None:
        with self._lock:
            # Rows the bound dropped meanwhile are already gone: count what was deleted.
            deleted = self._db.executemany(
                "DELETE FROM outbox WHERE seq = ?", [(s,) for s in seqs]
            ).rowcount
            self._count -= deleted
            count = self._count
        self.metrics.pending.set(count)

    async def _deliver_forever(self) -> None:
        """Delivers until cancelled; a failing disk or sender pauses it (and is logged),
        never ends it: an ended task would leave signals piling up unsent, silently."""
        while True:
            try:
                await self._deliver()
            except sqlite3.Error as exc:
                # Unremoved rows are sent again later: leads ignores the replays.
                log.error("outbox storage failed; retrying", extra={"reason": str(exc)})
                await asyncio.sleep(self.max_backoff_s)
            except Exception:  # anything else (a sender's own error): retried, never the end
                self.metrics.failures.inc()
                log.exception("outbox delivery failed; retrying")
                await asyncio.sleep(self.max_backoff_s)

    async def _deliver(self) -> None:
        backoff = self.min_backoff_s
        while True:
            self._wake.clear()  # before reading: a publish from now on wakes us again
            batch = await asyncio.to_thread(self._oldest)
            if not batch:
                if not self._wake.is_set():
                    self._idle.set()
                await self._wake.wait()
                continue
            try:
                ack = await self._send([signal for _, signal in batch])
            except grpc.aio.AioRpcError as exc:
                if exc.code() != BAD_BATCH:
                    self.metrics.failures.inc()
                    delay = backoff * random.uniform(0.5, 1.0)
                    log.warning(
                        "delivery to leads failed; will retry",
                        extra={"code": exc.code().name, "retry_in_s": round(delay, 2)},
                    )
                    await asyncio.sleep(delay)
                    backoff = min(backoff * 2, self.max_backoff_s)
                    continue
                # The whole batch was refused as invalid: retrying cannot help.
                self.metrics.rejected.inc(len(batch))
                log.error(
                    "leads refused a batch; dropped",
                    extra={
                        "code": exc.code().name,
                        "details": redact_quoted(exc.details() or ""),
                        "count": len(batch),
                    },
                )
                await asyncio.to_thread(self._remove, [seq for seq, _ in batch])
                continue
            backoff = self.min_backoff_s
            if ack.rejected:
                self.metrics.rejected.inc(ack.rejected)
                for error in ack.errors:
                    log.error(
                        "leads refused a signal; dropped",
                        extra={
                            "signal_id": error.signal_id,
                            "reason": redact_quoted(error.message),
                        },
                    )
            self.metrics.delivered.inc(ack.accepted + ack.duplicates)
            await asyncio.to_thread(self._remove, [seq for seq, _ in batch])


def leads_sender(
    channel: grpc.aio.Channel, timeout_s: float = 10.0, metadata: Sequence[tuple[str, str]] = ()
) -> Send:
    """Delivers batches through `Leads/IngestBatch` on the given channel."""
    from percept.v1 import leads_pb2_grpc

    stub = leads_pb2_grpc.LeadsStub(channel)

    async def send(signals: Sequence[common_pb2.Signal]) -> leads_pb2.IngestAck:
        request = leads_pb2.IngestBatchRequest(signals=signals)
        return await stub.IngestBatch(request, timeout=timeout_s, metadata=tuple(metadata))

    return send
