"""The real service (real models, real FAISS index of a viton-dev-00 slice) driven in-process over ASGI."""

from __future__ import annotations

import base64
import json
import shutil
from collections.abc import Iterator
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from PIL import Image
from support.data import SLICE_CALIBRATION_VIEWS, SLICE_PRODUCTS, SLICE_STREAM, expected_embedder, write_slice

from indexer.build import build_stream
from indexer.catalogue import read_catalogue
from indexer.store import IndexStore
from models.artifacts import ModelArtifactError
from service.app import create_app
from service.calibration import METHOD
from watchbuy.settings import Settings


def settings_for(model_dir: Path, index_root: Path, **overrides: Any) -> Settings:
    return Settings(model_dir=model_dir, index_root=index_root, **overrides)


def queries(slice_dir: Path) -> list[dict[str, Any]]:
    lines = (slice_dir / "queries.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def encoded(image: Image.Image, fmt: str = "PNG") -> bytes:
    buffer = BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def body(frames: list[bytes], stream_id: str = SLICE_STREAM, **extra: Any) -> dict[str, Any]:
    return {"stream_id": stream_id, "frames": [{"image": b64(f)} for f in frames], **extra}


def assert_error(response: Any, status: int, code: str | None = None) -> str:
    assert response.status_code == status, (status, response.status_code, response.text)
    error = response.json()
    assert set(error) == {"error"} and set(error["error"]) == {"code", "message"}, error
    assert error["error"]["message"]
    if code is not None:
        assert error["error"]["code"] == code, error
    return error["error"]["message"]


@pytest.fixture(scope="module")
def client(model_dir: Path, slice_index_root: Path) -> Iterator[TestClient]:
    app = create_app(settings_for(model_dir, slice_index_root))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Image, "MAX_IMAGE_PIXELS", Image.MAX_IMAGE_PIXELS)
        with TestClient(app, raise_server_exceptions=False) as test_client:
            yield test_client


@pytest.fixture(scope="module")
def frame_bytes(slice_dir: Path) -> bytes:
    first = queries(slice_dir)[0]
    return (slice_dir / first["frames"][0]["path"]).read_bytes()


def identify(client: TestClient, frames: list[bytes], **extra: Any) -> dict[str, Any]:
    response = client.post("/identify", json=body(frames, **extra))
    assert response.status_code == 200, response.text
    return response.json()


def test_top1_rate_on_the_slice_is_well_above_chance(client: TestClient, slice_dir: Path) -> None:
    clips = queries(slice_dir)
    assert len(clips) == SLICE_PRODUCTS and all(c["product_id"] for c in clips)
    hits = 0
    for clip in clips:
        frames = [(slice_dir / f["path"]).read_bytes() for f in clip["frames"]]
        answer = identify(client, frames)
        hits += bool(answer["products"]) and answer["products"][0]["product_id"] == clip["product_id"]
    rate, chance = hits / len(clips), 1 / SLICE_PRODUCTS
    assert rate >= max(0.15, 4 * chance), f"top-1 rate {rate:.3f} ({hits}/{len(clips)}), chance {chance:.3f}"
    print(f"\ntop-1 rate on {SLICE_STREAM} ({len(clips)} clips, {SLICE_PRODUCTS} products): {rate:.3f}")


def test_response_has_exactly_the_contract_keys(client: TestClient, frame_bytes: bytes) -> None:
    answer = identify(client, [frame_bytes, frame_bytes], top_k=3)
    assert set(answer) == {
        "stream_id", "index_version", "abstain", "products", "frames", "timings_ms", "smoothing", "crops",
    }
    assert answer["smoothing"] == {"applied": False, "window": 1, "reason": "disabled"}  # no Redis here
    assert answer["stream_id"] == SLICE_STREAM and isinstance(answer["abstain"], bool)
    assert 1 <= len(answer["products"]) <= 3
    for product in answer["products"]:
        assert set(product) == {"product_id", "score", "title", "evidence_frames"}
        assert sorted(product["evidence_frames"]) == [0, 1]  # both frames sent (the same image) made its score
        assert product["product_id"].startswith("viton-") and isinstance(product["score"], float)
    scores = [p["score"] for p in answer["products"]]
    assert scores == sorted(scores, reverse=True)
    assert [f["frame_index"] for f in answer["frames"]] == [0, 1]
    for frame in answer["frames"]:
        assert set(frame) == {"frame_index", "width", "height", "boxes"}
        assert (frame["width"], frame["height"]) == (192, 256)
        assert frame["boxes"]
        for box in frame["boxes"]:
            assert set(box) == {"box", "label", "detector_score", "matches"}
            assert len(box["box"]) == 4
            assert box["label"] in {"person", "upper_body", "lower_body", "full_frame", "center"}
            x1, y1, x2, y2 = box["box"]
            assert 0 <= x1 < x2 <= 192 and 0 <= y1 < y2 <= 256
            assert 1 <= len(box["matches"]) <= 3
            for match in box["matches"]:
                assert set(match) == {"product_id", "image_id", "image_box", "similarity"}
                assert match["image_id"].startswith(match["product_id"]) and len(match["image_box"]) == 4
                assert -1.0 <= match["similarity"] <= 1.0001
            assert len({m["product_id"] for m in box["matches"]}) == len(box["matches"])
    assert {"decode", "detect", "embed", "search", "total"} <= set(answer["timings_ms"])
    assert all(isinstance(v, float) and v >= 0 for v in answer["timings_ms"].values())
    # The same frame twice: both frames see the same boxes, and the second frame's crops are all reused.
    assert answer["frames"][0]["boxes"] == answer["frames"][1]["boxes"]
    per_frame = len(answer["frames"][0]["boxes"])
    assert answer["crops"]["reused"] >= per_frame
    assert answer["crops"]["embedded"] + answer["crops"]["reused"] == 2 * per_frame


def test_multipart_gives_the_same_products_as_json(client: TestClient, frame_bytes: bytes) -> None:
    from_json = identify(client, [frame_bytes], top_k=5)
    response = client.post(
        "/identify",
        data={"stream_id": SLICE_STREAM, "top_k": "5"},
        files=[("frames", ("frame.jpg", frame_bytes, "image/jpeg"))],
    )
    assert response.status_code == 200, response.text
    from_form = response.json()
    assert from_form["products"] == from_json["products"]
    assert from_form["frames"] == from_json["frames"]


PNG_4x4 = encoded(Image.new("RGB", (4, 4), (10, 200, 30)))


GIF = encoded(Image.new("RGB", (8, 8), (1, 2, 3)), "GIF")


GOOD = {"frames": [{"image": b64(PNG_4x4)}]}


#: Client mistakes in JSON bodies: (payload, status, error code).
BAD_JSON_BODIES: list[tuple[Any, int, str]] = [
    ({"stream_id": "no-such-stream", **GOOD}, 404, "stream_not_found"),
    ({"stream_id": SLICE_STREAM, "frames": [{"image": "not base64!!"}]}, 400, "invalid_base64"),
    ({"stream_id": SLICE_STREAM, "frames": [{"image": b64(b"not a picture")}]}, 400, "invalid_image"),
    ({"stream_id": SLICE_STREAM, "frames": [{"image": b64(GIF)}]}, 415, "unsupported_image_format"),
    ({"stream_id": SLICE_STREAM, "frames": []}, 422, "invalid_request"),
    ({"stream_id": SLICE_STREAM, "frames": [{"image": b64(PNG_4x4)}] * 33}, 422, "invalid_request"),
    ({"stream_id": "../etc", **GOOD}, 422, "invalid_request"),
    ({"stream_id": "a b", **GOOD}, 422, "invalid_request"),
    ({"stream_id": "x" * 129, **GOOD}, 422, "invalid_request"),
    ({"stream_id": "ä", **GOOD}, 422, "invalid_request"),
    ({"stream_id": SLICE_STREAM, "top_k": 0, **GOOD}, 422, "invalid_request"),
    ({"stream_id": SLICE_STREAM, "top_k": 51, **GOOD}, 422, "invalid_request"),
    ({"stream_id": SLICE_STREAM, "top_k": "5", **GOOD}, 422, "invalid_request"),
    ({"stream_id": 7, **GOOD}, 422, "invalid_request"),
    ({"stream_id": SLICE_STREAM, "frames": "abc"}, 422, "invalid_request"),
    ({"stream_id": SLICE_STREAM, "frames": [{"image": 5}]}, 422, "invalid_request"),
    ({"stream_id": SLICE_STREAM, "frames": [{**GOOD["frames"][0], "frame_index": -1}]}, 422, "invalid_request"),
    ({"frames": GOOD["frames"]}, 422, "invalid_request"),
    ([1, 2, 3], 422, "invalid_request"),
]
BAD_JSON_IDS = [
    "unknown-stream", "bad-base64", "not-an-image", "gif", "no-frames", "33-frames", "dotdot-stream",
    "space-stream", "long-stream", "non-ascii-stream", "top_k-0", "top_k-51", "top_k-string",
    "stream-int", "frames-string", "image-int", "negative-index", "no-stream", "array-body",
]


@pytest.mark.parametrize(("payload", "status", "code"), BAD_JSON_BODIES, ids=BAD_JSON_IDS)
def test_bad_requests_get_their_4xx_and_the_service_keeps_working(
    client: TestClient, frame_bytes: bytes, payload: Any, status: int, code: str | None
) -> None:
    message = assert_error(client.post("/identify", json=payload), status, code)
    if status == 404:
        assert "make build-index" in message
    assert client.post("/identify", json=body([frame_bytes])).status_code == 200


@pytest.mark.parametrize("raw", [b"{not json", b"", b'{"stream_id": "a",', b"\xff\xfe"])
def test_malformed_json_is_400(client: TestClient, frame_bytes: bytes, raw: bytes) -> None:
    response = client.post("/identify", content=raw, headers={"content-type": "application/json"})
    assert_error(response, 400, "invalid_json")
    assert client.post("/identify", json=body([frame_bytes])).status_code == 200


def test_wrong_content_type_is_415(client: TestClient) -> None:
    assert_error(client.post("/identify", content=b"hello", headers={"content-type": "text/plain"}), 415)


@pytest.fixture(scope="module")
def limited_client(model_dir: Path, slice_index_root: Path) -> Iterator[TestClient]:
    limits = {"max_image_pixels": 100_000, "max_body_bytes": 200_000}
    app = create_app(settings_for(model_dir, slice_index_root, **limits))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Image, "MAX_IMAGE_PIXELS", Image.MAX_IMAGE_PIXELS)
        with TestClient(app, raise_server_exceptions=False) as test_client:
            yield test_client


def test_image_over_the_pixel_limit_is_413(limited_client: TestClient, frame_bytes: bytes) -> None:
    big = encoded(Image.new("RGB", (400, 400), (120, 50, 50)))
    assert len(big) < 20_000
    assert_error(limited_client.post("/identify", json=body([big])), 413, "image_too_large")
    as_form = limited_client.post(
        "/identify", data={"stream_id": SLICE_STREAM}, files=[("frames", ("big.png", big, "image/png"))]
    )
    assert_error(as_form, 413, "image_too_large")
    assert limited_client.post("/identify", json=body([frame_bytes])).status_code == 200  # 192×256 < 100k


def test_body_over_the_limit_is_413(limited_client: TestClient, frame_bytes: bytes) -> None:
    payload = body([frame_bytes] * 30)
    assert len(json.dumps(payload)) > 200_000
    assert_error(limited_client.post("/identify", json=payload), 413, "body_too_large")

    def chunks() -> Iterator[bytes]:
        text = json.dumps(payload).encode()
        for start in range(0, len(text), 16_384):
            yield text[start : start + 16_384]

    headers = {"content-type": "application/json"}
    streamed = limited_client.post("/identify", content=chunks(), headers=headers)
    assert_error(streamed, 413, "body_too_large")
    assert limited_client.post("/identify", json=body([frame_bytes])).status_code == 200


def test_no_error_was_a_5xx(client: TestClient, limited_client: TestClient, frame_bytes: bytes) -> None:
    """After a battery of client mistakes of every kind (sent here, so the test stands alone), the request
    counters hold no 5xx answer at all."""
    for payload, status, _ in BAD_JSON_BODIES:
        assert client.post("/identify", json=payload).status_code == status
    json_type = {"content-type": "application/json"}
    for raw in (b"{not json", b"", b"\xff\xfe"):
        assert client.post("/identify", content=raw, headers=json_type).status_code == 400
    assert client.post("/identify", content=b"hello", headers={"content-type": "text/plain"}).status_code == 415
    big = encoded(Image.new("RGB", (400, 400), (120, 50, 50)))
    assert limited_client.post("/identify", json=body([big])).status_code == 413
    assert limited_client.post("/identify", json=body([frame_bytes] * 30)).status_code == 413
    for test_client in (client, limited_client):
        assert_error(test_client.post("/identify", json={"stream_id": SLICE_STREAM, "frames": []}), 422)
        metrics = test_client.get("/metrics").text
        lines = [line for line in metrics.splitlines() if line.startswith("watchbuy_requests_total{")]
        assert lines
        assert not [line for line in lines if 'status="5' in line], lines


def test_stream_info(client: TestClient, slice_index_root: Path) -> None:
    store = IndexStore(slice_index_root)
    response = client.get(f"/streams/{SLICE_STREAM}")
    assert response.status_code == 200, response.text
    info = response.json()
    assert info["stream_id"] == SLICE_STREAM
    assert info["products"] == SLICE_PRODUCTS
    assert info["vectors"] == store.load(SLICE_STREAM).n_vectors >= SLICE_PRODUCTS
    assert info["index_version"] == store.current_version(SLICE_STREAM)
    assert info["built_at"]
    calibration = store.load(SLICE_STREAM).manifest["calibration"]  # the build calibrated the slice's index
    assert calibration["views"] == SLICE_CALIBRATION_VIEWS and calibration["method"] == METHOD
    assert (info["abstain_threshold"], info["abstain_threshold_source"]) == (calibration["threshold"], "catalogue")
    message = assert_error(client.get("/streams/no-such-stream"), 404, "stream_not_found")
    assert "make build-index" in message
    assert_error(client.get("/streams/a%20b"), 404)


def test_models_route_lists_both_models_on_cpu_and_the_cohort(client: TestClient, model_dir: Path) -> None:
    response = client.get("/models")
    assert response.status_code == 200
    models = {m["role"]: m for m in response.json()["models"]}
    assert set(models) == {"detector", "embedder"}
    manifest = json.loads((model_dir / "manifest.json").read_text())["models"]
    for role, model in models.items():
        assert model["provider"] == "CPUExecutionProvider"
        assert model["providers"][0] == model["provider"]
        file = manifest[f"{role}-int8" if model["precision"] == "int8" else role]  # the default runs int8 copies
        assert model["sha256"] == file["sha256"] and model["name"] == file["name"]
        assert model["identity"] == manifest[role]["sha256"]
    cohort = response.json()["cohort"]
    if "cohort" not in manifest:  # an embedder without a cohort ranks by plain cosine
        assert cohort is None
        return
    assert (cohort["name"], cohort["sha256"]) == (manifest["cohort"]["name"], manifest["cohort"]["sha256"])
    assert cohort["embedder_sha256"] == manifest["embedder"]["sha256"]
    assert cohort["dim"] == expected_embedder()[1] and cohort["vectors"] > 0


def test_health_readiness_and_metrics(client: TestClient, frame_bytes: bytes, model_dir: Path) -> None:
    assert client.get("/healthz").status_code == 200
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json() == {"status": "ready", "redis": "off"}
    identify(client, [frame_bytes])
    metrics = client.get("/metrics")
    assert metrics.status_code == 200
    text = metrics.text
    for name in (
        "watchbuy_requests_total",
        "watchbuy_stage_seconds",
        "watchbuy_loaded_streams 1.0",
        f'watchbuy_stream_vectors{{stream_id="{SLICE_STREAM}"}}',
        'watchbuy_model_info{name="yolox-nano-coco",provider="CPUExecutionProvider"',
        f'watchbuy_model_info{{name="{expected_embedder()[0]}",provider="CPUExecutionProvider"',
        'watchbuy_requests_total{method="POST",route="/identify",status="200"}',
    ):
        assert name in text, name
    cohort = json.loads((model_dir / "manifest.json").read_text())["models"].get("cohort")
    if cohort is not None:
        assert f'watchbuy_model_info{{name="{cohort["name"]}",provider="none",role="cohort"' in text
    for stage in ("decode", "detect", "embed", "search", "total"):
        assert f'watchbuy_stage_seconds_count{{stage="{stage}"}}' in text


def test_readyz_is_503_before_startup(model_dir: Path, slice_index_root: Path) -> None:
    app = create_app(settings_for(model_dir, slice_index_root))
    not_started = TestClient(app, raise_server_exceptions=False)  # no `with`: lifespan not run
    assert not_started.get("/readyz").status_code == 503
    assert not_started.get("/healthz").status_code == 200
    assert_error(not_started.post("/identify", json=body([PNG_4x4])), 503, "service_unavailable")


def test_new_index_version_is_served_without_restart(
    model_dir: Path, slice_index_root: Path, slice_dir: Path, models, frame_bytes: bytes, tmp_path: Path
) -> None:
    index_root = tmp_path / "indexes"
    shutil.copytree(slice_index_root, index_root)
    store = IndexStore(index_root)
    old_version = store.current_version(SLICE_STREAM)
    app = create_app(settings_for(model_dir, index_root, reload_check_seconds=0))
    with TestClient(app, raise_server_exceptions=False) as test_client:
        before = identify(test_client, [frame_bytes])
        assert before["index_version"] == old_version
        assert test_client.get(f"/streams/{SLICE_STREAM}").json()["products"] == SLICE_PRODUCTS

        smaller = write_slice(slice_dir, tmp_path / "slice10", 10)
        summary, _ = build_stream(read_catalogue(smaller, SLICE_STREAM), models, store, show_progress=False)
        assert summary.version != old_version and store.current_version(SLICE_STREAM) == summary.version

        after = identify(test_client, [frame_bytes])
        assert after["index_version"] == summary.version
        lines = (smaller / "catalogue.jsonl").read_text().splitlines()
        ten = {json.loads(line)["product_id"] for line in lines}
        assert {p["product_id"] for p in after["products"]} <= ten
        info = test_client.get(f"/streams/{SLICE_STREAM}").json()
        assert (info["index_version"], info["products"]) == (summary.version, 10)
        assert f'watchbuy_stream_vectors{{stream_id="{SLICE_STREAM}"}} {float(summary.vectors)}' in (
            test_client.get("/metrics").text
        )


def test_startup_without_models_fails_naming_make_models(tmp_path: Path) -> None:
    empty = tmp_path / "models"
    empty.mkdir()
    app = create_app(settings_for(empty, tmp_path / "indexes"))
    with pytest.raises(ModelArtifactError, match="make models"), TestClient(app):
        pass


@pytest.mark.asyncio
async def test_lifespan_raises_for_an_empty_model_dir(tmp_path: Path) -> None:
    app = create_app(settings_for(tmp_path, tmp_path / "indexes"))
    with pytest.raises(ModelArtifactError, match="make models"):
        async with app.router.lifespan_context(app):
            pass


@pytest.mark.asyncio
async def test_async_client_with_lifespan(
    model_dir: Path, slice_index_root: Path, frame_bytes: bytes
) -> None:
    """The same app driven by httpx.AsyncClient over ASGI inside the lifespan context."""
    import httpx

    app = create_app(settings_for(model_dir, slice_index_root))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            response = await http.post("/identify", json=body([frame_bytes]))
            assert response.status_code == 200, response.text
            assert response.json()["products"]
            assert_error(await http.post("/identify", json=body([b"junk"])), 400, "invalid_image")


def test_index_from_another_embedder_is_refused_not_a_crash(model_dir: Path, tmp_path: Path) -> None:
    import faiss
    import numpy as np

    from indexer.store import VectorEntry

    index = faiss.IndexFlatIP(8)
    index.add(np.eye(8, dtype=np.float32)[:2])
    entries = [VectorEntry("p", f"p-{i}", (0.0, 0.0, 1.0, 1.0)) for i in range(2)]
    IndexStore(tmp_path).publish("old-model", index, entries, {"p": "x"}, {"models": {"embedder": "0" * 64}})
    app = create_app(settings_for(model_dir, tmp_path))
    with TestClient(app, raise_server_exceptions=False) as test_client:
        response = test_client.post("/identify", json=body([PNG_4x4], stream_id="old-model"))
        assert_error(response, 503, "service_unavailable")


def test_index_without_the_cohorts_hubness_is_refused(
    models, model_dir: Path, slice_index_root: Path, tmp_path: Path, frame_bytes: bytes
) -> None:
    """An index built before the embedder had its cohort would be scored on another scale: 503, rebuild."""
    if models.cohort is None:
        pytest.skip("the configured embedder has no cohort")
    built = IndexStore(slice_index_root).load(SLICE_STREAM)
    kept = {key: built.manifest[key] for key in ("models", "embedder_preprocess")}
    IndexStore(tmp_path).publish(SLICE_STREAM, built.index, built.entries, built.titles, kept)  # no hubness
    with TestClient(create_app(settings_for(model_dir, tmp_path)), raise_server_exceptions=False) as test_client:
        response = test_client.post("/identify", json=body([frame_bytes]))
        assert "cohort" in assert_error(response, 503, "service_unavailable")
    with TestClient(create_app(settings_for(model_dir, slice_index_root))) as test_client:
        assert identify(test_client, [frame_bytes])["products"]  # the same index with its hubness is served


def test_abstain_threshold_settings_override_the_calibrated_one(
    model_dir: Path, slice_index_root: Path, frame_bytes: bytes
) -> None:
    """An override pattern beats the catalogue's calibrated threshold, which beats the default setting."""
    def threshold(client: TestClient) -> tuple[float, str]:
        info = client.get(f"/streams/{SLICE_STREAM}").json()
        return info["abstain_threshold"], info["abstain_threshold_source"]

    overrides = {"no-such-*": -1.0, f"{SLICE_STREAM[:4]}*": 2.0}  # cosine scores never reach 2
    settings = settings_for(model_dir, slice_index_root, abstain_threshold=-1.0, abstain_threshold_overrides=overrides)
    with TestClient(create_app(settings)) as strict:
        assert identify(strict, [frame_bytes])["abstain"] is True
        assert threshold(strict) == (2.0, "override")
    settings = settings_for(model_dir, slice_index_root, abstain_threshold=2.0,
                            abstain_threshold_overrides={"no-such-*": -1.0})
    with TestClient(create_app(settings)) as calibrated:
        calibration = IndexStore(slice_index_root).load(SLICE_STREAM).manifest["calibration"]
        assert threshold(calibrated) == (calibration["threshold"], "catalogue")  # not the default of 2.0
    settings = settings_for(model_dir, slice_index_root, abstain_threshold=2.0,
                            abstain_threshold_overrides={SLICE_STREAM: -1.0})
    with TestClient(create_app(settings)) as lenient:
        assert identify(lenient, [frame_bytes])["abstain"] is False
        assert threshold(lenient) == (-1.0, "override")
