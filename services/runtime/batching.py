"""Micro-batching: many callers, one model, one worker thread.

Calls wait at most `max_wait_s` for company, and a batch holds at most
`max_batch` items. While a batch runs, new calls queue; the next batch takes
them at once, so under load batches fill without any added wait. This is how
one accelerator serves many cameras (DESIGN.md §4). Given `callers` (how many
clients are active now), a batch waits only while more of them could still
join it: a lone camera is never held back for company that cannot come.

The leads store uses it for group commit (max_wait_s=0: calls that arrive
during a write share the next one): there `size_of` caps a batch by signals,
not calls, and `alone_on_failure` keeps one caller's bad batch from failing
the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Generic, TypeVar

from prometheus_client import CollectorRegistry, Counter, Histogram

T = TypeVar("T")
R = TypeVar("R")
BATCH_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64)


class BatchMetrics:
    def __init__(self, registry: CollectorRegistry | None, prefix: str) -> None:
        self.size = Histogram(
            f"{prefix}_batch_size",
            "Items run together in one batch (a model call, a transaction).",
            buckets=BATCH_BUCKETS,
            registry=registry,
        )
        self.seconds = Histogram(
            f"{prefix}_batch_seconds", "Run time per batch.", registry=registry
        )
        self.waited = Histogram(
            f"{prefix}_queue_seconds",
            "Time from submit to the start of its batch.",
            registry=registry,
        )
        self.failures = Counter(
            f"{prefix}_batch_failures_total", "Batches that raised.", registry=registry
        )


@dataclass
class _Item(Generic[T, R]):
    value: T
    future: asyncio.Future[R]
    queued_at: float


class MicroBatcher(Generic[T, R]):
    def __init__(
        self,
        run: Callable[[Sequence[T]], Sequence[R]],
        *,
        max_batch: int = 8,
        max_wait_s: float = 0.005,
        metrics: BatchMetrics | None = None,
        thread_name: str = "model",
        callers: Callable[[], int] | None = None,
        size_of: Callable[[T], int] | None = None,
        max_size: int = 0,
        alone_on_failure: Callable[[Exception], bool] | None = None,
    ) -> None:
        """`size_of` and `max_size`: a batch's items add up to at most max_size (its first
        item always runs, whatever its size). `alone_on_failure`: when a batch of several
        fails with an error it accepts, each item runs again alone, so only the items that
        fail get the error (an outage would fail them all again: not worth the retries)."""
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        if size_of is not None and max_size < 1:
            raise ValueError("max_size must be at least 1 when size_of is given")
        self._run = run
        self.max_batch, self.max_wait_s = max_batch, max_wait_s
        self.metrics = metrics
        self._callers = callers
        self._size_of, self._max_size = size_of, max_size
        self._alone_on_failure = alone_on_failure
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=thread_name)
        self._queue: asyncio.Queue[_Item[T, R]] | None = None
        self._held: _Item[T, R] | None = None  # taken from the queue, too big for the batch
        self._running: list[_Item[T, R]] = []  # answered by close() if still unanswered
        self._worker: asyncio.Task[None] | None = None

    def queued(self) -> int:
        return self._queue.qsize() if self._queue is not None else 0

    async def submit(self, value: T) -> R:
        if self._queue is None:
            self._queue = asyncio.Queue()
            self._worker = asyncio.create_task(self._work(self._queue), name="micro-batcher")
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Item(value, future, time.perf_counter()))
        return await future

    async def _gather(self, queue: asyncio.Queue[_Item[T, R]]) -> list[_Item[T, R]]:
        first, self._held = self._held or await queue.get(), None
        batch = [first]
        size = self._size(first)
        deadline = time.perf_counter() + self.max_wait_s
        while len(batch) < self.max_batch:
            if not queue.empty():
                item = queue.get_nowait()
            else:
                remaining = deadline - time.perf_counter()
                if remaining <= 0 or (self._callers is not None and self._callers() <= len(batch)):
                    break
                try:
                    item = await asyncio.wait_for(queue.get(), remaining)
                except TimeoutError:
                    break
            if self._size_of is not None and size + self._size(item) > self._max_size:
                self._held = item  # it starts the next batch
                break
            batch.append(item)
            size += self._size(item)
        return [item for item in batch if not item.future.cancelled()]

    def _size(self, item: _Item[T, R]) -> int:
        return self._size_of(item.value) if self._size_of is not None else 1

    async def _work(self, queue: asyncio.Queue[_Item[T, R]]) -> None:
        loop = asyncio.get_running_loop()
        while True:
            self._running = []  # answered: nothing of theirs is kept while waiting
            batch = await self._gather(queue)
            if not batch:
                continue
            self._running = batch
            started = time.perf_counter()
            if self.metrics is not None:
                self.metrics.size.observe(len(batch))
                for item in batch:
                    self.metrics.waited.observe(started - item.queued_at)
            try:
                results = await self._run_batch(loop, batch)
            except Exception as exc:  # every caller in the batch gets the error; the worker goes on
                if self.metrics is not None:
                    self.metrics.failures.inc()
                if self._alone_on_failure is not None and self._alone_on_failure(exc) and batch[1:]:
                    for item in batch:
                        await self._run_alone(loop, item)
                    continue
                for item in batch:
                    if not item.future.done():
                        item.future.set_exception(exc)
                continue
            if self.metrics is not None:
                self.metrics.seconds.observe(time.perf_counter() - started)
            for item, result in zip(batch, results, strict=True):
                if not item.future.done():
                    item.future.set_result(result)

    async def _run_batch(
        self, loop: asyncio.AbstractEventLoop, batch: Sequence[_Item[T, R]]
    ) -> Sequence[R]:
        results = await loop.run_in_executor(
            self._executor, self._run, [item.value for item in batch]
        )
        if len(results) != len(batch):
            raise RuntimeError(f"a batch of {len(batch)} gave {len(results)} results")
        return results

    async def _run_alone(self, loop: asyncio.AbstractEventLoop, item: _Item[T, R]) -> None:
        try:
            (result,) = await self._run_batch(loop, [item])
        except Exception as exc:
            if not item.future.done():
                item.future.set_exception(exc)
            return
        if not item.future.done():
            item.future.set_result(result)

    async def close(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
        if self._queue is not None:
            left = [*self._running, *([self._held] if self._held is not None else [])]
            while not self._queue.empty():
                left.append(self._queue.get_nowait())
            for item in left:
                if not item.future.done():
                    item.future.set_exception(RuntimeError("the service is shutting down"))
        self._executor.shutdown(wait=False, cancel_futures=True)
