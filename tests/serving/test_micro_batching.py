"""MicroBatcher: merging, limits, order, error isolation, draining, and a free event loop (no model: fast)."""

import asyncio
import threading
import time
from dataclasses import dataclass

import pytest

from src.serving.batching import MicroBatcher, ShuttingDown


@dataclass(frozen=True)
class FakeJob:
    key: str
    inputs: tuple

    @property
    def size(self) -> int:
        return len(self.inputs)


class Recorder:
    """``run_batch`` that doubles every input, records each call, costs ``seconds`` and fails on 'bad'."""

    def __init__(self, seconds: float = 0.0) -> None:
        self.calls: list[list[FakeJob]] = []
        self.threads: set[str] = set()
        self.seconds = seconds

    def __call__(self, jobs: list[FakeJob]) -> list:
        self.calls.append(jobs)
        self.threads.add(threading.current_thread().name)
        time.sleep(self.seconds)
        if any("bad" in job.inputs for job in jobs):
            raise ValueError("bad input")
        return [[2 * x for x in job.inputs] for job in jobs]


def run(coro):
    return asyncio.run(coro)


async def with_batcher(recorder, body, window_ms=20.0, max_batch_size=32):
    batcher = MicroBatcher(recorder, window_ms, max_batch_size)
    batcher.start()
    try:
        return await body(batcher)
    finally:
        await batcher.close()


def test_concurrent_requests_share_one_call_and_each_gets_its_own_result():
    recorder = Recorder()

    async def body(batcher):
        return await asyncio.gather(*(batcher.submit(FakeJob("t", (i, i + 100))) for i in range(8)))

    results = run(with_batcher(recorder, body))
    assert [r for r, _ in results] == [[2 * i, 2 * (i + 100)] for i in range(8)]
    # arrival order
    assert len(recorder.calls) == 1 and [j.inputs[0] for j in recorder.calls[0]] == list(range(8))
    assert {(info.requests, info.inputs) for _, info in results} == {(8, 16)}
    # never the loop's thread
    assert recorder.threads and not recorder.threads & {threading.current_thread().name}


def test_batches_respect_the_input_limit_and_never_mix_keys():
    recorder = Recorder()

    async def body(batcher):
        jobs = [FakeJob("a" if i % 3 else "b", (i,)) for i in range(12)] + [FakeJob("a", tuple(range(9)))]
        return await asyncio.gather(*(batcher.submit(job) for job in jobs))

    results = run(with_batcher(recorder, body, max_batch_size=4))
    assert results[0][0] == [0] and results[-1][0] == [2 * x for x in range(9)]
    for call in recorder.calls:
        assert len({job.key for job in call}) == 1
        assert sum(job.size for job in call) <= 4 or len(call) == 1  # a 9-input job runs alone
    assert sorted(x for call in recorder.calls for job in call for x in job.inputs) == sorted([*range(12),
                                                                                               *range(9)])


def test_an_error_reaches_only_the_request_that_caused_it():
    recorder = Recorder()

    async def body(batcher):
        jobs = [FakeJob("t", (1,)), FakeJob("t", ("bad",)), FakeJob("t", (3,))]
        return await asyncio.gather(*(batcher.submit(job) for job in jobs), return_exceptions=True)

    good, bad, other = run(with_batcher(recorder, body))
    assert good[0] == [2] and other[0] == [6]
    assert isinstance(bad, ValueError) and str(bad) == "bad input"
    assert [len(call) for call in recorder.calls] == [3, 1, 1, 1]  # the batch, then each job alone


def test_close_drains_queued_work_then_refuses_new_work():
    recorder = Recorder(seconds=0.05)

    async def body():
        batcher = MicroBatcher(recorder, window_ms=50.0, max_batch_size=2)
        batcher.start()
        pending = [asyncio.ensure_future(batcher.submit(FakeJob("t", (i,)))) for i in range(6)]
        await asyncio.sleep(0)  # queued, none run yet
        await batcher.close()
        with pytest.raises(ShuttingDown, match="shutting down"):
            await batcher.submit(FakeJob("t", (9,)))
        return [p.result()[0] for p in pending]

    assert run(body()) == [[2 * i] for i in range(6)]
    assert len(recorder.calls) == 3


def test_the_event_loop_runs_while_a_batch_computes():
    recorder = Recorder(seconds=0.3)

    async def body(batcher):
        ticks = 0

        async def ticker():
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        task = asyncio.ensure_future(ticker())
        await batcher.submit(FakeJob("t", (1,)))
        task.cancel()
        return ticks

    assert run(with_batcher(recorder, body, window_ms=0.0)) >= 10  # ~30 ticks in 0.3 s; a blocked loop gets 0


def test_throughput_grows_with_concurrency():
    """16 concurrent requests cost about one model call, not 16 (each call 20 ms, whatever its size)."""

    async def timed(concurrent: bool, max_batch_size: int) -> float:
        recorder = Recorder(seconds=0.02)

        async def body(batcher):
            start = time.perf_counter()
            if concurrent:
                await asyncio.gather(*(batcher.submit(FakeJob("t", (i,))) for i in range(16)))
            else:
                for i in range(16):
                    await batcher.submit(FakeJob("t", (i,)))
            return time.perf_counter() - start

        return await with_batcher(recorder, body, window_ms=2.0, max_batch_size=max_batch_size)

    sequential, unbatched, batched = run(timed(False, 32)), run(timed(True, 1)), run(timed(True, 32))
    assert unbatched > 0.3 and sequential > 0.3  # 16 calls of 20 ms
    assert batched < sequential / 3 and batched < unbatched / 3


class MiscountingRecorder(Recorder):
    """``run_batch`` that drops the last result of a batch of several: the batcher's ``zip(strict=True)``
    fails."""

    def __call__(self, jobs: list[FakeJob]) -> list:
        results = super().__call__(jobs)
        return results[:-1] if len(results) > 1 else results


def test_a_fault_outside_the_model_call_fails_that_round_and_the_batcher_keeps_serving():
    recorder = MiscountingRecorder()

    async def body(batcher):
        first = await asyncio.wait_for(asyncio.gather(*(batcher.submit(FakeJob("t", (i,))) for i in range(3)),
                                                      return_exceptions=True), timeout=5)
        later = await asyncio.wait_for(batcher.submit(FakeJob("t", (7,))), timeout=5)
        return first, later, batcher.failure

    first, later, failure = run(with_batcher(recorder, body))
    assert [r[0] for r in first[:2]] == [[0], [2]]  # settled before the fault
    # the unanswered one fails, not hangs
    assert isinstance(first[2], ValueError) and "zip()" in str(first[2])
    assert later[0] == [14] and failure is None  # the batcher survived the round


def test_a_dead_batcher_fails_queued_and_new_requests_and_reports_why():
    recorder = Recorder(seconds=0.2)

    async def body():
        batcher = MicroBatcher(recorder, window_ms=0.0, max_batch_size=1)
        batcher.start()
        running = asyncio.ensure_future(batcher.submit(FakeJob("t", (1,))))
        queued = asyncio.ensure_future(batcher.submit(FakeJob("t", (2,))))
        await asyncio.sleep(0.05)  # the first is in the worker thread, the second queued
        assert batcher.failure is None
        batcher._task.cancel()  # the task dies (as any BaseException out of _serve would end it)
        outcomes = await asyncio.wait_for(asyncio.gather(running, queued, return_exceptions=True), timeout=5)
        with pytest.raises(ShuttingDown, match="cancelled"):
            await batcher.submit(FakeJob("t", (3,)))
        failure = batcher.failure
        await batcher.close()
        return outcomes, failure

    outcomes, failure = run(body())
    assert all(isinstance(o, ShuttingDown) for o in outcomes), outcomes
    assert failure == "the micro-batcher stopped: cancelled"


def test_requests_gone_before_their_batch_runs_are_not_computed():
    recorder = Recorder(seconds=0.1)

    async def body():
        batcher = MicroBatcher(recorder, window_ms=0.0, max_batch_size=8)
        batcher.start()
        busy = asyncio.ensure_future(batcher.submit(FakeJob("t", (0,))))
        await asyncio.sleep(0.02)  # the worker runs job 0; the next ones queue behind it
        waiting = [asyncio.ensure_future(batcher.submit(FakeJob("t", (i,)))) for i in range(1, 6)]
        await asyncio.sleep(0)
        for i in (1, 3, 4):  # their clients disconnect
            waiting[i - 1].cancel()
        await batcher.close()
        return busy.result()[0], [w.result()[0] for w in waiting if not w.cancelled()]

    busy, kept = run(body())
    assert busy == [0] and kept == [[4], [10]]
    # 1, 3, 4 never ran
    assert sorted(x for call in recorder.calls for job in call for x in job.inputs) == [0, 2, 5]
