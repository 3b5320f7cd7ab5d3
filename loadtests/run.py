"""`make loadtest`: run the locust scenario headless against a URL, or against a server this script starts.

Without --url: the streams' indexes are built into WATCHBUY_INDEX_ROOT when missing (`python -m indexer
build`), a uvicorn server is started on a free port, and stopped afterwards. Locust runs in its own
process (`python -m locust`; it patches networking on import, so this script never imports it). The
report goes to `<out>/<UTC time>/`: locust's CSVs and HTML report, `summary.json` / `summary.md`
(requests, req/s, latency percentiles, shed 429/503 apart from real failures), and the server's log and
peak memory when this script started it. Exit status 1 when a request failed with anything but 429/503.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.service_http import (  # noqa: E402 - importable once ROOT is on the path
    STARTUP_DEADLINE_S,
    STOP_TIMEOUT_S,
    UVICORN_ARGS,
    server_memory_mb,
)
from watchbuy.server_process import ServerProcess  # noqa: E402

LOCUSTFILE = Path(__file__).with_name("locustfile.py")
#: The locustfile names 429/503 answers "shed <code>" (load shedding, not a failure of the service).
SHED_MARK = "shed "


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", help="a running service (default: start one here)")
    parser.add_argument("--duration", default="60s", help="locust run time, e.g. 30s, 5m")
    parser.add_argument("--users", type=int, default=20, help="simulated player backends")
    parser.add_argument("--spawn-rate", type=float, default=5.0, help="users started per second")
    parser.add_argument("--streams",
                        default=os.environ.get("LOADTEST_STREAMS", "viton-dev-00,viton-dev-01,viton-dev-02"))
    parser.add_argument("--out", type=Path, default=Path("var/loadtest"))
    return parser.parse_args(argv)


def ensure_indexes(streams: list[str]) -> None:
    from indexer.store import IndexStore
    from watchbuy.settings import Settings

    store = IndexStore(Settings().index_root)
    for stream in streams:
        if store.current_version(stream) is None:
            print(f"building the index of {stream} …", flush=True)
            subprocess.run([sys.executable, "-m", "watchbuy", "build-index", "--stream", stream], cwd=ROOT, check=True)


def run_locust(url: str, args: argparse.Namespace, out_dir: Path) -> int:
    env = {**os.environ, "LOADTEST_STREAMS": args.streams}
    cmd = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "--host", url,
           "-u", str(args.users), "-r", str(args.spawn_rate), "-t", args.duration, "--stop-timeout", "30",
           "--csv", str(out_dir / "locust"), "--html", str(out_dir / "report.html"), "--only-summary"]
    print("running", " ".join(cmd), flush=True)
    return subprocess.run(cmd, cwd=ROOT, env=env, check=False).returncode


def _num(value: str) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def summarise(out_dir: Path, args: argparse.Namespace, url: str, locust_rc: int,
              memory: dict[str, Any] | None) -> dict[str, Any]:
    """locust_stats.csv + locust_failures.csv → one summary (shed 429/503 counted apart from failures)."""
    rows = []
    with (out_dir / "locust_stats.csv").open(newline="") as handle:
        for row in csv.DictReader(handle):
            rows.append({
                "name": row["Name"], "requests": int(row["Request Count"]), "failures": int(row["Failure Count"]),
                "req_per_s": _num(row["Requests/s"]), "p50_ms": _num(row["50%"]), "p95_ms": _num(row["95%"]),
                "p99_ms": _num(row["99%"]), "max_ms": _num(row["Max Response Time"]),
            })
    shed = hard = 0
    errors = []
    failures_csv = out_dir / "locust_failures.csv"
    if failures_csv.is_file():
        with failures_csv.open(newline="") as handle:
            for row in csv.DictReader(handle):
                n = int(row["Occurrences"])
                is_shed = SHED_MARK in row["Error"]
                shed, hard = shed + n * is_shed, hard + n * (not is_shed)
                errors.append({"name": row["Name"], "error": row["Error"][:300], "occurrences": n, "shed": is_shed})
    total = next((r for r in rows if r["name"] == "Aggregated"), None)
    return {
        "url": url, "duration": args.duration, "users": args.users, "spawn_rate": args.spawn_rate,
        "streams": args.streams.split(","), "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "load_average": [round(v, 2) for v in os.getloadavg()], "cores": os.cpu_count(),
        "locust_exit_code": locust_rc, "aggregated": total, "by_name": [r for r in rows if r["name"] != "Aggregated"],
        "shed_429_503": shed, "hard_failures": hard, "errors": errors, "server_memory": memory,
    }


def markdown(summary: dict[str, Any]) -> str:
    lines = [f"# Load test {summary['finished_at']}", "",
             (f"{summary['users']} users (spawn {summary['spawn_rate']}/s) for {summary['duration']} against "
             f"{summary['url']}, streams {', '.join(summary['streams'])}; {summary['cores']} cores, load average "
             f"{summary['load_average']}."), "",
             "| request | requests | failures | req/s | p50 ms | p95 ms | p99 ms | max ms |",
             "|---|---|---|---|---|---|---|---|"]
    for row in summary["by_name"] + ([summary["aggregated"]] if summary["aggregated"] else []):
        cells = [row["name"], row["requests"], row["failures"], *(
            f"{row[key]:.{2 if key == 'req_per_s' else 0}f}" if row[key] is not None else "—"
            for key in ("req_per_s", "p50_ms", "p95_ms", "p99_ms", "max_ms"))]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    lines += ["", f"- shed (429/503): {summary['shed_429_503']}", f"- hard failures: {summary['hard_failures']}",
              f"- server memory: {summary['server_memory']}"]
    lines += [f"- error `{e['error']}` × {e['occurrences']} ({e['name']})" for e in summary["errors"]]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out_dir = args.out / datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out_dir.mkdir(parents=True, exist_ok=True)
    server: ServerProcess | None = None
    memory = None
    url = args.url
    try:
        if url is None:
            ensure_indexes([s for s in args.streams.split(",") if s])
            server = ServerProcess(out_dir / "server.log", cwd=ROOT, uvicorn_args=UVICORN_ARGS,
                                   stop_timeout_s=STOP_TIMEOUT_S)
            url = server.base_url
            server.start()
            server.wait_ready(STARTUP_DEADLINE_S)
        started = time.monotonic()
        rc = run_locust(url, args, out_dir)
        if server is not None:
            memory = server_memory_mb(server.pid)
        print(f"locust finished in {time.monotonic() - started:.0f} s (exit {rc})")
    finally:
        if server is not None:
            server.stop()
    if not (out_dir / "locust_stats.csv").is_file():
        print(f"error: locust wrote no stats into {out_dir}", file=sys.stderr)
        return 1
    summary = summarise(out_dir, args, url, rc, memory)
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    (out_dir / "summary.md").write_text(markdown(summary))
    print(markdown(summary))
    print(f"report: {out_dir}")
    return 1 if summary["hard_failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
