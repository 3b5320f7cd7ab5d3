"""The service over HTTP: a real uvicorn subprocess, closed-loop async clients at several concurrencies.

For each batching mode (WATCHBUY_BATCHING=true/false) one server is started on a free port with the
benchmark stream's index; after a warm-up, `c` httpx clients each send POST /identify (multipart, real
frames) back to back for a fixed time, at every concurrency `c`. Measured client-side: frames/s of
answered (200) requests, latency percentiles, error rate and every status code; server-side: its
resident memory (VmRSS, peak VmHWM) after each level and, when the service exports it, the mean batch
size per model (`watchbuy_batch_size`). Ratios are taken against the bare pipeline report of the same
run (`var/bench/pipeline/report.json`).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from benchmarks.data import BENCH_STREAM, PROJECT_DIR, Workspace
from benchmarks.report import BenchReport, Plot, percentile, read_report
from watchbuy.server_process import ServerProcess

NAME = "http"
STARTUP_DEADLINE_S = 180.0
STOP_TIMEOUT_S = 20.0
#: The server logs warnings and errors only (no access log) while it is measured.
UVICORN_ARGS = ("--log-level", "warning")
WARMUP_SECONDS = 3.0
REQUEST_TIMEOUT_S = 120.0
#: Not measured here (auth, Redis): dropped from the inherited environment unless given as server_env.
NOT_INHERITED = frozenset({"WATCHBUY_API_KEYS", "WATCHBUY_RATE_LIMIT_PER_MINUTE", "WATCHBUY_REDIS_URL"})
#: The issue's bars.
TARGET_THROUGHPUT_RATIO_C16 = 0.85
TARGET_P50_RATIO_C1 = 1.25
TARGET_BATCHING_GAIN_C16 = 1.3


def server_environment(ws: Workspace, batching: bool, extra_env: dict[str, str] | None = None) -> dict[str, str]:
    """The server's environment: the inherited one less NOT_INHERITED, the workspace's models and index."""
    return {
        **{k: v for k, v in os.environ.items() if k not in NOT_INHERITED},
        "WATCHBUY_MODEL_DIR": str(Path(ws.settings.model_dir).resolve()),
        "WATCHBUY_INDEX_ROOT": str(Path(ws.settings.index_root).resolve()),
        "WATCHBUY_BATCHING": "true" if batching else "false",
        **(extra_env or {}),
    }


def server_memory_mb(pid: int) -> dict[str, float | None]:
    """Resident (VmRSS) and peak resident (VmHWM) memory of the server process, MiB."""
    found: dict[str, float | None] = {"rss_mb": None, "peak_rss_mb": None}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                found["rss_mb"] = round(int(line.split()[1]) / 1024, 1)
            elif line.startswith("VmHWM:"):
                found["peak_rss_mb"] = round(int(line.split()[1]) / 1024, 1)
    except (OSError, ValueError):
        pass
    return found


def batch_sizes(base: str, headers: dict[str, str]) -> dict[str, tuple[float, float]]:
    """(sum, count) of the `watchbuy_batch_size` histogram per model, {} when the service has none."""
    try:
        text = httpx.get(f"{base}/metrics", headers=headers, timeout=10.0).text
    except httpx.HTTPError:
        return {}
    found: dict[str, list[float]] = {}
    for family in text_string_to_metric_families(text):
        if family.name != "watchbuy_batch_size":
            continue
        for sample in family.samples:
            model = sample.labels.get("model", "?")
            if sample.name.endswith("_sum"):
                found.setdefault(model, [0.0, 0.0])[0] = sample.value
            elif sample.name.endswith("_count"):
                found.setdefault(model, [0.0, 0.0])[1] = sample.value
    return {model: (v[0], v[1]) for model, v in found.items()}


def _multipart(ws: Workspace, start: int, frames_per_request: int) -> tuple[dict[str, str], list[Any]]:
    frames = ws.request_frames(start, frames_per_request)
    files = [("frames", (f"frame{f.frame_index}.jpg", f.data, "image/jpeg")) for f in frames]
    return {"stream_id": BENCH_STREAM, "top_k": "5"}, files


async def _load(ws: Workspace, base: str, concurrency: int, seconds: float, frames_per_request: int,
                headers: dict[str, str]) -> dict[str, Any]:
    """`concurrency` clients, each sending its next request as soon as the previous one is answered."""
    latencies: list[float] = []
    statuses: Counter[str] = Counter()
    sent = 0
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=REQUEST_TIMEOUT_S, headers=headers) as http:
        deadline = time.perf_counter() + seconds

        async def client() -> None:
            nonlocal sent
            while time.perf_counter() < deadline:
                data, files = _multipart(ws, sent * frames_per_request, frames_per_request)
                sent += 1
                began = time.perf_counter()
                try:
                    response = await http.post("/identify", data=data, files=files)
                    code = str(response.status_code)
                except httpx.HTTPError as exc:
                    code = type(exc).__name__
                statuses[code] += 1
                if code == "200":
                    latencies.append((time.perf_counter() - began) * 1000)

        started = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    total = sum(statuses.values())
    ok = statuses.get("200", 0)
    return {
        "requests": total,
        "ok": ok,
        "error_rate": round((total - ok) / total, 4) if total else None,
        "status_codes": dict(sorted(statuses.items())),
        "server_errors_5xx": sum(n for code, n in statuses.items() if code.startswith("5") and code != "503"),
        "seconds": round(elapsed, 2),
        "frames_per_s": round(ok * frames_per_request / elapsed, 3) if elapsed > 0 else None,
        "p50_ms": percentile(latencies, 50),
        "p95_ms": percentile(latencies, 95),
        "p99_ms": percentile(latencies, 99),
    }


def _mean_batches(before: dict[str, tuple[float, float]], after: dict[str, tuple[float, float]]) -> dict[str, float]:
    means = {}
    for model, (total, count) in after.items():
        d_total, d_count = total - before.get(model, (0.0, 0.0))[0], count - before.get(model, (0.0, 0.0))[1]
        if d_count > 0:
            means[model] = round(d_total / d_count, 2)
    return means


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a is not None and b else None


def run(ws: Workspace, out_root: Path, seconds: float = 15.0, concurrency: tuple[int, ...] = (1, 4, 16, 64),
        batching_modes: tuple[bool, ...] = (True, False), frames_per_request: int = 1,
        server_env: dict[str, str] | None = None) -> BenchReport:
    ws.index  # noqa: B018 - make sure the benchmark stream's index exists before the server starts
    bare = read_report(out_root, "pipeline")
    bare_summary = bare["summary"] if bare else {}
    bare_fps = bare_summary.get("ceiling_frames_per_s")
    bare_p50 = bare_summary.get("single_call_p50_ms")
    if bare and bare_summary.get("frames_per_request") != frames_per_request:
        bare_fps = bare_p50 = None
    headers: dict[str, str] = {}
    rows: list[dict[str, Any]] = []
    log_path = out_root / NAME / "server.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log_path.write_bytes(b"")
    for batching in batching_modes:
        env = server_environment(ws, batching, server_env)
        with ServerProcess(log_path, env=env, cwd=PROJECT_DIR, uvicorn_args=UVICORN_ARGS,
                           stop_timeout_s=STOP_TIMEOUT_S) as server:
            base = server.base_url
            server.wait_ready(STARTUP_DEADLINE_S)
            asyncio.run(_load(ws, base, 4, WARMUP_SECONDS, frames_per_request, headers))
            for c in concurrency:
                before = batch_sizes(base, headers)
                row: dict[str, Any] = {"batching": "on" if batching else "off", "concurrency": c}
                row.update(asyncio.run(_load(ws, base, c, seconds, frames_per_request, headers)))
                row.update(server_memory_mb(server.pid))
                row["mean_batch"] = _mean_batches(before, batch_sizes(base, headers)) or None
                row["throughput_vs_bare"] = _ratio(row["frames_per_s"], bare_fps)
                row["p50_vs_bare"] = _ratio(row["p50_ms"], bare_p50)
                rows.append(row)
                print(f"  http batching={row['batching']} c={c}: {row['frames_per_s']} frames/s, "
                      f"p50 {row['p50_ms'] and round(row['p50_ms'])} ms, statuses {row['status_codes']}", flush=True)
    return BenchReport(
        name=NAME,
        title="Service over HTTP (uvicorn subprocess, closed-loop clients)",
        columns=["batching", "concurrency", "requests", "frames_per_s", "throughput_vs_bare", "p50_ms",
                 "p50_vs_bare", "p95_ms", "p99_ms", "error_rate", "status_codes", "mean_batch", "peak_rss_mb"],
        rows=rows,
        params={"seconds_per_level": seconds, "concurrency": list(concurrency),
                "frames_per_request": frames_per_request,
                "batching_modes": ["on" if b else "off" for b in batching_modes], "warmup_seconds": WARMUP_SECONDS,
                "request_body": "multipart/form-data, JPEG frames", "server_env": server_env or {},
                "bare_ceiling_frames_per_s": bare_fps, "bare_single_call_p50_ms": bare_p50},
        summary=summarise(rows, bare_fps is not None),
        notes=[
            "Client and server share the machine's cores; the client (httpx, asyncio) runs in the benchmark process.",
            "frames/s counts frames of 200 answers only; latency percentiles are over 200 answers.",
            ("throughput_vs_bare = frames/s ÷ the bare pipeline ceiling; p50_vs_bare = p50 ÷ the bare single-call p50 "
            "(from var/bench/pipeline/report.json of the same run; — when it is missing)."),
            "status_codes names transport failures by exception (e.g. ReadTimeout); server_errors_5xx excludes 503.",
        ],
        plots=[Plot(x="concurrency", y="frames_per_s", series="batching", logx=True, title="frames/s",
                    hlines={"bare pipeline ceiling": bare_fps} if bare_fps else {}),
               Plot(x="concurrency", y="p95_ms", series="batching", logx=True, logy=True, title="p95 latency, ms")],
    )


def summarise(rows: list[dict[str, Any]], have_bare: bool) -> dict[str, Any]:
    """The issue's acceptance checks, computed from the rows (None where a row or the bare run is missing)."""

    def row(batching: str, c: int) -> dict[str, Any] | None:
        return next((r for r in rows if r["batching"] == batching and r["concurrency"] == c), None)

    on16, off16, on1, on64 = row("on", 16), row("off", 16), row("on", 1), row("on", 64)
    gain = _ratio(on16["frames_per_s"], off16["frames_per_s"]) if on16 and off16 else None
    checks: dict[str, Any] = {
        "c16_throughput_vs_bare": on16 and on16["throughput_vs_bare"],
        "c16_throughput_vs_bare_ok": (on16["throughput_vs_bare"] >= TARGET_THROUGHPUT_RATIO_C16)
        if on16 and on16["throughput_vs_bare"] is not None else None,
        "c1_p50_vs_bare": on1 and on1["p50_vs_bare"],
        "c1_p50_vs_bare_ok": (on1["p50_vs_bare"] <= TARGET_P50_RATIO_C1)
        if on1 and on1["p50_vs_bare"] is not None else None,
        "batching_gain_c16": gain,
        "batching_gain_c16_ok": gain >= TARGET_BATCHING_GAIN_C16 if gain is not None else None,
        "c64_status_codes": on64 and on64["status_codes"],
        "c64_no_500": (on64["server_errors_5xx"] == 0) if on64 else None,
        "server_errors_5xx_total": sum(r["server_errors_5xx"] for r in rows),
        "peak_rss_mb": max((r["peak_rss_mb"] or 0 for r in rows), default=None),
        "targets": {"c16_throughput_vs_bare": f">= {TARGET_THROUGHPUT_RATIO_C16}",
                    "c1_p50_vs_bare": f"<= {TARGET_P50_RATIO_C1}",
                    "batching_gain_c16": f">= {TARGET_BATCHING_GAIN_C16}"},
    }
    if not have_bare:
        checks["note"] = "no bare pipeline report of the same frames per request: ratios not computed"
    return checks
