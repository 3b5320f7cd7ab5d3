"""The abstain threshold an evaluator report supports, by the project's calibration rule.

Rule (docs/EVALUATION.md): the highest threshold of the report's sweep whose rate of abstaining on normal
clips, plus one binomial standard error, stays at or under the target (10%), rounded down to 0.01. Run it
on a report of data the embedder never trained on (viton-train-11, the held-out grocery-train photos):

    watchbuy calibrate var/eval/viton-train-11/report.json

It also prints, for comparing embedders, the share of missing-product clips abstained on at that threshold
and at the highest threshold that meets the target with no error margin.
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Calibration:
    threshold: float
    normal_rate: float
    missing_recall: float


def calibrate(sweep: list[dict], normal_clips: int, target: float = 0.10, margin_se: float = 1.0) -> Calibration:
    """The highest swept threshold with rate + margin_se·SE(rate) ≤ target (rate: abstains on normal clips)."""
    if normal_clips <= 0:
        raise ValueError("the report has no normal clips")
    best = None
    for row in sorted(sweep, key=lambda r: r["threshold"]):
        rate = row["abstain_rate_normal"]
        if rate + margin_se * math.sqrt(rate * (1 - rate) / normal_clips) <= target:
            best = row
    if best is None:
        raise ValueError(f"no threshold in the sweep keeps normal abstains at or under {target:.0%}")
    return Calibration(math.floor(best["threshold"] * 100) / 100, best["abstain_rate_normal"], best["abstain_recall"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="watchbuy calibrate", description=__doc__.split("\n")[0])
    parser.add_argument("reports", nargs="+", type=Path, help="report.json files written by watchbuy eval")
    parser.add_argument("--target", type=float, default=0.10, help="abstains on normal clips at most (default 0.10)")
    args = parser.parse_args(argv)
    for path in args.reports:
        report = json.loads(path.read_text())
        clips = report["summary"]["positive_clips"]
        rule = calibrate(report["threshold_sweep"], clips, args.target)
        bare = calibrate(report["threshold_sweep"], clips, args.target, margin_se=0.0)
        missing = report["summary"].get("missing_product", {}).get("clips", 0)
        print(
            f"{path}: threshold {rule.threshold:.2f} (normal {rule.normal_rate:.3f}, missing {rule.missing_recall:.3f}"
            f" of {missing}); with no margin {bare.threshold:.3f} (normal {bare.normal_rate:.3f}, missing"
            f" {bare.missing_recall:.3f}); R@1 {report['summary']['r1']:.3f}"
        )
    return 0

