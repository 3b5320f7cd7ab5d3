"""service.metrics: names, bounded labels, stale stream labels, the request middleware."""

from __future__ import annotations

from fastapi import FastAPI, HTTPException
from fastapi.testclient import TestClient

from service.metrics import Metrics, MetricsMiddleware
from service.values import CropCounts

METRIC_NAMES = (
    "watchbuy_requests_total", "watchbuy_request_seconds", "watchbuy_stage_seconds",
    "watchbuy_frames_per_request", "watchbuy_boxes_per_request", "watchbuy_loaded_streams",
    "watchbuy_stream_vectors", "watchbuy_model_info", "watchbuy_errors_total", "watchbuy_crops_total",
)


def text(metrics: Metrics) -> str:
    body, content_type = metrics.render()
    assert content_type.startswith("text/plain")
    return body.decode()


def sample(metrics: Metrics, metric: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(metric, labels)


def test_render_names_every_metric() -> None:
    metrics = Metrics()
    metrics.observe_request("/identify", "POST", 200, 0.02)
    metrics.observe_stages({"decode": 1.5, "detect": 12.0, "embed": 8.0, "search": 0.4, "aggregate": 0.1,
                            "total": 22.0, "surprise": 3.0})
    metrics.observe_counts(frames=3, boxes=7, crops=CropCounts(embedded=5, reused=2))
    metrics.set_loaded_streams({"shop-1": 120})
    metrics.set_model("detector", "yolox-s", "CPUExecutionProvider", "ab12")
    metrics.count_error("invalid_image")
    rendered = text(metrics)
    for name in METRIC_NAMES:
        assert name in rendered, name
    assert 'stage="surprise"' not in rendered
    assert sample(metrics, "watchbuy_stage_seconds_sum", stage="detect") == 0.012
    assert sample(metrics, "watchbuy_errors_total", code="invalid_image") == 1.0
    assert sample(metrics, "watchbuy_crops_total", outcome="reused") == 2.0
    assert sample(metrics, "watchbuy_requests_total", route="/identify", method="POST", status="200") == 1.0


def test_stale_stream_labels_are_removed() -> None:
    metrics = Metrics()
    metrics.set_loaded_streams({"a": 10, "b": 20})
    metrics.set_loaded_streams({"b": 25, "c": 30})
    rendered = text(metrics)
    assert 'stream_id="a"' not in rendered
    assert sample(metrics, "watchbuy_stream_vectors", stream_id="b") == 25.0
    assert sample(metrics, "watchbuy_stream_vectors", stream_id="c") == 30.0
    assert sample(metrics, "watchbuy_loaded_streams") == 2.0
    metrics.set_loaded_streams({})
    assert "stream_id=" not in text(metrics)
    assert sample(metrics, "watchbuy_loaded_streams") == 0.0


def test_model_info_keeps_one_series_per_role() -> None:
    metrics = Metrics()
    metrics.set_model("embedder", "effnet", "CUDAExecutionProvider", "aa")
    metrics.set_model("embedder", "effnet", "CPUExecutionProvider", "aa")
    rendered = text(metrics)
    assert "CUDAExecutionProvider" not in rendered
    labels = {"role": "embedder", "name": "effnet", "provider": "CPUExecutionProvider", "sha256": "aa"}
    assert sample(metrics, "watchbuy_model_info", **labels) == 1.0


def test_separate_instances_do_not_collide() -> None:
    first, second = Metrics(), Metrics()
    first.count_error("x")
    assert sample(second, "watchbuy_errors_total", code="x") is None


def test_middleware_labels_by_route_template() -> None:
    metrics = Metrics()
    app = FastAPI()
    app.add_middleware(MetricsMiddleware, metrics=metrics)

    @app.get("/streams/{stream_id}")
    async def get_stream(stream_id: str) -> dict[str, str]:
        if stream_id == "gone":
            raise HTTPException(404)
        return {"stream_id": stream_id}

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("bug")

    client = TestClient(app, raise_server_exceptions=False)
    for stream_id in ("a", "b", "gone"):
        client.get(f"/streams/{stream_id}")
    client.get("/nowhere/1")
    client.get("/nowhere/2")
    client.post("/streams/a")
    client.request("BREW", "/boom")
    client.get("/boom")

    route = "/streams/{stream_id}"
    assert sample(metrics, "watchbuy_requests_total", route=route, method="GET", status="200") == 2.0
    assert sample(metrics, "watchbuy_requests_total", route=route, method="GET", status="404") == 1.0
    assert sample(metrics, "watchbuy_requests_total", route=route, method="POST", status="405") == 1.0
    assert sample(metrics, "watchbuy_requests_total", route="unmatched", method="GET", status="404") == 2.0
    assert sample(metrics, "watchbuy_requests_total", route="/boom", method="OTHER", status="405") == 1.0
    assert sample(metrics, "watchbuy_requests_total", route="/boom", method="GET", status="500") == 1.0
    assert sample(metrics, "watchbuy_request_seconds_count", route=route) == 4.0
    assert 'stream_id="a"' not in text(metrics)
