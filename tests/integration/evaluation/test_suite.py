"""`watchbuy eval-suite` end to end on the viton slice with the configured embedder: reports and the table."""

from __future__ import annotations

import json
from pathlib import Path

from support.data import SLICE_STREAM, expected_embedder

from evaluation.suite import main
from watchbuy.settings import Settings


def test_the_suite_writes_one_row_per_embedder_and_dataset(slice_dir: Path, model_dir: Path, tmp_path: Path) -> None:
    """(`model_dir`: the configured weights' models are `make models`' own, var/models.)"""
    weights = Settings().embedder_weights
    out = tmp_path / "suite"
    assert main(["--data", str(slice_dir.parent), "--datasets", SLICE_STREAM, "--weights", weights,
                 "--clips", "3", "--out", str(out)]) == 0
    (row,) = json.loads((out / "suite.json").read_text())
    assert row["weights"] == weights and row["dataset"] == SLICE_STREAM and row["clips"] == 3
    assert not row["in_domain"]  # no *-train set of that name in the weights' training data
    assert 0.0 <= row["r1"] <= row["r5"] <= 1.0
    assert (out / weights / SLICE_STREAM / "report.json").is_file()
    assert f"| `{weights}` | {SLICE_STREAM} | out of domain | 3 |" in (out / "suite.md").read_text()
    assert expected_embedder()[0].endswith(weights)
