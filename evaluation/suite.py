"""`watchbuy eval-suite`: every dataset, in domain and out of domain, side by side, for each embedder.

For each embedder (default: the configured weights and the ImageNet reference, `imagenet`), the models are
those of `make models` (the configured weights) or exported into a folder of their own (`var/models-<weights>`,
reused while current), and the evaluator runs
on every dataset through the service's request path. A dataset `X-dev` counts as *in domain* for weights
trained on `X-train` (read from the weights manifest; an ensemble has its members' data) and *out of
domain* otherwise, so a model trained without a source is scored out of domain on that source's dev set
(leave one domain out). The table: R@1, R@5, and missing products abstained at the highest threshold that
abstains on at most 10% of normal clips, per embedder and dataset; `suite.json` and `suite.md` in `--out`.
"""

from __future__ import annotations

import argparse
import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from evaluation.evaluate import EvalConfig, run
from training.fetch import IMAGENET, fetch_models
from training.trained import read_weights_manifest
from watchbuy.settings import Settings, get_settings

DEFAULT_DATASETS = ("viton-dev", "grocery-dev", "dior-dev")
#: The rate of abstaining on normal clips at which missing products are compared.
NORMAL_ABSTAIN_BUDGET = 0.10


@dataclass(frozen=True, slots=True)
class SuiteRow:
    weights: str
    dataset: str
    in_domain: bool
    clips: int
    r1: float | None
    r5: float | None
    missing_abstained: float | None  # at the highest threshold abstaining on ≤ 10% of normal clips
    normal_abstained: float | None  # at that threshold


def training_sources(weights: str) -> set[str]:
    """The dataset names (`viton-train`, ...) the weights learnt from; none for the ImageNet reference."""
    if weights == IMAGENET:
        return set()
    manifest = read_weights_manifest()
    entry = manifest[weights]
    members = [manifest[m["name"]] for m in entry.get("members", [])] or [entry]
    return {Path(path).name for member in members for path in member.get("data", [])}


def missing_at_budget(sweep: list[dict[str, Any]], budget: float = NORMAL_ABSTAIN_BUDGET) -> tuple[float, float] | None:
    """(missing abstained, normal abstained) at the highest swept threshold with normal ≤ `budget`."""
    within = [row for row in sweep if row["abstain_rate_normal"] <= budget]
    if not within:
        return None
    best = max(within, key=lambda row: row["threshold"])
    return float(best["abstain_recall"]), float(best["abstain_rate_normal"])


def evaluate_weights(weights: str, datasets: list[Path], settings: Settings, out: Path,
                     clips: int | None) -> list[SuiteRow]:
    model_dir = settings.model_dir  # `make models` exported the configured weights there
    if weights != settings.embedder_weights:
        model_dir = Path("var") / f"models-{weights}"
        # the detector is the same file for every embedder: copied from the configured models when no mirror is set
        fetch_models(model_dir, settings.model_mirror or settings.model_dir, embedder_weights=weights)
    run_settings = settings.model_copy(update={"model_dir": model_dir, "embedder_weights": weights})
    sources = training_sources(weights)
    rows = []
    for dataset in datasets:
        config = EvalConfig(dataset=dataset, out_dir=out / weights / dataset.name, clips_per_stream=clips,
                            show_progress=False)
        summary = run(config, run_settings).report
        at_budget = missing_at_budget(summary["threshold_sweep"])
        overall = summary["summary"]
        rows.append(SuiteRow(
            weights=weights, dataset=dataset.name, in_domain=dataset.name.replace("-dev", "-train") in sources,
            clips=int(overall["clips"]), r1=overall["r1"], r5=overall["r5"],
            missing_abstained=at_budget[0] if at_budget else None,
            normal_abstained=at_budget[1] if at_budget else None,
        ))
    return rows


def markdown(rows: list[SuiteRow]) -> str:
    def pct(value: float | None) -> str:
        return "—" if value is None else f"{value:.1%}"

    def num(value: float | None) -> str:
        return "—" if value is None else f"{value:.3f}"

    lines = ["| embedder | dataset | domain | clips | R@1 | R@5 | missing abstained (normal) |",
             "|---|---|---|---|---|---|---|"]
    lines += [f"| `{r.weights}` | {r.dataset} | {'in' if r.in_domain else 'out of'} domain | {r.clips} | "
              f"{num(r.r1)} | {num(r.r5)} | {pct(r.missing_abstained)} ({pct(r.normal_abstained)}) |" for r in rows]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    settings = get_settings()
    parser = argparse.ArgumentParser(prog="watchbuy eval-suite", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data"), help="folder of the datasets")
    parser.add_argument("--datasets", default=",".join(DEFAULT_DATASETS), help="comma-separated dataset names")
    parser.add_argument("--weights", default=f"{settings.embedder_weights},{IMAGENET}",
                        help="comma-separated embedders (weights entries or imagenet); default: configured + imagenet")
    parser.add_argument("--clips", type=int, help="at most this many clips per stream (a quick look)")
    parser.add_argument("--out", type=Path, default=Path("var/eval/suite"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    datasets = [args.data / name.strip() for name in args.datasets.split(",") if name.strip()]
    missing = [str(d) for d in datasets if not d.is_dir()]
    if missing:
        parser.error(f"no such dataset folder: {', '.join(missing)}")
    rows = [row for weights in args.weights.split(",") if weights.strip()
            for row in evaluate_weights(weights.strip(), datasets, settings, args.out, args.clips)]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "suite.json").write_text(json.dumps([asdict(row) for row in rows], indent=2) + "\n")
    table = markdown(rows)
    (args.out / "suite.md").write_text(table)
    print(table)
    return 0
