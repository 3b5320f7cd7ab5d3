"""Dynamic micro-batching: concurrent /identify requests share detector and embedder calls.

One `Batcher` per model. A request submits its items (its frames to the detector, its crops to the
embedder) as one job and awaits the job's future. A worker of the batcher first gets a call slot
(`slots`, shared by the batchers of all models: model calls running at once, one per core here),
then takes the waiting jobs, whole and in arrival order, up to `max_batch` items, runs one model call
in a worker thread and hands every job its slice of the results. A request of more than `max_batch` items
(a video's frames and crops) becomes several jobs of `max_batch` items, which the workers run side by
side: one request uses every core. Jobs that arrive while the calls run form the next batch, so batches
grow with the load by themselves and an idle service adds no queue delay (Triton's default). With `max_wait_s` > 0 a
worker also waits for a fuller batch, never longer than half the measured call time (the idea of
infinity's batch delay).

The queue is bounded in items: a job that does not fit is refused at once with `Overloaded` (429,
Retry-After from the measured time per item) instead of growing memory; an empty queue admits any
job, so one large request is still served. A caller that is cancelled (timeout, shutdown) takes its
job out of the queue. A failing model call fails only the callers of that batch (`BatchFailed`);
the worker goes on with the next batch.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar, cast

import anyio
import numpy as np

from models.loader import Models
from models.types import Detection
from service.errors import Overloaded, ServiceUnavailable
from watchbuy.settings import Settings

log = logging.getLogger(__name__)



class Sliceable(Protocol):
    """A model's results: one entry per item, sliced back into each caller's share (a list, ndarray rows)."""

    def __len__(self) -> int: ...

    def __getitem__(self, key: slice, /) -> Any: ...


Item = TypeVar("Item")
Results = TypeVar("Results", bound=Sliceable)

#: Weight of the newest measurement in the moving averages of call time.
EMA_WEIGHT = 0.2
#: The optional batch wait is at most this fraction of the measured call time.
WAIT_FRACTION = 0.5


class BatchFailed(RuntimeError):
    """The model call that carried this request's items raised; the message names the model."""


class BatchObserver(Protocol):
    def observe_batch(self, model: str, size: int, waits_seconds: list[float]) -> None: ...

    def set_queue_depth(self, model: str, items: int) -> None: ...


@dataclass(eq=False, slots=True)
class _Job(Generic[Item, Results]):
    items: list[Item]
    future: asyncio.Future[Results]
    enqueued: float = field(default_factory=time.perf_counter)


class Batcher(Generic[Item, Results]):
    """Collects items from concurrent callers into calls of `run` (as many at once as `slots` allows)."""

    def __init__(
        self,
        name: str,
        run: Callable[[list[Item]], Results],
        *,
        max_batch: int,
        queue_size: int,
        max_wait_s: float = 0.0,
        slots: anyio.CapacityLimiter | None = None,
        observer: BatchObserver | None = None,
    ) -> None:
        if max_batch < 1 or queue_size < 1 or max_wait_s < 0:
            raise ValueError("max_batch and queue_size must be >= 1 and max_wait_s >= 0")
        self.name = name
        self.max_batch = max_batch
        self.queue_size = queue_size
        self.max_wait_s = max_wait_s
        self._run = run
        self._slots = slots or anyio.CapacityLimiter(1)
        self._observer = observer
        self._queue: deque[_Job[Item, Results]] = deque()
        self._pending = 0  # items in the queue
        self._in_call: set[_Job[Item, Results]] = set()
        self._wakeup = asyncio.Event()
        self._workers: list[asyncio.Task[None]] = []
        self._closed = False
        self.call_seconds = 0.0  # moving average of one model call
        self.item_seconds = 0.0  # moving average of the call time per item

    # --- callers ---------------------------------------------------------------------------------

    @property
    def pending(self) -> int:
        """Items waiting in the queue (not yet in a model call)."""
        return self._pending

    def ensure_room(self, n_items: int) -> None:
        """Raise `Overloaded` when a job of `n_items` would not be admitted now."""
        if self._closed or not self._workers:
            raise ServiceUnavailable(f"the {self.name} batcher is not running; retry shortly")
        if self._pending and self._pending + n_items > self.queue_size:
            wait = self._pending * self.item_seconds / self._slots.total_tokens + self.call_seconds
            raise Overloaded(
                f"the {self.name} queue is full ({self._pending} of {self.queue_size} items); retry later",
                retry_after=math.ceil(wait),
            )

    async def submit(self, items: Sequence[Item]) -> Results:
        """The model's results for `items`, computed in a batch with other callers' items."""
        if not items:
            return self._run([])
        self.ensure_room(len(items))
        loop = asyncio.get_running_loop()
        jobs: list[_Job[Item, Results]] = [
            _Job(list(items[i : i + self.max_batch]), loop.create_future())
            for i in range(0, len(items), self.max_batch)
        ]
        self._queue.extend(jobs)
        self._pending += len(items)
        self._report_depth()
        self._wakeup.set()
        try:
            parts = [await job.future for job in jobs]
        finally:
            for job in jobs:
                if not job.future.done():  # our caller was cancelled or a part failed: leave nothing behind
                    job.future.cancel()
                elif not job.future.cancelled():
                    job.future.exception()  # retrieved: a second failing part is not logged as unhandled
                self._forget(job)
        return parts[0] if len(parts) == 1 else cast(Results, join(parts))

    # --- lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the workers on the running event loop: one per call slot (only slot holders run)."""
        if not self._workers:
            self._workers = [
                asyncio.create_task(self._work(), name=f"batcher-{self.name}-{i}")
                for i in range(max(1, int(self._slots.total_tokens)))
            ]

    async def __aenter__(self) -> Batcher[Item, Results]:
        self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop the workers; queued and running jobs fail with ServiceUnavailable."""
        self._closed = True
        for worker in self._workers:
            worker.cancel()
        for worker in self._workers:
            try:
                await worker
            except asyncio.CancelledError:
                pass
        error = ServiceUnavailable("the service is shutting down; retry on another instance")
        self._fail([*self._in_call, *self._queue], error)
        self._queue.clear()
        self._pending = 0
        self._report_depth()

    # --- the worker ------------------------------------------------------------------------------

    async def _work(self) -> None:
        while True:
            while not self._queue:
                self._wakeup.clear()
                await self._wakeup.wait()
            async with self._slots:  # a free core: take what has gathered meanwhile
                if not self._queue:
                    continue  # another worker took it
                await self._wait_for_fuller_batch()
                jobs = self._take()
                self._in_call.update(jobs)
                try:
                    await self._call(jobs)
                except Exception as exc:  # a bug here must not stop the worker
                    log.exception("%s batcher: unexpected failure", self.name)
                    self._fail(jobs, BatchFailed(f"the {self.name} batch failed: {exc}"))
                self._in_call.difference_update(jobs)  # (kept when cancelled: aclose fails them)

    async def _wait_for_fuller_batch(self) -> None:
        wait = min(self.max_wait_s, WAIT_FRACTION * self.call_seconds)
        deadline = time.perf_counter() + wait
        while self._pending < self.max_batch:
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                return
            self._wakeup.clear()
            try:
                await asyncio.wait_for(self._wakeup.wait(), remaining)
            except TimeoutError:
                return

    def _take(self) -> list[_Job[Item, Results]]:
        """Whole jobs from the head of the queue, up to max_batch items (at least one job)."""
        jobs: list[_Job[Item, Results]] = []
        size = 0
        while self._queue:
            job = self._queue[0]
            if jobs and size + len(job.items) > self.max_batch:
                break
            self._queue.popleft()
            self._pending -= len(job.items)
            if job.future.done():  # cancelled while queued
                continue
            jobs.append(job)
            size += len(job.items)
        self._report_depth()
        return jobs

    async def _call(self, jobs: list[_Job[Item, Results]]) -> None:
        items = [item for job in jobs for item in job.items]
        started = time.perf_counter()
        if self._observer is not None:
            self._observer.observe_batch(self.name, len(items), [started - job.enqueued for job in jobs])
        try:
            results = await anyio.to_thread.run_sync(self._run, items)
            if len(results) != len(items):
                raise RuntimeError(f"{len(results)} results for {len(items)} items")
        except Exception as exc:
            log.error("%s batch of %d items failed", self.name, len(items), exc_info=exc)
            self._fail(jobs, BatchFailed(f"the {self.name} model failed on a batch of {len(items)}: {exc}"))
            return
        seconds = time.perf_counter() - started
        self.call_seconds = _ema(self.call_seconds, seconds)
        self.item_seconds = _ema(self.item_seconds, seconds / len(items))
        start = 0
        for job in jobs:
            stop = start + len(job.items)
            if not job.future.done():
                job.future.set_result(cast(Results, results[start:stop]))
            start = stop

    # --- bookkeeping -----------------------------------------------------------------------------

    def _forget(self, job: _Job[Item, Results]) -> None:
        try:
            self._queue.remove(job)
        except ValueError:
            return  # already taken by the worker
        self._pending -= len(job.items)
        self._report_depth()

    def _fail(self, jobs: Sequence[_Job[Item, Results]], error: Exception) -> None:
        for job in jobs:
            if not job.future.done():
                job.future.set_exception(error)

    def _report_depth(self) -> None:
        if self._observer is not None:
            self._observer.set_queue_depth(self.name, self._pending)


def join(parts: Sequence[Any]) -> Any:
    """The results of a request's jobs as one: rows stacked (embedder) or lists chained (detector)."""
    if isinstance(parts[0], np.ndarray):
        return np.concatenate(parts)
    return [result for part in parts for result in part]


def _ema(average: float, value: float) -> float:
    return value if average == 0.0 else (1 - EMA_WEIGHT) * average + EMA_WEIGHT * value


@dataclass(frozen=True, slots=True)
class ModelBatchers:
    """The running batchers of the two models the pipeline calls (a `service.calls.ModelCalls`)."""

    detector: Batcher[np.ndarray, list[list[Detection]]]
    embedder: Batcher[np.ndarray, np.ndarray]

    def admit(self, n_frames: int) -> None:
        """Raise `Overloaded` now when a request of `n_frames` (>= 1 crop each) would be refused."""
        self.detector.ensure_room(n_frames)
        self.embedder.ensure_room(n_frames)

    async def detect(self, images: Sequence[np.ndarray]) -> list[list[Detection]]:
        return await self.detector.submit(images)

    async def embed(self, crops: Sequence[np.ndarray]) -> np.ndarray:
        return await self.embedder.submit(crops)

    async def aclose(self) -> None:
        await self.detector.aclose()
        await self.embedder.aclose()


async def start_batchers(
    models: Models, settings: Settings, observer: BatchObserver | None = None
) -> ModelBatchers | None:
    """Running batchers for both models (on this event loop); None when WATCHBUY_BATCHING is false."""
    if not settings.batching:
        return None
    wait_s = settings.batch_max_wait_ms / 1000.0
    slots = anyio.CapacityLimiter(settings.model_calls)  # shared: the models take turns on the cores
    batchers = ModelBatchers(
        detector=Batcher(
            "detector", models.detector.detect_many, max_batch=settings.detector_max_batch,
            queue_size=settings.detector_queue_size, max_wait_s=wait_s, slots=slots, observer=observer,
        ),
        embedder=Batcher(
            "embedder", models.embedder.embed, max_batch=settings.embedder_max_batch,
            queue_size=settings.embedder_queue_size, max_wait_s=wait_s, slots=slots, observer=observer,
        ),
    )
    batchers.detector.start()
    batchers.embedder.start()
    return batchers
