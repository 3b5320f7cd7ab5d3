"""Each segment's best frame: when its product scored highest, the boxes that matched it, and a small
picture of it.

The watcher shows it to everyone who reads a `segment_ended` event: the demo page draws the boxes on the
picture, so a live watch's segments can be looked at after the moment has gone. The picture is a JPEG of
at most `PICTURE_SIDE` pixels a side (about 10 KB, base64 in the event), small enough for SSE, Redis and
webhooks; one is encoded per frame at most, and only when the frame becomes some product's best.
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from service.values import Identification
from service.watch.segments import Segment

#: The longest side of a best frame's picture, in pixels, and its JPEG quality.
PICTURE_SIDE = 320
PICTURE_QUALITY = 75


@dataclass(frozen=True, slots=True)
class BestFrame:
    time_s: float
    score: float
    width: int  # the frame's size: the boxes are in its pixels
    height: int
    image_id: str | None  # the catalogue image the best box matched
    boxes: tuple[dict[str, Any], ...]  # {"box", "label", "similarity"} of the boxes that matched the product
    jpeg: str | None = None  # the frame, downscaled, as base64 JPEG

    def as_dict(self) -> dict[str, Any]:
        best = {"time_s": self.time_s, "score": self.score, "width": self.width, "height": self.height,
                "image_id": self.image_id, "boxes": list(self.boxes)}
        return best | ({"jpeg": self.jpeg} if self.jpeg is not None else {})


class BestFrames:
    """The best frame seen so far of each product in a frame's ranking; taken by the segment that ends.

    Abstained answers count too: a pooled segment may be named after a product that no single frame was
    sure enough of."""

    def __init__(self) -> None:
        self._best: dict[str, BestFrame] = {}

    def improves(self, answer: Identification) -> bool:
        """The frame would become some product's best: its picture is worth encoding."""
        return bool(answer.frames) and any(self._better(p.product_id, p.score) for p in answer.products)

    def see(self, time_s: float, answer: Identification, jpeg: str | None = None) -> None:
        """Keep the frame for each product it scores higher than before (`jpeg`: its `picture()`)."""
        if not answer.frames:
            return
        for product in answer.products:
            if self._better(product.product_id, product.score):
                self._best[product.product_id] = self._frame(time_s, answer, product.product_id, product.score,
                                                             jpeg)

    def _better(self, product_id: str, score: float) -> bool:
        known = self._best.get(product_id)
        return known is None or score > known.score

    @staticmethod
    def _frame(time_s: float, answer: Identification, product_id: str, score: float,
               jpeg: str | None) -> BestFrame:
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
        return BestFrame(time_s, round(score, 4), frame.width, frame.height, image_id, tuple(boxes), jpeg)

    def take(self, segment: Segment) -> BestFrame | None:
        """The segment's best frame (inside its span), forgotten afterwards."""
        best = self._best.pop(segment.product_id, None)
        if best is None or not segment.start_s <= best.time_s <= segment.end_s:
            return None
        return best


def picture(image: np.ndarray) -> str:
    """The RGB frame at most PICTURE_SIDE a side, as base64 JPEG (about 10 ms for 720×960 here: the watcher
    runs it in a worker thread, and only for a frame that `improves` a best)."""
    still = Image.fromarray(image)
    still.thumbnail((PICTURE_SIDE, PICTURE_SIDE))
    out = io.BytesIO()
    still.save(out, format="JPEG", quality=PICTURE_QUALITY)
    return base64.b64encode(out.getvalue()).decode("ascii")
