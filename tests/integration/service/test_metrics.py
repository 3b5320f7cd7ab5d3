"""service.metrics: names, bounded labels, stale stream labels, the request middleware."""

from __future__ import annotations

from fastapi import FastAPI, HTTPException
from fastapi.testclient import TestClient

from service.metrics import Metrics, MetricsMiddleware


def text(metrics: Metrics) -> str:
    body, content_type = metrics.render()
    assert content_type.startswith("text/plain")
    return body.decode()


def sample(metrics: Metrics, metric: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(metric, labels)


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
