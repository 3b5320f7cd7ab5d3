"""Hardening with real processes: SIGTERM drain, publishing while serving, a corrupt newest index, a
schemathesis fuzz run and a battery of bad inputs against a real uvicorn server (real models, the slice).

No mocks: the server is `uvicorn --factory service.app:create_app` in a subprocess (tests/live_server.py),
the index builds are `watchbuy build-index` subprocesses. Waits are bounded; nothing asserts speed.
(The Redis-outage test lives with the Redis feature.)
"""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from PIL import Image
from support.data import PROJECT_DIR, SLICE_STREAM
from support.live_server import LiveServer

from indexer.store import CURRENT_FILE, INDEX_FILE, MANIFEST_FILE, IndexStore, new_version_name

WAIT_S = 60.0  # a bound on waiting for something to happen, never an assertion on speed


def server_env(model_dir: Path, index_root: Path, **extra: str) -> dict[str, str]:
    return {"WATCHBUY_MODEL_DIR": str(model_dir), "WATCHBUY_INDEX_ROOT": str(index_root), **extra}


def start_server(log_path: Path, env: dict[str, str]) -> LiveServer:
    server = LiveServer(log_path, env)
    server.start()
    try:
        server.wait_ready()
    except BaseException:
        server.stop()
        raise
    return server


def copy_index_root(source: Path, target: Path) -> Path:
    """A private copy of the shared slice index root (tests publish into it)."""
    shutil.copytree(source, target)
    return target


def queries(slice_dir: Path) -> list[dict]:
    lines = (slice_dir / "queries.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def frame_bytes(slice_dir: Path, query: dict, n: int = 1) -> list[bytes]:
    return [(slice_dir / frame["path"]).read_bytes() for frame in query["frames"][:n]]


def identify_json(stream_id: str, frames: list[bytes], top_k: int = 5) -> dict:
    return {
        "stream_id": stream_id, "top_k": top_k,
        "frames": [{"image": base64.b64encode(f).decode(), "frame_index": i} for i, f in enumerate(frames)],
    }


def product_ids(answer: dict) -> set[str]:
    """Every product id a response names: ranked products and box-level matches."""
    ids = {product["product_id"] for product in answer["products"]}
    for frame in answer["frames"]:
        for box in frame["boxes"]:
            ids.update(match["product_id"] for match in box["matches"])
    return ids


def wait_for(condition, what: str, timeout: float = WAIT_S, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    pytest.fail(f"gave up waiting for {what} after {timeout}s")


def assert_error_shape(response: httpx.Response) -> str:
    body = response.json()
    assert set(body) == {"error"}, body
    assert isinstance(body["error"]["code"], str) and isinstance(body["error"]["message"], str), body
    return body["error"]["code"]


def run_indexer(catalogue: Path, index_root: Path, model_dir: Path, log_path: Path) -> subprocess.Popen:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("WATCHBUY_")},
        "WATCHBUY_MODEL_DIR": str(model_dir), "WATCHBUY_INDEX_ROOT": str(index_root),
    }
    with log_path.open("ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "watchbuy", "build-index", "--stream", SLICE_STREAM, "--catalogue", str(catalogue),
             "--strict"],
            cwd=PROJECT_DIR, env=env, stdout=log, stderr=subprocess.STDOUT,
        )


def renamed_catalogue(slice_dir: Path, target: Path, prefix: str) -> Path:
    """The slice's catalogue with every product id prefixed: a version whose answers are recognisable."""
    shutil.copytree(slice_dir, target)
    lines = (target / "catalogue.jsonl").read_text().splitlines()
    products = [json.loads(line) for line in lines if line.strip()]
    for product in products:
        product["product_id"] = prefix + product["product_id"]
        for image in product["images"]:
            image["image_id"] = prefix + image["image_id"]
    (target / "catalogue.jsonl").write_text("".join(json.dumps(p) + "\n" for p in products))
    return target


def test_sigterm_drains_readiness_first_then_finishes_in_flight(
    model_dir: Path, slice_index_root: Path, slice_dir: Path, tmp_path: Path
) -> None:
    server = start_server(tmp_path / "server.log", server_env(model_dir, slice_index_root,
                                                              WATCHBUY_DRAIN_SECONDS="3"))
    query = queries(slice_dir)[0]
    frames = frame_bytes(slice_dir, query, n=4)
    try:
        assert httpx.get(f"{server.base}/readyz", timeout=5).json()["status"] == "ready"
        # In flight across the whole shutdown: a multipart upload whose last bytes are only sent after the
        # listener has closed (so it is in flight whatever the machine's speed), plus busy CPU requests.
        listener_closed = threading.Event()
        frame = frames[0]
        boundary = "drainboundary"
        head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"stream_id\"\r\n\r\n{SLICE_STREAM}\r\n"
                f"--{boundary}\r\nContent-Disposition: form-data; name=\"frames\"; filename=\"f.jpg\"\r\n"
                f"Content-Type: image/jpeg\r\n\r\n").encode() + frame[: len(frame) // 2]
        tail = frame[len(frame) // 2:] + f"\r\n--{boundary}--\r\n".encode()

        def trickled_body() -> Iterator[bytes]:
            yield head
            listener_closed.wait(WAIT_S)
            yield tail

        def slow_upload() -> httpx.Response:
            with httpx.Client(timeout=WAIT_S) as http:
                return http.post(f"{server.base}/identify", content=trickled_body(),
                                 headers={"content-type": f"multipart/form-data; boundary={boundary}"})

        def busy() -> httpx.Response:
            with httpx.Client(timeout=WAIT_S) as http:
                return http.post(f"{server.base}/identify", json=identify_json(SLICE_STREAM, frames * 4))

        with ThreadPoolExecutor(max_workers=3) as pool:
            uploads = pool.submit(slow_upload)
            busy_requests = [pool.submit(busy) for _ in range(2)]
            time.sleep(0.5)  # let the three connections be accepted
            server.proc.send_signal(signal.SIGTERM)

            readiness = wait_for(lambda: _readyz(server.base), "readiness to report draining")
            assert readiness[0] == 503 and readiness[1]["status"] == "draining"
            # While draining the listener still accepts: liveness answers, only readiness fails.
            assert httpx.get(f"{server.base}/healthz", timeout=5).status_code == 200

            wait_for(lambda: _refused(server.base), "the listener to close")
            listener_closed.set()
            late = uploads.result(timeout=WAIT_S)
            busy_answers = [future.result(timeout=WAIT_S) for future in busy_requests]

        assert late.status_code == 200, late.text
        assert late.json()["stream_id"] == SLICE_STREAM and late.json()["products"]
        for answer in busy_answers:
            assert answer.status_code == 200, answer.text
            assert len(answer.json()["frames"]) == len(frames) * 4
        with pytest.raises(httpx.ConnectError):  # new requests are refused once the listener is closed
            httpx.post(f"{server.base}/identify", json=identify_json(SLICE_STREAM, frames[:1]), timeout=5)
        server.proc.wait(timeout=WAIT_S)
        log = server.log_path.read_text()
        assert "draining" in log and "Finished server process" in log, log[-3000:]
    finally:
        server.stop()


def _readyz(base: str) -> tuple[int, dict] | None:
    try:
        response = httpx.get(f"{base}/readyz", timeout=5)
    except httpx.TransportError:
        return None
    return (response.status_code, response.json()) if response.status_code == 503 else None


def _refused(base: str) -> bool:
    try:
        httpx.get(f"{base}/healthz", timeout=5)
    except httpx.ConnectError:
        return True
    return False


def test_build_published_while_requests_run_is_seen_whole(
    model_dir: Path, slice_index_root: Path, slice_dir: Path, tmp_path: Path
) -> None:
    """Two real builds (renamed products, then the original ones) land while clients hammer /identify:
    every answer is 200 and names only products of the index version it reports."""
    root = copy_index_root(slice_index_root, tmp_path / "indexes")
    store = IndexStore(root)
    renamed = renamed_catalogue(slice_dir, tmp_path / "renamed" / SLICE_STREAM, prefix="b-")
    server = start_server(tmp_path / "server.log",
                          server_env(model_dir, root, WATCHBUY_RELOAD_CHECK_SECONDS="0.1"))
    frames = [frame_bytes(slice_dir, q)[0] for q in queries(slice_dir)[:6]]
    stop = threading.Event()
    answers: list[httpx.Response] = []

    def client(seed: int) -> None:
        with httpx.Client(base_url=server.base, timeout=WAIT_S) as http:
            i = seed
            while not stop.is_set():
                answers.append(http.post("/identify", json=identify_json(SLICE_STREAM, [frames[i % len(frames)]])))
                i += 1

    try:
        first = store.current_version(SLICE_STREAM)
        published = [first]
        with ThreadPoolExecutor(max_workers=3) as pool:
            clients = [pool.submit(client, seed) for seed in range(3)]
            try:
                for catalogue in (renamed, slice_dir):
                    build = run_indexer(catalogue, root, model_dir, tmp_path / "indexer.log")
                    assert build.wait(timeout=300) == 0, (tmp_path / "indexer.log").read_text()[-3000:]
                    published.append(store.current_version(SLICE_STREAM))
                    # keep the clients running until the server serves what was just published
                    wait_for(lambda: answers and answers[-1].status_code == 200
                             and answers[-1].json()["index_version"] == published[-1],
                             f"the server to serve {published[-1]}")
            finally:
                stop.set()
            for future in clients:
                future.result(timeout=WAIT_S)

        assert len(set(published)) == 3
        products = {version: set(store.load(SLICE_STREAM, version).titles) for version in published}
        assert products[published[1]] == {"b-" + p for p in products[published[0]]}
        seen: dict[str, int] = {}
        for response in answers:
            assert response.status_code == 200, response.text
            answer = response.json()
            version = answer["index_version"]
            assert version in products, f"unknown version {version}"
            assert product_ids(answer) <= products[version], f"answer mixes versions: {answer}"
            seen[version] = seen.get(version, 0) + 1
        assert set(seen) == set(published), seen
    finally:
        stop.set()
        server.stop()


def corrupt_copy(store: IndexStore, stream_id: str, source_version: str) -> str:
    """A new version folder copied from `source_version` (manifest renamed) with a truncated index file."""
    version = new_version_name()
    target = store.root / stream_id / version
    shutil.copytree(store.root / stream_id / source_version, target)
    manifest = json.loads((target / MANIFEST_FILE).read_text())
    manifest["version"] = version
    (target / MANIFEST_FILE).write_text(json.dumps(manifest))
    index_file = target / INDEX_FILE
    index_file.write_bytes(index_file.read_bytes()[: index_file.stat().st_size // 2])
    return version


def point_current(store: IndexStore, stream_id: str, version: str) -> None:
    """Replace CURRENT atomically, as the indexer does."""
    tmp = store.root / stream_id / f"{CURRENT_FILE}.tmp-test"
    tmp.write_text(version + "\n")
    os.replace(tmp, store.root / stream_id / CURRENT_FILE)


def test_corrupt_newest_index_is_refused_and_the_previous_keeps_serving(
    model_dir: Path, slice_index_root: Path, slice_dir: Path, tmp_path: Path
) -> None:
    root = copy_index_root(slice_index_root, tmp_path / "indexes")
    store = IndexStore(root)
    good = store.current_version(SLICE_STREAM)
    server = start_server(tmp_path / "server.log",
                          server_env(model_dir, root, WATCHBUY_RELOAD_CHECK_SECONDS="0.1"))
    body = identify_json(SLICE_STREAM, frame_bytes(slice_dir, queries(slice_dir)[0]))
    try:
        with httpx.Client(base_url=server.base, timeout=WAIT_S) as http:
            assert http.post("/identify", json=body).json()["index_version"] == good
            bad = corrupt_copy(store, SLICE_STREAM, good)
            point_current(store, SLICE_STREAM, bad)

            def still_good() -> bool:
                response = http.post("/identify", json=body)
                assert response.status_code == 200, response.text
                assert response.json()["index_version"] == good
                return True

            # Requests drive the CURRENT check: keep asking until the server has tried (and refused) it.
            wait_for(lambda: still_good() and bad in server.log_path.read_text(),
                     "the server to try the corrupt version")
            for _ in range(10):  # several more reload periods: still the good version, never an error
                still_good()
                time.sleep(0.1)
            assert http.get(f"/streams/{SLICE_STREAM}").json()["index_version"] == good
            assert "failed to load" in server.log_path.read_text()

            # A good version published after it is picked up: the reload path itself works.
            loaded = store.load(SLICE_STREAM, good)
            extra = {k: v for k, v in loaded.manifest.items() if k not in
                     {"stream_id", "version", "created_at", "n_vectors", "n_products", "dim", "index_type",
                      "files"}}
            fixed = store.publish(SLICE_STREAM, loaded.index, loaded.entries, loaded.titles, extra,
                                  text=loaded.text, hubness=loaded.hubness)
            wait_for(lambda: http.post("/identify", json=body).json()["index_version"] == fixed,
                     "the server to switch to the repaired version")
    finally:
        server.stop()

    # A replica starting on the corrupt CURRENT has nothing older loaded: a clear 503, never a 500.
    point_current(store, SLICE_STREAM, bad)
    fresh = start_server(tmp_path / "fresh.log", server_env(model_dir, root))
    try:
        response = httpx.post(f"{fresh.base}/identify", json=body, timeout=WAIT_S)
        assert response.status_code == 503, response.text
        assert assert_error_shape(response) == "service_unavailable"
        assert "make build-index" in response.json()["error"]["message"] or bad in response.text
    finally:
        fresh.stop()


@pytest.fixture(scope="module")
def edge_server(model_dir: Path, slice_index_root: Path, tmp_path_factory: pytest.TempPathFactory):
    """One server for the fuzz run and the battery, with a small body limit (oversize bodies stay cheap)."""
    tmp = tmp_path_factory.mktemp("edge")
    root = copy_index_root(slice_index_root, tmp / "indexes")
    server = start_server(tmp / "server.log", server_env(model_dir, root, WATCHBUY_MAX_BODY_BYTES="2000000"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def baseline(edge_server: LiveServer, slice_dir: Path) -> tuple[dict, dict]:
    """A labelled query and the server's answer to it before anything hostile was sent."""
    for query in queries(slice_dir):
        body = identify_json(SLICE_STREAM, frame_bytes(slice_dir, query, n=2))
        answer = httpx.post(f"{edge_server.base}/identify", json=body, timeout=WAIT_S).json()
        if answer["products"] and answer["products"][0]["product_id"] == query["product_id"]:
            return body, answer
    pytest.fail("no slice query is identified correctly by the healthy server")


def assert_still_answers(server: LiveServer, baseline: tuple[dict, dict]) -> None:
    body, before = baseline
    response = httpx.post(f"{server.base}/identify", json=body, timeout=WAIT_S)
    assert response.status_code == 200, response.text
    after = response.json()
    assert after["products"][0]["product_id"] == before["products"][0]["product_id"]
    assert [p["product_id"] for p in after["products"]] == [p["product_id"] for p in before["products"]]
    assert server.proc is not None and server.proc.poll() is None


#: schemathesis hooks (loaded through SCHEMATHESIS_HOOKS): half the generated requests name the real stream
#: (and JSON ones carry a real frame first), so fuzzing reaches decoding and the pipeline, not only the 404.
FUZZ_HOOKS = """
import base64, os
import schemathesis
from hypothesis import strategies as st

STREAM = os.environ["WATCHBUY_FUZZ_STREAM"]
RAW = open(os.environ["WATCHBUY_FUZZ_IMAGE"], "rb").read()
IMAGE = base64.b64encode(RAW).decode()


@schemathesis.hook
def flatmap_path_parameters(context, path_parameters):
    if not isinstance(path_parameters, dict) or "stream_id" not in path_parameters:
        return st.just(path_parameters)
    return st.sampled_from([path_parameters, {**path_parameters, "stream_id": STREAM}])


@schemathesis.hook
def flatmap_body(context, body):
    if not isinstance(body, dict) or "stream_id" not in body:
        return st.just(body)
    named = {**body, "stream_id": STREAM}
    frames = body.get("frames")
    if isinstance(frames, list) and frames and all(isinstance(f, dict) for f in frames):  # JSON
        real = {**named, "frames": [{**frames[0], "image": IMAGE}, *frames[1:]]}
        return st.sampled_from([body, named, real, {**real, "frames": [{"image": IMAGE}]}])
    if isinstance(frames, list) and frames:  # multipart: file contents
        return st.sampled_from([body, named, {**named, "frames": [RAW, *frames[1:]]}])
    return st.sampled_from([body, named])
"""


def test_schemathesis_fuzz_finds_no_server_error(
    edge_server: LiveServer, baseline: tuple[dict, dict], slice_dir: Path, tmp_path: Path
) -> None:
    """schemathesis 4 (CLI, in a subprocess) against the live OpenAPI schema: every operation, a bounded
    number of examples, the `not_a_server_error` check; then the server still answers correctly."""
    (tmp_path / "watchbuy_fuzz_hooks.py").write_text(FUZZ_HOOKS)
    image = slice_dir / queries(slice_dir)[0]["frames"][0]["path"]
    cli = Path(sys.executable).with_name("schemathesis")
    command = [
        str(cli), "run", f"{edge_server.base}/openapi.json",
        "--checks", "not_a_server_error",
        # an SSE stream has no end to check: it stays open for as long as its client reads (test_watch_api.py)
        "--exclude-path-regex", "/events$",
        "--max-examples", "300", "--seed", "20261121", "--workers", "1",
        "--phases", "examples,coverage,fuzzing",
        "--request-timeout", "30",
        "--suppress-health-check", "all", "--generation-database", "none", "--no-color",
    ]
    env = {
        **os.environ, "NO_COLOR": "1", "PYTHONPATH": str(tmp_path), "SCHEMATHESIS_HOOKS": "watchbuy_fuzz_hooks",
        "WATCHBUY_FUZZ_STREAM": SLICE_STREAM, "WATCHBUY_FUZZ_IMAGE": str(image),
    }
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=400,
                            check=False)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-8000:] + "\n--- server log ---\n" + edge_server.log()
    assert "POST /identify" in output and "generated" in output, output[-4000:]
    assert " 500 " not in edge_server.log(), edge_server.log()
    assert_still_answers(edge_server, baseline)


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def png_header(width: int, height: int) -> bytes:
    """A PNG declaring width×height (valid chunks and CRCs) with almost no pixel data: a decompression bomb's face."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", zlib.compress(b"\x00" * 64))
            + png_chunk(b"IEND", b""))


def encoded(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def jpeg_claiming(width: int, height: int) -> bytes:
    """A real small JPEG whose SOF0 header is rewritten to claim width×height."""
    data = bytearray(encoded(Image.new("RGB", (8, 8), (200, 10, 10)), "JPEG"))
    sof = data.index(b"\xff\xc0")
    struct.pack_into(">HH", data, sof + 5, height, width)
    return bytes(data)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_bad_input_battery_gets_4xx_and_the_server_keeps_answering(
    edge_server: LiveServer, baseline: tuple[dict, dict], slice_dir: Path
) -> None:
    real = frame_bytes(slice_dir, queries(slice_dir)[0])[0]
    png = encoded(Image.new("RGB", (64, 48), (10, 200, 10)), "PNG")
    good_frame = {"image": b64(real)}

    def frames_body(*images: bytes, **fields) -> dict:
        return {"stream_id": SLICE_STREAM, "frames": [{"image": b64(i)} for i in images], **fields}

    # (label, request kwargs, expected status, expected error code or None for "any 4xx code")
    json_cases = [
        ("truncated JPEG", frames_body(real[: len(real) // 2]), 400, "invalid_image"),
        ("truncated PNG", frames_body(png[:40]), 400, "invalid_image"),
        ("PNG with missing pixel rows", frames_body(png_header(64, 64)), 400, "invalid_image"),
        ("PNG declaring 100000x100000", frames_body(png_header(100_000, 100_000)), 413, "image_too_large"),
        ("JPEG declaring 65000x65000", frames_body(jpeg_claiming(65_000, 65_000)), 413, "image_too_large"),
        ("GIF", frames_body(encoded(Image.new("P", (8, 8)), "GIF")), 415, "unsupported_image_format"),
        ("random bytes", frames_body(os.urandom(512)), 400, "invalid_image"),
        ("JPEG magic then garbage", frames_body(b"\xff\xd8\xff" + os.urandom(300)), 400, "invalid_image"),
        ("not base64", {"stream_id": SLICE_STREAM, "frames": [{"image": "%%%not base64%%%"}]}, 400,
         "invalid_base64"),
        ("non-ASCII base64", {"stream_id": SLICE_STREAM, "frames": [{"image": "ÿØÿ画像"}]}, 400, "invalid_base64"),
        ("frames is a string", {"stream_id": SLICE_STREAM, "frames": "abc"}, 422, "invalid_request"),
        ("frames empty", {"stream_id": SLICE_STREAM, "frames": []}, 422, "invalid_request"),
        ("33 frames", {"stream_id": SLICE_STREAM, "frames": [good_frame] * 33}, 422, "invalid_request"),
        ("image is a number", {"stream_id": SLICE_STREAM, "frames": [{"image": 12}]}, 422, "invalid_request"),
        ("top_k string", {**frames_body(real), "top_k": "5"}, 422, "invalid_request"),
        ("top_k huge", {**frames_body(real), "top_k": 10**30}, 422, "invalid_request"),
        ("top_k zero", {**frames_body(real), "top_k": 0}, 422, "invalid_request"),
        ("top_k float", {**frames_body(real), "top_k": 2.5}, 422, "invalid_request"),
        ("frame_index negative", {"stream_id": SLICE_STREAM, "frames": [{"image": b64(real), "frame_index": -1}]},
         422, "invalid_request"),
        ("frame_index huge", {"stream_id": SLICE_STREAM, "frames": [{"image": b64(real), "frame_index": 2**80}]},
         None, None),
        ("stream_id number", {"stream_id": 7, "frames": [good_frame]}, 422, "invalid_request"),
        ("stream_id unicode", {"stream_id": "ストリーム", "frames": [good_frame]}, 422, "invalid_request"),
        ("stream_id path", {"stream_id": "../../etc/passwd", "frames": [good_frame]}, 422, "invalid_request"),
        ("stream_id slash", {"stream_id": "a/b", "frames": [good_frame]}, 422, "invalid_request"),
        ("stream_id dots", {"stream_id": "..", "frames": [good_frame]}, 404, "stream_not_found"),
        ("stream_id NUL", {"stream_id": "a\u0000b", "frames": [good_frame]}, 422, "invalid_request"),
        ("stream_id RTL/emoji", {"stream_id": "\u202eabc😀", "frames": [good_frame]}, 422, "invalid_request"),
        ("stream_id long", {"stream_id": "a" * 5000, "frames": [good_frame]}, 422, "invalid_request"),
        ("unknown stream", {"stream_id": "no-such-stream", "frames": [good_frame]}, 404, "stream_not_found"),
        ("session_id path", {**frames_body(real), "session_id": "../x"}, 422, "invalid_request"),
        ("unknown field", {**frames_body(real), "extra": 1}, 422, "invalid_request"),
        ("asr_text too long", {**frames_body(real), "asr_text": "語" * 5000}, 422, "invalid_request"),
        ("body is a list", [1, 2, 3], 422, "invalid_request"),
    ]
    shapes = [(1, 1), (1, 3000), (3000, 1), (2, 2000), (4096, 2)]  # degenerate but legal frames
    with httpx.Client(base_url=edge_server.base, timeout=WAIT_S) as http:
        for label, body, status, code in json_cases:
            response = http.post("/identify", json=body)
            assert response.status_code < 500, f"{label}: {response.status_code} {response.text}"
            assert response.status_code >= 400 or status is None, f"{label}: accepted"
            if response.status_code >= 400:
                got = assert_error_shape(response)
                assert status is None or (response.status_code, got) == (status, code), \
                    f"{label}: {response.status_code} {response.text}"

        for width, height in shapes:
            image = encoded(Image.new("RGB", (width, height), (120, 90, 60)), "PNG")
            response = http.post("/identify", json=frames_body(image))
            assert response.status_code == 200, f"{width}x{height}: {response.status_code} {response.text}"
            assert response.json()["frames"][0]["width"] == width

        raw_cases = [
            ("invalid JSON", b"{\"stream_id\": ", {"content-type": "application/json"}, 400, "invalid_json"),
            ("invalid UTF-8", b"{\"stream_id\": \"\xff\xfe\"}", {"content-type": "application/json"}, 400,
             "invalid_json"),
            ("deep nesting", b"[" * 100_000 + b"]" * 100_000, {"content-type": "application/json"}, None, None),
            ("body is null", b"null", {"content-type": "application/json"}, 422, "invalid_request"),
            ("JSON with a BOM", b"\xef\xbb\xbf{}", {"content-type": "application/json"}, None, None),
            ("text/plain", b"hello", {"content-type": "text/plain"}, 415, "unsupported_media_type"),
            ("no content type", b"hello", {}, 415, "unsupported_media_type"),
            ("multipart without boundary", b"--x\r\n", {"content-type": "multipart/form-data"}, 400,
             "invalid_multipart"),
            ("multipart garbage", os.urandom(2000), {"content-type": "multipart/form-data; boundary=zz"}, None, None),
        ]
        for label, content, headers, status, code in raw_cases:
            response = http.post("/identify", content=content, headers=headers)
            assert response.status_code < 500, f"{label}: {response.status_code} {response.text}"
            assert response.status_code >= 400, f"{label}: accepted"
            got = assert_error_shape(response)
            assert status is None or response.status_code == status, f"{label}: {response.text}"
            assert code is None or got == code, f"{label}: {response.text}"

        multipart_cases = [
            ("multipart truncated frame", {"stream_id": SLICE_STREAM}, [("frames", ("f.jpg", real[:500]))], 400,
             "invalid_image"),
            ("multipart no frames", {"stream_id": SLICE_STREAM}, [], 422, "invalid_request"),
            ("multipart frames as text", {"stream_id": SLICE_STREAM, "frames": "x"}, [], 422, "invalid_request"),
            ("multipart path stream", {"stream_id": "..\\..\\windows"}, [("frames", ("f.jpg", real))], 422,
             "invalid_request"),
            ("multipart unicode stream", {"stream_id": "ñ"}, [("frames", ("f.jpg", real))], 422, "invalid_request"),
            ("multipart frame_index word", {"stream_id": SLICE_STREAM, "frame_index": "one"},
             [("frames", ("f.jpg", real))], 422, "invalid_request"),
            ("multipart top_k word", {"stream_id": SLICE_STREAM, "top_k": "many"}, [("frames", ("f.jpg", real))],
             422, "invalid_request"),
            ("multipart unicode filename", {"stream_id": SLICE_STREAM}, [("frames", ("../../画像.jpg", real))],
             200, None),
        ]
        for label, data, files, status, code in multipart_cases:
            if files:
                response = http.post("/identify", data=data, files=files)
            else:  # httpx builds multipart only with files: write the fields by hand
                parts = "".join(f"--b\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n"
                                for k, v in data.items()) + "--b--\r\n"
                response = http.post("/identify", content=parts.encode(),
                                     headers={"content-type": "multipart/form-data; boundary=b"})
            assert response.status_code == status, f"{label}: {response.status_code} {response.text}"
            if status >= 400:
                assert assert_error_shape(response) == code, f"{label}: {response.text}"

        for path, status in [
            ("/streams/..%2F..%2Fetc%2Fpasswd", 404), ("/streams/%E3%82%B9%E3%83%88", 404),
            ("/streams/" + "a" * 4000, 404), ("/streams/%00", 404), ("/streams/%2E%2E", 404),
            (f"/streams/{SLICE_STREAM}", 200), ("/nowhere", 404),
        ]:
            response = http.get(path)
            assert response.status_code == status, f"{path}: {response.status_code} {response.text}"
            if status >= 400:
                assert_error_shape(response)
        response = http.request("PROPFIND", "/identify")
        assert response.status_code == 405 and assert_error_shape(response) == "method_not_allowed"

        # Oversize bodies: declared (refused before reading) and streamed without a length.
        response = http.post("/identify", content=b"x" * 2_100_000, headers={"content-type": "application/json"})
        assert response.status_code == 413 and assert_error_shape(response) == "body_too_large"

        def chunks() -> Iterator[bytes]:
            for _ in range(40):
                yield b" " * 100_000

        response = http.post("/identify", content=chunks(), headers={"content-type": "application/json"})
        assert response.status_code == 413 and assert_error_shape(response) == "body_too_large"
        status, _ = raw_request(edge_server.port, b"POST /identify HTTP/1.1\r\nHost: x\r\n"
                                b"Content-Type: application/json\r\nContent-Length: 10000000000\r\n\r\n")
        assert status == 413
        status, _ = raw_request(edge_server.port, b"POST /identify HTTP/1.1\r\nHost: x\r\n"
                                b"Content-Type: application/json\r\nContent-Length: abc\r\n\r\n{}")
        assert status == 400  # refused by the HTTP parser or by the body-limit middleware, never a 500

    assert_still_answers(edge_server, baseline)


def test_slow_clients_do_not_wedge_the_server(edge_server: LiveServer, baseline: tuple[dict, dict]) -> None:
    """Twenty clients trickle a body a few bytes at a time (and some never finish); meanwhile ordinary
    requests are answered, and afterwards the answer is still right."""
    slow = []
    try:
        for _ in range(20):
            sock = socket.create_connection(("127.0.0.1", edge_server.port), timeout=10)
            sock.sendall(b"POST /identify HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         b"Content-Length: 100000\r\n\r\n{\"stream_id\": ")
            slow.append(sock)
        for _ in range(3):
            for sock in slow:
                sock.sendall(b" ")
            assert_still_answers(edge_server, baseline)  # not wedged behind the trickling bodies
            assert httpx.get(f"{edge_server.base}/readyz", timeout=10).status_code == 200
            time.sleep(0.2)
        # Half of them finish with a bad body: they get their 4xx, the rest just hang up.
        for sock in slow[:10]:
            sock.sendall(b"1" * (100_000 - len(b"{\"stream_id\": ") - 3))
        for sock in slow[:10]:
            status = read_status(sock)
            assert status is not None and 400 <= status < 500, status
    finally:
        for sock in slow:
            sock.close()
    assert_still_answers(edge_server, baseline)
    assert " 500 " not in edge_server.log()


def raw_request(port: int, request: bytes) -> tuple[int | None, bytes]:
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT_S) as sock:
        sock.sendall(request)
        return read_status(sock), b""


def read_status(sock: socket.socket) -> int | None:
    sock.settimeout(WAIT_S)
    data = b""
    while b"\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    line = data.split(b"\r\n", 1)[0].split()
    return int(line[1]) if len(line) >= 2 and line[1].isdigit() else None
