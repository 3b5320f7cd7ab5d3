"""Kill Redis under load: zero 5xx, /readyz and the metric say degraded, and everything resumes by itself.

A real uvicorn (API keys and a rate limit on), a real redis-server killed with SIGKILL and restarted
on the same port (empty: --save ''), concurrent /identify (with a session) and /streams requests.
"""

from __future__ import annotations

import shutil
import threading
from collections import Counter
from pathlib import Path

import httpx
from support.data import SLICE_STREAM
from support.helpers import wait_for
from support.live_server import LiveServer
from support.redis_server import RedisServer

from indexer.announce import announce_version
from indexer.store import IndexStore

KEY = "outage-test-key-0123456789"


CHANNEL = "watchbuy:indexes"


POLL_S = 0.05  # this test polls a live server under load: a little less often


def metric(http: httpx.Client, line_start: str) -> float:
    for line in http.get("/metrics").text.splitlines():
        if line.startswith(line_start + " "):
            return float(line.split()[-1])
    return 0.0


class Load:
    """Client threads sending /identify (with a session) and /streams until stopped; every outcome kept."""

    def __init__(self, base: str, frame: bytes, threads: int = 3) -> None:
        self.statuses: Counter[int] = Counter()
        self.smoothing: Counter[str] = Counter()
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._run, args=(base, frame, n), daemon=True) for n in range(threads)
        ]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=120)

    def _run(self, base: str, frame: bytes, n: int) -> None:
        with httpx.Client(base_url=base, timeout=60.0, headers={"X-API-Key": KEY}) as http:
            while not self._stop.is_set():
                try:
                    if n == 0:
                        response = http.get(f"/streams/{SLICE_STREAM}")
                    else:
                        response = http.post(
                            "/identify", data={"stream_id": SLICE_STREAM, "session_id": f"viewer-{n}"},
                            files=[("frames", ("f.jpg", frame, "image/jpeg"))],
                        )
                except httpx.HTTPError as exc:  # a refused or dropped connection counts as a failure
                    with self._lock:
                        self.failures.append(repr(exc))
                    continue
                with self._lock:
                    self.statuses[response.status_code] += 1
                    if response.status_code == 200 and n:
                        smoothing = response.json()["smoothing"]
                        self.smoothing["applied" if smoothing["applied"] else smoothing["reason"]] += 1

    def snapshot(self) -> tuple[Counter[int], Counter[str]]:
        with self._lock:
            return Counter(self.statuses), Counter(self.smoothing)


def test_redis_killed_during_load(
    model_dir: Path, slice_index_root: Path, slice_dir: Path, tmp_path: Path, redis_server: RedisServer
) -> None:
    root = tmp_path / "indexes"
    shutil.copytree(slice_index_root, root)
    server = LiveServer(tmp_path / "server.log", {
        "WATCHBUY_MODEL_DIR": str(model_dir), "WATCHBUY_INDEX_ROOT": str(root),
        "WATCHBUY_REDIS_URL": redis_server.url, "WATCHBUY_API_KEYS": f'["{KEY}"]',
        "WATCHBUY_RATE_LIMIT_PER_MINUTE": "100000",
        "WATCHBUY_RELOAD_CHECK_SECONDS": "3600",  # reload only through the registry: proves it resumed
    })
    frame = min((slice_dir / "frames").iterdir()).read_bytes()
    server.start()
    load = Load(server.base, frame)
    try:
        server.wait_ready()
        http = httpx.Client(base_url=server.base, timeout=30.0, headers={"X-API-Key": KEY})
        assert http.get("/readyz").json() == {"status": "ready", "redis": "up"}
        load.start()
        wait_for(lambda: load.snapshot()[1]["applied"] >= 3, "smoothed answers before the outage", interval=POLL_S)

        redis_server.kill()
        wait_for(lambda: http.get("/readyz").json()["status"] == "degraded", "/readyz to say degraded", interval=POLL_S)
        ready = http.get("/readyz")
        assert ready.status_code == 200 and ready.json() == {"status": "degraded", "redis": "down"}
        assert metric(http, "watchbuy_redis_up") == 0
        wait_for(lambda: load.snapshot()[1]["redis_unavailable"] >= 3, "answers during the outage", interval=POLL_S)
        assert metric(http, 'watchbuy_rate_limit_decisions_total{result="failed_open"}') >= 1

        redis_server.start()  # same port, empty dataset
        ready = {"status": "ready", "redis": "up"}
        wait_for(lambda: http.get("/readyz").json() == ready, "reconnection", interval=POLL_S)
        assert metric(http, "watchbuy_redis_up") == 1 and metric(http, "watchbuy_redis_reconnects_total") >= 1
        applied_before = load.snapshot()[1]["applied"]
        wait_for(lambda: load.snapshot()[1]["applied"] >= applied_before + 3, "smoothing to resume", interval=POLL_S)

        # reload resumes: the listener resubscribed, so an announced version is switched to
        store = IndexStore(root, keep_versions=10)
        current = store.load(SLICE_STREAM)
        wait_for(lambda: subscribers(redis_server) == 1, "the registry to resubscribe", interval=POLL_S)
        new = store.publish(SLICE_STREAM, current.index, current.entries, current.titles,
                            {k: current.manifest[k] for k in ("models", "embedder_preprocess")},
                            hubness=current.hubness)
        announce_version(redis_server.url, CHANNEL, SLICE_STREAM, new)
        wait_for(lambda: http.get(f"/streams/{SLICE_STREAM}").json()["index_version"] == new, "the new version",
                 interval=POLL_S)
    finally:
        load.stop()
        server.stop()
    statuses, smoothing = load.snapshot()
    print(f"\nstatuses {dict(statuses)}, smoothing {dict(smoothing)}, transport failures {len(load.failures)}")
    assert not load.failures, load.failures[:5]
    assert set(statuses) == {200}, statuses  # zero 5xx (and no 4xx either)
    log = server.log_path.read_text()
    assert "redis unavailable" in log and "redis is back" in log


def subscribers(redis_server: RedisServer) -> int:
    with redis_server.client() as client:
        return int(dict(client.pubsub_numsub(CHANNEL))[CHANNEL])
