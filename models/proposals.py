"""Detections → product proposals.

COCO has no garment class, so each `person` becomes the person box plus upper- and lower-body
sub-boxes; product-like classes (handbag, bottle, cell phone, …) pass through. A frame with no
detection is proposed whole, so a close-up of a product still gets searched.

The sub-box fractions depend on the framing: a box taller than FULL_BODY_ASPECT × its width is a
standing person seen head to foot; otherwise the frame cuts the person (the usual livestream close
shot, and the studio photos of viton-train, where they were measured: the upper garment spans
about 26–85 % of the person box height).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from models.types import Box, Detection, clip_box
from watchbuy.settings import Settings

FULL_BODY_ASPECT = 2.2

# (x1, y1, x2, y2) as fractions of the person box.
HALF_BODY_PARTS = {"upper_body": (0.03, 0.25, 0.97, 0.85), "lower_body": (0.0, 0.6, 1.0, 1.0)}
FULL_BODY_PARTS = {"upper_body": (0.0, 0.17, 1.0, 0.55), "lower_body": (0.0, 0.45, 1.0, 0.97)}

MIN_SIDE = 8.0


@dataclass(frozen=True, slots=True)
class ProposalConfig:
    include_person: bool = True
    include_parts: bool = True
    full_frame_fallback: bool = True
    always_full_frame: bool = False
    center_crops: tuple[float, ...] = ()  # side fractions of centred boxes proposed in every frame

    @classmethod
    def from_settings(cls, settings: Settings) -> ProposalConfig:
        """What the service proposes in a query frame."""
        return cls(
            include_person=settings.propose_person,
            include_parts=settings.propose_parts,
            always_full_frame=settings.propose_full_frame,
            center_crops=tuple(settings.propose_center_crops),
        )


def center_box(width: int, height: int, fraction: float) -> Box:
    """The centred box covering `fraction` of the frame's width and height."""
    margin_x, margin_y = (1 - fraction) * width / 2, (1 - fraction) * height / 2
    return (margin_x, margin_y, width - margin_x, height - margin_y)


def _part(box: Box, fractions: tuple[float, float, float, float]) -> Box:
    x1, y1, x2, y2 = box
    w, h = x2 - x1, y2 - y1
    return (x1 + fractions[0] * w, y1 + fractions[1] * h, x1 + fractions[2] * w, y1 + fractions[3] * h)


def person_parts(person: Detection) -> list[Detection]:
    x1, y1, x2, y2 = person.box
    full_body = (y2 - y1) > FULL_BODY_ASPECT * (x2 - x1)
    parts = FULL_BODY_PARTS if full_body else HALF_BODY_PARTS
    return [Detection(_part(person.box, f), label, person.score) for label, f in parts.items()]


def propose(
    detections: Sequence[Detection], width: int, height: int, config: ProposalConfig = ProposalConfig()
) -> list[Detection]:
    """Boxes worth embedding for one frame, clipped to it; never empty."""
    proposals: list[Detection] = []
    for det in detections:
        if det.label == "person":
            if config.include_person:
                proposals.append(det)
            if config.include_parts:
                proposals.extend(person_parts(det))
        else:
            proposals.append(det)
    clipped = [Detection(clip_box(p.box, width, height), p.label, p.score) for p in proposals]
    kept = [p for p in clipped if p.box[2] - p.box[0] >= MIN_SIDE and p.box[3] - p.box[1] >= MIN_SIDE]
    if config.always_full_frame or (not kept and config.full_frame_fallback):
        kept.append(Detection((0.0, 0.0, float(width), float(height)), "full_frame", 0.0))
    kept.extend(Detection(center_box(width, height, f), "center", 0.0) for f in config.center_crops)
    return kept
