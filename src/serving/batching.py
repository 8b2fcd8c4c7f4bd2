"""Micro-batching: concurrent requests are queued and run together in one model call.

The first request to arrive opens a window of ``window_ms``; the jobs that can share its model
call (same ``Job.key``: task and beam; generate jobs never share one) and arrive before the window closes
join it, up to ``max_batch_size`` inputs. Sequential clients (the previous batch held one request and nobody
else waits) skip the window: it would only add latency. While a batch runs in the worker thread, new requests
wait in the queue, so under load the next batch fills at once: batch size, and throughput, grow with
concurrency (the way NVIDIA Triton's dynamic batcher and Ray Serve's ``@serve.batch`` work).

The model runs in one worker thread: the event loop keeps accepting and answering requests, and
the model is never used from two threads at once. A batch that fails is run again one job at a
time, so an error reaches only the request that caused it. A job whose request has gone (its
future cancelled: the client disconnected, or uvicorn's graceful timeout ran out) is dropped
from the queue unrun.

No request waits forever: a fault in the batcher's own bookkeeping fails that round's requests
and the batcher goes on; if its task ends anyway (cancelled, or a ``BaseException``), every
queued request gets ``ShuttingDown``, so does every later ``submit``, and ``failure`` says why
(``/health`` answers 503 with it).
"""

import asyncio
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from loguru import logger


class ShuttingDown(RuntimeError):
    """The batcher is closed and takes no new work."""


@dataclass(frozen=True)
class BatchInfo:
    """How a request was run: the requests and inputs in its model call."""

    requests: int
    inputs: int


@dataclass
class _Pending:
    job: Any  # has .key and .size
    future: asyncio.Future
    arrived: float


class MicroBatcher:
    """Queue jobs from the event loop; run them in batches on one worker thread.

    Args:
        run_batch: ``run_batch(jobs) -> results``, one result per job, all jobs of one key; blocking.
        window_ms: how long the first job of a batch waits for others.
        max_batch_size: most inputs (``job.size`` summed) per call; a bigger single job runs alone.
    """

    def __init__(self, run_batch: Callable[[list], list], window_ms: float, max_batch_size: int) -> None:
        self.run_batch = run_batch
        self.window_s = window_ms / 1000.0
        self.max_batch_size = max_batch_size
        self._queue: deque[_Pending] = deque()
        self._arrival = asyncio.Event()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="model")
        self._task: asyncio.Task | None = None
        self._closing = False
        self._last_requests = 1  # requests in the previous batch: 1 means no load, so no window
        self._failure: str | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._serve(), name="micro-batcher")
        self._task.add_done_callback(self._stopped)

    @property
    def failure(self) -> str | None:
        """Why the batcher stopped without being closed (it then takes no work); None while it serves."""
        if self._failure is None and self._task is not None and self._task.done() and not self._closing:
            return "the micro-batcher's task has ended"
        return self._failure

    async def submit(self, job: Any) -> tuple[Any, BatchInfo]:
        """The result of ``job`` once its batch has run, and how that batch was made up."""
        if self._closing or self._task is None or self._task.done():
            raise ShuttingDown(f"the server is shutting down and takes no new requests"
                               f"{f' ({self.failure})' if self.failure else ''}")
        future = asyncio.get_running_loop().create_future()
        self._queue.append(_Pending(job, future, time.monotonic()))
        self._arrival.set()
        return await future

    async def close(self) -> None:
        """Take no new jobs, finish every queued one, then stop the worker thread."""
        self._closing = True
        self._arrival.set()
        if self._task is not None:
            # a task that died was logged by _stopped
            await asyncio.gather(self._task, return_exceptions=True)
        self._executor.shutdown(wait=True)
        logger.info("micro-batcher drained and stopped")

    async def _serve(self) -> None:
        while self._queue or not self._closing:
            self._drop_gone()
            if not self._queue:
                self._arrival.clear()
                await self._arrival.wait()
                continue
            batch: list[_Pending] = []
            try:
                await self._fill_window(self._queue[0])
                self._drop_gone()  # requests cancelled during the window
                if self._queue:
                    batch = self._take(self._queue[0].job.key)
                    await self._run(batch)
            except Exception as err:  # noqa: BLE001 (our own bookkeeping failed: fail this round, keep serving)
                failed = batch or ([self._queue.popleft()] if self._queue else [])  # always progress
                logger.opt(exception=err).error("micro-batcher: a round of {} request(s) failed outside the "
                                                "model call; failing them and going on", len(failed))
                for pending in failed:
                    _settle(pending.future, error=err)
            except BaseException:  # cancelled, or worse: nobody in this batch may wait forever
                for pending in batch:
                    _settle(pending.future,
                            error=ShuttingDown("the micro-batcher stopped while running this request"))
                raise

    def _stopped(self, task: asyncio.Task) -> None:
        """Done-callback of the worker task: if it ended before a clean close, fail what is queued."""
        error = None if task.cancelled() else task.exception()
        if task.cancelled() or error is not None:
            self._failure = f"the micro-batcher stopped: {'cancelled' if error is None else repr(error)}"
            logger.opt(exception=error).error("{}; failing {} queued request(s)", self._failure,
                                              len(self._queue))
        gone = ShuttingDown("the server is shutting down and takes no new requests "
                            f"({self.failure or 'closed'})")
        while self._queue:
            _settle(self._queue.popleft().future, error=gone)

    def _drop_gone(self) -> None:
        """Forget queued jobs whose request has gone (future cancelled or settled): nobody waits for them."""
        if any(p.future.done() for p in self._queue):
            self._queue = deque(p for p in self._queue if not p.future.done())

    async def _fill_window(self, first: _Pending) -> None:
        """Wait until the window since ``first`` arrived closes or a full batch is queued.

        A lone request after a batch of one (sequential clients) runs at once: a window there
        would only add its length to every request's latency.
        """
        if len(self._queue) == 1 and self._last_requests == 1:
            return
        while not self._closing:
            left = first.arrived + self.window_s - time.monotonic()
            if left <= 0 or self._queued_inputs(first.job.key) >= self.max_batch_size:
                return
            self._arrival.clear()
            try:
                await asyncio.wait_for(self._arrival.wait(), timeout=left)
            except TimeoutError:
                return

    def _queued_inputs(self, key: Any) -> int:
        return sum(p.job.size for p in self._queue if p.job.key == key and not p.future.done())

    def _take(self, key: Any) -> list[_Pending]:
        """Queued jobs of ``key`` in arrival order, up to ``max_batch_size`` inputs (the first always); the
        rest stay.

        Jobs whose request has gone (future done) are dropped, not run.
        """
        batch, kept, inputs = [], deque(), 0
        for pending in self._queue:
            if pending.future.done():
                continue
            if pending.job.key == key and (not batch or inputs + pending.job.size <= self.max_batch_size):
                batch.append(pending)
                inputs += pending.job.size
            else:
                kept.append(pending)
        self._queue = kept
        return batch

    async def _run(self, batch: list[_Pending]) -> None:
        info = BatchInfo(requests=len(batch), inputs=sum(p.job.size for p in batch))
        self._last_requests = len(batch)
        loop = asyncio.get_running_loop()
        try:
            results = await loop.run_in_executor(self._executor, self.run_batch, [p.job for p in batch])
        except Exception as err:  # noqa: BLE001 (the callers get it; first find whose it is)
            if len(batch) == 1:
                _settle(batch[0].future, error=err)
                return
            logger.warning("a batch of {} requests failed ({}: {}); running them one by one", len(batch),
                           type(err).__name__, err)
            for pending in batch:
                if not pending.future.done():  # its request may have gone meanwhile
                    await self._run([pending])
            return
        for pending, result in zip(batch, results, strict=True):
            _settle(pending.future, result=(result, info))


def _settle(future: asyncio.Future, result: Any = None, error: BaseException | None = None) -> None:
    if future.done():  # the request was cancelled (client gone): nobody waits for it
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)
