"""Which abstain threshold a stream uses: an override pattern, then its index's calibration, then the default."""

from __future__ import annotations

from service.aggregate import AbstainThreshold, AbstainThresholds, calibrated_threshold

CALIBRATED = {"calibration": {"threshold": 0.37, "views": 64}}


def test_a_calibrated_index_uses_its_own_threshold_and_others_the_default() -> None:
    thresholds = AbstainThresholds(default=0.43)
    assert thresholds.for_stream("shop-1", CALIBRATED) == AbstainThreshold(0.37, "catalogue")
    assert thresholds.for_stream("shop-1", {}) == AbstainThreshold(0.43, "default")
    assert thresholds.for_stream("shop-1", {"calibration": None}) == AbstainThreshold(0.43, "default")


def test_the_first_matching_pattern_wins_over_the_calibration() -> None:
    patterns = AbstainThresholds(default=0.5, overrides=(("other-*", 0.1), ("shop-*", 0.6), ("shop-1", 0.7)))
    assert patterns.for_stream("shop-1", CALIBRATED) == AbstainThreshold(0.6, "override")
    assert patterns.for_stream("mall-1", CALIBRATED) == AbstainThreshold(0.37, "catalogue")
    assert patterns.for_stream("mall-1", {}) == AbstainThreshold(0.5, "default")


def test_a_manifest_without_a_numeric_threshold_is_not_calibrated() -> None:
    for manifest in ({}, {"calibration": "0.4"}, {"calibration": {"threshold": "0.4"}},
                     {"calibration": {"threshold": True}}, {"calibration": {}}):
        assert calibrated_threshold(manifest) is None
    assert calibrated_threshold({"calibration": {"threshold": 1}}) == 1.0
