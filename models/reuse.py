"""Embed each distinct crop once: a box that is nearly the same region of a nearly unchanged frame reuses
the embedding of the crop it repeats.

Frames of one clip or stream are mostly the same scene: the centred boxes of a static shot, the host standing
still. A crop repeats an earlier one (of the same frame or an earlier frame of the request) when their boxes
overlap by at least `iou` and their pixels, shrunk to a THUMB×THUMB grey thumbnail, differ by at most
`max_diff` grey levels on average. Shrinking the crop costs well under a millisecond; embedding it about 20–40
ms on the development machine's CPU.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from models.types import Box, box_ious
from watchbuy.settings import Settings

THUMB = 16


@dataclass(frozen=True, slots=True)
class ReuseConfig:
    """When a crop repeats an earlier one. `enabled=False` embeds every crop."""

    enabled: bool = True
    iou: float = 0.9
    max_diff: float = 4.0

    @classmethod
    def from_settings(cls, settings: Settings) -> ReuseConfig:
        return cls(settings.reuse_crops, settings.reuse_iou, settings.reuse_max_diff)


@dataclass(frozen=True, slots=True)
class ReusePlan:
    """Which crops to embed, and for every crop the position (in `embed`) of the embedding it takes."""

    embed: tuple[int, ...]
    source: tuple[int, ...]

    @property
    def reused(self) -> int:
        return len(self.source) - len(self.embed)

    def expand(self, vectors: np.ndarray) -> np.ndarray:
        """One row per crop from the rows of the embedded crops."""
        return np.ascontiguousarray(vectors[list(self.source)]) if self.reused else vectors


def thumbnail(patch: np.ndarray) -> np.ndarray:
    """The crop as a THUMB×THUMB grey float image (area-averaged: robust to noise and compression)."""
    grey = cv2.cvtColor(patch, cv2.COLOR_RGB2GRAY) if patch.ndim == 3 else patch
    return cv2.resize(grey, (THUMB, THUMB), interpolation=cv2.INTER_AREA).astype(np.float32)


def plan_reuse(boxes: Sequence[Box], crops: Sequence[np.ndarray], config: ReuseConfig = ReuseConfig()) -> ReusePlan:
    """Crops in request order (frame by frame); each one that repeats an embedded crop takes its embedding."""
    if not config.enabled or len(crops) < 2:
        return ReusePlan(tuple(range(len(crops))), tuple(range(len(crops))))
    embed: list[int] = []
    source: list[int] = []
    kept_boxes = np.empty((len(crops), 4), dtype=np.float64)  # rows [:len(embed)]: the embedded crops'
    kept_thumbs = np.empty((len(crops), THUMB, THUMB), dtype=np.float32)
    for i, (box, patch) in enumerate(zip(boxes, crops, strict=True)):
        thumb = thumbnail(patch)
        match = -1
        close = np.flatnonzero(box_ious(box, kept_boxes[: len(embed)]) >= config.iou)
        if close.size:
            diffs = np.abs(kept_thumbs[close] - thumb).mean(axis=(1, 2))
            best = int(np.argmin(diffs))
            if diffs[best] <= config.max_diff:
                match = int(close[best])
        if match < 0:
            match = len(embed)
            kept_boxes[match], kept_thumbs[match] = box, thumb
            embed.append(i)
        source.append(match)
    return ReusePlan(tuple(embed), tuple(source))
