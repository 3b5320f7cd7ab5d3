"""Bare pipeline: decode + detect + embed + search + aggregate called directly, no HTTP — the ceiling.

The service's own `Pipeline` (service/state.py's start-up, batching off) runs real frames against the
benchmark stream's index, first one call at a time (per-frame latency), then from several threads at
once (what the service's worker threads can get out of this machine). The highest frames/s is the
ceiling the HTTP benchmark is compared with.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from benchmarks.data import Workspace
from benchmarks.report import BenchReport, Plot, percentile

NAME = "pipeline"
WARMUP_CALLS = 3
STAGES = ("decode", "detect", "embed", "search", "aggregate")


def _run(ws: Workspace, threads: int, seconds: float, frames_per_request: int) -> dict[str, Any]:
    pipeline, index = ws.pipeline(), ws.index
    latencies: list[float] = []
    stage_ms = {stage: 0.0 for stage in STAGES}
    boxes = 0
    lock = threading.Lock()
    counter = iter(range(10**9))
    deadline = time.perf_counter() + seconds

    def worker() -> None:
        nonlocal boxes
        while time.perf_counter() < deadline:
            with lock:
                start = next(counter) * frames_per_request
            frames = ws.request_frames(start, frames_per_request)
            began = time.perf_counter()
            result = pipeline.identify(frames, index, top_k=5)
            took = (time.perf_counter() - began) * 1000
            with lock:
                latencies.append(took)
                boxes += result.n_boxes
                for stage in STAGES:
                    stage_ms[stage] += result.timings_ms.get(stage, 0.0)

    started = time.perf_counter()
    pool = [threading.Thread(target=worker, name=f"bench-{i}") for i in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    elapsed = time.perf_counter() - started
    calls = len(latencies)
    frames = calls * frames_per_request
    row: dict[str, Any] = {
        "threads": threads,
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
    threads = threads or tuple(sorted({1, ws.settings.inference_threads}))
    pipeline, index = ws.pipeline(), ws.index
    for i in range(WARMUP_CALLS):  # first runs allocate and optimise: not measured
        pipeline.identify(ws.request_frames(i, frames_per_request), index, top_k=5)
    rows = [_run(ws, n, seconds, frames_per_request) for n in threads]
    best = max(rows, key=lambda r: r["frames_per_s"] or 0)
    single = next(r for r in rows if r["threads"] == min(threads))
    return BenchReport(
        name=NAME,
        title="Bare pipeline (decode + detect + embed + search + aggregate, no HTTP)",
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
        notes=[("Latency per call is measured around Pipeline.identify; stage columns are mean ms per call "
               "from the pipeline's own timer."),
               "The ceiling is the best frames/s over the thread counts; the HTTP benchmark divides by it."],
        plots=[Plot(x="threads", y="frames_per_s", title="frames/s by worker threads"),
               Plot(x="threads", y="p50_ms", title="p50 ms per call by worker threads")],
    )
