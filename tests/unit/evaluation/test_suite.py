"""The evaluation suite's pure parts: which sets are in domain for which weights, the operating point at
10% of normal clips abstained, and the table."""

from __future__ import annotations

from evaluation.suite import SuiteRow, markdown, missing_at_budget, training_sources


def test_in_domain_follows_the_training_data_of_the_weights_and_their_members() -> None:
    assert training_sources("imagenet") == set()
    assert training_sources("watchbuy-lite0-v4") == {"viton-train", "grocery-train"}
    assert training_sources("watchbuy-lite-e3") == {"viton-train", "grocery-train"}  # an ensemble: its members'


def test_missing_products_are_compared_at_the_highest_threshold_within_the_normal_budget() -> None:
    sweep = [
        {"threshold": 0.3, "abstain_rate_normal": 0.02, "abstain_recall": 0.40},
        {"threshold": 0.5, "abstain_rate_normal": 0.09, "abstain_recall": 0.70},
        {"threshold": 0.6, "abstain_rate_normal": 0.15, "abstain_recall": 0.85},
    ]
    assert missing_at_budget(sweep) == (0.70, 0.09)
    assert missing_at_budget(sweep, budget=0.01) is None


def test_the_table_names_domain_and_operating_point() -> None:
    rows = [SuiteRow("imagenet", "dior-dev", False, 56, 0.304, 0.6, 0.15, 0.07),
            SuiteRow("e", "viton-dev", True, 3000, 0.878, 0.979, None, None)]
    table = markdown(rows).splitlines()
    assert table[2] == "| `imagenet` | dior-dev | out of domain | 56 | 0.304 | 0.600 | 15.0% (7.0%) |"
    assert table[3] == "| `e` | viton-dev | in domain | 3000 | 0.878 | 0.979 | — (—) |"
