"""Unit tests of the evaluator's pure parts: metrics on hand-made outcomes, frame sampling, held-out index."""

from __future__ import annotations

import math
from pathlib import Path

import faiss
import numpy as np
import pytest

from evaluation.evaluate import sample_frames
from evaluation.holdout import choose_held_out, held_out_stream_id, publish_without
from evaluation.metrics import (
    ClipOutcome,
    FrameOutcome,
    ReturnedBox,
    abstain_prf,
    answered,
    average_precision,
    box_prf,
    clip_prf,
    detection_hits,
    evidence_box,
    frame_prf,
    match_one_to_one,
    rank_of,
    recall_at_k,
    summarize,
    threshold_sweep,
)
from indexer.queries import ClipFrame, GroundTruthBox
from indexer.store import IndexStore, TitleVectors, VectorEntry

GT = (10.0, 10.0, 110.0, 110.0)


HIT = (12.0, 12.0, 112.0, 108.0)  # IoU with GT ≈ 0.92


MISS = (100.0, 100.0, 200.0, 200.0)  # IoU with GT ≈ 0.005


def frame(gt_product: str | None, *returned: ReturnedBox, index: int = 0) -> FrameOutcome:
    gts = (GroundTruthBox(GT, gt_product),) if gt_product else ()
    return FrameOutcome(index, gts, tuple(returned))


def outcome(
    truth: str | None, ranked: tuple[str, ...], scores: tuple[float, ...] | None = None, *,
    frames: tuple[FrameOutcome, ...] = (), missing: bool = False, abstain: bool = False, ms: float = 10.0,
) -> ClipOutcome:
    scores = scores or tuple(0.9 - 0.1 * i for i in range(len(ranked)))
    return ClipOutcome("s", f"c-{truth}-{missing}", truth, missing, abstain, ranked, scores, frames, ms, ms)


def test_rank_and_recall_at_k() -> None:
    assert rank_of(("a", "b", "c"), "b") == 2
    assert rank_of(("a", "b"), "z") is None and rank_of(("a",), None) is None
    ranks = [1, 3, None, 2]
    assert recall_at_k(ranks, 1) == 0.25
    assert recall_at_k(ranks, 2) == 0.5
    assert recall_at_k(ranks, 3) == 0.75
    assert recall_at_k([], 5) == 0.0


def test_average_precision_hand_cases() -> None:
    assert average_precision(["a", "b", "c"], ["a"], 50) == 1.0
    assert average_precision(["x", "y", "a"], ["a"], 50) == pytest.approx(1 / 3)  # reciprocal rank
    assert average_precision(["x", "y", "a"], ["a"], 2) == 0.0  # outside the top K
    assert average_precision(["a", "x", "b"], ["a", "b"], 50) == pytest.approx((1 + 2 / 3) / 2)
    assert average_precision(["a", "a", "b"], ["a", "b"], 50) == pytest.approx((1 + 2 / 3) / 2)  # counted once
    assert average_precision(["a"], [], 50) == 0.0


def test_detection_hits_and_one_to_one_matching() -> None:
    assert detection_hits([GT], [MISS, HIT]) == 1
    assert detection_hits([GT], [MISS]) == 0
    half = (10.0, 10.0, 60.0, 110.0)  # IoU exactly 0.5: counts for detection (>=), not for F1 matching (>)
    assert detection_hits([GT], [half]) == 1
    assert match_one_to_one([(half, 1.0)], [GT]) == 0
    assert match_one_to_one([(HIT, 0.9), (GT, 0.8)], [GT]) == 1  # one GT box matches once
    assert match_one_to_one([(HIT, 0.9), (GT, 0.8)], [GT, HIT]) == 2


def test_evidence_box_is_the_most_similar_box_whose_best_match_is_the_product() -> None:
    f = frame("p", ReturnedBox(MISS, "person", "p", 0.7), ReturnedBox(HIT, "upper_body", "p", 0.8),
              ReturnedBox(GT, "lower_body", "q", 0.95))
    assert evidence_box(f, "p").box == HIT
    assert evidence_box(f, "z") is None and evidence_box(f, None) is None


def test_clip_frame_box_f1_on_hand_made_outcomes() -> None:
    right = outcome("p", ("p", "q"), frames=(frame("p", ReturnedBox(HIT, "u", "p", 0.8),
                                                      ReturnedBox(MISS, "l", "p", 0.6)),))
    wrong_box = outcome("q", ("q", "p"), frames=(frame("q", ReturnedBox(MISS, "u", "q", 0.8)),))
    wrong_top = outcome("r", ("p", "r"), frames=(frame("r", ReturnedBox(HIT, "u", "p", 0.8)),))
    abstained = outcome("s", ("s",), frames=(frame("s", ReturnedBox(HIT, "u", "s", 0.8)),), abstain=True)
    negative = outcome(None, ("p",), frames=(frame(None, ReturnedBox(HIT, "u", "p", 0.8)),))
    outcomes = [right, wrong_box, wrong_top, abstained, negative]

    clip = clip_prf(outcomes)  # answered: 4 (not `abstained`); right top: right, wrong_box; positives: 4
    assert (clip.tp, clip.predicted, clip.positives) == (2, 4, 4)
    assert clip.precision == 0.5 and clip.recall == 0.5 and clip.f1 == 0.5

    fr = frame_prf(outcomes)  # tp: only `right` (wrong_box's evidence box misses the GT box)
    assert (fr.tp, fr.predicted, fr.positives) == (1, 4, 4)

    bx = box_prf(outcomes)  # predictions: right 2, wrong_box 1, wrong_top 1, negative 1; tp: right's HIT
    assert (bx.tp, bx.predicted, bx.positives) == (1, 5, 4)
    assert bx.f1 == pytest.approx(2 * 0.2 * 0.25 / 0.45)


def test_abstain_prf_and_threshold() -> None:
    normal = [outcome("p", ("p",), (0.9,)), outcome("q", ("q",), (0.4,), abstain=True)]
    missing = [outcome("p", ("x",), (0.3,), missing=True, abstain=True),
               outcome("q", ("y",), (0.7,), missing=True)]
    prf = abstain_prf(normal, missing)
    assert (prf.tp, prf.predicted, prf.positives) == (1, 2, 2)
    assert answered(normal[0], 0.9) and not answered(normal[0], 0.95)
    strict = abstain_prf(normal, missing, threshold=0.8)  # everything below 0.8 abstains
    assert (strict.tp, strict.predicted) == (2, 3)
    assert clip_prf(normal + missing, 0.8).f1 == pytest.approx(2 * 1.0 * 0.5 / 1.5)


def test_summarize_and_sweep_shapes() -> None:
    outcomes = [
        outcome("p", ("p", "q"), frames=(frame("p", ReturnedBox(HIT, "u", "p", 0.8)),), ms=10),
        outcome("q", ("p", "q"), frames=(frame("q", ReturnedBox(MISS, "u", "p", 0.8)),), ms=30),
        outcome("q", ("p",), (0.55,), missing=True),
    ]
    summary = summarize(outcomes, k_max=5)
    assert summary["clips"] == 2 and summary["positive_clips"] == 2
    assert summary["r1"] == 0.5 and summary["r5"] == 1.0 and summary["map"] == pytest.approx(0.75)
    assert summary["r_at_k"] == [0.5, 1.0, 1.0, 1.0, 1.0]
    assert summary["detection_recall"] == 0.5
    assert summary["latency_ms"]["median"] == 20
    assert summary["missing_product"]["clips"] == 1
    assert 0 <= summary["f1"]["mean"] <= 1
    sweep = threshold_sweep(outcomes, points=11)
    assert sweep[0]["threshold"] == pytest.approx(0.55) and sweep[0]["abstain_rate_normal"] == 0.0
    assert sweep[-1]["abstain_recall"] == 1.0 and sweep[-1]["clip_f1"] == 0.0  # above every score
    assert all(0 <= r["clip_f1"] <= 1 and math.isfinite(r["threshold"]) for r in sweep)


def test_summarize_without_boxes_reports_no_frame_or_box_f1() -> None:
    summary = summarize([outcome("p", ("p",), frames=(frame(None, ReturnedBox(HIT, "u", "p", 0.8)),))])
    assert summary["f1"]["frame"] is None and summary["f1"]["box"] is None
    assert summary["f1"]["mean"] == summary["f1"]["clip"]["f1"] == 1.0
    assert summary["detection_recall"] is None


def test_sample_frames_spreads_evenly() -> None:
    frames = [ClipFrame(i, b"", ()) for i in range(10)]
    assert [f.frame_index for f in sample_frames(frames, 4)] == [0, 3, 6, 9]
    assert len(sample_frames(frames, 32)) == 10
    assert [f.frame_index for f in sample_frames(frames, 1)] == [0]


def test_choose_held_out_is_seeded_and_sized() -> None:
    products = [f"p{i}" for i in range(20)] * 2
    first = choose_held_out(products, 0.2, 0, "s")
    assert len(first) == 4 and first == choose_held_out(reversed(products), 0.2, 0, "s")
    assert first != choose_held_out(products, 0.2, 1, "s") or first != choose_held_out(products, 0.2, 0, "t")
    assert choose_held_out(["a"], 0.2, 0, "s") == {"a"}
    assert choose_held_out(products, 0.0, 0, "s") == frozenset()


def test_publish_without_removes_the_products_rows(tmp_path: Path) -> None:
    store = IndexStore(tmp_path)
    vectors = np.eye(4, dtype=np.float32)
    index = faiss.IndexFlatIP(4)
    index.add(vectors)
    entries = [VectorEntry(pid, f"{pid}-{i}", (0.0, 0.0, 1.0, 1.0)) for i, pid in enumerate("aabc")]
    titles = TitleVectors(("a", "c"), np.eye(2, dtype=np.float32), "enc")
    hubness = np.array([0.1, 0.2, 0.3, 0.4], np.float32)
    version = store.publish("s", index, entries, {"a": "A", "b": "B", "c": "C"}, {"models": {"embedder": "x"}},
                            text=titles, hubness=hubness)
    target = held_out_stream_id("s")
    store_version = publish_without(store, "s", version, frozenset({"a"}), target)
    loaded = store.load(target, store_version)
    assert [e.product_id for e in loaded.entries] == ["b", "c"]
    assert set(loaded.titles) == {"b", "c"} and loaded.manifest["models"] == {"embedder": "x"}
    _sims, rows = loaded.index.search(vectors[:1], 2)
    assert all(loaded.entries[r].product_id != "a" for r in rows[0])
    np.testing.assert_allclose(loaded.index.reconstruct_n(0, 2), vectors[2:])
    np.testing.assert_array_equal(loaded.hubness, hubness[2:])  # the kept rows keep their hubness
    assert loaded.text.product_ids == ("c",) and loaded.text.vectors.tolist() == [[0.0, 1.0]]
