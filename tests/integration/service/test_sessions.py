"""Session windows in a real redis-server, and /identify without and with Redis (a real uvicorn)."""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from support.data import SLICE_STREAM
from support.helpers import TITLES, product_scores
from support.live_server import LiveServer
from support.redis_server import RedisServer

from service.aggregate import ProductScores, rank_products, should_abstain
from service.app import create_app
from service.metrics import Metrics
from service.redis_client import RedisLink
from service.sessions import (
    SessionEntry,
    Sessions,
    encode_entry,
    make_entry,
    session_key,
)
from service.values import Smoothing
from watchbuy.settings import Settings


async def smooth(sessions: Sessions, session_id: str, scores: ProductScores, top_k: int,
                 threshold: float = 0.7) -> tuple[SimpleNamespace, Smoothing]:
    """What the pipeline's last step does for stream s1: the session's window, its ranking, abstain."""
    window = await sessions.of("s1", session_id).window(scores)
    products = rank_products(window.entries, TITLES, top_k)
    return SimpleNamespace(products=products, abstain=should_abstain(products, threshold)), window.smoothing


@pytest.mark.asyncio
async def test_window_is_bounded_expires_and_smooths(redis_server: RedisServer) -> None:
    metrics = Metrics()
    link = RedisLink(redis_server.url, 0.5, metrics)
    await link.start()
    sessions = Sessions(link, window=3, ttl_seconds=60, metrics=metrics)
    try:
        first, smoothing = await smooth(sessions, "viewer-1", product_scores(("a", 0.9), ("b", 0.8)), top_k=2)
        assert smoothing.applied and smoothing.window == 1
        assert [p.product_id for p in first.products] == ["a", "b"] and not first.abstain

        # a noisy request where b edges out a: the session keeps answering a
        noisy, smoothing = await smooth(sessions, "viewer-1", product_scores(("b", 0.85), ("a", 0.84)), top_k=1)
        assert smoothing.window == 2 and [p.product_id for p in noisy.products] == ["a"]
        assert noisy.products[0].score == pytest.approx((0.9 + 0.84) / 2)

        for _ in range(4):
            _, smoothing = await smooth(sessions, "viewer-1", product_scores(("c", 0.5)), top_k=1)
        assert smoothing.window == 3  # bounded
        low, _ = await smooth(sessions, "viewer-1", product_scores(("c", 0.5)), top_k=1)
        assert low.abstain and low.products[0].product_id == "c"  # the smoothed best is under 0.7

        other, smoothing = await smooth(sessions, "viewer-2", product_scores(("b", 0.7)), top_k=3)
        assert smoothing.window == 1 and [p.product_id for p in other.products] == ["b"]

        with redis_server.client() as client:
            key = session_key("s1", "viewer-1")
            assert client.llen(key) == 3 and 0 < client.ttl(key) <= 60
            # an entry older than the TTL (the list was kept alive by newer ones) no longer counts
            client.rpush(key, encode_entry(SessionEntry(time.time() - 3600, {"b": 1.0}, 1.0)))
        entries = await sessions.fold("s1", "viewer-1", make_entry(product_scores(("c", 0.5)), time.time()))
        assert len(entries) == 3 and all("b" not in e.scores for e in entries)
        applied = metrics.registry.get_sample_value("watchbuy_session_smoothing_total", {"outcome": "applied"})
        assert applied == 8

        redis_server.kill()  # Redis gone: the request's own ranking, cut to top_k, and it says why
        plain, smoothing = await smooth(sessions, "viewer-1", product_scores(("b", 0.85), ("a", 0.84)), top_k=1)
        assert not smoothing.applied and smoothing.reason == "redis_unavailable" and smoothing.window == 1
        assert [p.product_id for p in plain.products] == ["b"]
        assert not link.up
    finally:
        await link.aclose()


@pytest.mark.integration
def test_without_redis_there_is_no_smoothing(model_dir: Path, slice_index_root: Path, slice_dir: Path) -> None:
    frame = min((slice_dir / "frames").iterdir())
    settings = Settings(model_dir=model_dir, index_root=slice_index_root)
    limit = Image.MAX_IMAGE_PIXELS
    try:
        with TestClient(create_app(settings)) as client:
            ready = client.get("/readyz")
            assert ready.status_code == 200 and ready.json() == {"status": "ready", "redis": "off"}
            for _ in range(2):
                response = client.post("/identify", data={"stream_id": SLICE_STREAM, "session_id": "v1", "top_k": 2},
                                       files=[("frames", ("f.jpg", frame.read_bytes(), "image/jpeg"))])
                assert response.status_code == 200, response.text
                body = response.json()
                assert body["smoothing"] == {"applied": False, "window": 1, "reason": "disabled"}
                assert len(body["products"]) == 2
            metrics = client.get("/metrics").text
            assert "watchbuy_redis_up 0.0" in metrics and "watchbuy_redis_configured 0.0" in metrics
    finally:
        Image.MAX_IMAGE_PIXELS = limit


@pytest.mark.integration
def test_identify_smooths_a_session_over_http(
    model_dir: Path, slice_index_root: Path, slice_dir: Path, tmp_path: Path, redis_server: RedisServer
) -> None:
    frames = sorted((slice_dir / "frames").iterdir())[:2]
    server = LiveServer(tmp_path / "server.log", {
        "WATCHBUY_MODEL_DIR": str(model_dir), "WATCHBUY_INDEX_ROOT": str(slice_index_root),
        "WATCHBUY_REDIS_URL": redis_server.url, "WATCHBUY_SESSION_WINDOW": "3",
    })
    server.start()
    try:
        server.wait_ready()
        with httpx.Client(base_url=server.base, timeout=60.0) as http:
            assert http.get("/readyz").json() == {"status": "ready", "redis": "up"}

            def ask(frame: Path, **fields: str) -> dict:
                response = http.post("/identify", data={"stream_id": SLICE_STREAM, "top_k": "20", **fields},
                                     files=[("frames", ("f.jpg", frame.read_bytes(), "image/jpeg"))])
                assert response.status_code == 200, response.text
                return response.json()

            alone = [ask(frame) for frame in frames]
            assert all(a["smoothing"] == {"applied": False, "window": 1, "reason": "no_session"} for a in alone)
            first = ask(frames[0], session_id="viewer-1")
            assert first["smoothing"] == {"applied": True, "window": 1, "reason": None}
            assert first["products"] == alone[0]["products"]  # one request: its own ranking
            second = ask(frames[1], session_id="viewer-1")
            assert second["smoothing"] == {"applied": True, "window": 2, "reason": None}
            # top_k=20 shows every stored score, so the mean (floor for an absent product) can be redone here
            scores = [{p["product_id"]: p["score"] for p in a["products"]} for a in alone]
            floors = [min(s.values()) for s in scores]
            expected = {pid: sum(s.get(pid, f) for s, f in zip(scores, floors, strict=True)) / 2
                        for pid in set().union(*scores)}
            got = {p["product_id"]: p["score"] for p in second["products"]}
            best = sorted(expected.items(), key=lambda item: (-item[1], item[0]))[:20]
            assert set(got) <= set(expected) and len(got) == len(best)
            for pid, score in got.items():
                assert score == pytest.approx(expected[pid], abs=2e-4), pid
            threshold = http.get(f"/streams/{SLICE_STREAM}").json()["abstain_threshold"]
            assert second["abstain"] == (second["products"][0]["score"] < threshold)
            windows = [ask(frames[0], session_id="viewer-1")["smoothing"]["window"] for _ in range(3)]
            assert windows == [3, 3, 3]
    finally:
        server.stop()
