"""Compare abstain-threshold rules on finished evaluations, without running the clips again.

Every dev clip is one frame, so a clip's answer does not depend on the threshold: an evaluator run's
`clips.jsonl` holds each clip's top score, and abstaining under any per-stream threshold can be recomputed
from it. The per-catalogue rules need each stream's synthetic-view scores, which `stats` recomputes with
the index build's own calibrator (same seed and views as the build, so the same scores):

    python scripts/calibration_rules.py stats var/calibration-stats ../shared/data/viton-dev ...
    python scripts/calibration_rules.py compare var/calibration-stats var/eval/suite-cal/watchbuy-lite-e3/*/
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from service.calibration import threshold_from_scores  # noqa: E402

Rule = Callable[[np.ndarray], float]  # [views, 2] (genuine, impostor) → threshold

RULES: dict[str, Rule] = {
    "global 0.43": lambda scores: 0.43,
    "v1: genuine 40th percentile": lambda scores: float(np.percentile(scores[:, 0], 40)),
    "v2: impostor median + 0.13 (the calibrator's rule)": lambda scores: threshold_from_scores(scores[:, 1]),
}


def stats(out: Path, datasets: list[Path], views: int) -> None:
    from indexer.build import IndexRecipe, draft_index
    from indexer.catalogue import read_catalogue
    from models.loader import load_configured_models
    from service.calibration import CatalogueCalibrator
    from service.pipeline import PipelineConfig
    from watchbuy.settings import get_settings

    settings = get_settings()
    models = load_configured_models(settings)
    calibrator = CatalogueCalibrator(models, PipelineConfig.from_settings(settings), views=views)
    out.mkdir(parents=True, exist_ok=True)
    for dataset in datasets:
        for stream in sorted((dataset / "streams").iterdir()):
            catalogue = read_catalogue(stream, stream.name)
            draft, _ = draft_index(catalogue, models, IndexRecipe.from_settings(settings), show_progress=False)
            (out / f"{stream.name}.json").write_text(json.dumps(calibrator.view_scores(catalogue, draft).tolist()))
            print(stream.name, flush=True)


def compare(stats_dir: Path, runs: list[Path]) -> None:
    print("| dataset | rule | thresholds | abstain on normal clips | abstain on missing-product clips |")
    print("|---|---|---|---|---|")
    for run in runs:
        clips = [json.loads(line) for line in (run / "clips.jsonl").read_text().splitlines() if line.strip()]
        streams = sorted({clip["stream_id"] for clip in clips})
        scores = {s: np.asarray(json.loads((stats_dir / f"{s}.json").read_text()), np.float32) for s in streams}
        for name, rule in RULES.items():
            thresholds = {s: rule(scores[s]) for s in streams}

            normal = [_abstained(c, thresholds) for c in clips if not c["missing"] and c["truth"] is not None]
            missing = [_abstained(c, thresholds) for c in clips if c["missing"]]
            span = f"{min(thresholds.values()):.2f}–{max(thresholds.values()):.2f}"
            print(f"| {run.name} | {name} | {span} | {np.mean(normal):.1%} of {len(normal)} | "
                  f"{np.mean(missing):.1%} of {len(missing)} |")


def _abstained(clip: dict, thresholds: dict[str, float]) -> bool:
    top = clip["scores"][0] if clip["scores"] else -np.inf
    return bool(top < thresholds[clip["stream_id"]])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    make = sub.add_parser("stats", help="each stream's synthetic-view scores")
    make.add_argument("out", type=Path)
    make.add_argument("datasets", nargs="+", type=Path)
    make.add_argument("--views", type=int, default=64)
    check = sub.add_parser("compare", help="abstain rates of each rule on finished evaluations")
    check.add_argument("stats", type=Path)
    check.add_argument("runs", nargs="+", type=Path, help="evaluator output folders (with clips.jsonl)")
    args = parser.parse_args()
    if args.command == "stats":
        stats(args.out, args.datasets, args.views)
    else:
        compare(args.stats, args.runs)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
