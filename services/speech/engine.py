"""One model shared by every call: a bounded, prioritised queue in front of it.

Finals go first and are never dropped; a call with too many finals waiting
waits itself (back-pressure reaches its client through gRPC flow control)
while other calls go on. Drafts for partial results are optional: when the
model is already behind they are skipped, so load thins partials out instead
of delaying finals. Drafts waiting together run as one batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from percept.speech.audio import Samples
from percept.speech.backends import DraftRequest, Said, Transcriber, Transcript

FINAL, DRAFT = 0, 1  # priorities: lower runs first


class EngineMetrics:
    def __init__(self, registry: CollectorRegistry | None) -> None:
        kw: dict[str, Any] = {"registry": registry}
        self.queued = Gauge("percept_speech_queued_jobs", "Jobs waiting for the model.", **kw)
        self.skipped = Counter(
            "percept_speech_drafts_skipped_total", "Partials skipped: model busy.", **kw
        )
        self.batch = Histogram(
            "percept_speech_draft_batch_size",
            "Drafts decoded together.",
            buckets=(1, 2, 4, 8, 16),
            **kw,
        )
        self.seconds = Histogram(
            "percept_speech_model_seconds", "Model time per job.", ["kind"], **kw
        )


@dataclass(order=True)
class _Job:
    priority: int
    seq: int
    future: asyncio.Future[Any] = field(compare=False)
    run: Callable[[], Any] | None = field(default=None, compare=False)  # a final's model call
    draft: DraftRequest | None = field(default=None, compare=False)  # or a draft to batch


class SpeechEngine:
    def __init__(
        self,
        transcriber: Transcriber,
        *,
        max_waiting_finals: int = 64,
        max_batch: int = 8,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.transcriber = transcriber
        self.max_batch = max_batch
        self.metrics = EngineMetrics(registry)
        self._queue: asyncio.PriorityQueue[_Job] | None = None
        self._slots = asyncio.Semaphore(max_waiting_finals)
        self._seq = itertools.count()
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="speech-model")
        self._worker: asyncio.Task[None] | None = None
        self._busy = False
        self._waiting = {FINAL: 0, DRAFT: 0}

    def _ensure_started(self) -> asyncio.PriorityQueue[_Job]:
        if self._queue is None:
            self._queue = asyncio.PriorityQueue()
            self._worker = asyncio.create_task(self._work(self._queue), name="speech-engine")
        return self._queue

    async def transcribe(
        self,
        audio: Samples,
        language: str | None,
        *,
        prompt: str = "",
        speech_end: float | None = None,
        said: Sequence[Said] = (),
    ) -> Transcript:
        async with self._slots:
            future: asyncio.Future[Transcript] = asyncio.get_running_loop().create_future()
            queue = self._ensure_started()
            queue.put_nowait(
                _Job(
                    FINAL,
                    next(self._seq),
                    future,
                    run=lambda: self.transcriber.transcribe(
                        audio, language, prompt=prompt, speech_end=speech_end, said=said
                    ),
                )
            )
            self._waiting[FINAL] += 1
            self.metrics.queued.inc()
            return await future

    async def draft(self, request: DraftRequest) -> tuple[str, str] | None:
        """A draft, or None when the model is behind (the partial is skipped)."""
        queue = self._ensure_started()
        if self._busy and (self._waiting[FINAL] or self._waiting[DRAFT] >= self.max_batch):
            self.metrics.skipped.inc()
            return None
        future: asyncio.Future[tuple[str, str]] = asyncio.get_running_loop().create_future()
        queue.put_nowait(_Job(DRAFT, next(self._seq), future, draft=request))
        self._waiting[DRAFT] += 1
        self.metrics.queued.inc()
        return await future

    async def _work(self, queue: asyncio.PriorityQueue[_Job]) -> None:
        loop = asyncio.get_running_loop()
        while True:
            job = await queue.get()
            jobs = [job]
            if job.draft is not None:  # take every waiting draft into the batch
                while len(jobs) < self.max_batch and not queue.empty():
                    more = queue.get_nowait()
                    if more.draft is None:
                        queue.put_nowait(more)
                        break
                    jobs.append(more)
            for j in jobs:
                self._waiting[j.priority] -= 1
            self.metrics.queued.dec(len(jobs))
            live = [j for j in jobs if not j.future.cancelled()]
            if not live:
                continue
            self._busy = True
            try:
                if job.draft is not None:
                    requests = [j.draft for j in live if j.draft is not None]
                    self.metrics.batch.observe(len(requests))
                    with self.metrics.seconds.labels("draft").time():
                        results: list[Any] = await loop.run_in_executor(
                            self._executor, self.transcriber.draft, requests
                        )
                else:
                    run = live[0].run
                    assert run is not None
                    with self.metrics.seconds.labels("final").time():
                        results = [await loop.run_in_executor(self._executor, run)]
            except Exception as exc:  # the calls waiting get the error, the engine goes on
                for j in live:
                    if not j.future.done():
                        j.future.set_exception(exc)
                continue
            finally:
                self._busy = False
            for j, result in zip(live, results, strict=True):
                if not j.future.done():
                    j.future.set_result(result)

    async def close(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
        self._executor.shutdown(wait=False, cancel_futures=True)
