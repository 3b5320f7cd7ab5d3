"""API keys and the per-key rate limit, as one pure ASGI middleware.

With `WATCHBUY_API_KEYS` set, every path except the platform's and the demo page's (`OPEN_PATHS`,
`OPEN_PREFIXES`) needs `X-API-Key: <key>` or `Authorization: Bearer <key>`; keys are compared in
constant time (`hmac.compare_digest`, against every configured key). Missing or wrong → 401
`unauthorized`. With `WATCHBUY_RATE_LIMIT_PER_MINUTE` > 0 each key gets that many requests per clock
minute (a fixed-window counter in Redis shared by all replicas); over it → 429 `rate_limited` with
`Retry-After` (seconds to the next window). While Redis is down the limit fails open: requests pass,
`watchbuy_rate_limit_decisions_total{result="failed_open"}` counts them and a warning is logged.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from service.errors import ApiError, RateLimited, Unauthorized, error_response
from service.metrics import Metrics
from service.redis_client import RedisLink, RedisUnavailable

log = logging.getLogger(__name__)

#: Open to the platform (probes, Prometheus) and the public demo page.
OPEN_PATHS = frozenset({"/healthz", "/readyz", "/metrics", "/demo"})
OPEN_PREFIXES = ("/demo/static/",)
WINDOW_SECONDS = 60
RATE_KEY_PREFIX = "watchbuy:rate"


def is_open_path(path: str) -> bool:
    return path in OPEN_PATHS or path.startswith(OPEN_PREFIXES)


def key_id(key: str) -> str:
    """A short, non-reversible name for a key (Redis keys, logs): never the key itself."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:16]


class ApiKeys:
    """The configured keys; `match` compares against all of them in constant time."""

    def __init__(self, keys: Sequence[str]) -> None:
        self._keys = [key.encode("utf-8") for key in keys]

    @property
    def enabled(self) -> bool:
        return bool(self._keys)

    def match(self, presented: str | None) -> str | None:
        """The key when it is one of ours, else None (every key is compared, no early exit)."""
        if presented is None:
            return None
        candidate = presented.encode("utf-8", "surrogateescape")
        found = None
        for key in self._keys:
            if hmac.compare_digest(candidate, key):
                found = key
        return found.decode("utf-8") if found is not None else None


def presented_key(headers: Headers) -> str | None:
    """`X-API-Key`, else the token of `Authorization: Bearer <token>`, else None."""
    key = headers.get("x-api-key")
    if key:
        return key.strip()
    scheme, _, token = headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return None


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    retry_after: int = 0


class RateLimiter:
    """Fixed one-minute windows per key: INCR + EXPIRE of `watchbuy:rate:<key id>:<minute>`."""

    def __init__(self, link: RedisLink, per_minute: int, metrics: Metrics) -> None:
        self._link = link
        self._per_minute = per_minute
        self._metrics = metrics

    async def check(self, key: str, now: float | None = None) -> Decision:
        now = time.time() if now is None else now
        window = int(now // WINDOW_SECONDS)
        counter = f"{RATE_KEY_PREFIX}:{key_id(key)}:{window}"

        async def count(client) -> int:  # type: ignore[no-untyped-def]
            async with client.pipeline(transaction=True) as pipe:
                pipe.incr(counter)
                pipe.expire(counter, 2 * WINDOW_SECONDS)
                used, _ = await pipe.execute()
            return int(used)

        try:
            used = await self._link.run(count)
        except RedisUnavailable as exc:
            self._metrics.count_rate_limit("failed_open")
            log.debug("rate limit not enforced for key %s: %s", key_id(key), exc)
            return Decision(allowed=True)
        if used > self._per_minute:
            self._metrics.count_rate_limit("limited")
            return Decision(allowed=False, retry_after=max(1, math.ceil((window + 1) * WINDOW_SECONDS - now)))
        self._metrics.count_rate_limit("allowed")
        return Decision(allowed=True)


class ApiKeyMiddleware:
    """401 without a valid key, 429 over the key's rate limit; open paths and non-HTTP scopes pass."""

    def __init__(
        self,
        app: ASGIApp,
        keys: Sequence[str],
        metrics: Metrics,
        limiter: Callable[[], RateLimiter | None] = lambda: None,
    ) -> None:
        self.app = app
        self.keys = ApiKeys(keys)
        self.metrics = metrics
        self.limiter = limiter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.keys.enabled or is_open_path(scope.get("path", "")):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        presented = presented_key(headers)
        key = self.keys.match(presented)
        if key is None:
            message = "invalid API key" if presented else "missing API key: send X-API-Key or Authorization: Bearer"
            await self._reject(scope, receive, send, Unauthorized(message), {"WWW-Authenticate": "Bearer"})
            return
        limiter = self.limiter()
        if limiter is not None:
            decision = await limiter.check(key)
            if not decision.allowed:
                error = RateLimited(f"rate limit exceeded; retry in {decision.retry_after} s")
                await self._reject(scope, receive, send, error, {"Retry-After": str(decision.retry_after)})
                return
        await self.app(scope, receive, send)

    async def _reject(self, scope: Scope, receive: Receive, send: Send, error: ApiError, headers: dict) -> None:
        self.metrics.count_error(error.code)
        await error_response(error, headers=headers)(scope, receive, send)
