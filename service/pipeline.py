"""The identify flow over decoded frames: detect → propose → embed → search → aggregate, with stage timings.

This is the one implementation behind both routes (through service/identify.py), the evaluator, the
benchmarks, the cohort builder and the GPU check. The image models are called through a `ModelCalls`
(service/calls.py: directly, or through the batchers shared by concurrent requests); the CPU work after
them (text, search, evidence) runs in a worker thread of the service's limiter. The answer is ranked over
a `RequestWindow` (service/sessions.py): the request alone, or a viewer session's recent requests, and
the abstain decision is made once, on that ranking. Everything read here is shared read-only (ONNX
Runtime sessions and FAISS CPU indexes are safe for concurrent reads).
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import anyio
import numpy as np

from indexer.store import StreamIndex
from models.embedder import crop
from models.loader import Models
from models.proposals import ProposalConfig, propose
from models.reuse import ReuseConfig, plan_reuse
from models.types import Detection
from service.aggregate import (
    AbstainThresholds,
    ProductScores,
    box_matches,
    frame_scores,
    rank_products,
    score_products,
    should_abstain,
    text_bonus,
)
from service.calls import ModelCalls
from service.search import search
from service.sessions import Alone, RequestWindow
from service.values import BoxEvidence, CropCounts, DecodedFrame, FrameEvidence, Identification
from watchbuy.settings import Settings

STAGES = ("decode", "detect", "embed", "search", "aggregate")


@dataclass(frozen=True, slots=True)
class PipelineConfig:
    neighbours_per_box: int = 20
    matches_per_box: int = 3
    abstain: AbstainThresholds = field(default_factory=AbstainThresholds)
    text_weight: float = 0.0
    frame_pool: int = 3
    hubness_weight: float = 0.0
    proposal_weights: Mapping[str, float] = field(default_factory=dict)
    proposals: ProposalConfig = field(default_factory=ProposalConfig)
    reuse: ReuseConfig = field(default_factory=ReuseConfig)

    @classmethod
    def from_settings(cls, settings: Settings) -> PipelineConfig:
        return cls(
            neighbours_per_box=settings.neighbours_per_box,
            matches_per_box=settings.matches_per_box,
            abstain=AbstainThresholds.from_settings(settings),
            text_weight=settings.text_weight,
            frame_pool=settings.frame_pool,
            hubness_weight=settings.hubness_weight,
            proposal_weights=settings.proposal_weights,
            proposals=ProposalConfig.from_settings(settings),
            reuse=ReuseConfig.from_settings(settings),
        )


class StageTimer:
    """Milliseconds per pipeline stage; `finish` records the total since the timer was made."""

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.ms: dict[str, float] = {}

    def finish(self) -> dict[str, float]:
        self.ms["total"] = (time.perf_counter() - self.started) * 1000
        return self.ms

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.ms[name] = self.ms.get(name, 0.0) + (time.perf_counter() - started) * 1000


@dataclass(frozen=True, slots=True)
class Proposals:
    """Each frame's proposals, and one embedding row per proposal in frame order."""

    boxes: tuple[tuple[Detection, ...], ...]
    vectors: np.ndarray
    crops: CropCounts = CropCounts()


class Pipeline:
    def __init__(self, models: Models, config: PipelineConfig, limiter: anyio.CapacityLimiter) -> None:
        self.models = models
        self.config = config
        self.limiter = limiter

    async def identify(
        self,
        frames: Sequence[DecodedFrame],
        index: StreamIndex,
        calls: ModelCalls,
        *,
        top_k: int,
        asr_text: str | None = None,
        window: RequestWindow | None = None,
        timer: StageTimer | None = None,
    ) -> Identification:
        """The ranked products, box-level evidence and the abstain decision for `frames` against `index`."""
        timer = timer or StageTimer()
        proposals = await self.propose_and_embed(frames, calls, timer)
        evidence, scores = await anyio.to_thread.run_sync(
            self._score, frames, proposals, index, asr_text, timer, limiter=self.limiter
        )
        with timer.stage("aggregate"):
            ranked_over = await (window or Alone("disabled")).window(scores)
            products = rank_products(ranked_over.entries, index.titles, top_k, scores.frames)
            threshold = self.config.abstain.for_index(index).value
            abstain = should_abstain(products, threshold)
        return Identification(
            stream_id=index.stream_id,
            index_version=index.version,
            abstain=abstain,
            abstain_threshold=threshold,
            products=tuple(products),
            frames=evidence,
            timings_ms=timer.finish(),
            smoothing=ranked_over.smoothing,
            crops=proposals.crops,
        )

    async def propose_and_embed(
        self, frames: Sequence[DecodedFrame], calls: ModelCalls, timer: StageTimer | None = None
    ) -> Proposals:
        """Detect and propose boxes in each frame, and embed them (a crop that repeats another takes its vector)."""
        timer = timer or StageTimer()
        with timer.stage("detect"):
            detections = await calls.detect([f.image for f in frames])
            config = self.config.proposals
            boxes = tuple(
                tuple(propose(found, f.width, f.height, config)) for f, found in zip(frames, detections, strict=True)
            )
        with timer.stage("embed"):
            crops = [crop(f.image, p.box) for f, props in zip(frames, boxes, strict=True) for p in props]
            plan = await anyio.to_thread.run_sync(
                plan_reuse, [p.box for props in boxes for p in props], crops, self.config.reuse, limiter=self.limiter
            )
            vectors = plan.expand(await calls.embed([crops[i] for i in plan.embed]))
        return Proposals(boxes, vectors, CropCounts(embedded=len(plan.embed), reused=plan.reused))

    def _score(
        self,
        frames: Sequence[DecodedFrame],
        proposals: Proposals,
        index: StreamIndex,
        asr_text: str | None,
        timer: StageTimer,
    ) -> tuple[tuple[FrameEvidence, ...], ProductScores]:
        """The CPU work after the image models: one search for all boxes, the evidence, product scores."""
        with timer.stage("embed"):
            bonus = self._text_bonus(index, asr_text)
        with timer.stage("search"):
            sims, rows = search(index, proposals.vectors, self.config.neighbours_per_box, self.config.hubness_weight)
        with timer.stage("aggregate"):
            evidence, per_frame, start = [], [], 0
            for frame, props in zip(frames, proposals.boxes, strict=True):
                stop = start + len(props)
                boxes = tuple(
                    BoxEvidence(p, box_matches(index, rows[i], sims[i], self.config.matches_per_box))
                    for i, p in zip(range(start, stop), props, strict=True)
                )
                evidence.append(FrameEvidence(frame.frame_index, frame.width, frame.height, boxes))
                weights = np.array([self.config.proposal_weights.get(p.label, 1.0) for p in props], dtype=np.float32)
                per_frame.append(frame_scores(index, rows[start:stop], sims[start:stop], weights))
                start = stop
            frame_ids = [frame.frame_index for frame in frames]
            return tuple(evidence), score_products(per_frame, bonus, self.config.frame_pool, frame_ids)

    def _text_bonus(self, index: StreamIndex, asr_text: str | None) -> dict[str, float]:
        """Per-product score shift from the host's speech; empty without speech, titles or encoder."""
        if not asr_text or not asr_text.strip() or index.text is None or self.models.text is None:
            return {}
        if self.config.text_weight == 0:
            return {}
        speech = self.models.text.encode([asr_text])[0]
        return text_bonus(index.text, speech, self.config.text_weight)
