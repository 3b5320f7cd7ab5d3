"""`python -m indexer.eval DATASET [--streams a,b] [--clips N] [--mode inprocess|http --url URL] [--out DIR]`.

For each stream: build its index with `indexer.build` (and a copy without a seeded share of held-out
products), send every labelled clip through the service's code path (in process: `load_index` +
`Pipeline.identify`, as the app's route does; or POST /identify to a running service), re-send the
held-out products' clips against the copy without them, and score everything with `indexer.metrics`.
Writes report.json, report.md, clips.jsonl and PNG plots (`indexer.report`).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from anyio.from_thread import start_blocking_portal
from rich.console import Console
from tqdm import tqdm

from indexer.build import BuildError, IndexRecipe, build_stream
from indexer.catalogue import CatalogueError, read_catalogue
from indexer.holdout import choose_held_out, held_out_stream_id, publish_without
from indexer.identify import HttpIdentifier, Identifier, IdentifyFailed, InProcessIdentifier, wait_for_version
from indexer.metrics import DEFINITIONS, ClipOutcome, FrameOutcome, ReturnedBox, summarize, threshold_sweep
from indexer.queries import (
    Clip,
    ClipFrame,
    DatasetError,
    StreamSource,
    clip_products,
    count_clips,
    find_streams,
    read_clips,
)
from indexer.report import summary_table, write_report
from indexer.store import IndexStore
from models.artifacts import ModelArtifactError
from models.loader import Models, load_configured_models
from service.metrics import Metrics
from service.state import start_service
from watchbuy.settings import Settings, get_settings

MODES = ("inprocess", "http")
log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class EvalConfig:
    dataset: Path
    out_dir: Path | None = None  # None: var/eval/<dataset name>
    streams: frozenset[str] | None = None
    clips_per_stream: int | None = None
    mode: str = "inprocess"
    url: str | None = None
    top_k: int = 50
    held_out_share: float = 0.2
    seed: int = 0
    max_frames: int | None = None  # None: the settings' max_frames
    index_root: Path | None = None  # None: a temp folder (inprocess) or the settings' index_root (http)
    show_progress: bool = True


@dataclass(frozen=True, slots=True)
class StreamRun:
    stream_id: str
    index_version: str
    held_out: frozenset[str]
    indexed_products: int
    outcomes: tuple[ClipOutcome, ...]
    issues: tuple[str, ...]
    build_seconds: float


@dataclass(frozen=True, slots=True)
class Evaluation:
    report: dict[str, Any]
    outcomes: tuple[ClipOutcome, ...]
    files: tuple[Path, ...] = ()


def sample_frames(frames: Sequence[ClipFrame], limit: int) -> tuple[ClipFrame, ...]:
    """At most `limit` frames, spread evenly over the clip (first and last kept)."""
    if len(frames) <= limit:
        return tuple(frames)
    if limit == 1:
        return (frames[0],)
    picks = sorted({round(i * (len(frames) - 1) / (limit - 1)) for i in range(limit)})
    return tuple(frames[i] for i in picks)


def outcome_from_response(
    stream_id: str, clip: Clip, frames: Sequence[ClipFrame], truth: str | None, missing: bool,
    body: dict[str, Any], latency_ms: float,
) -> ClipOutcome:
    """An /identify response body (JSON shape) joined with the clip's ground truth."""
    gt = {f.frame_index: f.boxes for f in frames}
    frame_outcomes = []
    for frame in body["frames"]:
        returned = tuple(
            ReturnedBox(
                box=tuple(float(v) for v in box["box"]),  # type: ignore[arg-type]
                label=box["label"],
                product_id=box["matches"][0]["product_id"] if box["matches"] else None,
                similarity=float(box["matches"][0]["similarity"]) if box["matches"] else float("-inf"),
            )
            for box in frame["boxes"]
        )
        frame_outcomes.append(FrameOutcome(frame["frame_index"], gt.get(frame["frame_index"], ()), returned))
    return ClipOutcome(
        stream_id=stream_id,
        clip_id=clip.clip_id,
        truth=truth,
        missing=missing,
        abstain=bool(body["abstain"]),
        ranked=tuple(p["product_id"] for p in body["products"]),
        scores=tuple(float(p["score"]) for p in body["products"]),
        frames=tuple(frame_outcomes),
        latency_ms=latency_ms,
        pipeline_ms=float(body["timings_ms"]["total"]),
    )


def prepare_indexes(
    source: StreamSource, models: Models, store: IndexStore, recipe: IndexRecipe, held_out: frozenset[str]
) -> tuple[str, str | None, set[str], list[str], float]:
    """Build and publish the stream's index, and the copy without `held_out`; returns both versions,
    the indexed products, the catalogue's issues and the build time."""
    catalogue = read_catalogue(source.root, source.stream_id)
    summary, issues = build_stream(catalogue, models, store, recipe, show_progress=False)
    indexed = set(store.load(source.stream_id, summary.version).titles)
    removed = frozenset(held_out & indexed)
    held_version = None
    if removed:
        held_version = publish_without(
            store, source.stream_id, summary.version, removed, held_out_stream_id(source.stream_id)
        )
    notes = [f"{i.source}: {i.message}" for i in issues]
    return summary.version, held_version, indexed, notes, summary.seconds


def evaluate_stream(
    source: StreamSource, identifier: Identifier, models: Models, store: IndexStore,
    config: EvalConfig, recipe: IndexRecipe, max_frames: int,
) -> StreamRun:
    limit = config.clips_per_stream
    held_out = choose_held_out(clip_products(source, limit), config.held_out_share, config.seed, source.stream_id)
    version, held_version, indexed, issues, build_seconds = prepare_indexes(source, models, store, recipe, held_out)
    wait_for_version(identifier, source.stream_id, version)
    held_id = held_out_stream_id(source.stream_id)
    if held_version is not None:
        wait_for_version(identifier, held_id, held_version)
    outcomes: list[ClipOutcome] = []
    listed = count_clips(source)
    total = min(limit, listed) if limit is not None else listed
    with tqdm(total=total, unit="clip", desc=source.stream_id, disable=not config.show_progress) as bar:
        for clip in read_clips(source, limit, issues):
            frames = sample_frames(clip.frames, max_frames)
            truth = clip.product_id if clip.product_id in indexed else None
            if clip.product_id is not None and truth is None:
                issues.append(f"{source.stream_id}/{clip.clip_id}: product {clip.product_id} is not indexed "
                              "(counted as a clip without catalogue product)")
            body, ms = identifier.identify(source.stream_id, frames, clip.asr_text, config.top_k)
            outcomes.append(outcome_from_response(source.stream_id, clip, frames, truth, False, body, ms))
            if truth is not None and truth in held_out and held_version is not None:
                body, ms = identifier.identify(held_id, frames, clip.asr_text, config.top_k)
                outcomes.append(outcome_from_response(source.stream_id, clip, frames, truth, True, body, ms))
            bar.update(1)
    return StreamRun(source.stream_id, version, held_out, len(indexed), tuple(outcomes), tuple(issues),
                     build_seconds)


def build_report(
    config: EvalConfig, settings: Settings, models: Models, runs: Sequence[StreamRun], wall_seconds: float,
    max_frames: int, recipe: IndexRecipe,
) -> dict[str, Any]:
    outcomes = [o for run in runs for o in run.outcomes]
    streams: dict[str, Any] = {}
    for run in runs:
        summary = summarize(run.outcomes, ap_k=config.top_k)
        summary.update({"index_version": run.index_version, "indexed_products": run.indexed_products,
                        "held_out_products": len(run.held_out), "build_seconds": run.build_seconds,
                        "issues": len(run.issues)})
        streams[run.stream_id] = summary
    overall = summarize(outcomes, ap_k=config.top_k)
    r1s = [s["r1"] for s in streams.values() if s["r1"] is not None]
    overall["r1_mean_over_streams"] = sum(r1s) / len(r1s) if r1s else None
    overall["r5_mean_over_streams"] = (
        sum(s["r5"] for s in streams.values() if s["r5"] is not None) / len(r1s) if r1s else None
    )
    sweep = threshold_sweep(outcomes)
    issues = [issue for run in runs for issue in run.issues]
    return {
        "dataset": config.dataset.resolve().name,
        "dataset_path": str(config.dataset.resolve()),
        "mode": config.mode,
        "url": config.url if config.mode == "http" else None,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "wall_seconds": wall_seconds,
        "config": {
            "streams": [run.stream_id for run in runs],
            "clips_per_stream": config.clips_per_stream,
            "top_k": config.top_k,
            "held_out_share": config.held_out_share,
            "seed": config.seed,
            "max_frames": max_frames,
            "abstain_threshold": settings.abstain_threshold,
            "abstain_threshold_overrides": dict(settings.abstain_threshold_overrides),
            "index_factory": recipe.factory,
            "index_search_params": recipe.search_params,
            "unboxed_images": recipe.unboxed,
            "proposal_weights": dict(settings.proposal_weights),
            "neighbours_per_box": settings.neighbours_per_box,
        },
        "models": {m.record.role: m.record.sha256 for m in models.loaded},
        "definitions": DEFINITIONS,
        "summary": overall,
        "streams": streams,
        "threshold_sweep": sweep,
        "best_threshold": max(sweep, key=lambda r: r["clip_f1"]) if sweep else None,
        "issue_count": len(issues),
        "issues": issues[:50],
    }


@contextlib.contextmanager
def _identifier(config: EvalConfig, settings: Settings) -> Iterator[tuple[Identifier, Models]]:
    """The identifier for the configured mode and the models used to build the indexes."""
    if config.mode == "inprocess":
        state = start_service(settings, Metrics())
        yield InProcessIdentifier(state), state.models
        return
    if not config.url:
        raise ValueError("--mode http needs --url")
    models = load_configured_models(settings)
    with start_blocking_portal() as portal:
        client = httpx.AsyncClient(base_url=config.url)
        try:
            yield HttpIdentifier(portal, client), models
        finally:
            portal.call(client.aclose)


def evaluate(
    config: EvalConfig, settings: Settings, identifier: Identifier, models: Models, store: IndexStore
) -> Evaluation:
    """Evaluate every selected stream of the dataset with `identifier`; nothing is written."""
    started = time.perf_counter()
    sources = find_streams(config.dataset, set(config.streams) if config.streams else None)
    max_frames = config.max_frames or settings.max_frames
    recipe = IndexRecipe.from_settings(settings)
    runs = [evaluate_stream(s, identifier, models, store, config, recipe, max_frames) for s in sources]
    report = build_report(config, settings, models, runs, time.perf_counter() - started, max_frames, recipe)
    return Evaluation(report, tuple(o for run in runs for o in run.outcomes))


def default_out_dir(dataset: Path) -> Path:
    return Path("var") / "eval" / dataset.resolve().name


def run(config: EvalConfig, settings: Settings) -> Evaluation:
    """Evaluate in the configured mode and write the report files."""
    if config.mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, not {config.mode!r}")
    started = time.perf_counter()
    with contextlib.ExitStack() as stack:
        if config.index_root is not None:
            root = config.index_root
        elif config.mode == "inprocess":
            root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="watchbuy-eval-")))
        else:
            root = settings.index_root
        if config.mode == "inprocess":
            settings = settings.model_copy(update={"index_root": root})
        identifier, models = stack.enter_context(_identifier(config, settings))
        store = IndexStore(root, keep_versions=settings.index_keep_versions)
        evaluation = evaluate(config, settings, identifier, models, store)
    evaluation.report["wall_seconds"] = time.perf_counter() - started
    out_dir = config.out_dir or default_out_dir(config.dataset)
    files = write_report(evaluation.report, evaluation.outcomes, out_dir)
    return replace(evaluation, files=tuple(files))


def parse_args(argv: list[str] | None) -> EvalConfig:
    parser = argparse.ArgumentParser(prog="python -m indexer.eval", description=__doc__.split("\n\n")[1])
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


if __name__ == "__main__":
    sys.exit(main())
