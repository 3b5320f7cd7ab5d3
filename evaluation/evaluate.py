"""`watchbuy eval DATASET [--streams a,b] [--clips N] [--mode inprocess|http --url URL] [--out DIR]`.

For each stream: build its index with `indexer.build` (and a copy without a seeded share of held-out
products), send every labelled clip through the service's code path (in process: `load_index` +
`Pipeline.identify`, as the app's route does; or POST /identify to a running service), re-send the
held-out products' clips against the copy without them, and score everything with `evaluation.metrics`.
Writes report.json, report.md, clips.jsonl and PNG plots (`evaluation.report`).
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from anyio.from_thread import start_blocking_portal
from tqdm import tqdm

from evaluation.holdout import choose_held_out, held_out_stream_id, publish_without
from evaluation.identify import (
    HttpIdentifier,
    Identifier,
    InProcessIdentifier,
    wait_for_version,
)
from evaluation.metrics import DEFINITIONS, ClipOutcome, FrameOutcome, ReturnedBox, summarize, threshold_sweep
from evaluation.report import write_report
from indexer.build import BuildSummary, Calibrate, IndexRecipe, build_stream
from indexer.catalogue import read_catalogue
from indexer.queries import (
    Clip,
    ClipFrame,
    StreamSource,
    clip_products,
    count_clips,
    find_streams,
    read_clips,
)
from indexer.store import IndexStore
from models.loader import Models, load_configured_models
from service.calibration import CatalogueCalibrator
from service.metrics import Metrics
from service.state import serving
from watchbuy.settings import Settings

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
    threshold: float | None  # the abstain threshold the build calibrated (None: not calibrated)


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
    source: StreamSource, models: Models, store: IndexStore, recipe: IndexRecipe, held_out: frozenset[str],
    calibrate: Calibrate | None,
) -> tuple[BuildSummary, str | None, set[str], list[str]]:
    """Build (calibrated as the indexer job does) and publish the stream's index, and the copy without
    `held_out`, which keeps the whole catalogue's calibration; returns the build's summary, the copy's
    version, the indexed products and the catalogue's issues."""
    catalogue = read_catalogue(source.root, source.stream_id)
    summary, issues = build_stream(catalogue, models, store, recipe, show_progress=False, calibrate=calibrate)
    indexed = set(store.load(source.stream_id, summary.version).titles)
    removed = frozenset(held_out & indexed)
    held_version = None
    if removed:
        held_version = publish_without(
            store, source.stream_id, summary.version, removed, held_out_stream_id(source.stream_id)
        )
    notes = [f"{i.source}: {i.message}" for i in issues]
    return summary, held_version, indexed, notes


def evaluate_stream(
    source: StreamSource, identifier: Identifier, models: Models, store: IndexStore,
    config: EvalConfig, recipe: IndexRecipe, max_frames: int, calibrate: Calibrate | None,
) -> StreamRun:
    limit = config.clips_per_stream
    held_out = choose_held_out(clip_products(source, limit), config.held_out_share, config.seed, source.stream_id)
    build, held_version, indexed, issues = prepare_indexes(source, models, store, recipe, held_out, calibrate)
    wait_for_version(identifier, source.stream_id, build.version)
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
    return StreamRun(source.stream_id, build.version, held_out, len(indexed), tuple(outcomes), tuple(issues),
                     build.seconds, build.threshold)


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
                        "calibrated_threshold": run.threshold,
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
            "calibration_views": settings.calibration_views,
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
    if config.mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, not {config.mode!r}")
    if config.mode == "http" and not config.url:
        raise ValueError("--mode http needs --url")
    with start_blocking_portal() as portal:
        if config.mode == "inprocess":
            with portal.wrap_async_context_manager(serving(settings, Metrics())) as state:
                yield InProcessIdentifier(state, portal), state.models
            return
        models = load_configured_models(settings)
        client = httpx.AsyncClient(base_url=config.url or "")
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
    calibrate = CatalogueCalibrator.from_settings(models, settings)
    runs = [evaluate_stream(s, identifier, models, store, config, recipe, max_frames, calibrate) for s in sources]
    report = build_report(config, settings, models, runs, time.perf_counter() - started, max_frames, recipe)
    return Evaluation(report, tuple(o for run in runs for o in run.outcomes))


def default_out_dir(dataset: Path) -> Path:
    return Path("var") / "eval" / dataset.resolve().name


def run(config: EvalConfig, settings: Settings) -> Evaluation:
    """Evaluate in the configured mode and write the report files."""
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
