"""`make bench` and `make loadtest` on tiny sizes: every benchmark runs for real (real models, real frames,
a real uvicorn server, real FAISS indexes, real locust) and writes its reports in the agreed structure.

No speed is asserted: the numbers of a smoke run mean nothing; the structure, the exactness of Flat
search, and the absence of errors at low concurrency are what is checked.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from support.data import PROJECT_DIR, SLICE_STREAM

from benchmarks.report import PLOT_PNG, REPORT_JSON, REPORT_MD

RUN_DEADLINE_S = 900  # a bound on waiting, not a speed assertion


REPORT_KEYS = {"name", "title", "columns", "rows", "params", "summary", "notes", "plots", "machine", "created_at"}


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WATCHBUY_")}
    return {**env, **extra}


@pytest.fixture(scope="module")
def bench_out(model_dir: Path, viton_stream: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("bench")
    cmd = [sys.executable, "-m", "benchmarks", "--quick", "--out", str(out), "--seconds", "1",
           "--concurrency", "1,2", "--faiss-max", "2000", "--products", "8", "--stream-dir", str(viton_stream)]
    done = subprocess.run(cmd, cwd=PROJECT_DIR, env=_env(WATCHBUY_MODEL_DIR=str(model_dir)), capture_output=True,
                          text=True, timeout=RUN_DEADLINE_S, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return out


def _report(out: Path, name: str) -> dict[str, Any]:
    folder = out / name
    report = json.loads((folder / REPORT_JSON).read_text())
    assert REPORT_KEYS <= set(report), set(report)
    assert report["name"] == name and report["rows"]
    assert report["machine"]["cores"] and report["machine"]["backend"]
    markdown = (folder / REPORT_MD).read_text()
    assert markdown.startswith(f"# {report['title']}")
    assert "| " + " | ".join(report["columns"]) + " |" in markdown
    png = (folder / PLOT_PNG).read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 2000
    for row in report["rows"]:
        assert set(report["columns"]) <= set(row), (set(report["columns"]) - set(row), row)
    return report


def test_build_benchmark(bench_out: Path) -> None:
    report = _report(bench_out, "build")
    build = report["rows"][0]
    assert build["what"] == "indexer build_stream" and build["images"] == 8 and build["vectors"] >= 8
    assert {r["batch"] for r in report["rows"][1:]} == {1, 32}
    assert report["summary"]["build_vs_embedder"] > 0


def test_bare_pipeline_benchmark(bench_out: Path) -> None:
    report = _report(bench_out, "pipeline")
    assert [r["threads"] for r in report["rows"]] == sorted({1, 2})
    assert all(r["calls"] > 0 and r["boxes_per_frame"] >= 1 for r in report["rows"])
    summary = report["summary"]
    assert summary["ceiling_frames_per_s"] == max(r["frames_per_s"] for r in report["rows"])
    assert summary["per_frame_p50_ms"] == report["rows"][0]["p50_ms"]


def test_http_benchmark_both_batching_modes_no_errors(bench_out: Path) -> None:
    report = _report(bench_out, "http")
    levels = {(r["batching"], r["concurrency"]) for r in report["rows"]}
    assert levels == {("on", 1), ("on", 2), ("off", 1), ("off", 2)}
    for row in report["rows"]:
        assert row["ok"] > 0 and row["error_rate"] == 0 and set(row["status_codes"]) == {"200"}, row
        assert row["p50_ms"] <= row["p95_ms"] <= row["p99_ms"]
        assert row["throughput_vs_bare"] is not None and row["p50_vs_bare"] is not None
        assert row["peak_rss_mb"] and row["peak_rss_mb"] >= row["rss_mb"]
    summary = report["summary"]
    assert summary["server_errors_5xx_total"] == 0
    assert set(summary["targets"]) == {"c16_throughput_vs_bare", "c1_p50_vs_bare", "batching_gain_c16"}
    assert summary["c1_p50_vs_bare"] is not None and summary["c16_throughput_vs_bare"] is None  # no c16 level here


def test_faiss_benchmark(bench_out: Path) -> None:
    report = _report(bench_out, "faiss")
    assert {r["n"] for r in report["rows"]} == {1000, 2000}
    assert {r["family"] for r in report["rows"]} == {"Flat", "IVF", "HNSW"}
    for row in report["rows"]:
        assert 0.0 <= row["recall_at_10"] <= 1.0
        if row["family"] == "Flat":
            assert row["recall_at_10"] == 1.0  # exact search against exact ground truth
    assert set(report["summary"]["recommendation"]) <= {"1000", "2000"}


def test_loadtest_runs_headless_and_saves_its_report(
    model_dir: Path, slice_index_root: Path, slice_dir: Path, tmp_path: Path
) -> None:
    index_root = tmp_path / "indexes"
    shutil.copytree(slice_index_root, index_root)
    out = tmp_path / "loadtest"
    env = _env(WATCHBUY_MODEL_DIR=str(model_dir), WATCHBUY_INDEX_ROOT=str(index_root),
               LOADTEST_FRAMES_DIR=str(slice_dir / "frames"), LOADTEST_WAIT="0.2,0.5")
    cmd = [sys.executable, "loadtests/run.py", "--duration", "4s", "--users", "2", "--spawn-rate", "2",
           "--streams", SLICE_STREAM, "--out", str(out)]
    done = subprocess.run(cmd, cwd=PROJECT_DIR, env=env, capture_output=True, text=True, timeout=RUN_DEADLINE_S,
                          check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (run_dir,) = out.iterdir()
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["aggregated"]["requests"] > 0 and summary["hard_failures"] == 0
    assert {row["name"].split()[1] for row in summary["by_name"]} <= {"multipart", "json"}
    assert (run_dir / "report.html").stat().st_size > 0 and (run_dir / "summary.md").is_file()
    assert summary["server_memory"]["peak_rss_mb"] > 0


def test_savings_benchmark_compares_fp32_with_the_shipped_service(bench_out: Path) -> None:
    report = _report(bench_out, "savings")
    kinds = {"frames c=1", "frames c=8", "every frame once c=8", "video long-720p.mp4"}
    assert {(r["variant"], r["kind"]) for r in report["rows"]} == {(v, k) for v in ("fp32", "shipped") for k in kinds}
    for row in report["rows"]:
        assert row["errors"] == 0 and row["crops_embedded_per_frame"] > 0, row
        if row["kind"].startswith("video"):
            assert row["frames_sampled"] > 1 and row["realtime_factor"] > 0
        else:
            assert row["frames_per_s"] > 0 and row["p50_ms"] <= row["p99_ms"] and 0 <= row["top1"] <= 1
        if row["variant"] == "fp32":
            assert row["crops_reused_per_frame"] == 0  # reuse off: main's configuration before issue 21
    once = {r["variant"]: r for r in report["rows"] if r["kind"] == "every frame once c=8"}
    assert once["fp32"]["requests"] == once["shipped"]["requests"] == report["params"]["frames_available"]
    summary = report["summary"]
    assert {"shipped_c8_speedup", "shipped_top1_change", "shipped_long_video_realtime_factor"} <= set(summary)
