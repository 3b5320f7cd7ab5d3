"""YOLOX-Nano detector maths: letterbox, grid decode, NMS and postprocess."""

from __future__ import annotations

import math

import numpy as np
import pytest

from models.coco import COCO_CLASSES
from models.detector import INPUT_SIZE, PAD_VALUE, Detector, DetectorConfig, decode, letterbox, nms
from models.types import box_iou

N_CELLS = sum((INPUT_SIZE // s) ** 2 for s in (8, 16, 32))  # 3549


def cell_index(stride: int, gx: int, gy: int) -> int:
    """Row of the raw output for grid cell (gx, gy) of `stride` (cells of stride 8, then 16, then 32)."""
    offset = 0
    for s in (8, 16, 32):
        n = INPUT_SIZE // s
        if s == stride:
            return offset + gy * n + gx
        offset += n * n
    raise ValueError(stride)


def raw_row(raw: np.ndarray, row: int, cx_off: float, cy_off: float, log_w: float, log_h: float,
            objectness: float, class_scores: dict[str, float]) -> None:
    raw[row, :4] = (cx_off, cy_off, log_w, log_h)
    raw[row, 4] = objectness
    for name, score in class_scores.items():
        raw[row, 5 + COCO_CLASSES.index(name)] = score


def detector(classes: tuple[str, ...] = ("person", "bottle"), **kwargs: float) -> Detector:
    """A detector for postprocess maths only (postprocess never touches the session)."""
    return Detector(session=None, config=DetectorConfig(classes=classes, **kwargs))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("height", "width"), [(100, 200), (256, 192), (416, 416), (832, 624), (30, 10)]
)
def test_letterbox_scale_shape_and_top_left_placement(height: int, width: int) -> None:
    image = np.zeros((height, width, 3), dtype=np.uint8)
    image[..., 0], image[..., 1], image[..., 2] = 10, 20, 30  # R, G, B
    tensor, scale = letterbox(image)
    assert tensor.shape == (1, 3, INPUT_SIZE, INPUT_SIZE) and tensor.dtype == np.float32
    assert scale == pytest.approx(min(INPUT_SIZE / height, INPUT_SIZE / width))
    nh, nw = round(height * scale), round(width * scale)
    assert max(nh, nw) == INPUT_SIZE
    # Image at the top-left in BGR order, values 0-255 (no normalisation).
    assert np.all(tensor[0, 0, :nh, :nw] == 30)
    assert np.all(tensor[0, 1, :nh, :nw] == 20)
    assert np.all(tensor[0, 2, :nh, :nw] == 10)
    # Everything else is the 114 pad.
    assert np.all(tensor[0, :, nh:, :] == PAD_VALUE)
    assert np.all(tensor[0, :, :, nw:] == PAD_VALUE)


def test_letterbox_keeps_pixel_positions() -> None:
    """A bright square in the image lands at its position × scale in the tensor."""
    image = np.zeros((200, 100, 3), dtype=np.uint8)
    image[40:80, 20:60] = 255
    tensor, scale = letterbox(image)
    assert scale == pytest.approx(2.08)
    ys, xs = np.nonzero(tensor[0, 0] > 128)
    assert ys.min() == pytest.approx(40 * scale, abs=2) and ys.max() == pytest.approx(80 * scale, abs=2)
    assert xs.min() == pytest.approx(20 * scale, abs=2) and xs.max() == pytest.approx(60 * scale, abs=2)


@pytest.mark.parametrize("stride", [8, 16, 32])
def test_decode_one_crafted_cell(stride: int) -> None:
    raw = np.zeros((N_CELLS, 85), dtype=np.float32)
    gx, gy = 3, 5
    row = cell_index(stride, gx, gy)
    raw_row(raw, row, 0.5, 0.25, math.log(2.0), 0.0, 0.8, {"person": 0.5, "bottle": 0.25})
    scale = 2.0
    boxes, scores = decode(raw, scale)
    assert boxes.shape == (N_CELLS, 4) and scores.shape == (N_CELLS, 80)
    cx, cy = (gx + 0.5) * stride, (gy + 0.25) * stride
    w, h = 2.0 * stride, 1.0 * stride
    expected = np.array([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]) / scale
    np.testing.assert_allclose(boxes[row], expected, rtol=1e-5)
    assert scores[row, COCO_CLASSES.index("person")] == pytest.approx(0.4)
    assert scores[row, COCO_CLASSES.index("bottle")] == pytest.approx(0.2)
    assert scores[row, COCO_CLASSES.index("cup")] == 0.0


def test_postprocess_maps_a_crafted_cell_back_to_image_pixels() -> None:
    # A 832×624 (h×w) frame: scale 0.5; a stride-16 cell (10, 12) with a 4×8-cell box.
    raw = np.zeros((N_CELLS, 85), dtype=np.float32)
    row = cell_index(16, 10, 12)
    raw_row(raw, row, 0.0, 0.0, math.log(4.0), math.log(8.0), 0.9, {"person": 0.9})
    found = detector().postprocess(raw, 0.5, 624, 832)
    assert len(found) == 1
    (det,) = found
    assert det.label == "person" and det.score == pytest.approx(0.81)
    # centre (160, 192) in the 416 canvas, 64×128 → /0.5
    assert det.box == pytest.approx((256.0, 256.0, 384.0, 512.0))


def test_postprocess_threshold_whitelist_and_clipping() -> None:
    raw = np.zeros((N_CELLS, 85), dtype=np.float32)
    keep = cell_index(32, 0, 0)  # centred at (16, 16), 128 wide: overhangs the top-left corner
    raw_row(raw, keep, 0.5, 0.5, math.log(4.0), math.log(4.0), 1.0, {"bottle": 0.6})
    weak = cell_index(32, 10, 10)
    raw_row(raw, weak, 0.5, 0.5, 0.0, 0.0, 0.5, {"bottle": 0.5})  # 0.25 < 0.3
    other = cell_index(32, 6, 6)
    raw_row(raw, other, 0.5, 0.5, 0.0, 0.0, 1.0, {"cup": 0.9})  # not whitelisted
    found = detector().postprocess(raw, 1.0, 300, 200)
    assert [(d.label, round(d.score, 3)) for d in found] == [("bottle", 0.6)]
    assert found[0].box == pytest.approx((0.0, 0.0, 80.0, 80.0))


def test_nms_suppresses_overlaps_keeps_disjoint_best_first() -> None:
    boxes = np.array(
        [
            [0, 0, 100, 100],  # 0: score 0.6
            [5, 5, 105, 105],  # 1: overlaps 0 heavily, score 0.9 (wins)
            [200, 200, 260, 260],  # 2: disjoint, score 0.7
            [0, 0, 100, 40],  # 3: IoU 0.31 with 1: kept at 0.45, suppressed at 0.3
        ],
        dtype=np.float32,
    )
    scores = np.array([0.6, 0.9, 0.7, 0.3], dtype=np.float32)
    assert nms(boxes, scores, 0.45) == [1, 2, 3]
    assert nms(boxes, scores, 0.3) == [1, 2]
    assert nms(boxes, scores, 1.0) == [1, 2, 0, 3]


def test_nms_of_nothing() -> None:
    assert nms(np.zeros((0, 4), dtype=np.float32), np.zeros(0, dtype=np.float32), 0.5) == []


def test_postprocess_nms_is_per_class() -> None:
    raw = np.zeros((N_CELLS, 85), dtype=np.float32)
    a, b = cell_index(16, 10, 10), cell_index(16, 11, 10)  # neighbouring cells: same-size boxes, IoU ~0.6
    raw_row(raw, a, 0.5, 0.5, math.log(3.0), math.log(3.0), 1.0, {"person": 0.9, "bottle": 0.8})
    raw_row(raw, b, 0.5, 0.5, math.log(3.0), math.log(3.0), 1.0, {"person": 0.7, "bottle": 0.95})
    found = detector().postprocess(raw, 1.0, 416, 416)
    # One survivor per class, best first; across classes the overlapping boxes both stay.
    assert [(d.label, round(d.score, 3)) for d in found] == [("bottle", 0.95), ("person", 0.9)]
    assert box_iou(found[0].box, found[1].box) > 0.45


def test_postprocess_keeps_at_most_max_detections() -> None:
    raw = np.zeros((N_CELLS, 85), dtype=np.float32)
    for i in range(6):
        raw_row(raw, cell_index(32, 2 * i, 2 * i), 0.5, 0.5, 0.0, 0.0, 1.0, {"person": 0.5 + i / 20})
    found = detector(max_detections=4).postprocess(raw, 1.0, 416, 416)
    assert [round(d.score, 2) for d in found] == [0.75, 0.7, 0.65, 0.6]


def test_unknown_class_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="garment"):
        Detector(session=None, config=DetectorConfig(classes=("person", "garment")))  # type: ignore[arg-type]
