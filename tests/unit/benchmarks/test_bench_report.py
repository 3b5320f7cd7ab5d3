"""The benchmarks' pure helpers: percentiles, sizes, and the FAISS recommendation rule."""

from __future__ import annotations

from benchmarks.faiss_search import default_sizes, nlist_for, recommend
from benchmarks.report import percentile


def test_percentile_and_sizes() -> None:
    assert percentile([], 50) is None
    assert percentile([3.0, 1.0, 2.0], 50) == 2.0
    assert percentile([0.0, 10.0], 95) == 9.5
    assert default_sizes(1_000_000) == [1000, 10_000, 100_000, 1_000_000]
    assert default_sizes(2000) == [1000, 2000]
    assert nlist_for(1_000_000) == 1024 and 1000 / nlist_for(1000) >= 39


def test_recommendation_is_the_fastest_config_with_enough_recall() -> None:
    rows = [
        {"n": 1000, "factory": "Flat", "param": "", "threads": 1, "search_ms_p50": 0.2, "recall_at_10": 1.0},
        {"n": 1000, "factory": "HNSW32", "param": "efSearch=16", "threads": 1, "search_ms_p50": 0.1,
         "recall_at_10": 0.9},
        {"n": 1000, "factory": "HNSW32", "param": "efSearch=64", "threads": 1, "search_ms_p50": 0.15,
         "recall_at_10": 0.99},
    ]
    assert recommend(rows) == {"1000": "Flat (OpenMP threads 1)"}  # exact and cheap enough
    rows[0]["search_ms_p50"] = 5.0  # Flat too slow: the fastest configuration with recall ≥ 0.95
    assert recommend(rows) == {"1000": "HNSW32 efSearch=64 (OpenMP threads 1)"}
