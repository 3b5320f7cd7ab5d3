"""Box-level neighbours → product scores → the ranking over a session window → the abstain decision.

Evidence is combined in steps: within a frame a product scores its best similarity over the frame's
boxes (the product is on screen once, in whichever box fits it best), each box's similarity scaled by a
prior for its label (a whole-person box matches many garments loosely, so it counts a little less; tuned
on viton-train and grocery-train); over frames a product scores the mean of its best `frame_pool` frames
(a frame where the product was not among any box's neighbours counts with that frame's lowest retrieved
similarity). A product needs that many good frames to score high, so one chance match does not win, and
a score means the same for 1 frame and for 32 of which most do not show the product (a video).

When the request carries the host's speech (ASR text) and the index has title embeddings, each
product's score moves by `text_weight` × (how much better its title matches the speech than the
catalogue's average title does). Centring keeps the score on the visual scale the abstain threshold
was calibrated on; without ASR text nothing changes.

Last, products are ranked by their mean score over a window of requests: the request alone, or with a
viewer session the session's recent requests (service/sessions.py), a request that did not retrieve a
product counting with its floor — the rule used across frames, applied across requests. The abstain
decision is made once, on that ranking.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any, Literal, Protocol

import numpy as np

from indexer.store import StreamIndex, TitleVectors
from service.values import BoxMatch, RankedProduct
from watchbuy.settings import Settings

#: Products the speech alone may bring into the ranking (besides those the boxes retrieved).
TEXT_CANDIDATES = 5


def box_matches(index: StreamIndex, rows: np.ndarray, sims: np.ndarray, limit: int) -> tuple[BoxMatch, ...]:
    """The best neighbour of each distinct product among one box's neighbours, at most `limit`."""
    seen: set[str] = set()
    matches: list[BoxMatch] = []
    for row, sim in zip(rows.tolist(), sims.tolist(), strict=True):
        if row < 0:
            continue
        entry = index.entries[row]
        if entry.product_id in seen:
            continue
        seen.add(entry.product_id)
        matches.append(BoxMatch(entry.product_id, entry.image_id, entry.box, float(sim)))
        if len(matches) == limit:
            break
    return tuple(matches)


def frame_scores(
    index: StreamIndex, rows: np.ndarray, sims: np.ndarray, weights: np.ndarray
) -> tuple[dict[str, float], float]:
    """For one frame's boxes (rows/sims: [boxes, k]; weights: [boxes], the label priors):
    best weighted similarity per product, and the frame's floor."""
    sims = sims * weights[:, None]
    best: dict[str, float] = {}
    for row, sim in zip(rows.ravel().tolist(), sims.ravel().tolist(), strict=True):
        if row < 0:
            continue
        pid = index.entries[row].product_id
        if sim > best.get(pid, -np.inf):
            best[pid] = sim
    valid = sims[rows >= 0]
    floor = float(valid.min()) if valid.size else 0.0
    return best, floor


def text_bonus(titles: TitleVectors, speech: np.ndarray, weight: float) -> dict[str, float]:
    """weight × (title-to-speech cosine − its mean over the catalogue's titles), per titled product."""
    if weight == 0 or len(titles.product_ids) == 0:
        return {}
    sims = titles.vectors @ speech.astype(np.float32).ravel()
    return dict(zip(titles.product_ids, (weight * (sims - sims.mean())).tolist(), strict=True))


@dataclass(frozen=True, slots=True)
class ProductScores:
    """One request's score per product, the score a product it did not retrieve counts with, and the frames
    (their indices, best first) that each product's score pooled."""

    scores: dict[str, float]
    floor: float
    frames: dict[str, tuple[int, ...]] = field(default_factory=dict)


class Scored(Protocol):
    """A request's scores as a window entry: `ProductScores`, or a session's stored request."""

    @property
    def scores(self) -> Mapping[str, float]: ...

    @property
    def floor(self) -> float: ...


def score_products(
    per_frame: Sequence[tuple[dict[str, float], float]],
    bonus: Mapping[str, float] | None = None,
    frame_pool: int = 0,
    frame_ids: Sequence[int] | None = None,
) -> ProductScores:
    """Each product's mean per-frame score over its best `frame_pool` frames (0: over all frames), plus its
    text bonus; `frame_ids` name the frames (default 0, 1, …) in `ProductScores.frames`."""
    if not per_frame:
        return ProductScores({}, 0.0)
    bonus = bonus or {}
    ids = list(frame_ids) if frame_ids is not None else list(range(len(per_frame)))
    pool = min(frame_pool, len(per_frame)) if frame_pool > 0 else len(per_frame)
    candidates = set().union(*(scores for scores, _ in per_frame))
    candidates |= set(sorted(bonus, key=lambda pid: -bonus[pid])[:TEXT_CANDIDATES])
    totals: dict[str, float] = {}
    frames: dict[str, tuple[int, ...]] = {}
    for pid in candidates:
        seen = [(scores.get(pid, floor), pid in scores, i) for (scores, floor), i in zip(per_frame, ids, strict=True)]
        ranked = sorted(seen, key=lambda item: -item[0])[:pool]
        totals[pid] = sum(score for score, _, _ in ranked) / pool + bonus.get(pid, 0.0)
        frames[pid] = tuple(frame for _, matched, frame in ranked if matched)
    return ProductScores(totals, min(totals.values(), default=0.0), frames)


def window_means(window: Sequence[Scored], titles: Mapping[str, str]) -> list[tuple[str, float]]:
    """Mean score per product over the window's requests (absent → that request's floor), best first.

    Only products in `titles` (the stream's current index) are ranked.
    """
    if not window:
        return []
    candidates = {pid for entry in window for pid in entry.scores if pid in titles}
    means = {pid: sum(entry.scores.get(pid, entry.floor) for entry in window) / len(window) for pid in candidates}
    return sorted(means.items(), key=lambda item: (-item[1], item[0]))


def rank_products(
    window: Sequence[Scored],
    titles: Mapping[str, str],
    top_k: int,
    frames: Mapping[str, tuple[int, ...]] | None = None,
) -> list[RankedProduct]:
    """The `top_k` best products over the window, with their titles and this request's evidence frames."""
    frames = frames or {}
    return [
        RankedProduct(pid, float(score), titles[pid], frames.get(pid, ()))
        for pid, score in window_means(window, titles)[:top_k]
    ]


#: Where a stream's threshold comes from: a per-stream override pattern, the calibration stored with its
#: index (service/calibration.py), or the default setting.
ThresholdSource = Literal["override", "catalogue", "default"]


@dataclass(frozen=True, slots=True)
class AbstainThreshold:
    value: float
    source: ThresholdSource


@dataclass(frozen=True, slots=True)
class AbstainThresholds:
    """The abstain threshold of a stream, first found of: an override pattern matching its id, the
    threshold calibrated for its catalogue at index build (when the build calibrated one), the default.
    """

    default: float = 0.43
    overrides: tuple[tuple[str, float], ...] = ()

    @classmethod
    def from_settings(cls, settings: Settings) -> AbstainThresholds:
        return cls(settings.abstain_threshold, tuple(settings.abstain_threshold_overrides.items()))

    def for_stream(self, stream_id: str, manifest: Mapping[str, Any]) -> AbstainThreshold:
        """The threshold for `stream_id`, whose current index version has `manifest`."""
        for pattern, threshold in self.overrides:
            if fnmatchcase(stream_id, pattern):
                return AbstainThreshold(threshold, "override")
        calibrated = calibrated_threshold(manifest)
        if calibrated is not None:
            return AbstainThreshold(calibrated, "catalogue")
        return AbstainThreshold(self.default, "default")

    def for_index(self, index: StreamIndex) -> AbstainThreshold:
        return self.for_stream(index.stream_id, index.manifest)


def calibrated_threshold(manifest: Mapping[str, Any]) -> float | None:
    """The threshold the index build calibrated and stored in the manifest, if any."""
    calibration = manifest.get("calibration")
    value = calibration.get("threshold") if isinstance(calibration, Mapping) else None
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def should_abstain(products: Sequence[RankedProduct], threshold: float) -> bool:
    """True when nothing in the catalogue is similar enough to be the product on screen."""
    return not products or products[0].score < threshold
