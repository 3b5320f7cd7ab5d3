"""`python -m benchmarks [build pipeline http savings faiss] [options]` (what `make bench` runs).

Each benchmark writes `<out>/<name>/{report.json, report.md, plot.png}`. The chosen ones (default: all)
always run in the order above: the build makes the index the pipeline and HTTP benchmarks use, and the
HTTP ratios need the pipeline report of the same run. `--quick` (or BENCH_QUICK=1) shrinks everything to a smoke
run of well under a minute; the numbers are then meaningless.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

ORDER = ("build", "pipeline", "http", "savings", "faiss")


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(float(v)) for v in text.split(",") if v.strip())


def _modes(text: str) -> tuple[bool, ...]:
    names = {"on": True, "true": True, "off": False, "false": False}
    return tuple(names[v.strip().lower()] for v in text.split(",") if v.strip())


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    env = os.environ.get
    quick = env("BENCH_QUICK", "") not in ("", "0", "false")
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("benchmarks", nargs="*", metavar="BENCHMARK", help=f"any of {', '.join(ORDER)} (default: all)")
    parser.add_argument("--quick", action="store_true", default=quick, help="tiny sizes (tests, smoke runs)")
    parser.add_argument("--out", type=Path, default=Path(env("BENCH_OUT", "var/bench")))
    parser.add_argument("--seconds", type=float, default=None, help="seconds per measured level (default 15; quick 2)")
    parser.add_argument("--concurrency", type=_ints, default=None, help="HTTP levels (default 1,4,16,64; quick 1,4)")
    parser.add_argument("--batching", type=_modes, default=_modes("on,off"), help="HTTP batching modes: on,off")
    parser.add_argument("--frames-per-request", type=int, default=1)
    parser.add_argument("--faiss-max", type=lambda v: int(float(v)), default=None,
                        help="largest FAISS catalogue (default 1e6; quick 1e4)")
    parser.add_argument("--faiss-budget", type=float, default=float(env("BENCH_FAISS_BUDGET", "90")),
                        help="seconds one FAISS index build may take (extrapolated; bigger ones are skipped)")
    parser.add_argument("--products", type=int, default=None, help="catalogue products (default all; quick 12)")
    parser.add_argument("--stream-dir", type=Path, default=None, help="catalogue + queries (default viton-dev-00)")
    parser.add_argument("--server-env", action="append", default=[], metavar="KEY=VALUE",
                        help="extra environment for the HTTP benchmark's server (repeatable)")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.benchmarks) - set(ORDER))
    if unknown:
        parser.error(f"unknown benchmark(s) {unknown}; choose from {', '.join(ORDER)}")
    args.benchmarks = [b for b in ORDER if b in args.benchmarks] or list(ORDER)
    if args.seconds is None:
        args.seconds = 2.0 if args.quick else 15.0
    if args.concurrency is None:
        args.concurrency = (1, 4) if args.quick else (1, 4, 16, 64)
    if args.faiss_max is None:
        args.faiss_max = 10_000 if args.quick else 1_000_000
    if args.products is None and args.quick:
        args.products = 12
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from benchmarks import bare_pipeline, faiss_search, index_build, savings, service_http
    from benchmarks.data import DEFAULT_STREAM_DIR, BenchDataError, Workspace
    from benchmarks.report import write_report

    needs_models = set(args.benchmarks) & {"build", "pipeline", "http", "savings"}
    workspace = None
    try:
        if needs_models:
            workspace = Workspace.create(args.stream_dir or DEFAULT_STREAM_DIR, products=args.products,
                                         n_frames=16 if args.quick else 64)
        for name in args.benchmarks:
            began = time.perf_counter()
            print(f"benchmark {name} …", flush=True)
            if name == "faiss":
                budget = min(args.faiss_budget, 10.0) if args.quick else args.faiss_budget
                report = faiss_search.run(max_size=args.faiss_max, queries=50 if args.quick else 200,
                                          build_budget_s=budget,
                                          dim=workspace.models.embedder.dim if workspace else 256)
            elif workspace is None:  # needs_models made it for every other benchmark
                raise BenchDataError(f"benchmark {name} needs the models and data")
            elif name == "build":
                report = index_build.run(workspace, seconds=args.seconds)
            elif name == "savings":
                report = savings.run(workspace, args.out, seconds=args.seconds, quick=args.quick)
            elif name == "pipeline":
                report = bare_pipeline.run(workspace, seconds=args.seconds, frames_per_request=args.frames_per_request)
            else:
                server_env = dict(item.split("=", 1) for item in args.server_env)
                report = service_http.run(workspace, args.out, seconds=args.seconds, concurrency=args.concurrency,
                                          batching_modes=args.batching, frames_per_request=args.frames_per_request,
                                          server_env=server_env)
            report.params["quick"] = args.quick
            paths = write_report(report, args.out)
            print(f"benchmark {name}: {time.perf_counter() - began:.0f} s → {paths[1]}", flush=True)
            for key, value in report.summary.items():
                print(f"  {key}: {value}")
    except BenchDataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        if workspace is not None:
            workspace.close()
            shutil.rmtree(workspace.root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
