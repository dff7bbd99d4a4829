"""Dynamic micro-batching of one model: concurrent requests' frames scored in shared session runs.

Requests are queued per frame size (a batch holds frames of one size). One runner per model takes
the oldest size's queue and runs up to ``max_batch`` frames together as soon as the model is free;
with ``max_delay`` > 0 it first waits up to that long (from the oldest frame's arrival) for the batch
to fill. Frames arriving while a batch runs wait for the next one, so under load batches fill on
their own and at concurrency 1 nothing waits. A request's frames always stay together in one batch
(a request of more than ``max_batch`` frames runs alone, in chunks of ``max_batch``).

The queue is bounded (``max_queue`` frames waiting): past it :meth:`MicroBatcher.enqueue` raises
:class:`Overloaded` instead of growing.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field

import numpy as np

Outputs = dict  # output name -> array, one row per frame


class Overloaded(Exception):
    """The queue is full; ``retry_after`` is a whole-second estimate of when it has room."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


@dataclass
class _Job:
    frames: np.ndarray
    future: asyncio.Future
    arrived: float = field(default_factory=time.monotonic)


class MicroBatcher:
    """Queues frames of one model and runs them in batches on ``executor``.

    Args:
        run: Scores one uint8 ``[n, H, W, 3]`` batch (``n <= max_batch``); returns every output by name.
        executor: Where ``run`` is called (a single thread per model: one batch at a time).
        max_batch: Most frames per run.
        max_delay: Seconds the runner may wait for a batch to fill (0: run as soon as the model is free).
        max_queue: Most frames waiting; more are refused with :class:`Overloaded`.
        on_batch: Called with the size of every batch run (metrics).
    """

    def __init__(
        self,
        run: Callable[[np.ndarray], Outputs],
        executor: Executor,
        *,
        max_batch: int,
        max_delay: float,
        max_queue: int,
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        self._run = run
        self._executor = executor
        self.max_batch = max_batch
        self.max_delay = max_delay
        self.max_queue = max_queue
        self._on_batch = on_batch
        self._groups: dict[tuple[int, ...], deque[_Job]] = {}
        self.queued = 0  # frames waiting (not the running batch)
        self._wake = asyncio.Event()
        self._closing = False
        self._batch_seconds = 0.05  # running estimate of one batch's time, for Retry-After
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        """Start the runner on the running event loop."""
        self._task = asyncio.get_running_loop().create_task(self._loop())

    def enqueue(self, frames: np.ndarray) -> asyncio.Future:
        """Queue a request's uint8 ``[n, H, W, 3]`` frames; the future resolves to their outputs.

        Synchronous, so a caller that looked the model up and enqueues without awaiting in between
        is scored by the model it looked up.

        Raises:
            Overloaded: ``max_queue`` frames are already waiting (or the batcher is closing).
            RuntimeError: The batcher was closed.
        """
        count = len(frames)
        if self._closing:
            raise RuntimeError("batcher closed")
        if self.queued + count > self.max_queue:
            batches = math.ceil((self.queued + count) / self.max_batch)
            raise Overloaded(
                f"the queue is full ({self.queued} frames waiting, --max-queue {self.max_queue}); "
                "retry later",
                max(1, math.ceil(batches * self._batch_seconds)),
            )
        job = _Job(frames, asyncio.get_running_loop().create_future())
        self._groups.setdefault(frames.shape[1:], deque()).append(job)
        self.queued += count
        self._wake.set()
        return job.future

    def flush(self) -> None:
        """Stop waiting for batches to fill (shutdown): what is queued runs as soon as the model is free."""
        self.max_delay = 0.0
        self._wake.set()

    async def close(self) -> None:
        """Score every frame already queued, then stop the runner."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            await self._task

    async def _wait(self, timeout: float | None) -> None:
        self._wake.clear()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout)

    def _frames(self, group: deque[_Job]) -> int:
        return sum(len(job.frames) for job in group)

    async def _loop(self) -> None:
        while True:
            if not self.queued:
                if self._closing:
                    return
                await self._wait(None)
                continue
            key = min(self._groups, key=lambda k: self._groups[k][0].arrived)
            group = self._groups[key]
            while not self._closing and self._frames(group) < self.max_batch:
                left = group[0].arrived + self.max_delay - time.monotonic()  # flush() zeroes the delay
                if left <= 0:
                    break
                await self._wait(left)
            jobs = self._take(key, group)
            if jobs:
                await self._score(jobs)

    def _take(self, key: tuple[int, ...], group: deque[_Job]) -> list[_Job]:
        """Pop whole jobs up to ``max_batch`` frames (at least one job); drops abandoned ones."""
        jobs: list[_Job] = []
        frames = 0
        while group and (not jobs or frames + len(group[0].frames) <= self.max_batch):
            job = group.popleft()
            self.queued -= len(job.frames)
            if job.future.done():  # the caller gave up (timeout, disconnect)
                continue
            jobs.append(job)
            frames += len(job.frames)
        if not group:
            del self._groups[key]
        return jobs

    async def _score(self, jobs: list[_Job]) -> None:
        batch = jobs[0].frames if len(jobs) == 1 else np.concatenate([job.frames for job in jobs])
        started = time.monotonic()
        try:
            outputs = await asyncio.get_running_loop().run_in_executor(self._executor, self._chunks, batch)
        except Exception as exc:  # the model failed: every caller of this batch gets the error
            for job in jobs:
                if not job.future.done():
                    job.future.set_exception(exc)
            return
        per_run = (time.monotonic() - started) / max(1, math.ceil(len(batch) / self.max_batch))
        self._batch_seconds = 0.8 * self._batch_seconds + 0.2 * per_run
        lo = 0
        for job in jobs:
            hi = lo + len(job.frames)
            if not job.future.done():
                job.future.set_result({name: value[lo:hi] for name, value in outputs.items()})
            lo = hi

    def _chunks(self, batch: np.ndarray) -> Outputs:
        """Run ``batch`` in runs of at most ``max_batch`` frames (only a single large request needs more)."""
        if len(batch) <= self.max_batch:
            if self._on_batch is not None:
                self._on_batch(len(batch))
            return self._run(batch)
        parts = []
        for lo in range(0, len(batch), self.max_batch):
            chunk = batch[lo : lo + self.max_batch]
            if self._on_batch is not None:
                self._on_batch(len(chunk))
            parts.append(self._run(chunk))
        return {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}
