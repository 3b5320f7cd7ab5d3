"""The Redis index registry: announce after publish, every replica switches, corrupt versions refused.

Real redis-server throughout; the last tests run two real uvicorn replicas and the real indexer command."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from support.data import PROJECT_DIR, SLICE_STREAM
from support.helpers import WAIT_S, corrupt_copy, publish_tiny, wait_for
from support.live_server import LiveServer
from support.redis_server import RedisServer, free_port

from indexer.announce import announce_version, decode_announcement, registry_key
from indexer.store import CURRENT_FILE, IndexStore
from service.indexes import IndexCache
from service.metrics import Metrics
from service.redis_client import RedisLink
from service.registry import IndexRegistry

CHANNEL = "watchbuy:indexes"


@pytest.mark.asyncio
async def test_registry_follows_announcements_and_catches_up(tmp_path: Path, redis_server: RedisServer) -> None:
    store = IndexStore(tmp_path, keep_versions=10)
    v1 = publish_tiny(store, "s1", n=3)
    publish_tiny(store, "s2", n=3)
    cache = IndexCache(store, max_loaded=4, check_seconds=3600)
    cache.get("s1")
    cache.get("s2")
    v2 = publish_tiny(store, "s1", n=4)
    announce_version(redis_server.url, CHANNEL, "s1", v2)  # before the replica listens: caught up from the hash

    metrics = Metrics()
    link = RedisLink(redis_server.url, 0.5, metrics)
    await link.start()
    registry = IndexRegistry(link, cache, CHANNEL, metrics)
    registry.start()
    try:
        await wait_async(lambda: cache.get("s1").version == v2, "catch-up from the registry hash")
        await wait_async(lambda: registry.subscribed, "subscription")

        v3 = publish_tiny(store, "s2", n=6)
        await asyncio.to_thread(announce_version, redis_server.url, CHANNEL, "s2", v3)
        await wait_async(lambda: cache.get("s2").version == v3, "switch on an announcement")

        await asyncio.to_thread(announce_version, redis_server.url, CHANNEL, "s1", v1)  # older: ignored
        bad = corrupt_copy(tmp_path, "s2", v3)
        await asyncio.to_thread(announce_version, redis_server.url, CHANNEL, "s2", bad)
        with redis_server.client() as client:
            client.publish(CHANNEL, "garbage")
        await wait_async(lambda: sample(metrics, "invalid") == 1, "the malformed message counted")
        assert sample(metrics, "older") == 1 and sample(metrics, "refused") == 1
        assert cache.get("s1").version == v2 and cache.get("s2").version == v3
        with redis_server.client() as client:
            assert client.hget(registry_key(CHANNEL), "s2") == bad  # recorded; refused only by replicas
    finally:
        await registry.aclose()
        await link.aclose()


def sample(metrics: Metrics, outcome: str) -> float:
    value = metrics.registry.get_sample_value("watchbuy_index_announcements_total", {"outcome": outcome})
    return value or 0.0


async def wait_async(predicate, what: str, timeout: float = WAIT_S) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        await asyncio.sleep(0.02)
    pytest.fail(f"timed out waiting for {what}")


def run_indexer(slice_dir: Path, index_root: Path, model_dir: Path, redis_url: str) -> subprocess.CompletedProcess:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("WATCHBUY_")},
        "WATCHBUY_INDEX_ROOT": str(index_root), "WATCHBUY_MODEL_DIR": str(model_dir),
        "WATCHBUY_REDIS_URL": redis_url,
    }
    return subprocess.run(
        [sys.executable, "-m", "watchbuy", "build-index", "--stream", SLICE_STREAM, "--catalogue", str(slice_dir)],
        cwd=PROJECT_DIR, env=env, capture_output=True, text=True, timeout=600, check=False,
    )


@pytest.mark.integration
def test_replicas_switch_on_announcement_and_refuse_corrupt(
    model_dir: Path, slice_index_root: Path, slice_dir: Path, tmp_path: Path, redis_server: RedisServer
) -> None:
    root = tmp_path / "indexes"
    shutil.copytree(slice_index_root, root)
    old = (root / SLICE_STREAM / CURRENT_FILE).read_text().strip()
    env = {
        "WATCHBUY_MODEL_DIR": str(model_dir), "WATCHBUY_INDEX_ROOT": str(root),
        "WATCHBUY_REDIS_URL": redis_server.url,
        "WATCHBUY_RELOAD_CHECK_SECONDS": "3600",  # no CURRENT polling: only the announcement can switch
        "WATCHBUY_INFERENCE_THREADS": "1",
    }
    replicas = [LiveServer(tmp_path / f"replica{i}.log", env) for i in range(2)]
    frame = min((slice_dir / "frames").iterdir()).read_bytes()
    for replica in replicas:
        replica.start()
    try:
        for replica in replicas:
            replica.wait_ready()
        clients = [httpx.Client(base_url=r.base, timeout=60.0) for r in replicas]

        def version(i: int) -> str:
            response = clients[i].get(f"/streams/{SLICE_STREAM}")
            assert response.status_code == 200, response.text
            return response.json()["index_version"]

        assert [version(0), version(1)] == [old, old]
        for replica in replicas:
            wait_for(lambda r=replica: subscribers(redis_server) == 2, "both replicas subscribed")

        # requests keep flowing on both replicas while the new version is built, announced and swapped in
        statuses: list[int] = []
        stop = threading.Event()

        def load(client: httpx.Client) -> None:
            while not stop.is_set():
                response = client.post("/identify", data={"stream_id": SLICE_STREAM},
                                       files=[("frames", ("f.jpg", frame, "image/jpeg"))])
                statuses.append(response.status_code)

        workers = [threading.Thread(target=load, args=(c,)) for c in clients]
        for worker in workers:
            worker.start()
        listener = MessageClock(redis_server)
        watches = [SwitchWatch(replica) for replica in replicas]
        try:
            built = run_indexer(slice_dir, root, model_dir, redis_server.url)
            assert built.returncode == 0, built.stderr
            assert "announced on" in built.stderr
            new = (root / SLICE_STREAM / CURRENT_FILE).read_text().strip()
            assert new != old
            announced_at = listener.wait(new)
            switched_after = [watch.wait() - announced_at for watch in watches]
            print(f"\nreplicas switched {switched_after[0]:.3f} s / {switched_after[1]:.3f} s after the "
                  "announcement reached a subscriber, under /identify load (10 ms polling of /metrics)")
            for i in range(2):
                wait_for(lambda i=i: version(i) == new, f"replica {i} on {new}")
        finally:
            stop.set()
            for worker in workers:
                worker.join()
            listener.close()
            for watch in watches:
                watch.close()
        assert statuses and set(statuses) == {200}, statuses

        # a corrupt newer version is announced: both replicas refuse it and keep serving `new`
        bad = corrupt_copy(root, SLICE_STREAM, new)
        announce_version(redis_server.url, CHANNEL, SLICE_STREAM, bad)
        for replica in replicas:
            wait_for(lambda r=replica: announcements(r, "refused") >= 1, "the corrupt version refused")
            assert "refused" in replica.log()
        assert [version(0), version(1)] == [new, new]
        for client in clients:
            response = client.post("/identify", data={"stream_id": SLICE_STREAM},
                                   files=[("frames", ("f.jpg", frame, "image/jpeg"))])
            assert response.status_code == 200 and response.json()["index_version"] == new
            client.close()
    finally:
        for replica in replicas:
            replica.stop()


def subscribers(redis_server: RedisServer) -> int:
    with redis_server.client() as client:
        return int(dict(client.pubsub_numsub(CHANNEL))[CHANNEL])


def announcements(replica: LiveServer, outcome: str) -> float:
    text = httpx.get(f"{replica.base}/metrics", timeout=10.0).text
    for line in text.splitlines():
        if line.startswith(f'watchbuy_index_announcements_total{{outcome="{outcome}"}}'):
            return float(line.split()[-1])
    return 0.0


class SwitchWatch:
    """Polls a replica's /metrics (answered on the event loop, not behind inference) in a thread and
    notes when it first counts a switch."""

    def __init__(self, replica: LiveServer) -> None:
        self._replica = replica
        self.seen_at: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        while not self._stop.is_set() and self.seen_at is None:
            if announcements(self._replica, "switched") >= 1:
                self.seen_at = time.monotonic()
            time.sleep(0.01)

    def wait(self) -> float:
        wait_for(lambda: self.seen_at is not None, f"{self._replica.base} switched")
        assert self.seen_at is not None
        return self.seen_at

    def close(self) -> None:
        self._stop.set()
        self._thread.join()


class MessageClock:
    """Subscribes like a replica, in a thread, and notes when each announcement arrived (monotonic)."""

    def __init__(self, redis_server: RedisServer) -> None:
        self._client = redis_server.client()
        self._pubsub = self._client.pubsub(ignore_subscribe_messages=True)
        self._pubsub.subscribe(CHANNEL)
        self.arrived: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._listen, daemon=True)
        self._thread.start()

    def _listen(self) -> None:
        while not self._stop.is_set():
            message = self._pubsub.get_message(timeout=0.1)
            if message is not None:
                announcement = decode_announcement(message["data"])
                if announcement is not None:
                    self.arrived.setdefault(announcement.version, time.monotonic())

    def wait(self, version: str) -> float:
        wait_for(lambda: version in self.arrived, f"announcement of {version}")
        return self.arrived[version]

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self._pubsub.close()
        self._client.close()


@pytest.mark.integration
def test_build_succeeds_when_redis_is_unreachable(
    model_dir: Path, slice_index_root: Path, slice_dir: Path, tmp_path: Path
) -> None:
    root = tmp_path / "indexes"
    shutil.copytree(slice_index_root, root)
    old = (root / SLICE_STREAM / CURRENT_FILE).read_text().strip()
    built = run_indexer(slice_dir, root, model_dir, f"redis://127.0.0.1:{free_port()}/0")  # nothing listens
    assert built.returncode == 0, built.stderr
    assert "published but not announced" in built.stderr
    assert (root / SLICE_STREAM / CURRENT_FILE).read_text().strip() != old
