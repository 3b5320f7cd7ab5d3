"""Evaluation metrics as pure functions over per-clip outcomes (no I/O, no models).

Definitions (also written into every report, see `DEFINITIONS`):
- A *positive* clip is a normal-pass clip whose true product is in the stream's index; a clip with no
  catalogue product, or a held-out clip re-run without its product ("missing" pass), is a *negative*.
- R@k: share of positive clips whose true product is among the first k ranked products.
- AP@K of a ranked list: sum over ranks i of the relevant hits of precision@i, divided by
  min(#relevant, K); with one true product this is 1/rank (0 when it is not in the top K), so
  mAP@K is the mean reciprocal rank of the true product within the top K.
- IoU between boxes; detection recall: share of ground-truth product boxes that some returned box
  overlaps at IoU >= 0.5.
- An answer is given (not abstained) when the service's `abstain` is false, or, for a threshold t,
  when the top product's score is >= t.
- Clip F1: tp = answered positive clips whose top product is right; precision = tp / answered clips;
  recall = tp / positive clips.
- The *evidence box* of a product in a frame: of the returned boxes whose best match is that product,
  the one with the highest similarity.
- Frame F1: positives = frames of positive clips with a ground-truth box of the true product;
  predictions = frames of answered clips where the top product has an evidence box; tp = predictions
  in positive clips whose top product is right and whose evidence box overlaps a ground-truth box of
  it at IoU > 0.5.
- Box F1: positives = ground-truth boxes of catalogue products in positive clips' frames; predictions
  = in answered clips, every returned box whose best match is the clip's top product, labelled with
  it; matched one-to-one per frame (highest similarity first) to ground-truth boxes of the same product
  at IoU > 0.5; precision = matched / predictions, recall = matched / positives.
- Abstain (missing product): recall = held-out clips abstained / held-out clips; precision = held-out
  clips abstained / all abstentions (held-out + positive normal-pass clips); F1 of the two.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from indexer.queries import GroundTruthBox
from models.types import Box, box_iou

DETECTION_IOU = 0.5  # detection recall: IoU >= this
MATCH_IOU = 0.5  # frame and box F1 (Watch and Buy): IoU > this


@dataclass(frozen=True, slots=True)
class ReturnedBox:
    """A box the service returned, with its best match (None when it matched nothing)."""

    box: Box
    label: str
    product_id: str | None
    similarity: float


@dataclass(frozen=True, slots=True)
class FrameOutcome:
    frame_index: int
    gt_boxes: tuple[GroundTruthBox, ...]
    returned: tuple[ReturnedBox, ...]


@dataclass(frozen=True, slots=True)
class ClipOutcome:
    """What the service answered for one clip. `truth` None = nothing of the index is on screen;
    `missing` = the held-out pass, run against an index without the clip's product."""

    stream_id: str
    clip_id: str
    truth: str | None
    missing: bool
    abstain: bool
    ranked: tuple[str, ...]
    scores: tuple[float, ...]
    frames: tuple[FrameOutcome, ...]
    latency_ms: float
    pipeline_ms: float

    @property
    def top(self) -> str | None:
        return self.ranked[0] if self.ranked else None

    @property
    def top_score(self) -> float | None:
        return self.scores[0] if self.scores else None

    @property
    def positive(self) -> bool:
        return not self.missing and self.truth is not None


@dataclass(frozen=True, slots=True)
class PRF:
    tp: int
    predicted: int
    positives: int

    @property
    def precision(self) -> float:
        return self.tp / self.predicted if self.predicted else 0.0

    @property
    def recall(self) -> float:
        return self.tp / self.positives if self.positives else 0.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r > 0 else 0.0

    def as_dict(self) -> dict[str, float | int]:
        return {"precision": self.precision, "recall": self.recall, "f1": self.f1,
                "tp": self.tp, "predicted": self.predicted, "positives": self.positives}


def rank_of(ranked: Sequence[str], truth: str | None) -> int | None:
    """1-based rank of `truth` in `ranked`, None when absent."""
    if truth is None:
        return None
    try:
        return ranked.index(truth) + 1
    except ValueError:
        return None


def recall_at_k(ranks: Sequence[int | None], k: int) -> float:
    """Share of queries whose (1-based) rank is <= k; None ranks are misses."""
    if not ranks:
        return 0.0
    return sum(1 for r in ranks if r is not None and r <= k) / len(ranks)


def average_precision(ranked: Sequence[str], relevant: Iterable[str], k: int) -> float:
    """AP@k: sum of precision@i at the relevant hits within the top k, over min(#relevant, k)."""
    wanted = set(relevant)
    if not wanted or k < 1:
        return 0.0
    denominator = min(len(wanted), k)
    hits, total = 0, 0.0
    for i, pid in enumerate(ranked[:k], start=1):
        if pid in wanted:
            hits += 1
            total += hits / i
            wanted.discard(pid)  # a product counts once
    return total / denominator


def answered(outcome: ClipOutcome, threshold: float | None = None) -> bool:
    """Not abstained: the service's own flag, or the top score against `threshold`."""
    if threshold is None:
        return not outcome.abstain
    return outcome.top_score is not None and outcome.top_score >= threshold


def evidence_box(frame: FrameOutcome, product_id: str | None) -> ReturnedBox | None:
    """Of the frame's returned boxes whose best match is `product_id`, the most similar one."""
    candidates = [b for b in frame.returned if product_id is not None and b.product_id == product_id]
    return max(candidates, key=lambda b: b.similarity) if candidates else None


def detection_hits(gt_boxes: Sequence[Box], returned: Sequence[Box], threshold: float = DETECTION_IOU) -> int:
    """How many ground-truth boxes some returned box overlaps at IoU >= threshold."""
    return sum(1 for gt in gt_boxes if any(box_iou(gt, r) >= threshold for r in returned))


def match_one_to_one(
    predictions: Sequence[tuple[Box, float]], gt_boxes: Sequence[Box], threshold: float = MATCH_IOU
) -> int:
    """Greedy one-to-one matching, most confident prediction first, at IoU > threshold; the count."""
    free = list(gt_boxes)
    matched = 0
    for box, _ in sorted(predictions, key=lambda p: -p[1]):
        best = max(range(len(free)), key=lambda i: box_iou(box, free[i]), default=None)
        if best is not None and box_iou(box, free[best]) > threshold:
            free.pop(best)
            matched += 1
    return matched


def clip_prf(outcomes: Sequence[ClipOutcome], threshold: float | None = None) -> PRF:
    given = [o for o in outcomes if answered(o, threshold)]
    tp = sum(1 for o in given if o.positive and o.top == o.truth)
    return PRF(tp, len(given), sum(1 for o in outcomes if o.positive))


def _truth_boxes(frame: FrameOutcome, product_id: str | None) -> list[Box]:
    return [g.box for g in frame.gt_boxes if product_id is not None and g.product_id == product_id]


def frame_prf(outcomes: Sequence[ClipOutcome], threshold: float | None = None) -> PRF:
    tp = predicted = positives = 0
    for o in outcomes:
        given = answered(o, threshold)
        for frame in o.frames:
            truth_boxes = _truth_boxes(frame, o.truth) if o.positive else []
            positives += bool(truth_boxes)
            box = evidence_box(frame, o.top) if given else None
            if box is None:
                continue
            predicted += 1
            if o.positive and o.top == o.truth and any(box_iou(box.box, g) > MATCH_IOU for g in truth_boxes):
                tp += 1
    return PRF(tp, predicted, positives)


def box_prf(outcomes: Sequence[ClipOutcome], threshold: float | None = None) -> PRF:
    tp = predicted = positives = 0
    for o in outcomes:
        given = answered(o, threshold)
        for frame in o.frames:
            gts = [g for g in frame.gt_boxes if g.product_id is not None] if o.positive else []
            positives += len(gts)
            if not given or o.top is None:
                continue
            preds = [(b.box, b.similarity) for b in frame.returned if b.product_id == o.top]
            predicted += len(preds)
            tp += match_one_to_one(preds, [g.box for g in gts if g.product_id == o.top])
    return PRF(tp, predicted, positives)


def abstain_prf(normal: Sequence[ClipOutcome], missing: Sequence[ClipOutcome], threshold: float | None = None) -> PRF:
    """Abstaining as the prediction: right on held-out clips, wrong on positive normal clips."""
    held = sum(1 for o in missing if not answered(o, threshold))
    wrong = sum(1 for o in normal if o.positive and not answered(o, threshold))
    return PRF(held, held + wrong, len(missing))


def _f1_or_none(prf: PRF) -> float | None:
    return prf.f1 if prf.positives else None


def _median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def summarize(outcomes: Sequence[ClipOutcome], k_max: int = 20, ap_k: int = 50) -> dict[str, object]:
    """Every metric for one group of outcomes (a stream or a whole dataset), as plain JSON values."""
    normal = [o for o in outcomes if not o.missing]
    missing = [o for o in outcomes if o.missing]
    positives = [o for o in normal if o.positive]
    ranks = [rank_of(o.ranked, o.truth) for o in positives]
    gt_total = gt_hits = 0
    for o in normal:
        for seen in o.frames:
            gts = [g.box for g in seen.gt_boxes if g.product_id is not None]
            gt_total += len(gts)
            gt_hits += detection_hits(gts, [b.box for b in seen.returned])
    clip, frame, box = clip_prf(normal), frame_prf(normal), box_prf(normal)
    f1s = [f for f in (_f1_or_none(clip), _f1_or_none(frame), _f1_or_none(box)) if f is not None]
    abstain = abstain_prf(normal, missing)
    with_missing = clip_prf(normal + missing)
    n_frames = sum(len(o.frames) for o in normal)
    n_boxes = sum(len(f.returned) for o in normal for f in o.frames)
    return {
        "clips": len(normal),
        "positive_clips": len(positives),
        "frames": n_frames,
        "returned_boxes_per_frame": n_boxes / n_frames if n_frames else None,
        "r1": recall_at_k(ranks, 1) if positives else None,
        "r5": recall_at_k(ranks, 5) if positives else None,
        "map": (sum(average_precision(o.ranked, [o.truth], ap_k) for o in positives if o.truth) / len(positives))
        if positives else None,
        "r_at_k": [recall_at_k(ranks, k) for k in range(1, k_max + 1)] if positives else [],
        "detection_recall": gt_hits / gt_total if gt_total else None,
        "gt_boxes": gt_total,
        "f1": {
            "clip": clip.as_dict(),
            "frame": frame.as_dict() if frame.positives else None,
            "box": box.as_dict() if box.positives else None,
            "mean": sum(f1s) / len(f1s) if f1s else None,
        },
        "abstain_rate_normal": (sum(1 for o in positives if o.abstain) / len(positives)) if positives else None,
        "missing_product": {
            "clips": len(missing),
            "abstain": abstain.as_dict() if missing else None,
            "clip_f1_with_missing": with_missing.as_dict() if missing else None,
        },
        "latency_ms": {
            "median": _median([o.latency_ms for o in normal]),
            "p90": (sorted(o.latency_ms for o in normal)[int(0.9 * (len(normal) - 1))] if normal else None),
            "pipeline_median": _median([o.pipeline_ms for o in normal]),
        },
    }


def threshold_sweep(outcomes: Sequence[ClipOutcome], points: int = 101) -> list[dict[str, float]]:
    """Clip F1 with abstaining (normal + missing passes) and the abstain rates, for thresholds spread
    evenly over the observed top scores."""
    scores = [o.top_score for o in outcomes if o.top_score is not None]
    if not scores:
        return []
    low, high = min(scores), max(scores)
    steps = max(points - 1, 1)
    thresholds = sorted({low + (high - low) * i / steps for i in range(steps + 1)} | {high + 1e-6})
    normal = [o for o in outcomes if not o.missing]
    missing = [o for o in outcomes if o.missing]
    positives = [o for o in normal if o.positive]
    rows = []
    for t in thresholds:
        abstain = abstain_prf(normal, missing, t)
        rows.append({
            "threshold": t,
            "clip_f1": clip_prf(normal + missing, t).f1,
            "clip_f1_normal": clip_prf(normal, t).f1,
            "abstain_recall": abstain.recall if missing else 0.0,
            "abstain_precision": abstain.precision if missing else 0.0,
            "abstain_rate_normal": (sum(1 for o in positives if not answered(o, t)) / len(positives))
            if positives else 0.0,
        })
    return rows


DEFINITIONS: dict[str, str] = {
    "r@k": "share of positive clips (normal pass, true product indexed) whose true product is in the top k",
    "map": "mean AP@K (K = the requested top_k); one true product per clip, so AP = 1/rank of the true "
           "product within the top K (0 when absent): mAP is the mean reciprocal rank within the top K",
    "detection_recall": "share of ground-truth product boxes overlapped at IoU >= 0.5 by any returned box",
    "answered": "not abstained: the service's abstain flag (tables) or top score >= threshold (sweep)",
    "clip_f1": "tp = answered positive clips with the right top product; precision = tp / answered clips; "
               "recall = tp / positive clips",
    "evidence_box": "of a frame's returned boxes whose best match is the product, the most similar",
    "frame_f1": "positives = frames of positive clips with a GT box of the true product; predictions = frames "
                "of answered clips with an evidence box for the top product; tp = those of positive clips "
                "with the right top product whose evidence box has IoU > 0.5 with a GT box of it",
    "box_f1": "positives = GT boxes of catalogue products (positive clips); predictions = in answered clips, "
              "every returned box whose best match is the top product; one-to-one greedy matching per frame "
              "(highest similarity first) to GT boxes of that product at IoU > 0.5",
    "mean_f1": "mean of the clip, frame and box F1 that are defined (frame/box need GT boxes)",
    "missing_product": "a seeded share of each stream's products is held out; their clips are re-run against "
                       "an index without those products (removed from the index, not filtered). Abstain "
                       "recall = held-out clips abstained / held-out clips; precision = held-out clips "
                       "abstained / (that + positive normal clips abstained); clip_f1_with_missing = clip F1 "
                       "over the normal and held-out passes together (held-out clips are negatives)",
    "abstain_rate_normal": "share of positive normal-pass clips on which the service abstained",
    "latency": "median wall time per clip around the identify call (in process: the routes' request path, "
               "service.identify.identify, + response shaping; HTTP: the POST round trip incl. base64); "
               "pipeline_median: the service's own timings_ms.total",
}
