"""Watch workers as a Redis consumer group: a killed worker's watch is taken over by another.

A real redis-server, two `watchbuy watch-worker` processes (one watch each) and a real API in workers mode.
The API queues a watch of a file paced at real time; once the first product's segment has ended and the
holder has saved a checkpoint past it, the holder is killed with SIGKILL; the other worker reclaims the
pending entry (XAUTOCLAIM after WATCHBUY_WATCH_CLAIM_IDLE_SECONDS) and goes on from the checkpoint to the
end. The events (Redis Stream) show both starts and each segment's end once; nothing stays pending. A
second watch is then cancelled with DELETE and its worker stops it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from support.data import MODEL_DIR, PROJECT_DIR, SLICE_STREAM
from support.helpers import wait_for
from support.live_server import LiveServer, running_server
from support.redis_server import RedisServer
from support.streams import product_photos, stream_frames

from indexer.video import encode_video
from service.watch import queue
from service.watch.eventlog import EVENTS_KEY

CLAIM_IDLE_S = 3


def worker_env(redis_server: RedisServer, index_root: Path, folder: Path) -> dict[str, str]:
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("WATCHBUY_")},
        "WATCHBUY_REDIS_URL": redis_server.url, "WATCHBUY_INDEX_ROOT": str(index_root),
        "WATCHBUY_MODEL_DIR": str(MODEL_DIR), "WATCHBUY_WATCH_CLAIM_IDLE_SECONDS": str(CLAIM_IDLE_S),
        "WATCHBUY_WATCH_MAX_PER_WORKER": "1", "WATCHBUY_WORKER_METRICS_PORT": "0",
        "WATCHBUY_WATCH_WORKERS": "true", "WATCHBUY_WATCH_LOCAL_ROOT": str(folder),
    }


@pytest.fixture
def workers(
    redis_server: RedisServer, slice_index_root: Path, tmp_path: Path
) -> Iterator[dict[str, subprocess.Popen[bytes]]]:
    env = worker_env(redis_server, slice_index_root, tmp_path)
    procs = {}
    for name in ("worker-a", "worker-b"):
        with open(tmp_path / f"{name}.log", "wb") as log:
            procs[name] = subprocess.Popen([sys.executable, "-m", "watchbuy", "watch-worker", "--name", name],
                                           cwd=PROJECT_DIR, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        yield procs
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()


@pytest.fixture
def api(redis_server: RedisServer, slice_index_root: Path, tmp_path: Path) -> Iterator[LiveServer]:
    env = worker_env(redis_server, slice_index_root, tmp_path)
    with running_server(tmp_path / "api.log", {k: v for k, v in env.items() if k.startswith("WATCHBUY_")}) as server:
        yield server


def pending_consumer(redis_server: RedisServer) -> str | None:
    summary = redis_server.client().xpending(queue.REQUESTS, queue.GROUP)
    consumers = summary.get("consumers") or []
    return str(consumers[0]["name"]) if consumers else None


def saved_checkpoint(redis_server: RedisServer) -> float | None:
    """The time of the checkpoint saved for the pending watch entry, if any."""
    r = redis_server.client()
    pending = r.xpending_range(queue.REQUESTS, queue.GROUP, min="-", max="+", count=1)
    if not pending:
        return None
    value = r.get(queue.CHECKPOINT_KEY.format(entry=pending[0]["message_id"]))
    return float(json.loads(value)["time_s"]) if value else None


def test_a_killed_workers_watch_is_taken_over_and_cancel_stops_a_watch(
    redis_server: RedisServer, workers: dict[str, subprocess.Popen[bytes]], api: LiveServer,
    slice_dir: Path, tmp_path: Path,
) -> None:
    frames, truth = stream_frames(product_photos(slice_dir, 3), 5.0)  # 15 s: the kill comes well before the end
    video = tmp_path / "stream.mp4"
    video.write_bytes(encode_video(frames, 12))
    events_key = EVENTS_KEY.format(stream=SLICE_STREAM)
    r = redis_server.client()
    with httpx.Client(base_url=api.base, timeout=60) as http:
        answer = http.post(f"/streams/{SLICE_STREAM}/watch", json={"source": str(video), "realtime": True})
        assert answer.status_code == 202 and answer.json()["runs_on"] == "workers", answer.text
        wait_for(lambda: pending_consumer(redis_server) is not None, "a worker to take the watch", timeout=180)
        holder = pending_consumer(redis_server)
        assert holder in workers
        def first_end() -> float | None:
            ended = [e for e in events() if e["kind"] == "segment_ended"]
            return float(ended[0]["end_s"]) if ended else None

        def events() -> list[dict[str, Any]]:
            return [json.loads(fields["event"]) for _, fields in r.xrange(events_key)]

        wait_for(lambda: first_end() is not None, "the first segment to end", timeout=180)
        wait_for(lambda: (saved_checkpoint(redis_server) or 0.0) >= (first_end() or 0.0) - 0.01,
                 "a checkpoint past the first segment", timeout=30)
        workers[holder].send_signal(signal.SIGKILL)
        workers[holder].wait(timeout=10)
        survivor = next(name for name in workers if name != holder)
        wait_for(lambda: pending_consumer(redis_server) == survivor, "the other worker to claim the watch",
                 timeout=60)
        wait_for(lambda: http.get(f"/streams/{SLICE_STREAM}/now").json().get("state") == "ended",
                 "the watch to end on the other worker", timeout=180)
        log = events()
        kinds = [e["kind"] for e in log]
        assert kinds.count("watch_started") == 2 and kinds[-1] == "watch_ended", kinds
        resumed = [e for e in log if e["kind"] == "watch_started"][1]
        assert "going on from" in resumed["message"] and resumed["time_s"] > 0, resumed
        ended = [e["product_id"] for e in log if e["kind"] == "segment_ended"]
        assert len(ended) == len(set(ended)), log  # no segment ended twice: nothing before the checkpoint repeated
        assert set(ended) >= {s.product_id for s in truth if s.product_id is not None}, log
        assert r.xpending(queue.REQUESTS, queue.GROUP)["pending"] == 0
        assert not list(r.scan_iter(queue.CHECKPOINT_KEY.format(entry="*")))  # done: its checkpoint is gone
        assert not r.exists(queue.ACTIVE_KEY.format(stream=SLICE_STREAM))  # the stream is free again

        answer = http.post(f"/streams/{SLICE_STREAM}/watch", json={"source": str(video), "realtime": True})
        assert answer.status_code == 202, answer.text
        assert http.post(f"/streams/{SLICE_STREAM}/watch", json={"source": str(video)}).status_code == 409
        wait_for(lambda: http.get(f"/streams/{SLICE_STREAM}/now").json().get("state") == "running",
                 "the second watch to run", timeout=120)
        assert http.delete(f"/streams/{SLICE_STREAM}/watch").status_code == 202
        wait_for(lambda: http.get(f"/streams/{SLICE_STREAM}/now").json().get("state") == "stopped",
                 "the cancelled watch to stop", timeout=60)
        assert http.delete(f"/streams/{SLICE_STREAM}/watch").status_code == 404
    assert workers[survivor].poll() is None  # the survivor is still up
