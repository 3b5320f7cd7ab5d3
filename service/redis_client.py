"""The one place that owns the service's Redis connection (redis.asyncio, used from the event loop only).

`RedisLink` keeps an `up` flag. A command that fails on the connection marks Redis down; while it is
down every call fails at once (`RedisUnavailable`, no network wait), so callers degrade instead of
stalling a request. A monitor task pings with capped exponential backoff (plus jitter) while Redis is
down and once a second while it is up, flips the flag back, and keeps the `watchbuy_redis_up` gauge
true. Short connect and command timeouts bound what a black-holed Redis can cost one request.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from service.metrics import Metrics

log = logging.getLogger(__name__)

T = TypeVar("T")

#: How often a healthy connection is pinged, and the backoff bounds while Redis is down.
CHECK_SECONDS = 1.0
BACKOFF_MIN_SECONDS, BACKOFF_MAX_SECONDS = 0.1, 2.0
#: Errors that mean the connection (not the command) failed.
CONNECTION_ERRORS: tuple[type[Exception], ...] = (RedisConnectionError, RedisTimeoutError, OSError)
#: Any failure of a Redis call: a lost connection, or an error Redis answered with.
REDIS_ERRORS: tuple[type[Exception], ...] = (*CONNECTION_ERRORS, RedisError)


class RedisUnavailable(Exception):
    """Redis is down (or the command failed); the caller degrades (no smoothing, rate limit open)."""


def connect(url: str, timeout_seconds: float) -> aioredis.Redis:
    """An asyncio client with short timeouts and one immediate retry (a pooled socket that went stale)."""
    return aioredis.Redis.from_url(
        url,
        socket_timeout=timeout_seconds,
        socket_connect_timeout=timeout_seconds,
        retry=Retry(NoBackoff(), 1),
        decode_responses=True,
        health_check_interval=0,
    )


class RedisLink:
    """A Redis client plus its health: `up`, `wait_up()`, `run(op)`, and the monitor task."""

    def __init__(self, url: str, timeout_seconds: float, metrics: Metrics) -> None:
        self.url = url
        self.client = connect(url, timeout_seconds)
        self._metrics = metrics
        self._up = False
        self._up_event = asyncio.Event()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._down_reason: str | None = None
        self.generation = 0  # +1 each time Redis comes (back) up: long-lived users (pub/sub) reconnect
        metrics.set_redis(configured=True, up=False)

    @property
    def up(self) -> bool:
        return self._up

    async def start(self) -> None:
        """Try once (so /readyz is right from the start), then keep watching in a background task."""
        await self._ping_once()
        self._task = asyncio.create_task(self._monitor(), name="redis-monitor")

    async def aclose(self) -> None:
        await cancel_task(self._task)
        self._task = None
        await self.client.aclose()

    async def wait_up(self) -> None:
        """Return once Redis answers again (the monitor task decides)."""
        await self._up_event.wait()

    async def run(self, op: Callable[[aioredis.Redis], Awaitable[T]]) -> T:
        """`await op(client)`; RedisUnavailable at once while Redis is down, or when the command fails."""
        if not self._up:
            raise RedisUnavailable(f"redis is down ({self._down_reason})")
        try:
            return await op(self.client)
        except CONNECTION_ERRORS as exc:
            self.mark_down(exc)
            raise RedisUnavailable(f"redis connection failed: {exc}") from exc
        except RedisError as exc:
            raise RedisUnavailable(f"redis command failed: {exc}") from exc

    def mark_down(self, exc: BaseException) -> None:
        """Record a connection failure seen by anyone (a command, the pub/sub listener)."""
        self._set_down(f"{type(exc).__name__}: {exc}")
        self._wake.set()  # the monitor starts probing with its shortest backoff

    async def _ping_once(self) -> bool:
        try:
            await self.client.ping()
        except REDIS_ERRORS as exc:
            self._set_down(f"{type(exc).__name__}: {exc}")
            return False
        self._set_up()
        return True

    async def _monitor(self) -> None:
        delay = BACKOFF_MIN_SECONDS
        while True:
            if self._up:
                delay = BACKOFF_MIN_SECONDS
                wait = CHECK_SECONDS
            else:
                wait = delay * random.uniform(0.8, 1.2)
                delay = min(delay * 2, BACKOFF_MAX_SECONDS)
            self._wake.clear()
            try:
                async with asyncio.timeout(wait):
                    await self._wake.wait()
                delay = BACKOFF_MIN_SECONDS  # woken by a failure: probe again soon
            except TimeoutError:
                pass
            await self._ping_once()

    def _set_up(self) -> None:
        if self._up:
            return
        was_down = self._down_reason is not None
        self._up, self._down_reason = True, None
        self.generation += 1
        self._up_event.set()
        self._metrics.set_redis(configured=True, up=True)
        if was_down:
            self._metrics.count_redis_reconnect()
            log.warning("redis is back at %s; sessions, rate limits and the index registry resume", self._safe_url)
        else:
            log.info("redis connected at %s", self._safe_url)

    def _set_down(self, reason: str) -> None:
        if not self._up and self._down_reason is not None:
            return
        self._up, self._down_reason = False, reason
        self._up_event.clear()
        self._metrics.set_redis(configured=True, up=False)
        log.warning(
            "redis unavailable at %s (%s): degraded: no session smoothing, rate limits fail open, "
            "index reload falls back to CURRENT polling; reconnecting in the background",
            self._safe_url, reason,
        )

    @property
    def _safe_url(self) -> str:
        """The URL without a password, for logs."""
        kwargs = self.client.connection_pool.connection_kwargs
        return f"{kwargs.get('host', '?')}:{kwargs.get('port', '?')}/{kwargs.get('db', 0)}"


async def cancel_task(task: asyncio.Task[None] | None) -> None:
    """Cancel a background task and wait for it to end (re-cancelling: Python 3.11 can swallow a cancel
    that races an inner wait's completion)."""
    if task is None:
        return
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=0.5)
    if not task.cancelled() and task.exception() is not None:
        log.warning("background task %s ended with %r", task.get_name(), task.exception())


def redis_state(link: RedisLink | None) -> str:
    """"off" (not configured), "up" or "down", for /readyz."""
    if link is None:
        return "off"
    return "up" if link.up else "down"
