"""Locust scenario: player backends of many viewers of many livestreams asking POST /identify.

Each simulated user is one viewer's player backend: it watches one stream (chosen at random from
LOADTEST_STREAMS), keeps a session id for a while (some sessions repeat, as a viewer keeps watching),
and every few seconds sends 1–4 real frames of that stream (multipart, JPEG), sometimes as JSON with
base64 frames. 429 (overloaded / rate limited) and 503 are recorded as their own request names, so the
report separates shedding from failures; anything else but 200 is a failure.

Run it through `make loadtest` (loadtests/run.py), which starts a server when no URL is given. Locust
patches networking when imported (gevent): keep it in its own process, never import this from the
service or the tests.

Environment: LOADTEST_STREAMS (comma-separated stream ids), LOADTEST_FRAMES_DIR (a folder of JPEG
frames for every stream; default each stream's own `frames/` under WATCHBUY_CATALOGUE_ROOT),
LOADTEST_API_KEY (sent as X-API-Key),
LOADTEST_WAIT (seconds between a user's requests, "min,max"; default "1,3"),
LOADTEST_SESSION_REPEAT (probability a request reuses the user's session id; default 0.8).
"""

from __future__ import annotations

import base64
import os
import random
import uuid
from pathlib import Path

from locust import HttpUser, between, task

ROOT = Path(__file__).resolve().parents[1]
STREAMS = [s for s in os.environ.get("LOADTEST_STREAMS", "viton-dev-00").split(",") if s.strip()]
CATALOGUE_ROOT = Path(os.environ.get("WATCHBUY_CATALOGUE_ROOT", ROOT.parent / "shared/data/viton-dev/streams"))
FRAMES_DIR = os.environ.get("LOADTEST_FRAMES_DIR")
API_KEY = os.environ.get("LOADTEST_API_KEY", "")
WAIT_MIN, WAIT_MAX = (float(v) for v in os.environ.get("LOADTEST_WAIT", "1,3").split(","))
SESSION_REPEAT = float(os.environ.get("LOADTEST_SESSION_REPEAT", "0.8"))
JSON_SHARE = 0.2


def _frames(folder: Path) -> list[bytes]:
    paths = sorted(p for p in folder.glob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))[:200]
    if not paths:
        raise SystemExit(f"no frames in {folder} (set LOADTEST_FRAMES_DIR)")
    return [p.read_bytes() for p in paths]


FRAMES = {s: _frames(Path(FRAMES_DIR) if FRAMES_DIR else CATALOGUE_ROOT / s / "frames") for s in STREAMS}


class PlayerBackend(HttpUser):
    """One viewer's player backend: one stream, a (mostly) stable session, 1–4 frames per request."""

    wait_time = between(WAIT_MIN, WAIT_MAX)

    def on_start(self) -> None:
        self.stream_id = random.choice(STREAMS)
        self.frames = FRAMES[self.stream_id]
        self.session_id = uuid.uuid4().hex
        self.headers = {"X-API-Key": API_KEY} if API_KEY else {}

    def _session(self) -> str:
        if random.random() > SESSION_REPEAT:
            self.session_id = uuid.uuid4().hex  # a new viewer takes over this player slot
        return self.session_id

    def _check(self, response, name: str) -> None:
        if response.status_code == 200:
            response.success()
        elif response.status_code in (429, 503):
            response.failure(f"shed {response.status_code}")
        else:
            response.failure(f"HTTP {response.status_code}: {response.text[:200]}")

    @task(4)
    def identify_multipart(self) -> None:
        count = random.randint(1, 4)
        start = random.randrange(len(self.frames))
        files = [("frames", (f"frame{i}.jpg", self.frames[(start + i) % len(self.frames)], "image/jpeg"))
                 for i in range(count)]
        data = {"stream_id": self.stream_id, "session_id": self._session(), "top_k": "5"}
        name = f"/identify multipart {count}f"
        with self.client.post("/identify", data=data, files=files, headers=self.headers, name=name,
                              catch_response=True) as response:
            self._check(response, name)

    @task(1)
    def identify_json(self) -> None:
        count = random.randint(1, 4)
        start = random.randrange(len(self.frames))
        body = {
            "stream_id": self.stream_id,
            "session_id": self._session(),
            "top_k": 5,
            "frames": [
                {"image": base64.b64encode(self.frames[(start + i) % len(self.frames)]).decode("ascii"),
                 "frame_index": i}
                for i in range(count)
            ],
        }
        name = f"/identify json {count}f"
        with self.client.post("/identify", json=body, headers=self.headers, name=name,
                              catch_response=True) as response:
            self._check(response, name)
