"""The real server: uvicorn in a subprocess, real models, the slice index, real HTTP."""

from __future__ import annotations

from pathlib import Path

import httpx
from support.data import SLICE_STREAM
from support.live_server import LiveServer


def test_real_server_answers_over_http(
    model_dir: Path, slice_index_root: Path, slice_dir: Path, tmp_path: Path
) -> None:
    server = LiveServer(
        tmp_path / "server.log",
        {"WATCHBUY_MODEL_DIR": str(model_dir), "WATCHBUY_INDEX_ROOT": str(slice_index_root)},
    )
    frame = next((slice_dir / "frames").iterdir()).read_bytes()
    server.start()
    try:
        server.wait_ready()
        with httpx.Client(base_url=server.base, timeout=60.0) as http:
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
        server.stop()
