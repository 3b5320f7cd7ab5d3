"""`watchbuy calibrate` as a command, on a report laid out as the evaluator writes it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def _sweep(rates: list[tuple[float, float, float]]) -> list[dict]:
    return [{"threshold": t, "abstain_rate_normal": n, "abstain_recall": m} for t, n, m in rates]


def test_cli_reads_an_evaluator_report(tmp_path: Path) -> None:
    report = {
        "summary": {"positive_clips": 200, "r1": 0.9, "missing_product": {"clips": 40}},
        "threshold_sweep": _sweep([(0.70, 0.05, 0.5), (0.72, 0.07, 0.6), (0.76, 0.12, 0.8)]),
    }
    (tmp_path / "report.json").write_text(json.dumps(report))
    done = subprocess.run(
        [str(Path(sys.executable).with_name("watchbuy")), "calibrate", str(tmp_path / "report.json")],
        capture_output=True, text=True, check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "threshold 0.72 (normal 0.070, missing 0.600 of 40)" in done.stdout
