"""Dynamic batching: the requests to one model version wait in a queue; a batch leaves when it holds `max_batch`
inputs, or when its first request has waited `timeout` seconds (at once if a busy worker kept it waiting that
long), and runs as one call in a worker thread while the event loop goes on reading requests. Every request gets
its own outcome, in order; a failed one fails alone."""
from __future__ import annotations

import asyncio
import collections
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable


@dataclass
class Job:
    item: Any
    size: int  # inputs it holds: a request with a list of 10 inputs counts 10 towards max_batch
    future: asyncio.Future
    arrived: float


class Batcher:
    """Queue of requests for `run(items) -> outcomes` (one outcome per item: a result, or an exception that fails
    only its own request), called with up to `max_batch` inputs at a time by `workers` threads."""

    def __init__(self, run: Callable[[list[Any]], list[Any]], max_batch: int, timeout: float, workers: int = 1,
                 name: str = "dlrun-batch"):
        self.run, self.max_batch, self.timeout = run, max(1, int(max_batch)), max(0.0, float(timeout))
        self._pending: collections.deque[Job] = collections.deque()
        self._pending_size = 0
        self._arrived = asyncio.Event()
        self._free = asyncio.Semaphore(max(1, int(workers)))  # a batch forms only once a worker can take it
        self._pool = ThreadPoolExecutor(max(1, int(workers)), thread_name_prefix=name)
        self._running: set[asyncio.Task] = set()
        self._task: asyncio.Task | None = None

    @property
    def depth(self) -> int:
        """Requests waiting for a worker."""
        return len(self._pending)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def submit(self, item: Any, size: int) -> Any:
        """The outcome of `item`, once its batch has run (its exception raised here)."""
        loop = asyncio.get_running_loop()
        job = Job(item, size, loop.create_future(), loop.time())
        self._pending.append(job)
        self._pending_size += size
        self._arrived.set()
        return await job.future

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._free.acquire()
            while not self._pending:
                self._arrived.clear()
                await self._arrived.wait()
            deadline = self._pending[0].arrived + self.timeout
            while self._pending_size < self.max_batch and (left := deadline - loop.time()) > 0:
                self._arrived.clear()
                try:
                    await asyncio.wait_for(self._arrived.wait(), left)
                except asyncio.TimeoutError:
                    break
            task = loop.create_task(self._run(self._take()))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    def _take(self) -> list[Job]:
        """The oldest requests, up to max_batch inputs (one request larger than that goes alone)."""
        jobs, n = [], 0
        while self._pending and (not jobs or n + self._pending[0].size <= self.max_batch):
            job = self._pending.popleft()
            self._pending_size -= job.size
            jobs.append(job)
            n += job.size
        return jobs

    async def _run(self, jobs: list[Job]) -> None:
        try:
            outcomes = await asyncio.get_running_loop().run_in_executor(self._pool, self.run, [j.item for j in jobs])
        except Exception as exc:  # noqa: BLE001 - run() itself failed: each request is told
            outcomes = [exc] * len(jobs)
        finally:
            self._free.release()
        for job, outcome in zip(jobs, outcomes):
            if job.future.done():  # its request was cancelled (the client went away)
                continue
            if isinstance(outcome, BaseException):
                job.future.set_exception(outcome)
            else:
                job.future.set_result(outcome)

    async def close(self) -> None:
        """Answer every queued request, then stop the loop and the worker threads."""
        while self._pending or self._running:
            await asyncio.sleep(0.005)
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self._pool.shutdown(wait=True)
