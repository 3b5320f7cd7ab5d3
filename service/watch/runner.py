"""The watchers running in one process (the API process, or a watch worker), each supervised.

A watcher that ends, stalls for good or cannot read its source is done (its events say so). A watcher
that crashes (a bug, a model error, its index gone) is reported (its `watch_failed` says "watcher crashed
(...)", metric `watchbuy_watch_errors{kind="crashed"}`) and started again with backoff (a new
`watch_started`; it goes on from where the crashed one got to), up to WATCHBUY_WATCH_RESTARTS times; it
never takes the process down. `on_done` tells the owner (the worker acknowledges its entry).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from service.state import ServiceState
from service.watch.events import EventSink, WatchState
from service.watch.source import Checkpoint
from service.watch.watcher import WatchConfig, Watcher

log = logging.getLogger(__name__)

OnDone = Callable[[str, WatchState], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class WatchRequest:
    stream_id: str
    source: str
    sample_fps: float
    realtime: bool = False


class WatchRunner:
    def __init__(self, state: ServiceState, sink: EventSink, restarts: int, backoff_s: float = 1.0) -> None:
        self.state = state
        self.sink = sink
        self.restarts = restarts
        self.backoff_s = backoff_s
        self._watchers: dict[str, Watcher] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}

    def running(self, stream_id: str) -> bool:
        return stream_id in self._tasks

    @property
    def streams(self) -> list[str]:
        return sorted(self._tasks)

    def start(self, request: WatchRequest, on_done: OnDone | None = None, resume: Checkpoint | None = None) -> None:
        """Watch in the background; `resume`: go on where an earlier watch of the same request got to."""
        if request.stream_id in self._tasks:
            raise ValueError(f"{request.stream_id} is already watched here")
        task = asyncio.create_task(self._supervise(request, on_done, resume), name=f"watch-{request.stream_id}")
        self._tasks[request.stream_id] = task
        task.add_done_callback(lambda _: self._forget(request.stream_id, task))

    def checkpoint(self, stream_id: str) -> Checkpoint | None:
        """Where the stream's watch got to (for a takeover), when it runs here and has read a frame."""
        watcher = self._watchers.get(stream_id)
        return watcher.checkpoint if watcher is not None else None

    def stop(self, stream_id: str) -> bool:
        watcher = self._watchers.get(stream_id)
        if watcher is None:
            return False
        watcher.stop()
        return True

    async def aclose(self) -> None:
        for stream_id in list(self._watchers):
            self.stop(stream_id)
        tasks = list(self._tasks.values())
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=15)
            for task in pending:
                task.cancel()

    async def _supervise(self, request: WatchRequest, on_done: OnDone | None, resume: Checkpoint | None) -> None:
        settings = self.state.settings
        config = WatchConfig.from_settings(settings, request.sample_fps, request.realtime)
        final: WatchState = "failed"
        for attempt in range(self.restarts + 1):
            watcher = Watcher(self.state, request.stream_id, request.source, config, self.sink, resume=resume)
            self._watchers[request.stream_id] = watcher
            try:
                final = await watcher.run()
                break
            except Exception:  # noqa: BLE001 -- a crashed watcher (its watch_failed says why) is restarted
                log.exception("watcher of %s crashed (%d of %d restarts left)", request.stream_id,
                              self.restarts - attempt, self.restarts)
                self.state.metrics.watch_errors.labels("crashed").inc()
                if watcher.stopping or attempt == self.restarts:
                    break
                resume = watcher.checkpoint  # the restart goes on where the crashed watcher got to
                await asyncio.sleep(self.backoff_s * 2**attempt)  # then a new watch_started
        self._watchers.pop(request.stream_id, None)
        if on_done is not None:
            await on_done(request.stream_id, final)

    def _forget(self, stream_id: str, task: asyncio.Task[None]) -> None:
        if self._tasks.get(stream_id) is task:
            del self._tasks[stream_id]
