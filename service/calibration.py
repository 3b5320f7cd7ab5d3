"""Each catalogue's abstain threshold, learnt at index build from synthetic live views of its own images.

Scores sit on different scales for different kinds of catalogue (flat garment shots against worn
garments, packshots against shop photos, luxury packshots against store photos), so one global threshold
does not transfer. At build, before the version is published, `CatalogueCalibrator` makes synthetic live
frames of a seeded sample of the catalogue's images (models/synthetic.py: the product placed, turned,
relit, covered, blurred and compressed on a background cut from another product's image) and runs each
through the service's own pipeline against the new index. Each view gives two scores: its own product's
(the product is on screen: "genuine") and the best other product's (what the answer would be were the
product missing from the catalogue: "impostor"). The threshold follows from the impostors by the rule in
`threshold_from_scores` (docs/EVALUATION.md, "Per-catalogue abstain threshold"). It is stored in the index
manifest, with both distributions, used by the service for that version and shown by `GET /streams/{id}`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import anyio
import numpy as np
from PIL import Image

from indexer.catalogue import Catalogue, CatalogueImage
from indexer.store import StreamIndex
from models.loader import Models
from models.synthetic import live_view
from service.calls import DirectCalls
from service.pipeline import Pipeline, PipelineConfig
from service.sessions import Alone
from service.values import DecodedFrame
from watchbuy.settings import Settings

METHOD = "synthetic-live-views-v2"


@dataclass(frozen=True, slots=True)
class Calibration:
    """A catalogue's abstain threshold and the score distributions it came from (quantiles 10/50/90)."""

    threshold: float
    views: int
    genuine: tuple[float, float, float]
    impostor: tuple[float, float, float]
    method: str = METHOD

    def to_manifest(self) -> dict[str, Any]:
        return asdict(self)


#: The rule (v2): the impostors' median plus this margin. The median of the best wrong product's score is
#: how high a product missing from this catalogue would score, and it is stable (± 0.006 over view seeds,
#: against ± 0.035 for the genuine views' 40th percentile of v1, which tracked the synthetic views' failures
#: more than the real frames). The margin is viton-train-11's: its real calibrated threshold (0.43, ≤ 10% of
#: normal clips abstained) less its impostor median (0.300, mean of four view seeds).
IMPOSTOR_MARGIN = 0.13


def threshold_from_scores(impostor: np.ndarray) -> float:
    """The abstain threshold for a catalogue whose synthetic views' best wrong product scored `impostor`."""
    return float(round(float(np.median(impostor)) + IMPOSTOR_MARGIN, 4))


def _quantiles(scores: np.ndarray) -> tuple[float, float, float]:
    low, mid, high = np.quantile(scores, [0.1, 0.5, 0.9]).tolist()
    return round(low, 4), round(mid, 4), round(high, 4)


def _pixels(image: CatalogueImage) -> np.ndarray:
    with Image.open(image.path) as handle:
        return np.asarray(handle.convert("RGB"))


class CatalogueCalibrator:
    """Calibrates a freshly built index with the service's pipeline (`indexer.build.Calibrate`)."""

    def __init__(self, models: Models, config: PipelineConfig, views: int = 64, seed: int = 0) -> None:
        self.models = models
        self.config = config
        self.views = views
        self.seed = seed

    @classmethod
    def from_settings(cls, models: Models, settings: Settings) -> CatalogueCalibrator | None:
        """The calibrator the settings ask for; None when calibration is off (calibration_views 0)."""
        if settings.calibration_views == 0:
            return None
        return cls(models, PipelineConfig.from_settings(settings), settings.calibration_views)

    def __call__(self, catalogue: Catalogue, index: StreamIndex) -> Mapping[str, Any] | None:
        """The calibration to store in the manifest; None when the catalogue has under two products."""
        scores = self.view_scores(catalogue, index)
        if len(scores) == 0:
            return None
        genuine, impostor = scores[:, 0], scores[:, 1]
        return Calibration(
            threshold_from_scores(impostor), len(scores), _quantiles(genuine), _quantiles(impostor)
        ).to_manifest()

    def view_scores(self, catalogue: Catalogue, index: StreamIndex) -> np.ndarray:
        """[views, 2]: each synthetic view's own-product score and best other-product score."""
        products = [p for p in catalogue.products if p.images and p.product_id in index.titles]
        if len(products) < 2:
            return np.zeros((0, 2), np.float32)
        rng = np.random.default_rng(self.seed)
        order = rng.permutation(len(products))
        picks = [int(order[i % len(products)]) for i in range(self.views)]
        frames: list[tuple[str, DecodedFrame]] = []
        for n, i in enumerate(picks):
            product = products[i]
            image = product.images[int(rng.integers(len(product.images)))]
            other = products[(i + 1 + int(rng.integers(len(products) - 1))) % len(products)]
            scene = _pixels(other.images[int(rng.integers(len(other.images)))])
            box = image.boxes[0] if image.boxes else None
            frames.append((product.product_id, DecodedFrame(n, live_view(_pixels(image), box, scene, rng))))
        return anyio.run(self._score_views, frames, index)

    async def _score_views(self, frames: list[tuple[str, DecodedFrame]], index: StreamIndex) -> np.ndarray:
        limiter = anyio.CapacityLimiter(1)
        pipeline = Pipeline(self.models, self.config, limiter)
        calls = DirectCalls(self.models, limiter)
        rows = []
        for product_id, frame in frames:
            answer = await pipeline.identify(
                [frame], index, calls, top_k=len(index.titles), window=Alone("calibration")
            )
            scores = {p.product_id: p.score for p in answer.products}
            floor = min(scores.values(), default=0.0)
            others = [s for pid, s in scores.items() if pid != product_id]
            rows.append((scores.get(product_id, floor), max(others, default=floor)))
        return np.asarray(rows, np.float32)
