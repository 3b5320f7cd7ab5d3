"""Temporal smoothing for /identify: a viewer session's recent requests, averaged, in Redis.

A request with a `session_id` stores its product scores (the best `CANDIDATES` products and the lowest
of them as the floor) at the head of the Redis list `watchbuy:session:<stream>:<session>`, trimmed to
`WATCHBUY_SESSION_WINDOW` entries and expiring `WATCHBUY_SESSION_TTL_SECONDS` after the last request,
all in one MULTI/EXEC that also reads the window back. Products are ranked by their mean score over
the window, a request that did not retrieve a product counting with its floor (the rule
service/aggregate.py applies across frames), so a player asking every few seconds gets a stable
answer. Products no longer in the stream's current index are dropped. Without Redis, without a
session_id, or while Redis is down, the request's own ranking is returned and `applied` is false.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from service.aggregate import AbstainThresholds, RankedProduct, should_abstain
from service.metrics import Metrics
from service.pipeline import Identification
from service.redis_client import RedisLink, RedisUnavailable

log = logging.getLogger(__name__)

#: Products of each request kept in the session (more than top_k, so a product ranked 6th now still
#: counts when it was 1st a moment ago).
CANDIDATES = 20
KEY_PREFIX = "watchbuy:session"


@dataclass(frozen=True, slots=True)
class Smoothing:
    """What the response says: whether the session window was used, over how many requests, why not."""

    applied: bool
    window: int
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class SessionEntry:
    """One request of a session: when, its product scores and its floor."""

    at: float
    scores: dict[str, float]
    floor: float


def session_key(stream_id: str, session_id: str) -> str:
    """Both ids match `[A-Za-z0-9._-]{1,128}` (validated at the edge), so the key is unambiguous."""
    return f"{KEY_PREFIX}:{stream_id}:{session_id}"


def make_entry(products: Sequence[RankedProduct], at: float) -> SessionEntry:
    scores = {p.product_id: round(float(p.score), 6) for p in products[:CANDIDATES]}
    return SessionEntry(at=at, scores=scores, floor=min(scores.values(), default=0.0))


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


def smooth_scores(entries: Sequence[SessionEntry], titles: Mapping[str, str]) -> list[tuple[str, float]]:
    """Mean score per product over `entries` (absent → that entry's floor), best first.

    Only products in `titles` (the stream's current index) are ranked.
    """
    if not entries:
        return []
    candidates = {pid for entry in entries for pid in entry.scores if pid in titles}
    means = {
        pid: sum(entry.scores.get(pid, entry.floor) for entry in entries) / len(entries) for pid in candidates
    }
    return sorted(means.items(), key=lambda item: (-item[1], item[0]))


class Sessions:
    """The session window in Redis and the re-ranking of one /identify result."""

    def __init__(
        self, link: RedisLink, window: int, ttl_seconds: int, abstain: AbstainThresholds, metrics: Metrics
    ) -> None:
        self._link = link
        self._window = window
        self._ttl = ttl_seconds
        self._abstain = abstain
        self._metrics = metrics

    async def fold(self, stream_id: str, session_id: str, entry: SessionEntry) -> list[SessionEntry]:
        """Push `entry`, trim, refresh the TTL, and return the window (newest first, expired dropped)."""
        key = session_key(stream_id, session_id)

        async def push(client) -> list[str]:  # type: ignore[no-untyped-def]
            async with client.pipeline(transaction=True) as pipe:
                pipe.lpush(key, encode_entry(entry))
                pipe.ltrim(key, 0, self._window - 1)
                pipe.expire(key, self._ttl)
                pipe.lrange(key, 0, self._window - 1)
                results = await pipe.execute()
            return results[-1]

        stored = await self._link.run(push)
        oldest = entry.at - self._ttl
        entries = [e for e in map(decode_entry, stored) if e is not None and e.at >= oldest]
        return entries or [entry]

    async def smooth(
        self, session_id: str, result: Identification, titles: Mapping[str, str], top_k: int
    ) -> tuple[Identification, Smoothing]:
        """Fold `result` into the session and re-rank by the window; unsmoothed if Redis fails."""
        entry = make_entry(result.products, time.time())
        try:
            entries = await self.fold(result.stream_id, session_id, entry)
        except RedisUnavailable as exc:
            log.debug("session smoothing skipped: %s", exc)
            return unsmoothed(result, top_k, "redis_unavailable", self._metrics)
        ranked = smooth_scores(entries, titles)[:top_k]
        products = tuple(RankedProduct(pid, score, titles.get(pid, "")) for pid, score in ranked)
        self._metrics.count_smoothing("applied")
        smoothed = replace(result, products=products, abstain=should_abstain(products, self._abstain.for_stream(result.stream_id)))
        return smoothed, Smoothing(applied=True, window=len(entries))


def candidates(sessions: Sessions | None, session_id: str | None, top_k: int) -> int:
    """How many products to ask the pipeline for: more than top_k when the session will be smoothed."""
    return max(top_k, CANDIDATES) if sessions is not None and session_id else top_k


def unsmoothed(
    result: Identification, top_k: int, reason: str, metrics: Metrics | None = None
) -> tuple[Identification, Smoothing]:
    if metrics is not None:
        metrics.count_smoothing(reason)
    return replace(result, products=result.products[:top_k]), Smoothing(applied=False, window=1, reason=reason)


async def apply_session(
    sessions: Sessions | None,
    session_id: str | None,
    result: Identification,
    titles: Mapping[str, str],
    top_k: int,
    metrics: Metrics,
) -> tuple[Identification, Smoothing]:
    """The route's one call: smoothed when a session and Redis are there, else the request's ranking."""
    if sessions is None:
        return unsmoothed(result, top_k, "disabled", metrics)
    if not session_id:
        return unsmoothed(result, top_k, "no_session", metrics)
    return await sessions.smooth(session_id, result, titles, top_k)
