"""Each segment's best frame: when its product scored highest, and the boxes that matched it.

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
    """The best frame seen so far of each product in a frame's ranking; taken by the segment that ends.

    Abstained answers count too: a pooled segment may be named after a product that no single frame was
    sure enough of."""

    def __init__(self) -> None:
        self._best: dict[str, BestFrame] = {}

    def see(self, time_s: float, answer: Identification) -> None:
        if not answer.frames:
            return
        for product in answer.products:
            known = self._best.get(product.product_id)
            if known is None or product.score > known.score:
                self._best[product.product_id] = self._frame(time_s, answer, product.product_id, product.score)

    @staticmethod
    def _frame(time_s: float, answer: Identification, product_id: str, score: float) -> BestFrame:
        frame = answer.frames[0]
        boxes, image_id, best_similarity = [], None, -1.0
        for evidence in frame.boxes:
            for match in evidence.matches:
                if match.product_id != product_id:
                    continue
                boxes.append({"box": [round(v, 1) for v in evidence.proposal.box], "label": evidence.proposal.label,
                              "similarity": round(match.similarity, 4)})
                if match.similarity > best_similarity:
                    image_id, best_similarity = match.image_id, match.similarity
        return BestFrame(time_s, round(score, 4), frame.width, frame.height, image_id, tuple(boxes))

    def take(self, segment: Segment) -> BestFrame | None:
        """The segment's best frame (inside its span), forgotten afterwards."""
        best = self._best.pop(segment.product_id, None)
        if best is None or not segment.start_s <= best.time_s <= segment.end_s:
            return None
        return best
