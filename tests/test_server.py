"""The real server: uvicorn in a subprocess, real models, the slice index, real HTTP."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from conftest import PROJECT_DIR, SLICE_STREAM

pytestmark = pytest.mark.integration

STARTUP_DEADLINE_S = 120.0  # a bound on waiting, not an assertion on speed


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_ready(proc: subprocess.Popen, base: str, log_path: Path) -> None:
    deadline = time.monotonic() + STARTUP_DEADLINE_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"server exited with {proc.returncode}:\n{log_path.read_text()[-4000:]}")
        try:
            if httpx.get(f"{base}/readyz", timeout=2.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    pytest.fail(f"server not ready after {STARTUP_DEADLINE_S}s:\n{log_path.read_text()[-4000:]}")


def test_real_server_answers_over_http(
    model_dir: Path, slice_index_root: Path, slice_dir: Path, tmp_path: Path
) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("WATCHBUY_")},
        "WATCHBUY_MODEL_DIR": str(model_dir),
        "WATCHBUY_INDEX_ROOT": str(slice_index_root),
    }
    log_path = tmp_path / "server.log"
    frame = next((slice_dir / "frames").iterdir()).read_bytes()
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "--factory", "service.app:create_app",
             "--host", "127.0.0.1", "--port", str(port)],
            cwd=PROJECT_DIR, env=env, stdout=log, stderr=subprocess.STDOUT,
        )
        try:
            wait_ready(proc, base, log_path)
            with httpx.Client(base_url=base, timeout=60.0) as http:
                response = http.post(
                    "/identify",
                    data={"stream_id": SLICE_STREAM},
                    files=[("frames", ("frame.jpg", frame, "image/jpeg"))],
                )
                assert response.status_code == 200, response.text
                answer = response.json()
                assert answer["stream_id"] == SLICE_STREAM and answer["products"]
                assert all(p["product_id"].startswith("viton-") for p in answer["products"])

                garbage = http.post(
                    "/identify", content=b"\x00garbage{", headers={"content-type": "application/json"}
                )
                assert garbage.status_code == 400
                assert garbage.json()["error"]["code"] == "invalid_json"
                assert http.get("/healthz").status_code == 200
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
