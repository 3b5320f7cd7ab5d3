"""Each segment's best frame: when its product led with the highest score, and the boxes that matched it.

The watcher shows it to everyone who reads a `segment_ended` event (the demo page draws the boxes on that
moment of the video). Boxes only, no pixels: events stay small enough for SSE, Redis and webhooks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from service.values import Identification
from service.watch.segments import Segment


@dataclass(frozen=True, slots=True)
class BestFrame:
    time_s: float
    score: float
    width: int
    height: int
    image_id: str | None  # the catalogue image the best box matched
    boxes: tuple[dict[str, Any], ...]  # {"box", "label", "similarity"} of the boxes that matched the product

    def as_dict(self) -> dict[str, Any]:
        return {"time_s": self.time_s, "score": self.score, "width": self.width, "height": self.height,
                "image_id": self.image_id, "boxes": list(self.boxes)}


class BestFrames:
    """The best frame seen so far of each product that led a frame; taken by the segment that ends."""

    def __init__(self) -> None:
        self._best: dict[str, BestFrame] = {}

    def see(self, time_s: float, answer: Identification) -> None:
        if answer.abstain or not answer.products or not answer.frames:
            return
        top = answer.products[0]
        known = self._best.get(top.product_id)
        if known is not None and known.score >= top.score:
            return
        frame = answer.frames[0]
        boxes, image_id, best_similarity = [], None, -1.0
        for evidence in frame.boxes:
            for match in evidence.matches:
                if match.product_id != top.product_id:
                    continue
                boxes.append({"box": [round(v, 1) for v in evidence.proposal.box], "label": evidence.proposal.label,
                              "similarity": round(match.similarity, 4)})
                if match.similarity > best_similarity:
                    image_id, best_similarity = match.image_id, match.similarity
        self._best[top.product_id] = BestFrame(time_s, round(top.score, 4), frame.width, frame.height, image_id,
                                               tuple(boxes))

    def take(self, segment: Segment) -> BestFrame | None:
        """The segment's best frame (inside its span), forgotten afterwards."""
        best = self._best.pop(segment.product_id, None)
        if best is None or not segment.start_s <= best.time_s <= segment.end_s:
            return None
        return best
