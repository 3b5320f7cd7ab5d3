"""One watcher: a source's sampled frames → the identify path (one request per frame, as `/identify` runs
it: same pipeline, batchers and per-catalogue abstain) → observations → segments → events.

The source is read in a worker thread (PyAV blocks) into a small buffer; the watcher takes whatever
frames are waiting (up to `batch_frames`) and answers them concurrently, so the batchers keep both cores
busy, then feeds the answers to the segmenter in source order. Lag = wall time since the first frame −
source time since the first frame: how far behind a live source the answers are.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace

import anyio
import anyio.from_thread
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from service.errors import Overloaded
from service.identify import identify
from service.state import ServiceState
from service.values import DecodedFrame, DecodedImages, Identification, IdentifyQuery
from service.watch.best import BestFrames, picture
from service.watch.events import EventKind, EventSink, WatchEvent, WatchState, WatchStatus
from service.watch.segments import Changes, Observation, Segment, SegmentConfig, Segmenter
from service.watch.source import Checkpoint, FrameReader, SourceConfig, SourceError, SourceFrame, SourceStalled
from watchbuy.settings import Settings

log = logging.getLogger(__name__)

ObservationHook = Callable[[Observation], None]
#: Products kept of each frame's answer (the pooled vote reads them; docs/WATCHING.md).
RANKED = 5


@dataclass(frozen=True, slots=True)
class WatchConfig:
    source: SourceConfig
    segments: SegmentConfig
    batch_frames: int = 4

    @classmethod
    def from_settings(cls, settings: Settings, sample_fps: float | None = None, realtime: bool = False) -> WatchConfig:
        source = SourceConfig(
            sample_fps=sample_fps or settings.watch_sample_fps,
            open_timeout_s=settings.watch_open_timeout_seconds,
            read_timeout_s=settings.watch_read_timeout_seconds,
            reconnects=settings.watch_reconnects,
            backoff_s=settings.watch_backoff_seconds,
            realtime=realtime,
            max_pixels=settings.max_image_pixels,
        )
        return cls(source, SegmentConfig.from_settings(settings), settings.watch_batch_frames)


class Watcher:
    def __init__(
        self,
        state: ServiceState,
        stream_id: str,
        source: str,
        config: WatchConfig,
        sink: EventSink,
        on_observation: ObservationHook | None = None,
        resume: Checkpoint | None = None,
    ) -> None:
        self.state = state
        self.stream_id = stream_id
        self.source = source
        self.config = config
        self.sink = sink
        self.reader = FrameReader(source, config.source, on_reconnect=self._reconnecting, resume=resume)
        self.resume = resume
        self.segmenter = Segmenter(config.segments, 1.0 / config.source.sample_fps)
        self.best = BestFrames()
        self.status = WatchStatus(stream_id, source, "starting")
        self._on_observation = on_observation
        self._pending: deque[WatchEvent] = deque()  # appended from the reader's thread too
        self._clock: tuple[float, float] | None = None  # (wall, source time) of the first frame
        self._stopping = False
        self._failure: SourceError | None = None  # why the source failed (set in the reader's thread)

    def stop(self) -> None:
        """End the watch at the next frame (from any thread); `run` then returns with state `stopped`."""
        self._stopping = True
        self.reader.stop()

    @property
    def failure(self) -> SourceError | None:
        """Why the source failed, when it did."""
        return self._failure

    @property
    def checkpoint(self) -> Checkpoint | None:
        """Where a new watcher of the same source goes on without repeating a finished segment's events:
        the open segment's start (it is watched again and ends once), else the frame after the last one."""
        origin = self.reader.origin
        if origin is None or self.status.time_s is None:
            return self.resume
        current = self.segmenter.current
        time_s = current.start_s if current is not None else self.status.time_s + self.segmenter.interval_s
        return Checkpoint(origin, round(time_s, 3))

    @property
    def stopping(self) -> bool:
        """`stop()` was called: the watch ends as asked, not by a failure."""
        return self._stopping

    async def run(self) -> WatchState:
        """Watch until the source ends, stalls for good, fails or `stop()`; the final state."""
        self.state.metrics.watchers.inc()
        if self.resume is None:
            await self._emit(WatchEvent("watch_started", self.stream_id, message=self.source))
        else:
            await self._emit(WatchEvent("watch_started", self.stream_id, self.resume.time_s,
                                        message=f"{self.source} (going on from {self.resume.time_s:g} s)"))
        await self.sink.status(self.status)  # "starting": `now` answers from the first moment
        final: WatchState = "ended"
        message: str | None = None
        try:
            await self._watch()
            final = "stopped" if self._stopping else "ended"
        except SourceStalled as exc:
            final, message = "failed", str(exc)
            self.state.metrics.watch_errors.labels("stalled").inc()
        except SourceError as exc:
            final, message = "failed", str(exc)
            self.state.metrics.watch_errors.labels("source").inc()
        except Exception as exc:  # a crash: reported here, restarted (or not) by whoever runs the watcher
            final, message = "failed", f"watcher crashed ({_first_error(exc)})"
            raise
        finally:
            self.state.metrics.watchers.dec()
            self._forget_lag()
            with anyio.CancelScope(shield=True):
                await self._close(final, message)
        return final

    async def _watch(self) -> None:
        send, receive = anyio.create_memory_object_stream[SourceFrame](self.config.batch_frames * 2)
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._read, send)
            try:
                await self._answer(receive)
            finally:
                self.reader.stop()
                tg.cancel_scope.cancel()
        if self._failure is not None:
            raise self._failure

    async def _read(self, send: MemoryObjectSendStream[SourceFrame]) -> None:
        """Pump the reader's frames into `send` (closed at the end); a source failure is kept for `_watch`."""

        def pump() -> None:
            with send:
                try:
                    for frame in self.reader.frames():
                        anyio.from_thread.run(send.send, frame)
                except SourceError as exc:
                    self._failure = exc

        await anyio.to_thread.run_sync(pump, abandon_on_cancel=True)

    async def _answer(self, receive: MemoryObjectReceiveStream[SourceFrame]) -> None:
        async with receive:
            async for first in receive:
                batch = [first]
                while len(batch) < self.config.batch_frames:
                    try:
                        batch.append(receive.receive_nowait())
                    except (anyio.WouldBlock, anyio.EndOfStream):
                        break
                answers = await self._identify_all(batch)
                for frame, answer in zip(batch, answers, strict=True):
                    await self._observe(frame, answer)

    async def _identify_all(self, frames: list[SourceFrame]) -> list[Identification]:
        answers: list[Identification | None] = [None] * len(frames)

        async def one(i: int) -> None:
            answers[i] = await self._identify(frames[i])

        async with anyio.create_task_group() as tg:
            for i in range(len(frames)):
                tg.start_soon(one, i)
        return [a for a in answers if a is not None]

    async def _identify(self, frame: SourceFrame) -> Identification:
        """One frame through the identify path; waits and retries while the model queues are full."""
        images = DecodedImages((DecodedFrame(round(frame.time_s * 1000), frame.image),))
        query = IdentifyQuery(self.stream_id, top_k=RANKED)
        while True:
            try:
                result, _ = await identify(self.state, query, lambda: images, n_frames=1)
                return result
            except Overloaded:
                await anyio.sleep(0.2)

    async def _observe(self, frame: SourceFrame, answer: Identification) -> None:
        top = answer.products[0] if answer.products and not answer.abstain else None
        ranked = tuple((p.product_id, round(p.score, 4)) for p in answer.products)
        obs = Observation(frame.time_s, top.product_id if top else None, top.score if top else 0.0, ranked,
                          answer.abstain_threshold)
        if self._on_observation is not None:
            self._on_observation(obs)
        lag = self._lag(frame.time_s)
        metrics = self.state.metrics
        metrics.watch_frames.inc()
        metrics.watch_lag.labels(self.stream_id).set(lag)
        if self.best.improves(answer):  # the JPEG off the event loop, which also serves the API
            self.best.see(frame.time_s, answer, await anyio.to_thread.run_sync(picture, frame.image))
        changes = self.segmenter.feed(obs)
        await self._publish(changes)
        counters = self.reader.counters
        metrics.watch_corrupt.inc(counters.corrupt - self.status.corrupt_packets)
        current = self.segmenter.current
        self.status = replace(
            self.status, state="running", time_s=frame.time_s, frames=self.status.frames + 1, lag_s=round(lag, 3),
            corrupt_packets=counters.corrupt, reconnects=counters.reconnects,
            product_id=current.product_id if current else None, since_s=current.start_s if current else None,
            score=current.score if current else None, updated=time.time(),
        )
        await self._flush()
        await self.sink.status(self.status)

    async def _publish(self, changes: Changes) -> None:
        if changes.ended is not None:
            self._ended(changes.ended)
        if changes.started is not None:
            s = changes.started
            self._pending.append(WatchEvent("segment_started", self.stream_id, s.start_s, s.product_id,
                                            start_s=s.start_s, score=s.score))

    def _ended(self, s: Segment) -> None:
        self.state.metrics.watch_segments.inc()
        best = self.best.take(s)
        self._pending.append(WatchEvent("segment_ended", self.stream_id, s.end_s, s.product_id, s.start_s, s.end_s,
                                        s.score, best=best.as_dict() if best else None))

    async def _close(self, final: WatchState, message: str | None) -> None:
        end_s = self.status.time_s + self.segmenter.interval_s if self.status.time_s is not None else None
        last = self.segmenter.finish(end_s)
        if last is not None:
            self._ended(last)
        kind: EventKind = "watch_failed" if final == "failed" else "watch_ended"
        self._pending.append(WatchEvent(kind, self.stream_id, self.status.time_s, message=message or final))
        await self._flush()
        counters = self.reader.counters
        self.status = replace(self.status, state=final, product_id=None, since_s=None, score=None, message=message,
                              reconnects=counters.reconnects, corrupt_packets=counters.corrupt, updated=time.time())
        await self.sink.status(self.status)

    async def _flush(self) -> None:
        while self._pending:
            await self.sink.emit(self._pending.popleft())

    async def _emit(self, event: WatchEvent) -> None:
        self._pending.append(event)
        await self._flush()

    def _reconnecting(self, reason: str) -> None:
        """Called from the reader's thread: queue the event; the next frame (or the end) publishes it."""
        self.state.metrics.watch_reconnects.inc()
        self._pending.append(WatchEvent("reconnecting", self.stream_id, self.status.time_s, message=reason))

    def _forget_lag(self) -> None:
        """A finished watch leaves no lag series behind."""
        with contextlib.suppress(KeyError):
            self.state.metrics.watch_lag.remove(self.stream_id)

    def _lag(self, time_s: float) -> float:
        now = time.monotonic()
        if self._clock is None:
            self._clock = (now, time_s)
        wall0, source0 = self._clock
        return max(0.0, (now - wall0) - (time_s - source0))


def _first_error(exc: BaseException) -> str:
    """`Type: message` of the first error inside task-group exception groups."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return f"{type(exc).__name__}: {exc}"
