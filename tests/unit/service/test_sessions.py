"""The session window's maths and its stored entries."""

from __future__ import annotations

import pytest
from support.helpers import TITLES, product_scores

from service.aggregate import window_means
from service.sessions import (
    SessionEntry,
    decode_entry,
    encode_entry,
    make_entry,
)


def test_smooth_scores_means_with_floors_and_current_products_only() -> None:
    entries = [
        SessionEntry(at=2.0, scores={"a": 0.6, "b": 0.9}, floor=0.6),  # newest: b wins this request alone
        SessionEntry(at=1.0, scores={"a": 0.9, "c": 0.5}, floor=0.5),  # b absent here: counts 0.5
        SessionEntry(at=0.0, scores={"a": 0.8, "gone": 0.99, "x": 1.0}, floor=0.3),
    ]
    ranked = window_means(entries, {"a": "", "b": "", "c": "", "gone": ""})
    assert [pid for pid, _ in ranked] == ["a", "gone", "b", "c"]
    means = dict(ranked)
    assert means["a"] == pytest.approx((0.6 + 0.9 + 0.8) / 3)
    assert means["b"] == pytest.approx((0.9 + 0.5 + 0.3) / 3)
    assert means["gone"] == pytest.approx((0.6 + 0.5 + 0.99) / 3)
    assert "x" not in means  # not in the stream's current index: dropped
    assert window_means([], TITLES) == []


def test_entries_round_trip_and_foreign_values_are_ignored() -> None:
    entry = make_entry(product_scores(("a", 0.91234567), ("b", 0.5)), at=12.5)
    assert entry.floor == 0.5
    assert decode_entry(encode_entry(entry)) == SessionEntry(12.5, {"a": 0.912346, "b": 0.5}, 0.5)
    for junk in ("nope", "{}", '{"t": 1, "s": [], "f": 0}', None, '{"t": "x", "s": {}, "f": 0}'):
        assert decode_entry(junk) is None
