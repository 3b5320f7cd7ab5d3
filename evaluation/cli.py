"""`watchbuy eval DATASET [--streams a,b] [--clips N] [--mode inprocess|http --url URL] [--out DIR]`."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import httpx
from rich.console import Console

from evaluation.evaluate import MODES, EvalConfig, run
from evaluation.identify import IdentifyFailed
from evaluation.report import summary_table
from indexer.build import BuildError
from indexer.catalogue import CatalogueError
from indexer.queries import DatasetError
from models.artifacts import ModelArtifactError
from watchbuy.settings import get_settings

DESCRIPTION = ("Build each stream's index, send every labelled clip through the service's request path (in "
               "process, or POST /identify to a running service), and write report.json, report.md, clips.jsonl "
               "and plots.")


def parse_args(argv: list[str] | None) -> EvalConfig:
    parser = argparse.ArgumentParser(prog="watchbuy eval", description=DESCRIPTION)
    parser.add_argument("dataset", type=Path, help="dataset folder (streams/<stream>/..., a stream folder, or WAB)")
    parser.add_argument("--streams", help="comma-separated stream ids (default: all)")
    parser.add_argument("--clips", type=int, help="at most this many clips per stream (default: all)")
    parser.add_argument("--mode", choices=MODES, default="inprocess")
    parser.add_argument("--url", help="service base URL for --mode http, e.g. http://127.0.0.1:8000")
    parser.add_argument("--out", type=Path, help="report folder (default: var/eval/<dataset name>)")
    parser.add_argument("--top-k", type=int, default=50, help="products requested per clip; K of mAP@K")
    parser.add_argument("--held-out", type=float, default=0.2, help="share of products held out (missing product)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the held-out choice")
    parser.add_argument("--max-frames", type=int, help="frames sent per clip at most (default WATCHBUY_MAX_FRAMES)")
    parser.add_argument("--index-root", type=Path,
                        help="where indexes are built (default: a temp folder in process; WATCHBUY_INDEX_ROOT "
                             "over HTTP, which must be the root the service reads)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    if args.mode == "http" and not args.url:
        parser.error("--mode http needs --url")
    if args.clips is not None and args.clips < 1:
        parser.error("--clips must be at least 1")
    if not 0 <= args.held_out < 1:
        parser.error("--held-out must be in [0, 1)")
    streams = frozenset(s.strip() for s in args.streams.split(",") if s.strip()) if args.streams else None
    return EvalConfig(
        dataset=args.dataset, out_dir=args.out, streams=streams or None, clips_per_stream=args.clips,
        mode=args.mode, url=args.url, top_k=args.top_k, held_out_share=args.held_out, seed=args.seed,
        max_frames=args.max_frames, index_root=args.index_root, show_progress=not args.no_progress,
    )


def main(argv: list[str] | None = None) -> int:
    config = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    console = Console(stderr=True)
    if not console.is_terminal:
        console = Console(stderr=True, width=200)
    try:
        evaluation = run(config, get_settings())
    except (DatasetError, CatalogueError, BuildError, ModelArtifactError, IdentifyFailed, ValueError,
            httpx.HTTPError) as exc:
        console.print(f"[red]evaluation failed:[/red] {exc}")
        return 1
    report = evaluation.report
    console.print(summary_table(report))
    summary = report["summary"]
    console.print(
        f"R@1 mean over streams {summary['r1_mean_over_streams']}; wall time {report['wall_seconds']:.1f} s; "
        f"{report['issue_count']} skipped entries"
    )
    console.print("wrote " + ", ".join(str(p) for p in evaluation.files))
    return 0

