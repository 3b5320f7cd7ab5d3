"""The values that cross the service's layers: frames as received and decoded, box evidence, the answer.

Frozen dataclasses, no behaviour beyond small derived properties. Boxes are `models.types.Box`
([x1, y1, x2, y2] in pixels of the original frame) and proposals are `models.types.Detection`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models.types import Box, Detection


@dataclass(frozen=True, slots=True)
class EncodedFrame:
    """One frame as received: still-encoded image bytes and its index."""

    frame_index: int
    data: bytes


@dataclass(frozen=True, slots=True)
class DecodedFrame:
    """One decoded frame: H×W×3 uint8 RGB pixels and the client's frame index."""

    frame_index: int
    image: np.ndarray

    @property
    def width(self) -> int:
        return int(self.image.shape[1])

    @property
    def height(self) -> int:
        return int(self.image.shape[0])


@dataclass(frozen=True, slots=True)
class DecodedImages:
    """A request's frames after decoding (what `/identify` decodes; a sampled video is the other kind)."""

    frames: tuple[DecodedFrame, ...]


@dataclass(frozen=True, slots=True)
class BoxMatch:
    """One catalogue box that a query box matched: the product, its image and box, the similarity."""

    product_id: str
    image_id: str
    image_box: Box
    similarity: float


@dataclass(frozen=True, slots=True)
class BoxEvidence:
    """A proposal (box, label, detector score) and its best matches, one per distinct product."""

    proposal: Detection
    matches: tuple[BoxMatch, ...]


@dataclass(frozen=True, slots=True)
class FrameEvidence:
    frame_index: int
    width: int
    height: int
    boxes: tuple[BoxEvidence, ...]


@dataclass(frozen=True, slots=True)
class RankedProduct:
    product_id: str
    score: float
    title: str
    frames: tuple[int, ...] = ()  # the request's frames (their indices) whose boxes matched it, best first


@dataclass(frozen=True, slots=True)
class Smoothing:
    """Whether the session window ranked the answer, over how many requests, and why not."""

    applied: bool
    window: int
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class CropCounts:
    """Crops of a request run through the embedder, and crops that took a repeated crop's embedding."""

    embedded: int = 0
    reused: int = 0


@dataclass(frozen=True, slots=True)
class Identification:
    """The answer to one identify request, before it is shaped into the response model."""

    stream_id: str
    index_version: str
    abstain: bool
    abstain_threshold: float  # the stream's threshold the decision was made under
    products: tuple[RankedProduct, ...]
    frames: tuple[FrameEvidence, ...]
    timings_ms: dict[str, float]
    smoothing: Smoothing
    crops: CropCounts = CropCounts()

    @property
    def n_boxes(self) -> int:
        return sum(len(f.boxes) for f in self.frames)


@dataclass(frozen=True, slots=True)
class IdentifyQuery:
    """What a caller asks about its frames, however they arrive (JSON, multipart, video, the evaluator)."""

    stream_id: str
    top_k: int
    asr_text: str | None = None
    session_id: str | None = None
