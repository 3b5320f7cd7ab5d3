"""The real YOLOX-Nano on real frames: the person found, the class whitelist, a blank image."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from models.detector import Detector, DetectorConfig
from models.types import box_iou


@pytest.fixture(scope="module")
def viton_frame(viton_stream: Path) -> np.ndarray:
    with Image.open(viton_stream / "frames" / "000003_0.jpg") as image:
        return np.asarray(image.convert("RGB"))


def test_real_detector_finds_the_person_in_a_viton_frame(models, viton_frame: np.ndarray) -> None:
    height, width = viton_frame.shape[:2]
    found = models.detector.detect(viton_frame)
    people = [d for d in found if d.label == "person"]
    assert people, found
    best = max(people, key=lambda d: d.score)
    assert best.score > 0.5
    x1, y1, x2, y2 = best.box
    assert 0 <= x1 < x2 <= width and 0 <= y1 < y2 <= height
    # A studio photo of one model: the person fills most of the frame.
    assert box_iou(best.box, (0.0, 0.0, float(width), float(height))) > 0.5
    assert all(d.score >= models.detector.config.score_threshold for d in found)
    assert [d.score for d in found] == sorted((d.score for d in found), reverse=True)


def test_real_detector_respects_the_class_whitelist(models, viton_frame: np.ndarray) -> None:
    bottles_only = Detector(models.detector.session, DetectorConfig(classes=("bottle",)))
    found = bottles_only.detect(viton_frame)
    assert all(d.label == "bottle" for d in found)
    assert not any(d.label == "person" for d in found)
    # With the person class, the same frame does give a person (the whitelist is what removed it).
    with_person = Detector(models.detector.session, DetectorConfig(classes=("bottle", "person")))
    assert any(d.label == "person" for d in with_person.detect(viton_frame))


def test_real_detector_on_a_blank_image_finds_nothing(models) -> None:
    assert models.detector.detect(np.full((240, 320, 3), 114, dtype=np.uint8)) == []
