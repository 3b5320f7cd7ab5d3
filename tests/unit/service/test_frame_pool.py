"""Frame pooling: a product scores the mean of its best `frame_pool` frames, and names them."""

from __future__ import annotations

import pytest

from service.aggregate import score_products


def test_one_frame_scores_the_same_whatever_the_pool() -> None:
    frame = ({"a": 0.8, "b": 0.5}, 0.3)
    for pool in (0, 1, 3, 32):
        scored = score_products([frame], frame_pool=pool, frame_ids=[7])
        assert scored.scores == {"a": 0.8, "b": 0.5}
        assert scored.frames == {"a": (7,), "b": (7,)}


def test_a_product_seen_in_a_few_frames_of_many_keeps_its_score() -> None:
    """Two frames of 32 show product a; pooled over its best 3 it keeps most of its score, over all it drowns."""
    shown = [({"a": 0.8, "b": 0.4}, 0.2)] * 2
    empty = [({"b": 0.35}, 0.2)] * 30
    frames = shown + empty
    pooled = score_products(frames, frame_pool=3, frame_ids=list(range(100, 132)))
    assert pooled.scores["a"] == pytest.approx((0.8 + 0.8 + 0.2) / 3)
    assert pooled.scores["b"] == pytest.approx((0.4 + 0.4 + 0.35) / 3)
    assert pooled.frames["a"] == (100, 101)  # the frame it was not retrieved in pooled its floor, unnamed
    assert len(pooled.frames["b"]) == 3 and set(pooled.frames["b"][:2]) == {100, 101}
    everything = score_products(frames, frame_pool=0)
    assert everything.scores["a"] == pytest.approx((2 * 0.8 + 30 * 0.2) / 32)
    assert everything.scores["a"] < everything.scores["b"] < pooled.scores["a"]


def test_the_text_bonus_is_added_after_pooling_and_floor_is_the_lowest_score() -> None:
    frames = [({"a": 0.6}, 0.1), ({"b": 0.5}, 0.2)]
    scored = score_products(frames, bonus={"b": 0.05, "c": 0.1}, frame_pool=1)
    assert scored.scores == pytest.approx({"a": 0.6, "b": 0.55, "c": 0.3})  # c: the best floor, then its bonus
    assert scored.frames["c"] == ()  # speech alone brought it in
    assert scored.floor == pytest.approx(0.3)
