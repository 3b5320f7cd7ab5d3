"""The window of requests an answer is ranked over: the request alone, or a viewer session's recent ones.

A request with a `session_id` stores its product scores (the best `CANDIDATES` products and the lowest
of them as the floor) at the head of the Redis list `watchbuy:session:<stream>:<session>`, trimmed to
`WATCHBUY_SESSION_WINDOW` entries and expiring `WATCHBUY_SESSION_TTL_SECONDS` after the last request,
all in one MULTI/EXEC that also reads the window back. The pipeline then ranks over that window
(service/aggregate.py: mean score, a request that did not retrieve a product counting with its floor), so
a player asking every few seconds gets a stable answer. Without Redis, without a session_id, or while
Redis is down, the window is the request alone and `Smoothing.applied` is false.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from redis.asyncio import Redis

from service.aggregate import ProductScores, Scored
from service.metrics import Metrics
from service.redis_client import RedisLink, RedisUnavailable
from service.values import Smoothing

log = logging.getLogger(__name__)

#: Products of each request kept in the session (more than top_k, so a product ranked 6th now still
#: counts when it was 1st a moment ago).
CANDIDATES = 20
KEY_PREFIX = "watchbuy:session"


@dataclass(frozen=True, slots=True)
class SessionEntry:
    """One request of a session: when, its product scores and its floor."""

    at: float
    scores: dict[str, float]
    floor: float


@dataclass(frozen=True, slots=True)
class Window:
    """The requests to rank over (the current one included) and what the response says about them."""

    entries: tuple[Scored, ...]
    smoothing: Smoothing


class RequestWindow(Protocol):
    """Where the current request's scores go and which requests the answer is ranked over."""

    async def window(self, scores: ProductScores) -> Window: ...


def session_key(stream_id: str, session_id: str) -> str:
    """Both ids match `[A-Za-z0-9._-]{1,128}` (validated at the edge), so the key is unambiguous."""
    return f"{KEY_PREFIX}:{stream_id}:{session_id}"


def make_entry(scores: ProductScores, at: float) -> SessionEntry:
    """The request's best CANDIDATES products (rounded for storage), their lowest score as the floor."""
    best = sorted(scores.scores.items(), key=lambda item: (-item[1], item[0]))[:CANDIDATES]
    kept = {pid: round(float(score), 6) for pid, score in best}
    return SessionEntry(at=at, scores=kept, floor=min(kept.values(), default=0.0))


def encode_entry(entry: SessionEntry) -> str:
    return json.dumps({"t": round(entry.at, 3), "s": entry.scores, "f": entry.floor}, separators=(",", ":"))


def decode_entry(text: object) -> SessionEntry | None:
    """A stored entry, or None when it is not one (a foreign value under our key is ignored)."""
    try:
        raw = json.loads(text)  # type: ignore[arg-type]
        scores = {str(pid): float(score) for pid, score in raw["s"].items()}
        return SessionEntry(at=float(raw["t"]), scores=scores, floor=float(raw["f"]))
    except (TypeError, ValueError, KeyError, AttributeError):
        return None


@dataclass(frozen=True, slots=True)
class Alone:
    """No session window: the request is ranked on its own (`reason` says why, and is counted)."""

    reason: str
    metrics: Metrics | None = None

    async def window(self, scores: ProductScores) -> Window:
        if self.metrics is not None:
            self.metrics.count_smoothing(self.reason)
        return Window((scores,), Smoothing(applied=False, window=1, reason=self.reason))


class Sessions:
    """The session windows in Redis."""

    def __init__(self, link: RedisLink, window: int, ttl_seconds: int, metrics: Metrics) -> None:
        self._link = link
        self._window = window
        self._ttl = ttl_seconds
        self.metrics = metrics

    async def fold(self, stream_id: str, session_id: str, entry: SessionEntry) -> list[SessionEntry]:
        """Push `entry`, trim, refresh the TTL, and return the window (newest first, expired dropped)."""
        key = session_key(stream_id, session_id)

        async def push(client: Redis) -> list[str]:
            async with client.pipeline(transaction=True) as pipe:
                pipe.lpush(key, encode_entry(entry))
                pipe.ltrim(key, 0, self._window - 1)
                pipe.expire(key, self._ttl)
                pipe.lrange(key, 0, self._window - 1)
                results = await pipe.execute()
            stored: list[str] = results[-1]
            return stored

        stored = await self._link.run(push)
        oldest = entry.at - self._ttl
        entries = [e for e in map(decode_entry, stored) if e is not None and e.at >= oldest]
        return entries or [entry]

    def of(self, stream_id: str, session_id: str) -> SessionWindow:
        return SessionWindow(self, stream_id, session_id)


@dataclass(frozen=True, slots=True)
class SessionWindow:
    """One viewer session's window; the request alone (reason `redis_unavailable`) when Redis fails."""

    sessions: Sessions
    stream_id: str
    session_id: str

    async def window(self, scores: ProductScores) -> Window:
        try:
            entries: Sequence[Scored] = await self.sessions.fold(
                self.stream_id, self.session_id, make_entry(scores, time.time())
            )
        except RedisUnavailable as exc:
            log.debug("session smoothing skipped: %s", exc)
            return await Alone("redis_unavailable", self.sessions.metrics).window(scores)
        self.sessions.metrics.count_smoothing("applied")
        return Window(tuple(entries), Smoothing(applied=True, window=len(entries)))


def request_window(
    sessions: Sessions | None, stream_id: str, session_id: str | None, metrics: Metrics | None = None
) -> RequestWindow:
    """The session's window when sessions are on (Redis configured) and the request names one."""
    if sessions is None:
        return Alone("disabled", metrics)
    if not session_id:
        return Alone("no_session", metrics)
    return sessions.of(stream_id, session_id)
