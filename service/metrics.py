"""Prometheus collectors, named once, in a registry owned by each `Metrics` (tests build several apps).

`MetricsMiddleware` records every HTTP request under its route template (bounded label values).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.values import CropCounts

#: Pipeline stages with a latency histogram; other keys in a timings mapping are ignored.
STAGES: tuple[str, ...] = ("decode", "detect", "embed", "search", "aggregate", "total")
SECONDS_BUCKETS: tuple[float, ...] = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)
FRAMES_BUCKETS: tuple[float, ...] = (1, 2, 4, 8, 16, 32, 64)
BOXES_BUCKETS: tuple[float, ...] = (0, 1, 2, 5, 10, 20, 50, 100, 200, 500)
BATCH_BUCKETS: tuple[float, ...] = (1, 2, 4, 8, 16, 32, 64, 128, 256)
#: Label values of the Redis-feature counters (service/sessions.py, service/auth.py, service/registry.py).
SMOOTHING_OUTCOMES: tuple[str, ...] = ("applied", "no_session", "disabled", "redis_unavailable")
RATE_LIMIT_RESULTS: tuple[str, ...] = ("allowed", "limited", "failed_open")
#: Kinds of watcher failure (service/watch): a source that stalled for good or cannot be read, a sink that
#: failed (Redis, webhook), a watcher that crashed and was restarted, a webhook given up after its retries.
WATCH_ERRORS: tuple[str, ...] = ("stalled", "source", "sink", "crashed", "webhook")
ANNOUNCEMENT_OUTCOMES: tuple[str, ...] = ("switched", "current", "not_loaded", "older", "refused", "invalid")
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED_ROUTE = "unmatched"


class Metrics:
    """All service metrics and the small methods that feed them."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        reg = self.registry
        self.requests = Counter(
            "watchbuy_requests", "HTTP requests answered.", ["route", "method", "status"], registry=reg
        )
        self.request_seconds = Histogram(
            "watchbuy_request_seconds", "HTTP request latency.", ["route"],
            buckets=SECONDS_BUCKETS, registry=reg,
        )
        self.stage_seconds = Histogram(
            "watchbuy_stage_seconds", "/identify stage latency.", ["stage"],
            buckets=SECONDS_BUCKETS, registry=reg,
        )
        self.frames_per_request = Histogram(
            "watchbuy_frames_per_request", "Frames per /identify request.",
            buckets=FRAMES_BUCKETS, registry=reg,
        )
        self.boxes_per_request = Histogram(
            "watchbuy_boxes_per_request", "Boxes searched per /identify request.",
            buckets=BOXES_BUCKETS, registry=reg,
        )
        self.loaded_streams = Gauge("watchbuy_loaded_streams", "Stream indexes held in memory.", registry=reg)
        self.stream_vectors = Gauge(
            "watchbuy_stream_vectors", "Vectors in each loaded stream index.", ["stream_id"], registry=reg
        )
        self.model_info = Gauge(
            "watchbuy_model_info", "Loaded models (value is always 1).",
            ["role", "name", "provider", "sha256"], registry=reg,
        )
        self.errors = Counter("watchbuy_errors", "Error answers by error code.", ["code"], registry=reg)
        self.batch_size = Histogram(
            "watchbuy_batch_size", "Items (frames or crops) per batched model call.", ["model"],
            buckets=BATCH_BUCKETS, registry=reg,
        )
        self.batch_queue_depth = Gauge(
            "watchbuy_batch_queue_depth", "Items waiting for a model's batcher.", ["model"], registry=reg
        )
        self.batch_wait_seconds = Histogram(
            "watchbuy_batch_wait_seconds", "Time a request's items waited before their model call started.",
            ["model"], buckets=SECONDS_BUCKETS, registry=reg,
        )
        self.redis_configured = Gauge(
            "watchbuy_redis_configured", "1 when WATCHBUY_REDIS_URL is set, else 0.", registry=reg
        )
        self.redis_up = Gauge(
            "watchbuy_redis_up", "1 while Redis answers, 0 when it is down or not configured.", registry=reg
        )
        self.redis_reconnects = Counter(
            "watchbuy_redis_reconnects", "Times Redis came back after being down.", registry=reg
        )
        self.smoothing = Counter(
            "watchbuy_session_smoothing", "/identify answers by session smoothing outcome.", ["outcome"],
            registry=reg,
        )
        self.rate_limit = Counter(
            "watchbuy_rate_limit_decisions", "Per-key rate limit decisions (failed_open: Redis was down).",
            ["result"], registry=reg,
        )
        self.crops = Counter(
            "watchbuy_crops", "Crops of identify requests: embedded, or reused (a repeat of another crop).",
            ["outcome"], registry=reg,
        )
        self.index_announcements = Counter(
            "watchbuy_index_announcements", "Index version announcements received, by what was done.",
            ["outcome"], registry=reg,
        )
        self.watchers = Gauge("watchbuy_watchers", "Stream watchers running in this process.", registry=reg)
        self.watch_frames = Counter("watchbuy_watch_frames", "Frames analysed by stream watchers.", registry=reg)
        self.watch_lag = Gauge(
            "watchbuy_watch_lag_seconds", "How far the last answered frame is behind its source, per watched stream.",
            ["stream_id"], registry=reg,
        )
        self.watch_segments = Counter("watchbuy_watch_segments", "Product segments finished.", registry=reg)
        self.watch_reconnects = Counter("watchbuy_watch_reconnects", "Stalled sources reopened.", registry=reg)
        self.watch_corrupt = Counter("watchbuy_watch_corrupt_packets", "Source packets skipped.", registry=reg)
        self.watch_errors = Counter("watchbuy_watch_errors", "Watcher failures by kind.", ["kind"], registry=reg)
        for counter, values in (
            (self.watch_errors, WATCH_ERRORS),
            (self.smoothing, SMOOTHING_OUTCOMES), (self.rate_limit, RATE_LIMIT_RESULTS),
            (self.index_announcements, ANNOUNCEMENT_OUTCOMES), (self.crops, ("embedded", "reused")),
        ):
            for value in values:  # export every series from the start (dashboards, rate())
                counter.labels(value)
        self._lock = threading.Lock()
        self._stream_labels: set[str] = set()
        self._model_labels: dict[str, tuple[str, str, str, str]] = {}

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        method = method.upper() if method.upper() in KNOWN_METHODS else "OTHER"
        self.requests.labels(route=route, method=method, status=str(status)).inc()
        self.request_seconds.labels(route=route).observe(seconds)

    def observe_stages(self, timings_ms: Mapping[str, float]) -> None:
        for stage in STAGES:
            value = timings_ms.get(stage)
            if value is not None:
                self.stage_seconds.labels(stage=stage).observe(max(0.0, float(value)) / 1000.0)

    def observe_counts(self, frames: int, boxes: int, crops: CropCounts) -> None:
        self.frames_per_request.observe(frames)
        self.boxes_per_request.observe(boxes)
        self.crops.labels("embedded").inc(crops.embedded)
        self.crops.labels("reused").inc(crops.reused)

    def set_loaded_streams(self, vectors_by_stream: Mapping[str, int]) -> None:
        """Replace the set of loaded streams; labels of streams no longer loaded are removed."""
        with self._lock:
            for stale in self._stream_labels - set(vectors_by_stream):
                self.stream_vectors.remove(stale)
            for stream_id, vectors in vectors_by_stream.items():
                self.stream_vectors.labels(stream_id=stream_id).set(vectors)
            self._stream_labels = set(vectors_by_stream)
            self.loaded_streams.set(len(vectors_by_stream))

    def set_model(self, role: str, name: str, provider: str, sha256: str) -> None:
        """Record the model serving `role` (one series per role: a replaced model's labels are removed)."""
        labels = (role, name, provider, sha256)
        with self._lock:
            previous = self._model_labels.get(role)
            if previous is not None and previous != labels:
                self.model_info.remove(*previous)
            self.model_info.labels(*labels).set(1)
            self._model_labels[role] = labels

    def count_error(self, code: str) -> None:
        self.errors.labels(code=code).inc()

    def observe_batch(self, model: str, size: int, waits_seconds: list[float]) -> None:
        """One batched model call: its size and how long each request in it waited."""
        self.batch_size.labels(model=model).observe(size)
        for seconds in waits_seconds:
            self.batch_wait_seconds.labels(model=model).observe(max(0.0, seconds))

    def set_queue_depth(self, model: str, items: int) -> None:
        self.batch_queue_depth.labels(model=model).set(items)

    def set_redis(self, configured: bool, up: bool) -> None:
        self.redis_configured.set(1 if configured else 0)
        self.redis_up.set(1 if up else 0)

    def count_redis_reconnect(self) -> None:
        self.redis_reconnects.inc()

    def count_smoothing(self, outcome: str) -> None:
        self.smoothing.labels(outcome=outcome).inc()

    def count_rate_limit(self, result: str) -> None:
        self.rate_limit.labels(result=result).inc()

    def count_announcement(self, outcome: str) -> None:
        self.index_announcements.labels(outcome=outcome).inc()

    def render(self) -> tuple[bytes, str]:
        """Exposition body and its content type, for a /metrics route."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


def route_template(scope: Scope) -> str:
    """The matched route's path template (`/streams/{stream_id}`), or "unmatched"."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) and path else UNMATCHED_ROUTE


class MetricsMiddleware:
    """Pure ASGI middleware: count and time every HTTP request by route template, method and status."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def recording_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, recording_send)
        finally:
            seconds = time.perf_counter() - started
            self.metrics.observe_request(route_template(scope), scope.get("method", "GET"), status, seconds)
