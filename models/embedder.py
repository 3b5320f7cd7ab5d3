"""Crops → L2-normalised embedding vectors, all crops of a call in one batched ONNX Runtime run.

The embedder ONNX takes float32 [N, 3, S, S] RGB normalised as (x - 127) / 128 and returns
L2-normalised [N, D] vectors (the normalisation is inside the graph).
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from models.sessions import Session
from models.types import Box

MEAN = 127.0
STD = 128.0
#: Names the crop preprocessing; indexes record it, and the service refuses an index built otherwise.
PREPROCESS = "pad-square-mean/v1"


def crop(image_rgb: np.ndarray, box: Box) -> np.ndarray:
    """The pixels of `box` (clipped to the image; at least 1×1)."""
    h, w = image_rgb.shape[:2]
    x1 = int(np.clip(np.floor(box[0]), 0, w - 1))
    y1 = int(np.clip(np.floor(box[1]), 0, h - 1))
    x2 = int(np.clip(np.ceil(box[2]), x1 + 1, w))
    y2 = int(np.clip(np.ceil(box[3]), y1 + 1, h))
    return image_rgb[y1:y2, x1:x2]


def pad_to_square(patch: np.ndarray) -> np.ndarray:
    """Centre the crop on a square canvas of the mean colour (0 after normalising), keeping its shape.

    Measured on viton-train/grocery-train crops: better top-1 than stretching the crop to a square.
    """
    h, w = patch.shape[:2]
    side = max(h, w)
    canvas = np.full((side, side, 3), MEAN, dtype=np.uint8)
    top, left = (side - h) // 2, (side - w) // 2
    canvas[top : top + h, left : left + w] = patch
    return canvas


def preprocess(crops: Sequence[np.ndarray], size: int) -> np.ndarray:
    """Pad each crop to a square, resize to size×size and normalise: float32 [N, 3, size, size]."""
    batch = np.empty((len(crops), size, size, 3), dtype=np.float32)
    for i, patch in enumerate(crops):
        square = pad_to_square(patch)
        shrink = square.shape[0] > size
        batch[i] = cv2.resize(square, (size, size), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    batch -= MEAN
    batch /= STD
    return batch.transpose(0, 3, 1, 2)


class Embedder:
    """A dynamic-batch embedding model; `max_batch` bounds the memory of one run."""

    def __init__(self, session: Session, max_batch: int = 64) -> None:
        self.session = session
        self.input_size = int(session.inputs[0].shape[2] or 0)
        self.dim = int(session.outputs[0].shape[1] or 0)
        self.max_batch = max_batch

    def embed(self, crops: Sequence[np.ndarray]) -> np.ndarray:
        """[len(crops), dim] float32, unit length rows; an empty input gives an empty [0, dim] array."""
        if not crops:
            return np.zeros((0, self.dim), dtype=np.float32)
        parts = []
        for start in range(0, len(crops), self.max_batch):
            batch = preprocess(crops[start : start + self.max_batch], self.input_size)
            parts.append(self.session.run({self.session.input_name: batch})[0])
        return np.ascontiguousarray(np.concatenate(parts).astype(np.float32, copy=False))
