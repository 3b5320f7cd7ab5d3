"""Values passed between the model stages. Boxes are [x1, y1, x2, y2] in pixels of the original image."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

Box = tuple[float, float, float, float]


@dataclass(frozen=True, slots=True)
class Detection:
    """One detector output (or one proposal derived from it)."""

    box: Box
    label: str
    score: float


def box_area(box: Box) -> float:
    return max(0.0, box[2] - box[0]) * max(0.0, box[3] - box[1])


def box_iou(a: Box, b: Box) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = box_area(a) + box_area(b) - inter
    return inter / union if union > 0 else 0.0


def box_ious(box: Box, boxes: np.ndarray) -> np.ndarray:
    """IoU of `box` with each row of `boxes` [n, 4] (vectorised `box_iou`; an empty union counts as 1e-9)."""
    inter = np.maximum(0, np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0])) * np.maximum(
        0, np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1])
    )
    areas = np.maximum(0, boxes[:, 2] - boxes[:, 0]) * np.maximum(0, boxes[:, 3] - boxes[:, 1])
    result: np.ndarray = inter / np.maximum(box_area(box) + areas - inter, 1e-9)
    return result


def clip_box(box: Box, width: int, height: int) -> Box:
    return (
        min(max(box[0], 0.0), float(width)),
        min(max(box[1], 0.0), float(height)),
        min(max(box[2], 0.0), float(width)),
        min(max(box[3], 0.0), float(height)),
    )
