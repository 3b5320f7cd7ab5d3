"""Where watch events and statuses are kept for readers: `GET /streams/{id}/now` and the SSE stream.

`RedisEventLog` (with WATCHBUY_REDIS_URL): each stream's events in a Redis Stream
(`watchbuy:watch:events:<stream>`, `XADD MAXLEN ~`), its status in `watchbuy:watch:now:<stream>`; every
API replica and watch worker sees the same. `MemoryEventLog` (one process, no Redis): the same, held in
memory. Event ids are the Redis entry ids (or a counter): an SSE client resumes with Last-Event-ID.
"""

from __future__ import annotations

import asyncio
import json
from collections import deque
from typing import Any, Protocol

import redis.asyncio as aioredis

from service.redis_client import RedisLink
from service.watch.events import WatchEvent, WatchStatus

EVENTS_KEY = "watchbuy:watch:events:{stream}"
NOW_KEY = "watchbuy:watch:now:{stream}"
NOW_TTL_S = 24 * 3600

Entry = tuple[str, dict[str, Any]]  # (event id, event)


class EventLog(Protocol):
    async def emit(self, event: WatchEvent) -> None: ...

    async def status(self, status: WatchStatus) -> None: ...

    async def now(self, stream_id: str) -> dict[str, Any] | None: ...

    async def read(self, stream_id: str, after: str | None, wait_s: float) -> list[Entry]:
        """Events after id `after` (None: only new ones), waiting up to `wait_s` for one."""
        ...


class RedisEventLog:
    def __init__(self, link: RedisLink, url: str, maxlen: int) -> None:
        self.link = link
        self.maxlen = maxlen
        # blocking reads (XREAD BLOCK) need a longer socket timeout than the link's short command timeout
        self._reader = aioredis.from_url(url, socket_timeout=60, socket_connect_timeout=5, decode_responses=True)

    async def emit(self, event: WatchEvent) -> None:
        key = EVENTS_KEY.format(stream=event.stream_id)
        data = json.dumps(event.as_dict())
        await self.link.run(lambda r: r.xadd(key, {"event": data}, maxlen=self.maxlen, approximate=True))

    async def status(self, status: WatchStatus) -> None:
        key = NOW_KEY.format(stream=status.stream_id)
        await self.link.run(lambda r: r.set(key, json.dumps(status.as_dict()), ex=NOW_TTL_S))

    async def now(self, stream_id: str) -> dict[str, Any] | None:
        raw = await self.link.run(lambda r: r.get(NOW_KEY.format(stream=stream_id)))
        return _decoded(raw)

    async def read(self, stream_id: str, after: str | None, wait_s: float) -> list[Entry]:
        key = EVENTS_KEY.format(stream=stream_id)
        reply: Any = await self._reader.xread({key: after or "$"}, count=100, block=max(1, int(wait_s * 1000)))
        return [(entry_id, json.loads(fields["event"])) for _, entries in reply or [] for entry_id, fields in entries]

    async def aclose(self) -> None:
        await self._reader.aclose()


class MemoryEventLog:
    def __init__(self, maxlen: int) -> None:
        self.maxlen = maxlen
        self._events: dict[str, deque[tuple[int, dict[str, Any]]]] = {}
        self._now: dict[str, dict[str, Any]] = {}
        self._seq = 0
        self._changed = asyncio.Condition()

    async def emit(self, event: WatchEvent) -> None:
        async with self._changed:
            self._seq += 1
            log = self._events.setdefault(event.stream_id, deque(maxlen=self.maxlen))
            log.append((self._seq, event.as_dict()))
            self._changed.notify_all()

    async def status(self, status: WatchStatus) -> None:
        self._now[status.stream_id] = status.as_dict()

    async def now(self, stream_id: str) -> dict[str, Any] | None:
        return self._now.get(stream_id)

    async def read(self, stream_id: str, after: str | None, wait_s: float) -> list[Entry]:
        start = self._seq if after is None else _int(after)
        async with self._changed:
            try:
                await asyncio.wait_for(
                    self._changed.wait_for(lambda: self._newer(stream_id, start)), timeout=wait_s
                )
            except TimeoutError:
                return []
            return [(str(n), e) for n, e in self._events.get(stream_id, ()) if n > start]

    def _newer(self, stream_id: str, start: int) -> bool:
        log = self._events.get(stream_id)
        return log is not None and len(log) > 0 and log[-1][0] > start

    async def aclose(self) -> None:
        return None


def _decoded(raw: str | bytes | None) -> dict[str, Any] | None:
    if raw is None:
        return None
    value = json.loads(raw)
    return value if isinstance(value, dict) else None


def _int(value: str) -> int:
    try:
        return int(value)
    except ValueError:
        return 0
