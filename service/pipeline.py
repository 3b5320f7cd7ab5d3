"""The /identify flow as one synchronous function: decode → detect → propose → embed → search → aggregate.

It runs in a worker thread (CPU work never blocks the event loop) and only reads shared objects
(ONNX Runtime sessions and FAISS CPU indexes are safe for concurrent reads).
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator, Mapping, Sequence

import numpy as np

from indexer.store import StreamIndex
from models.embedder import crop
from models.loader import Models
from models.proposals import ProposalConfig, propose
from models.types import Detection
from service.aggregate import BoxEvidence, RankedProduct, box_matches, frame_scores, rank_products, should_abstain
from service.decode import DecodedFrame, decode_image
from service.request_parsing import EncodedFrame

STAGES = ("decode", "detect", "embed", "search", "aggregate")


@dataclass(frozen=True, slots=True)
class PipelineConfig:
    max_image_pixels: int
    neighbours_per_box: int = 20
    matches_per_box: int = 3
    abstain_threshold: float = 0.5
    proposal_weights: Mapping[str, float] = field(default_factory=dict)
    proposals: ProposalConfig = ProposalConfig()


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
    def __init__(self) -> None:
        self.ms: dict[str, float] = {}

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

    def identify(self, frames: Sequence[EncodedFrame], index: StreamIndex, top_k: int) -> Identification:
        timer = StageTimer()
        started = time.perf_counter()
        with timer.stage("decode"):
            decoded = self.decode(frames)
        with timer.stage("detect"):
            proposals = [
                propose(self.models.detector.detect(f.image), f.width, f.height, self.config.proposals)
                for f in decoded
            ]
        with timer.stage("embed"):
            crops = [crop(f.image, p.box) for f, props in zip(decoded, proposals) for p in props]
            vectors = self.models.embedder.embed(crops)
        with timer.stage("search"):
            k = min(self.config.neighbours_per_box, index.index.ntotal)
            sims, rows = index.index.search(vectors, k)
        with timer.stage("aggregate"):
            evidence, per_frame = self._evidence(decoded, proposals, index, rows, sims)
            products = rank_products(index, per_frame, top_k)
            abstain = should_abstain(products, self.config.abstain_threshold)
        timer.ms["total"] = (time.perf_counter() - started) * 1000
        return Identification(
            stream_id=index.stream_id,
            index_version=index.version,
            abstain=abstain,
            products=tuple(products),
            frames=tuple(evidence),
            timings_ms=timer.ms,
        )

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
