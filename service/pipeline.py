"""The /identify flow: decode → detect → propose → embed → search (service/search.py) → aggregate.

`identify` runs it synchronously in one worker thread, calling the models directly (the evaluator, and
the service with WATCHBUY_BATCHING=false). `identify_batched` runs the same steps for concurrent
requests: decoding, search and aggregation in worker threads, the detector and embedder calls through
the shared batchers (service/batching.py), which put several requests into one model call. Both only
read shared objects (ONNX Runtime sessions and FAISS CPU indexes are safe for concurrent reads).
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
from models.types import Detection
from service.aggregate import (
    AbstainThresholds,
    BoxEvidence,
    RankedProduct,
    box_matches,
    frame_scores,
    rank_products,
    should_abstain,
    text_bonus,
)
from service.batching import ModelBatchers
from service.decode import DecodedFrame, decode_image
from service.request_parsing import EncodedFrame
from service.search import search

STAGES = ("decode", "detect", "embed", "search", "aggregate")


@dataclass(frozen=True, slots=True)
class PipelineConfig:
    max_image_pixels: int
    neighbours_per_box: int = 20
    matches_per_box: int = 3
    abstain: AbstainThresholds = field(default_factory=lambda: AbstainThresholds(0.5))
    text_weight: float = 0.0
    hubness_weight: float = 0.0
    proposal_weights: Mapping[str, float] = field(default_factory=dict)
    proposals: ProposalConfig = field(default_factory=ProposalConfig)


@dataclass(frozen=True, slots=True)
class FrameEvidence:
    frame_index: int
    width: int
    height: int
    boxes: tuple[BoxEvidence, ...]


@dataclass(frozen=True, slots=True)
class Identification:
    stream_id: str
    index_version: str
    abstain: bool
    products: tuple[RankedProduct, ...]
    frames: tuple[FrameEvidence, ...]
    timings_ms: dict[str, float]

    @property
    def n_boxes(self) -> int:
        return sum(len(f.boxes) for f in self.frames)


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


class Pipeline:
    def __init__(self, models: Models, config: PipelineConfig) -> None:
        self.models = models
        self.config = config

    def decode(self, frames: Sequence[EncodedFrame]) -> list[DecodedFrame]:
        return [DecodedFrame(f.frame_index, decode_image(f.data, self.config.max_image_pixels)) for f in frames]

    def identify(
        self, frames: Sequence[EncodedFrame], index: StreamIndex, top_k: int, asr_text: str | None = None
    ) -> Identification:
        timer = StageTimer()
        with timer.stage("decode"):
            decoded = self.decode(frames)
        return self.identify_decoded(decoded, index, top_k, asr_text, timer)

    def identify_decoded(
        self,
        decoded: Sequence[DecodedFrame],
        index: StreamIndex,
        top_k: int,
        asr_text: str | None = None,
        timer: StageTimer | None = None,
    ) -> Identification:
        """The flow after decoding, for frames decoded elsewhere (video); `timer` carries the decode."""
        timer = timer or StageTimer()
        proposals, vectors = self.embed_proposals(decoded, timer)
        return self.search_and_aggregate(decoded, proposals, vectors, index, top_k, asr_text, timer)

    def embed_proposals(
        self, decoded: Sequence[DecodedFrame], timer: StageTimer | None = None
    ) -> tuple[list[list[Detection]], np.ndarray]:
        """Detect and propose boxes in each frame, and embed them: one row of vectors per proposal, in order."""
        timer = timer or StageTimer()
        with timer.stage("detect"):
            proposals = self._proposals(decoded, self.models.detector.detect_many([f.image for f in decoded]))
        with timer.stage("embed"):
            vectors = self.models.embedder.embed(self._crops(decoded, proposals))
        return proposals, vectors

    async def identify_batched(
        self,
        frames: Sequence[EncodedFrame],
        index: StreamIndex,
        top_k: int,
        batchers: ModelBatchers,
        limiter: anyio.CapacityLimiter,
        asr_text: str | None = None,
    ) -> Identification:
        """`identify` for concurrent requests: model calls shared with other requests (raises Overloaded)."""
        timer = StageTimer()
        batchers.ensure_room(len(frames))  # refuse (429) before decoding when a model's queue is full
        with timer.stage("decode"):
            decoded = await anyio.to_thread.run_sync(self.decode, frames, limiter=limiter)
        return await self.identify_decoded_batched(decoded, index, top_k, batchers, limiter, asr_text, timer)

    async def identify_decoded_batched(
        self,
        decoded: Sequence[DecodedFrame],
        index: StreamIndex,
        top_k: int,
        batchers: ModelBatchers,
        limiter: anyio.CapacityLimiter,
        asr_text: str | None = None,
        timer: StageTimer | None = None,
    ) -> Identification:
        """`identify_decoded` with the model calls through the batchers (queue wait counts in the stage)."""
        timer = timer or StageTimer()
        with timer.stage("detect"):
            proposals = self._proposals(decoded, await batchers.detector.submit([f.image for f in decoded]))
        with timer.stage("embed"):
            vectors = await batchers.embedder.submit(self._crops(decoded, proposals))
        return await anyio.to_thread.run_sync(
            self.search_and_aggregate, decoded, proposals, vectors, index, top_k, asr_text, timer, limiter=limiter,
        )

    def _proposals(
        self, decoded: Sequence[DecodedFrame], detections: Sequence[Sequence[Detection]]
    ) -> list[list[Detection]]:
        config = self.config.proposals
        return [propose(found, f.width, f.height, config) for f, found in zip(decoded, detections)]

    @staticmethod
    def _crops(decoded: Sequence[DecodedFrame], proposals: Sequence[Sequence[Detection]]) -> list[np.ndarray]:
        return [crop(f.image, p.box) for f, props in zip(decoded, proposals) for p in props]

    def search_and_aggregate(
        self,
        decoded: Sequence[DecodedFrame],
        proposals: Sequence[Sequence[Detection]],
        vectors: np.ndarray,
        index: StreamIndex,
        top_k: int,
        asr_text: str | None,
        timer: StageTimer,
    ) -> Identification:
        """The flow after the image models, shared by both ways of calling them: one search for all boxes."""
        with timer.stage("embed"):
            bonus = self._text_bonus(index, asr_text)
        with timer.stage("search"):
            sims, rows = search(index, vectors, self.config.neighbours_per_box, self.config.hubness_weight)
        with timer.stage("aggregate"):
            evidence, per_frame = self._evidence(decoded, proposals, index, rows, sims)
            products = rank_products(index, per_frame, top_k, bonus)
            abstain = should_abstain(products, self.config.abstain.for_stream(index.stream_id))
        return Identification(
            stream_id=index.stream_id,
            index_version=index.version,
            abstain=abstain,
            products=tuple(products),
            frames=tuple(evidence),
            timings_ms=timer.finish(),
        )

    def _text_bonus(self, index: StreamIndex, asr_text: str | None) -> dict[str, float]:
        """Per-product score shift from the host's speech; empty without speech, titles or encoder."""
        if not asr_text or not asr_text.strip() or index.text is None or self.models.text is None:
            return {}
        if self.config.text_weight == 0:
            return {}
        speech = self.models.text.encode([asr_text])[0]
        return text_bonus(index.text, speech, self.config.text_weight)

    def _evidence(
        self,
        decoded: Sequence[DecodedFrame],
        proposals: Sequence[Sequence[Detection]],
        index: StreamIndex,
        rows: np.ndarray,
        sims: np.ndarray,
    ) -> tuple[list[FrameEvidence], list[tuple[dict[str, float], float]]]:
        evidence, per_frame, start = [], [], 0
        for frame, props in zip(decoded, proposals):
            stop = start + len(props)
            boxes = tuple(
                BoxEvidence(p, box_matches(index, rows[i], sims[i], self.config.matches_per_box))
                for i, p in zip(range(start, stop), props)
            )
            evidence.append(FrameEvidence(frame.frame_index, frame.width, frame.height, boxes))
            weights = np.array([self.config.proposal_weights.get(p.label, 1.0) for p in props], dtype=np.float32)
            per_frame.append(frame_scores(index, rows[start:stop], sims[start:stop], weights))
            start = stop
        return evidence, per_frame
