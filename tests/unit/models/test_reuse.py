"""Which crops repeat an earlier one and take its embedding (models/reuse.py)."""

from __future__ import annotations

import numpy as np
import pytest

from models.embedder import crop
from models.reuse import ReuseConfig, plan_reuse
from models.types import box_ious

RNG = np.random.default_rng(0)
FRAME = RNG.integers(0, 256, (240, 320, 3), dtype=np.uint8)
BOX = (40.0, 30.0, 200.0, 210.0)


def test_iou_of_a_box_with_several() -> None:
    boxes = np.array([BOX, (40.0, 30.0, 120.0, 210.0), (300.0, 200.0, 320.0, 240.0)])
    assert box_ious(BOX, boxes) == pytest.approx([1.0, 0.5, 0.0])


def test_the_same_region_of_the_same_frame_is_embedded_once() -> None:
    plan = plan_reuse([BOX, BOX], [crop(FRAME, BOX), crop(FRAME, BOX)])
    assert plan.embed == (0,) and plan.source == (0, 0) and plan.reused == 1


def test_a_slightly_noisy_next_frame_reuses_the_crop() -> None:
    noisy = np.clip(FRAME.astype(np.int16) + RNG.integers(-3, 4, FRAME.shape), 0, 255).astype(np.uint8)
    plan = plan_reuse([BOX, BOX], [crop(FRAME, BOX), crop(noisy, BOX)])
    assert plan.source == (0, 0)


def test_a_changed_scene_is_embedded_again() -> None:
    changed = FRAME.copy()
    changed[30:210, 40:120] = 255 - changed[30:210, 40:120]  # half the box now shows something else
    plan = plan_reuse([BOX, BOX], [crop(FRAME, BOX), crop(changed, BOX)])
    assert plan.embed == (0, 1) and plan.reused == 0


def test_a_box_that_moved_is_embedded_again() -> None:
    moved = (80.0, 30.0, 240.0, 210.0)  # IoU 0.6
    plan = plan_reuse([BOX, moved], [crop(FRAME, BOX), crop(FRAME, moved)])
    assert plan.embed == (0, 1)


def test_disabled_embeds_every_crop() -> None:
    plan = plan_reuse([BOX, BOX], [crop(FRAME, BOX)] * 2, ReuseConfig(enabled=False))
    assert plan.embed == (0, 1) and plan.source == (0, 1)


def test_expand_gives_each_crop_the_row_of_the_crop_it_repeats() -> None:
    other = (0.0, 0.0, 30.0, 30.0)
    plan = plan_reuse([BOX, other, BOX], [crop(FRAME, BOX), crop(FRAME, other), crop(FRAME, BOX)])
    assert plan.embed == (0, 1) and plan.source == (0, 1, 0)
    vectors = np.array([[1.0, 0.0], [0.0, 1.0]], dtype=np.float32)
    assert plan.expand(vectors).tolist() == [[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]]


def test_no_crops_plan_nothing() -> None:
    plan = plan_reuse([], [])
    assert plan.embed == () and plan.expand(np.zeros((0, 4), dtype=np.float32)).shape == (0, 4)
