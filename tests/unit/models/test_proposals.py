"""Detections → product proposals: person parts, pass-through classes, clipping, the full-frame fallback."""

from __future__ import annotations

import pytest

from models.proposals import FULL_BODY_ASPECT, MIN_SIDE, ProposalConfig, person_parts, propose
from models.types import Detection


def by_label(proposals: list[Detection]) -> dict[str, Detection]:
    labels = [p.label for p in proposals]
    assert len(set(labels)) == len(labels), labels
    return {p.label: p for p in proposals}


def inside(inner: tuple[float, ...], outer: tuple[float, ...]) -> bool:
    return outer[0] <= inner[0] < inner[2] <= outer[2] and outer[1] <= inner[1] < inner[3] <= outer[3]


def test_person_becomes_person_upper_and_lower_body() -> None:
    person = Detection((20.0, 10.0, 120.0, 160.0), "person", 0.9)  # 100 × 150: half body
    proposals = by_label(propose([person], 200, 200))
    assert set(proposals) == {"person", "upper_body", "lower_body"}
    assert proposals["person"] == person
    for label in ("upper_body", "lower_body"):
        assert inside(proposals[label].box, person.box)
        assert proposals[label].score == person.score
    assert proposals["upper_body"].box[1] < proposals["lower_body"].box[1]


def test_half_body_fractions() -> None:
    person = Detection((0.0, 0.0, 100.0, 200.0), "person", 0.8)  # 200 ≤ 2.2 × 100
    parts = by_label(person_parts(person))
    assert parts["upper_body"].box == pytest.approx((3.0, 50.0, 97.0, 170.0))
    assert parts["lower_body"].box == pytest.approx((0.0, 120.0, 100.0, 200.0))


def test_full_body_fractions() -> None:
    person = Detection((10.0, 20.0, 110.0, 320.0), "person", 0.8)  # 300 > 2.2 × 100: head to foot
    assert 300 > FULL_BODY_ASPECT * 100
    parts = by_label(person_parts(person))
    assert parts["upper_body"].box == pytest.approx((10.0, 71.0, 110.0, 185.0))
    assert parts["lower_body"].box == pytest.approx((10.0, 155.0, 110.0, 311.0))


def test_person_parts_can_be_switched_off() -> None:
    person = Detection((0.0, 0.0, 100.0, 150.0), "person", 0.9)
    assert [p.label for p in propose([person], 100, 150, ProposalConfig(include_parts=False))] == ["person"]
    only_parts = propose([person], 100, 150, ProposalConfig(include_person=False))
    assert sorted(p.label for p in only_parts) == ["lower_body", "upper_body"]


def test_product_classes_pass_through() -> None:
    bag = Detection((10.0, 10.0, 60.0, 70.0), "handbag", 0.7)
    bottle = Detection((100.0, 20.0, 130.0, 90.0), "bottle", 0.4)
    assert propose([bag, bottle], 200, 100) == [bag, bottle]


def test_nothing_detected_is_one_full_frame_proposal() -> None:
    assert propose([], 640, 480) == [Detection((0.0, 0.0, 640.0, 480.0), "full_frame", 0.0)]
    assert propose([], 640, 480, ProposalConfig(full_frame_fallback=False)) == []


def test_boxes_are_clipped_to_the_image() -> None:
    person = Detection((-30.0, -20.0, 130.0, 180.0), "person", 0.9)
    cup = Detection((90.0, 140.0, 150.0, 200.0), "cup", 0.5)
    proposals = propose([person, cup], 100, 150)
    assert len(proposals) == 4
    for p in proposals:
        x1, y1, x2, y2 = p.box
        assert 0.0 <= x1 < x2 <= 100.0 and 0.0 <= y1 < y2 <= 150.0, p
    assert by_label(proposals)["person"].box == (0.0, 0.0, 100.0, 150.0)
    assert by_label(proposals)["cup"].box == (90.0, 140.0, 100.0, 150.0)


def test_tiny_boxes_are_dropped() -> None:
    tiny = Detection((10.0, 10.0, 10.0 + MIN_SIDE - 1, 40.0), "bottle", 0.9)
    thin = Detection((10.0, 10.0, 40.0, 10.0 + MIN_SIDE - 0.5), "cup", 0.9)
    ok = Detection((50.0, 50.0, 50.0 + MIN_SIDE, 50.0 + MIN_SIDE), "book", 0.9)
    outside = Detection((300.0, 300.0, 400.0, 400.0), "cup", 0.9)  # clipped to nothing
    assert propose([tiny, thin, ok, outside], 200, 200) == [ok]
    # Only tiny boxes: the whole frame is searched instead.
    assert [p.label for p in propose([tiny, thin], 200, 200)] == ["full_frame"]


def test_center_crops_are_centred_and_added_to_every_frame() -> None:
    config = ProposalConfig(center_crops=(0.5,))
    person = Detection((10.0, 20.0, 60.0, 180.0), "person", 0.9)
    boxes = {p.label: p.box for p in propose([person], 200, 100, config)}
    assert boxes["center"] == (50.0, 25.0, 150.0, 75.0)
    assert "person" in boxes  # detections are kept; the centred box comes on top
    assert [p.label for p in propose([], 200, 100, config)] == ["full_frame", "center"]
