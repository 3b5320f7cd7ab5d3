"""Bare pipeline: the request path (decode + detect + embed + search + aggregate) without HTTP — the ceiling.

`service.identify.identify`, the code both routes run once a body is parsed, runs real frames against the
benchmark stream's index on a started service (batching off: the models called directly), first one
request at a time (per-frame latency), then with several requests in flight (what the service's worker
threads can get out of this machine). The highest frames/s is the ceiling the HTTP benchmark is compared
with.
"""

from __future__ import annotations

import time
from itertools import count
from typing import Any

import anyio

from benchmarks.data import Workspace
from benchmarks.report import BenchReport, Plot, percentile
from service.pipeline import STAGES

NAME = "pipeline"
WARMUP_CALLS = 3


async def _load(ws: Workspace, in_flight: int, seconds: float, frames_per_request: int) -> dict[str, Any]:
    """`in_flight` requests at a time for `seconds`: latency per request, stage means, frames/s."""
    latencies: list[float] = []
    stage_ms = {stage: 0.0 for stage in STAGES}
    boxes = 0
    counter = count()
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal boxes
        while time.perf_counter() < deadline:
            began = time.perf_counter()
            result = await ws.identify(next(counter) * frames_per_request, frames_per_request)
            latencies.append((time.perf_counter() - began) * 1000)
            boxes += result.n_boxes
            for stage in STAGES:
                stage_ms[stage] += result.timings_ms.get(stage, 0.0)

    started = time.perf_counter()
    async with anyio.create_task_group() as group:
        for _ in range(in_flight):
            group.start_soon(worker)
    elapsed = time.perf_counter() - started
    calls = len(latencies)
    frames = calls * frames_per_request
    row: dict[str, Any] = {
        "threads": in_flight,
        "calls": calls,
        "frames": frames,
        "seconds": round(elapsed, 2),
        "frames_per_s": round(frames / elapsed, 3) if elapsed > 0 else None,
        "p50_ms": percentile(latencies, 50),
        "p95_ms": percentile(latencies, 95),
        "p99_ms": percentile(latencies, 99),
        "per_frame_p50_ms": (percentile(latencies, 50) or 0) / frames_per_request if calls else None,
        "boxes_per_frame": round(boxes / frames, 2) if frames else None,
    }
    for stage in STAGES:
        row[f"{stage}_ms"] = round(stage_ms[stage] / calls, 2) if calls else None
    return row


def run(ws: Workspace, seconds: float = 15.0, threads: tuple[int, ...] | None = None,
        frames_per_request: int = 1) -> BenchReport:
    """`threads`: requests in flight per measured row (default 1 and the service's worker threads)."""
    threads = threads or tuple(sorted({1, ws.settings.inference_threads}))
    index = ws.index
    for i in range(WARMUP_CALLS):  # first runs allocate and optimise: not measured
        ws.portal.call(ws.identify, i, frames_per_request)
    rows = [ws.portal.call(_load, ws, n, seconds, frames_per_request) for n in threads]
    best = max(rows, key=lambda r: r["frames_per_s"] or 0)
    single = next(r for r in rows if r["threads"] == min(threads))
    return BenchReport(
        name=NAME,
        title="Bare pipeline (the request path: decode + detect + embed + search + aggregate, no HTTP)",
        columns=["threads", "calls", "frames_per_s", "p50_ms", "p95_ms", "p99_ms", "per_frame_p50_ms",
                 "boxes_per_frame", *(f"{s}_ms" for s in STAGES)],
        rows=rows,
        params={"seconds_per_row": seconds, "frames_per_request": frames_per_request, "threads": list(threads),
                "stream_dir": str(ws.stream_dir), "index_vectors": index.n_vectors,
                "frames_available": len(ws.frames), "warmup_calls": WARMUP_CALLS},
        summary={
            "ceiling_frames_per_s": best["frames_per_s"],
            "ceiling_threads": best["threads"],
            "single_call_p50_ms": single["p50_ms"],
            "per_frame_p50_ms": single["per_frame_p50_ms"],
            "frames_per_request": frames_per_request,
        },
        notes=[("Latency per call is measured around service.identify.identify (the routes' request path after "
                "parsing); `threads` is the number of requests in flight, sharing the service's worker threads "
                "(WATCHBUY_INFERENCE_THREADS); stage columns are mean ms per call from the pipeline's own timer."),
               "The ceiling is the best frames/s over the thread counts; the HTTP benchmark divides by it."],
        plots=[Plot(x="threads", y="frames_per_s", title="frames/s by requests in flight"),
               Plot(x="threads", y="p50_ms", title="p50 ms per call by requests in flight")],
    )
