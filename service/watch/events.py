"""What a watcher tells the world: events (a segment started or ended, the source reconnected, stalled or
ended) and its status now; `EventSink` is where they go (stdout, Redis, the local SSE log, a webhook).

A sink never stops a watcher: `Fanout` logs and counts a failing sink and goes on.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, Protocol

log = logging.getLogger(__name__)

EventKind = Literal[
    "watch_started", "segment_started", "segment_ended", "reconnecting", "watch_ended", "watch_failed"
]
WatchState = Literal["starting", "running", "ended", "stopped", "failed"]


@dataclass(frozen=True, slots=True)
class WatchEvent:
    kind: EventKind
    stream_id: str
    time_s: float | None = None  # on the source's timeline
    product_id: str | None = None
    start_s: float | None = None
    end_s: float | None = None
    score: float | None = None
    message: str | None = None
    at: float = field(default_factory=time.time)  # wall clock (Unix seconds)
    best: dict[str, Any] | None = None  # segment_ended: its best frame (service/watch/best.py)

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}

    def segment_line(self) -> dict[str, Any]:
        """The finished segment as `make watch` prints it (kind segment_ended only)."""
        return {"stream_id": self.stream_id, "product_id": self.product_id, "start_s": self.start_s,
                "end_s": self.end_s, "score": self.score}


@dataclass(frozen=True, slots=True)
class WatchStatus:
    """What a watcher knows now: `GET /streams/{id}/now`."""

    stream_id: str
    source: str
    state: WatchState
    product_id: str | None = None  # the open segment's product
    since_s: float | None = None  # when it started, on the source's timeline
    score: float | None = None
    time_s: float | None = None  # the last frame analysed
    frames: int = 0
    lag_s: float = 0.0
    corrupt_packets: int = 0
    reconnects: int = 0
    message: str | None = None
    updated: float = field(default_factory=time.time)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class EventSink(Protocol):
    async def emit(self, event: WatchEvent) -> None: ...

    async def status(self, status: WatchStatus) -> None: ...


class Fanout:
    """Every event and status to each sink in turn; a sink that fails is logged and counted, never raised."""

    def __init__(self, sinks: Sequence[EventSink], on_error: Callable[[str], None] | None = None) -> None:
        self.sinks = list(sinks)
        self._on_error = on_error or (lambda kind: None)

    async def emit(self, event: WatchEvent) -> None:
        for sink in self.sinks:
            try:
                await sink.emit(event)
            except Exception as exc:  # noqa: BLE001 -- a sink (Redis, a webhook) must never stop the watcher
                log.warning("event sink %s failed: %s", type(sink).__name__, exc)
                self._on_error("sink")

    async def status(self, status: WatchStatus) -> None:
        for sink in self.sinks:
            try:
                await sink.status(status)
            except Exception as exc:  # noqa: BLE001 -- as above
                log.warning("status sink %s failed: %s", type(sink).__name__, exc)
                self._on_error("sink")
