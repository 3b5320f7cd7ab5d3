"""Which abstain threshold a stream uses: override pattern, then the setting, then its calibration."""

from __future__ import annotations

from service.aggregate import AbstainThreshold, AbstainThresholds, calibrated_threshold

CALIBRATED = {"calibration": {"threshold": 0.37, "views": 64}}


def test_a_calibrated_index_uses_its_own_threshold() -> None:
    thresholds = AbstainThresholds(uncalibrated=0.43)
    assert thresholds.for_stream("shop-1", CALIBRATED) == AbstainThreshold(0.37, "catalogue")
    assert thresholds.for_stream("shop-1", {}) == AbstainThreshold(0.43, "uncalibrated")
    assert thresholds.for_stream("shop-1", {"calibration": None}) == AbstainThreshold(0.43, "uncalibrated")


def test_the_setting_then_a_matching_pattern_win_over_the_calibration() -> None:
    assert AbstainThresholds(fixed=0.5).for_stream("shop-1", CALIBRATED) == AbstainThreshold(0.5, "setting")
    patterns = AbstainThresholds(fixed=0.5, overrides=(("other-*", 0.1), ("shop-*", 0.6), ("shop-1", 0.7)))
    assert patterns.for_stream("shop-1", CALIBRATED) == AbstainThreshold(0.6, "override")  # the first match
    assert patterns.for_stream("mall-1", CALIBRATED) == AbstainThreshold(0.5, "setting")


def test_a_manifest_without_a_numeric_threshold_is_not_calibrated() -> None:
    for manifest in ({}, {"calibration": "0.4"}, {"calibration": {"threshold": "0.4"}},
                     {"calibration": {"threshold": True}}, {"calibration": {}}):
        assert calibrated_threshold(manifest) is None
    assert calibrated_threshold({"calibration": {"threshold": 1}}) == 1.0
