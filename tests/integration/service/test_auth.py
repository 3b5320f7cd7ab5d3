"""API keys and the per-key rate limit with a real redis-server and a real server."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from support.data import SLICE_STREAM
from support.live_server import LiveServer
from support.redis_server import RedisServer

from service.auth import RateLimiter
from service.metrics import Metrics
from service.redis_client import RedisLink

KEY, OTHER = "k-0123456789abcdef", "k-fedcba9876543210"


@pytest.mark.asyncio
async def test_fixed_window_limit_in_redis_and_failing_open(redis_server: RedisServer) -> None:
    metrics = Metrics()
    link = RedisLink(redis_server.url, 0.5, metrics)
    await link.start()
    limiter = RateLimiter(link, per_minute=3, metrics=metrics)
    now = 6_000_000.0 + 45.5  # 45.5 s into a minute
    try:
        assert [(await limiter.check(KEY, now)).allowed for _ in range(4)] == [True, True, True, False]
        denied = await limiter.check(KEY, now)
        assert not denied.allowed and denied.retry_after == 15  # ceil(60 - 45.5)
        assert (await limiter.check(OTHER, now)).allowed  # keys are counted apart
        assert (await limiter.check(KEY, now + 15)).allowed  # the next minute
        with redis_server.client() as client:
            keys = client.keys("watchbuy:rate:*")
            assert keys and not any(KEY in k for k in keys)  # the key itself is never stored
            assert all(0 < client.ttl(k) <= 120 for k in keys)
        redis_server.kill()
        assert (await limiter.check(KEY, now)).allowed  # fails open while Redis is down
        value = metrics.registry.get_sample_value
        assert value("watchbuy_rate_limit_decisions_total", {"result": "failed_open"}) == 1
        assert value("watchbuy_rate_limit_decisions_total", {"result": "limited"}) == 2
        assert value("watchbuy_redis_up") == 0
    finally:
        await link.aclose()


@pytest.mark.integration
def test_real_server_requires_keys_and_limits_them(
    model_dir: Path, slice_index_root: Path, tmp_path: Path, redis_server: RedisServer
) -> None:
    server = LiveServer(tmp_path / "server.log", {
        "WATCHBUY_MODEL_DIR": str(model_dir), "WATCHBUY_INDEX_ROOT": str(slice_index_root),
        "WATCHBUY_REDIS_URL": redis_server.url, "WATCHBUY_API_KEYS": f'["{KEY}", "{OTHER}"]',
        "WATCHBUY_RATE_LIMIT_PER_MINUTE": "4",
    })
    server.start()
    try:
        server.wait_ready()
        with httpx.Client(base_url=server.base, timeout=60.0) as http:
            for path in ("/healthz", "/readyz", "/metrics"):
                assert http.get(path).status_code == 200, path
            stream = f"/streams/{SLICE_STREAM}"
            for headers, message in (({}, "missing"), ({"X-API-Key": "nope"}, "invalid"),
                                     ({"Authorization": "Basic " + KEY}, "missing")):
                response = http.get(stream, headers=headers)
                assert response.status_code == 401, response.text
                assert response.json()["error"]["code"] == "unauthorized"
                assert message in response.json()["error"]["message"]
                assert response.headers["www-authenticate"] == "Bearer"
            assert http.get("/docs").status_code == 401
            json_type = {"content-type": "application/json"}
            assert http.post("/identify", content=b"{}", headers=json_type).status_code == 401

            assert http.get(stream, headers={"X-API-Key": KEY}).status_code == 200
            assert http.get(stream, headers={"Authorization": f"Bearer {KEY}"}).status_code == 200
            # 4 a minute: 9 more requests hit the limit even if a minute boundary falls in between
            responses = [http.get(stream, headers={"X-API-Key": KEY}) for _ in range(9)]
            codes = [r.status_code for r in responses]
            assert 429 in codes and set(codes) <= {200, 429}, codes
            denied = next(r for r in responses if r.status_code == 429)
            assert denied.json()["error"]["code"] == "rate_limited"
            assert 1 <= int(denied.headers["retry-after"]) <= 60
            assert http.get(stream, headers={"X-API-Key": OTHER}).status_code == 200  # its own budget
            assert http.get("/metrics").status_code == 200  # open paths are never limited
            metrics = http.get("/metrics").text
            assert 'watchbuy_errors_total{code="unauthorized"} 5.0' in metrics
            assert 'watchbuy_rate_limit_decisions_total{result="limited"}' in metrics
    finally:
        server.stop()
