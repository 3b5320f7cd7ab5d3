"""YOLOX-Nano (COCO) detector: letterbox → ONNX Runtime → grid decode → per-class NMS, all in numpy.

I/O contract (../shared/models/README.md): input `images` float32 [N, 3, 416, 416], BGR, 0–255, image
at the top-left of a 114-grey canvas; output [N, 3549, 85] = (cx, cy, w, h, objectness, 80 class
scores) per grid cell over strides 8/16/32, scores already sigmoid-activated. The published export
has N fixed at 1; `make models` rewrites it to a dynamic N (training/detector_graph.py). A file with a
fixed batch still works here, one image per run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from models.coco import COCO_CLASSES
from models.sessions import Session
from models.types import Detection, box_ious
from watchbuy.settings import Settings

INPUT_SIZE = 416
STRIDES = (8, 16, 32)
PAD_VALUE = 114


@dataclass(frozen=True, slots=True)
class DetectorConfig:
    classes: tuple[str, ...]
    score_threshold: float = 0.3
    nms_iou: float = 0.45
    max_detections: int = 10

    @classmethod
    def from_settings(cls, settings: Settings) -> DetectorConfig:
        return cls(
            classes=tuple(settings.detector_classes),
            score_threshold=settings.detector_score_threshold,
            nms_iou=settings.detector_nms_iou,
            max_detections=settings.max_detections,
        )


def letterbox(image_rgb: np.ndarray, size: int = INPUT_SIZE) -> tuple[np.ndarray, float]:
    """RGB HxWx3 uint8 → (float32 [1, 3, size, size] BGR tensor, scale applied to the image)."""
    h, w = image_rgb.shape[:2]
    scale = min(size / h, size / w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    resized = cv2.resize(image_rgb, (nw, nh), interpolation=cv2.INTER_LINEAR)
    canvas = np.full((size, size, 3), PAD_VALUE, dtype=np.uint8)
    canvas[:nh, :nw] = resized[:, :, ::-1]  # RGB → BGR
    return canvas.transpose(2, 0, 1)[None].astype(np.float32), scale


def _grids(size: int = INPUT_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """Per-cell (x, y) grid offsets and strides in the output's cell order."""
    grids, strides = [], []
    for stride in STRIDES:
        n = size // stride
        ys, xs = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
        grids.append(np.stack([xs, ys], axis=-1).reshape(-1, 2))
        strides.append(np.full((n * n, 1), stride))
    return np.concatenate(grids).astype(np.float32), np.concatenate(strides).astype(np.float32)


_GRID, _STRIDE = _grids()


def decode(raw: np.ndarray, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """Raw [3549, 85] output → (xyxy boxes in original pixels [n, 4], class scores [n, 80])."""
    xy = (raw[:, :2] + _GRID) * _STRIDE
    wh = np.exp(np.minimum(raw[:, 2:4], 10.0)) * _STRIDE
    boxes = np.concatenate([xy - wh / 2, xy + wh / 2], axis=1) / scale
    scores = raw[:, 4:5] * raw[:, 5:]
    return boxes, scores


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> list[int]:
    """Greedy non-maximum suppression; returns kept indices, best score first."""
    order = np.argsort(-scores, kind="stable")
    keep: list[int] = []
    while order.size:
        i = int(order[0])
        keep.append(i)
        rest = order[1:]
        order = rest[box_ious(tuple(boxes[i]), boxes[rest]) <= iou_threshold]
    return keep


class Detector:
    """COCO detections restricted to a class whitelist, boxes clipped to the image."""

    def __init__(self, session: Session, config: DetectorConfig, max_batch: int = 2) -> None:
        unknown = set(config.classes) - set(COCO_CLASSES)
        if unknown:
            raise ValueError(f"unknown detector classes: {sorted(unknown)}")
        self.session = session
        self.config = config
        self._class_ids = np.array(sorted(COCO_CLASSES.index(c) for c in config.classes), dtype=np.int64)
        self._max_batch = max_batch

    @property
    def max_batch(self) -> int:
        """Images per run: the file's fixed batch (1 in the published export), else `max_batch`.

        2 by default: on the 2-core CPU box the time per image is flat from 1 to 2 and grows beyond.
        """
        batch_dim = self.session.inputs[0].shape[0]
        return batch_dim if isinstance(batch_dim, int) and batch_dim > 0 else self._max_batch

    def detect(self, image_rgb: np.ndarray) -> list[Detection]:
        return self.detect_many([image_rgb])[0]

    def detect_many(self, images: Sequence[np.ndarray]) -> list[list[Detection]]:
        """Detections per image; the images run `max_batch` at a time (each row as if run alone)."""
        found: list[list[Detection]] = []
        size = self.max_batch
        for start in range(0, len(images), size):
            chunk = images[start : start + size]
            boxed = [letterbox(image) for image in chunk]
            tensor = np.concatenate([t for t, _ in boxed])
            raw = self.session.run({self.session.input_name: tensor})[0]
            found.extend(
                self.postprocess(raw[i], scale, image.shape[1], image.shape[0])
                for i, (image, (_, scale)) in enumerate(zip(chunk, boxed, strict=True))
            )
        return found

    def postprocess(self, raw: np.ndarray, scale: float, width: int, height: int) -> list[Detection]:
        boxes, scores = decode(raw, scale)
        scores = scores[:, self._class_ids]
        cell, col = np.nonzero(scores >= self.config.score_threshold)
        if cell.size == 0:
            return []
        cand_boxes = boxes[cell]
        cand_scores = scores[cell, col]
        cand_cls = self._class_ids[col]
        # Per-class NMS in one pass: shift each class's boxes to a disjoint region.
        offsets = cand_cls[:, None].astype(np.float32) * (max(width, height) + 1.0) * 4
        keep = nms(cand_boxes + offsets, cand_scores, self.config.nms_iou)[: self.config.max_detections]
        detections = []
        for i in keep:
            x1, y1, x2, y2 = np.clip(cand_boxes[i], 0, [width, height, width, height])
            if x2 - x1 < 2 or y2 - y1 < 2:
                continue
            detections.append(
                Detection(
                    box=(float(x1), float(y1), float(x2), float(y2)),
                    label=COCO_CLASSES[int(cand_cls[i])],
                    score=float(cand_scores[i]),
                )
            )
        return detections
