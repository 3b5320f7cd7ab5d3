"""The abstain calibration rule (`watchbuy calibrate`) on hand-made sweeps."""

from __future__ import annotations

import pytest

from evaluation.calibrate import calibrate


def _sweep(rates: list[tuple[float, float, float]]) -> list[dict]:
    return [{"threshold": t, "abstain_rate_normal": n, "abstain_recall": m} for t, n, m in rates]


def test_the_rule_keeps_one_standard_error_under_the_target() -> None:
    sweep = _sweep([(0.70, 0.05, 0.5), (0.72, 0.07, 0.6), (0.746, 0.09, 0.7), (0.76, 0.12, 0.8)])
    # 200 clips: 0.07 + sqrt(0.07·0.93/200) = 0.088 ≤ 0.10; 0.09 + 0.020 = 0.110 > 0.10
    assert calibrate(sweep, 200).threshold == 0.72
    bare = calibrate(sweep, 200, margin_se=0.0)
    assert (bare.threshold, bare.normal_rate, bare.missing_recall) == (0.74, 0.09, 0.7)  # rounded down
    assert calibrate(sweep, 100_000).threshold == 0.74  # with many clips the margin vanishes


def test_no_threshold_meeting_the_target_is_an_error() -> None:
    with pytest.raises(ValueError, match="no threshold"):
        calibrate(_sweep([(0.5, 0.2, 0.9)]), 200)
    with pytest.raises(ValueError, match="no normal clips"):
        calibrate(_sweep([(0.5, 0.0, 0.9)]), 0)
