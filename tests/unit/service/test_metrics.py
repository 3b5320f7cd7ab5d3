"""service.metrics: names, bounded labels, stale stream labels, the request middleware."""

from __future__ import annotations

from service.metrics import Metrics

METRIC_NAMES = (
    "watchbuy_requests_total", "watchbuy_request_seconds", "watchbuy_stage_seconds",
    "watchbuy_frames_per_request", "watchbuy_boxes_per_request", "watchbuy_loaded_streams",
    "watchbuy_stream_vectors", "watchbuy_model_info", "watchbuy_errors_total",
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
    metrics.observe_counts(frames=3, boxes=7)
    metrics.set_loaded_streams({"shop-1": 120})
    metrics.set_model("detector", "yolox-s", "CPUExecutionProvider", "ab12")
    metrics.count_error("invalid_image")
    rendered = text(metrics)
    for name in METRIC_NAMES:
        assert name in rendered, name
    assert 'stage="surprise"' not in rendered
    assert sample(metrics, "watchbuy_stage_seconds_sum", stage="detect") == 0.012
    assert sample(metrics, "watchbuy_errors_total", code="invalid_image") == 1.0
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
