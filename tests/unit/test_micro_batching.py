"""The shared micro-batcher and the latest-wins slot, on a recording model."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence

import pytest

from percept.runtime.batching import MicroBatcher
from percept.vision.latest import LatestSlot


class Recorder:
    def __init__(self, seconds: float = 0.0, fail_on: int | None = None) -> None:
        self.batches: list[list[int]] = []
        self.threads: set[str] = set()
        self.seconds, self.fail_on = seconds, fail_on
        self.message = "bad item"

    def __call__(self, items: Sequence[int]) -> list[int]:
        self.batches.append(list(items))
        self.threads.add(threading.current_thread().name)
        if self.fail_on in items:
            raise ValueError(f"{self.message} {self.fail_on}")
        time.sleep(self.seconds)
        return [i * 10 for i in items]


async def test_calls_waiting_together_run_as_one_batch_on_one_thread() -> None:
    model = Recorder(seconds=0.05)
    batcher = MicroBatcher(model, max_batch=4, max_wait_s=0.02)
    results = await asyncio.gather(*(batcher.submit(i) for i in range(10)))
    await batcher.close()
    assert results == [i * 10 for i in range(10)]
    assert all(len(b) <= 4 for b in model.batches)
    assert len(model.batches) == 3  # 4 + 4 + 2
    assert len(model.threads) == 1


async def test_a_lone_call_waits_at_most_max_wait() -> None:
    model = Recorder()
    batcher = MicroBatcher(model, max_batch=8, max_wait_s=0.05)
    started = time.perf_counter()
    assert await batcher.submit(3) == 30
    waited = time.perf_counter() - started
    await batcher.close()
    assert model.batches == [[3]]
    assert waited < 1.0  # bounded: a lone frame is not held for company forever


async def test_a_batch_waits_only_while_other_callers_could_join() -> None:
    alone = MicroBatcher(Recorder(), max_batch=8, max_wait_s=0.5, callers=lambda: 1)
    started = time.perf_counter()
    assert await alone.submit(1) == 10
    assert time.perf_counter() - started < 0.25  # nobody else could come: no wait
    await alone.close()
    crowd = MicroBatcher(Recorder(), max_batch=8, max_wait_s=0.3, callers=lambda: 3)
    started = time.perf_counter()
    assert await crowd.submit(1) == 10
    assert time.perf_counter() - started >= 0.3  # two more might: it waited for them
    await crowd.close()


async def test_calls_arriving_while_a_batch_runs_form_the_next_batch() -> None:
    model = Recorder(seconds=0.2)
    batcher = MicroBatcher(model, max_batch=8, max_wait_s=0.0)
    first = asyncio.ensure_future(batcher.submit(0))
    await asyncio.sleep(0.05)  # the first batch is running
    rest = [asyncio.ensure_future(batcher.submit(i)) for i in range(1, 6)]
    await asyncio.gather(first, *rest)
    await batcher.close()
    assert model.batches == [[0], [1, 2, 3, 4, 5]]


async def test_an_error_reaches_every_caller_of_its_batch_and_the_worker_goes_on() -> None:
    model = Recorder(fail_on=2)
    batcher = MicroBatcher(model, max_batch=4, max_wait_s=0.02)
    outcomes = await asyncio.gather(*(batcher.submit(i) for i in range(4)), return_exceptions=True)
    assert all(isinstance(o, ValueError) for o in outcomes)
    assert await batcher.submit(7) == 70
    await batcher.close()


async def test_a_cancelled_call_is_left_out() -> None:
    model = Recorder(seconds=0.1)
    batcher = MicroBatcher(model, max_batch=4, max_wait_s=0.0)
    busy = asyncio.ensure_future(batcher.submit(0))
    await asyncio.sleep(0.02)
    gone = asyncio.ensure_future(batcher.submit(1))
    kept = asyncio.ensure_future(batcher.submit(2))
    await asyncio.sleep(0)
    gone.cancel()
    assert await kept == 20
    await busy
    await batcher.close()
    assert model.batches == [[0], [2]]


def test_max_batch_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_batch"):
        MicroBatcher(Recorder(), max_batch=0)
    with pytest.raises(ValueError, match="max_size"):
        MicroBatcher(Recorder(), size_of=abs)


async def test_sizes_cap_a_batch_but_its_first_item_always_runs() -> None:
    model = Recorder(seconds=0.05)
    # Each item is its own size (as a batch of signals is to the leads writer).
    batcher = MicroBatcher(model, max_batch=8, max_wait_s=0.0, size_of=abs, max_size=5)
    results = await asyncio.gather(*(batcher.submit(i) for i in (9, 3, 2, 4, 1)))
    await batcher.close()
    assert results == [90, 30, 20, 40, 10]
    assert model.batches == [[9], [3, 2], [4, 1]]  # 9 alone is over the cap: it runs anyway


async def test_alone_on_failure_keeps_a_bad_item_from_failing_the_others() -> None:
    model = Recorder(fail_on=7)
    batcher = MicroBatcher(
        model, max_batch=8, max_wait_s=0.02, alone_on_failure=lambda e: "item" in str(e)
    )
    outcomes = await asyncio.gather(*(batcher.submit(i) for i in (1, 7, 3)), return_exceptions=True)
    assert outcomes[0] == 10 and outcomes[2] == 30
    assert isinstance(outcomes[1], ValueError) and "bad item 7" in str(outcomes[1])
    assert model.batches == [[1, 7, 3], [1], [7], [3]]  # together, then each alone

    model.fail_on, model.batches = 5, []
    model.message = "outage"  # an error it does not accept: everyone hears it, no reruns
    outcomes = await asyncio.gather(*(batcher.submit(i) for i in (4, 5, 6)), return_exceptions=True)
    await batcher.close()
    assert all(isinstance(o, ValueError) and "outage" in str(o) for o in outcomes)
    assert model.batches == [[4, 5, 6]]


async def test_an_item_held_back_by_the_cap_fails_cleanly_at_close() -> None:
    model = Recorder(seconds=0.2)
    batcher = MicroBatcher(model, max_batch=8, max_wait_s=0.0, size_of=abs, max_size=5)
    running = asyncio.ensure_future(batcher.submit(4))
    await asyncio.sleep(0.05)  # 4 runs; 3 then 2 arrive: 3 + 2 fits, 6 is held for later
    waiting = [asyncio.ensure_future(batcher.submit(i)) for i in (3, 2, 6)]
    await asyncio.sleep(0.3)  # [3, 2] runs now; 6 was taken from the queue and held
    await batcher.close()
    assert await running == 40
    outcomes = await asyncio.wait_for(asyncio.gather(*waiting, return_exceptions=True), 5)
    # Nobody is left waiting: the batch that was running and the held item both hear of it.
    assert all(isinstance(o, RuntimeError) and "shutting down" in str(o) for o in outcomes)


async def test_latest_wins_and_counts_what_it_replaced() -> None:
    slot: LatestSlot[int] = LatestSlot()
    for i in range(5):
        slot.put(i)
    assert await slot.take() == (4, 4)
    slot.put(5)
    slot.close()
    assert await slot.take() == (5, 0)  # what was waiting is still handed out after close
    assert await slot.take() == (None, 0)


async def test_take_waits_for_a_frame() -> None:
    slot: LatestSlot[str] = LatestSlot()
    waiting = asyncio.ensure_future(slot.take())
    await asyncio.sleep(0.01)
    assert not waiting.done()
    slot.put("frame")
    assert await waiting == ("frame", 0)
    error = ValueError("bad camera")
    slot.close(error)
    assert await slot.take() == (None, 0)
    assert slot.error is error
