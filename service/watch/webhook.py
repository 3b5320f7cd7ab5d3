"""Watch events POSTed to a webhook: signed, retried with backoff, never blocking the watcher.

`emit` only puts the event on a bounded queue (a full queue drops it, counted); one background task posts
them in order. Each POST carries the event as JSON, `X-Watchbuy-Timestamp` and `X-Watchbuy-Signature:
sha256=<hex HMAC-SHA256 of "<timestamp>.<body>">` with WATCHBUY_WATCH_WEBHOOK_SECRET, so the receiver
can check who sent it and refuse replays. A 5xx, 429 or network error is retried (0.5 s, doubling, at most
`retries` times); any other 4xx is given up at once.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import time

import httpx

from service.metrics import Metrics
from service.redis_client import cancel_task
from service.watch.events import WatchEvent, WatchStatus

log = logging.getLogger(__name__)

QUEUE_SIZE = 1000


def signature(secret: str, timestamp: str, body: bytes) -> str:
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


class Webhook:
    def __init__(self, url: str, secret: str | None, retries: int, metrics: Metrics, backoff_s: float = 0.5) -> None:
        self.url = url
        self.secret = secret
        self.retries = retries
        self.backoff_s = backoff_s
        self.metrics = metrics
        self._queue: asyncio.Queue[WatchEvent] = asyncio.Queue(QUEUE_SIZE)
        self._client = httpx.AsyncClient(timeout=5.0)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._deliver(), name="watch-webhook")

    async def aclose(self) -> None:
        await cancel_task(self._task)
        await self._client.aclose()

    async def emit(self, event: WatchEvent) -> None:
        try:
            self._queue.put_nowait(event)
        except asyncio.QueueFull:
            self.metrics.watch_errors.labels("webhook").inc()

    async def status(self, status: WatchStatus) -> None:
        return None  # statuses change every frame: only events are sent

    async def _deliver(self) -> None:
        while True:
            event = await self._queue.get()
            if not await self._post(event):
                self.metrics.watch_errors.labels("webhook").inc()
                log.warning("webhook gave up on a %s event of %s", event.kind, event.stream_id)

    async def _post(self, event: WatchEvent) -> bool:
        body = json.dumps(event.as_dict()).encode()
        for attempt in range(self.retries + 1):
            timestamp = str(int(time.time()))
            headers = {"content-type": "application/json", "x-watchbuy-timestamp": timestamp}
            if self.secret:
                headers["x-watchbuy-signature"] = signature(self.secret, timestamp, body)
            try:
                response = await self._client.post(self.url, content=body, headers=headers)
                if response.is_success:
                    return True
                if response.status_code < 500 and response.status_code != 429:
                    return False
            except httpx.HTTPError as exc:
                log.info("webhook try %d failed: %s", attempt + 1, exc)
            await asyncio.sleep(self.backoff_s * 2**attempt)
        return False
