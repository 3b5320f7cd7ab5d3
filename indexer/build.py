"""Catalogue → embedded boxes → FAISS inner-product index, published to the versioned store.

With a cohort (models/cohort.py) the version also stores each vector's hubness, which the service
subtracts (× WATCHBUY_HUBNESS_WEIGHT) from the cosines of its search.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import faiss
import numpy as np
from PIL import Image
from tqdm import tqdm

from indexer.catalogue import Catalogue, CatalogueImage, CatalogueIssue
from indexer.store import IndexStore, StreamIndex, TitleVectors, VectorEntry
from models.cohort import HUBNESS_NEIGHBOURS
from models.embedder import PREPROCESS, crop
from models.loader import Models
from models.proposals import ProposalConfig, propose
from models.types import Box
from watchbuy.settings import Settings

log = logging.getLogger(__name__)

EMBED_BATCH = 32
# What a catalogue image without boxes contributes. The catalogue contract reads an empty box list as
# "the product fills the image (or no box is known)": "whole" embeds the image alone (the default; on
# grocery-dev, packshots with their detector boxes added ranked a cup or a printed face above the whole
# pack: R@1 0.76 whole+detect vs 0.80 whole); "detect" adds the detector's proposals (no full-frame
# fallback) for catalogues of scene photos, e.g. a model wearing the garment.
UnboxedImages = Literal["whole", "detect"]
CATALOGUE_PROPOSALS = ProposalConfig(full_frame_fallback=False)


@dataclass(frozen=True, slots=True)
class IndexRecipe:
    """How a stream's index is made (WATCHBUY_INDEX_FACTORY, WATCHBUY_INDEX_SEARCH_PARAMS,
    WATCHBUY_CATALOGUE_UNBOXED_IMAGES)."""

    factory: str = "Flat"
    unboxed: UnboxedImages = "whole"
    search_params: str = ""  # faiss ParameterSpace string, saved inside the index ("nprobe=16")

    @classmethod
    def from_settings(
        cls, settings: Settings, factory: str | None = None, search_params: str | None = None
    ) -> IndexRecipe:
        return cls(
            factory or settings.index_factory,
            settings.catalogue_unboxed_images,
            settings.index_search_params if search_params is None else search_params,
        )


#: Learns a catalogue's abstain threshold from its freshly built index before the version is published
#: (service/calibration.py); what it returns is stored under "calibration" in the manifest.
Calibrate = Callable[[Catalogue, StreamIndex], Mapping[str, Any] | None]


class BuildError(RuntimeError):
    """The build cannot produce an index (nothing usable, or strict mode hit a broken entry)."""


@dataclass(slots=True)
class EmbeddedCatalogue:
    vectors: np.ndarray
    entries: list[VectorEntry]
    titles: dict[str, str]
    issues: list[CatalogueIssue] = field(default_factory=list)
    n_images: int = 0


@dataclass(frozen=True, slots=True)
class BuildSummary:
    stream_id: str
    version: str
    products: int
    images: int
    vectors: int
    skipped: int
    seconds: float
    threshold: float | None = None  # the calibrated abstain threshold, when the build calibrated one

    @property
    def images_per_second(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else 0.0


def catalogue_boxes(
    image: CatalogueImage, pixels: np.ndarray, models: Models, unboxed: UnboxedImages = "whole"
) -> list[Box]:
    """The annotated boxes; else the whole image, after the detector's proposals when `unboxed` is "detect"."""
    if image.boxes:
        return list(image.boxes)
    h, w = pixels.shape[:2]
    whole = (0.0, 0.0, float(w), float(h))
    if unboxed == "whole":
        return [whole]
    found = propose(models.detector.detect(pixels), w, h, CATALOGUE_PROPOSALS)
    return [p.box for p in found] + [whole]


def _crops(
    catalogue: Catalogue,
    models: Models,
    strict: bool,
    unboxed: UnboxedImages,
    issues: list[CatalogueIssue],
    progress: tqdm,
) -> Iterator[tuple[VectorEntry, np.ndarray]]:
    for product in catalogue.products:
        for image in product.images:
            try:
                with Image.open(image.path) as handle:
                    pixels = np.asarray(handle.convert("RGB"))
            except (OSError, ValueError) as exc:
                issue = CatalogueIssue(image.source, f"cannot decode {image.path}: {exc}")
                if strict:
                    raise BuildError(f"{issue.source}: {issue.message}") from exc
                issues.append(issue)
                progress.update(1)
                continue
            for box in catalogue_boxes(image, pixels, models, unboxed):
                x1, y1, x2, y2 = (float(v) for v in box)
                yield VectorEntry(product.product_id, image.image_id, (x1, y1, x2, y2)), crop(pixels, box)
            progress.update(1)


def embed_catalogue(
    catalogue: Catalogue,
    models: Models,
    strict: bool = False,
    show_progress: bool = True,
    unboxed: UnboxedImages = "whole",
) -> EmbeddedCatalogue:
    """Embed every usable box of every image, EMBED_BATCH crops per model call."""
    issues = list(catalogue.issues)
    entries: list[VectorEntry] = []
    parts: list[np.ndarray] = []
    pending: list[np.ndarray] = []
    n_images = sum(len(p.images) for p in catalogue.products)
    with tqdm(total=n_images, unit="img", desc=f"embed {catalogue.stream_id}", disable=not show_progress) as bar:
        for entry, patch in _crops(catalogue, models, strict, unboxed, issues, bar):
            entries.append(entry)
            pending.append(patch)
            if len(pending) == EMBED_BATCH:
                parts.append(models.embedder.embed(pending))
                pending = []
        if pending:
            parts.append(models.embedder.embed(pending))
    decoded = n_images - (len(issues) - len(catalogue.issues))
    vectors = np.concatenate(parts) if parts else np.zeros((0, models.embedder.dim), dtype=np.float32)
    indexed = {e.product_id for e in entries}
    titles = {p.product_id: p.title for p in catalogue.products if p.product_id in indexed}
    return EmbeddedCatalogue(vectors, entries, titles, issues, decoded)


def embed_titles(titles: dict[str, str], models: Models) -> TitleVectors | None:
    """Sentence embeddings of the non-empty titles (None when no product has one, or no text encoder)."""
    titled = sorted(pid for pid, title in titles.items() if title.strip())
    if not titled or models.text is None:
        return None
    vectors = models.text.encode([titles[pid] for pid in titled])
    return TitleVectors(tuple(titled), vectors, models.text.name)


def make_faiss_index(vectors: np.ndarray, factory: str, search_params: str = "") -> faiss.Index:
    """An inner-product index from a factory string ("Flat", "IVF256,Flat", "HNSW32", …), trained and filled.

    `search_params` ("nprobe=16", "efSearch=64") are set on the index, and faiss saves them with it, so every
    process that loads the version searches it the same way.
    """
    try:
        index = faiss.index_factory(vectors.shape[1], factory, faiss.METRIC_INNER_PRODUCT)
    except RuntimeError as exc:
        raise BuildError(f"faiss does not know the index factory {factory!r}") from exc
    if not index.is_trained:
        try:
            index.train(vectors)
        except RuntimeError as exc:
            raise BuildError(f"index factory {factory!r} cannot be trained on {len(vectors)} vectors: {exc}") from exc
    index.add(vectors)
    if search_params:
        try:
            space: Any = faiss.ParameterSpace()  # its stub knows only the (index, int) overload
            space.set_index_parameters(index, search_params)
        except RuntimeError as exc:
            raise BuildError(f"search parameters {search_params!r} do not apply to index factory {factory!r}") from exc
    elif "IVF" in factory:
        log.warning("index factory %r without search parameters searches with nprobe=1", factory)
    return index


def draft_index(
    catalogue: Catalogue,
    models: Models,
    recipe: IndexRecipe = IndexRecipe(),
    strict: bool = False,
    show_progress: bool = True,
) -> tuple[StreamIndex, EmbeddedCatalogue]:
    """The stream's index in memory, as it will be published (version "draft", no manifest yet)."""
    if strict and catalogue.issues:
        first = catalogue.issues[0]
        raise BuildError(f"{first.source}: {first.message}")
    embedded = embed_catalogue(catalogue, models, strict=strict, show_progress=show_progress, unboxed=recipe.unboxed)
    if not embedded.entries:
        raise BuildError(f"stream {catalogue.stream_id}: no usable catalogue image in {catalogue.root}")
    index = make_faiss_index(embedded.vectors, recipe.factory, recipe.search_params)
    text = embed_titles(embedded.titles, models)
    hubness = models.cohort.hubness(embedded.vectors, HUBNESS_NEIGHBOURS) if models.cohort else None
    draft = StreamIndex(
        catalogue.stream_id, "draft", index, tuple(embedded.entries), embedded.titles, {}, text, hubness
    )
    return draft, embedded


def build_stream(
    catalogue: Catalogue,
    models: Models,
    store: IndexStore,
    recipe: IndexRecipe = IndexRecipe(),
    strict: bool = False,
    show_progress: bool = True,
    calibrate: Calibrate | None = None,
) -> tuple[BuildSummary, list[CatalogueIssue]]:
    """Embed, index, calibrate (when given a calibrator) and publish one stream; the store's CURRENT
    changes only if all of it worked."""
    started = time.perf_counter()
    draft, embedded = draft_index(catalogue, models, recipe, strict, show_progress)
    calibration = calibrate(catalogue, draft) if calibrate is not None else None
    model_hashes = {m.record.role: m.record.identity for m in models.loaded}  # an fp32 file or its int8 copy
    if models.cohort is not None:
        model_hashes["cohort"] = models.cohort.sha256
    version = store.publish(
        catalogue.stream_id,
        draft.index,
        embedded.entries,
        embedded.titles,
        extra={
            "factory": recipe.factory,
            "search_params": recipe.search_params,
            "unboxed_images": recipe.unboxed,
            "models": model_hashes,
            "embedder_preprocess": PREPROCESS,
            "catalogue": {"root": str(Path(catalogue.root).resolve()), "layout": catalogue.layout},
            "images": embedded.n_images,
            "skipped": len(embedded.issues),
            "text_encoder": draft.text.encoder if draft.text else None,
            "hubness_neighbours": HUBNESS_NEIGHBOURS if models.cohort else None,
            "calibration": dict(calibration) if calibration is not None else None,
        },
        text=draft.text,
        hubness=draft.hubness,
    )
    summary = BuildSummary(
        stream_id=catalogue.stream_id,
        version=version,
        products=len(embedded.titles),
        images=embedded.n_images,
        vectors=len(embedded.entries),
        skipped=len(embedded.issues),
        seconds=time.perf_counter() - started,
        threshold=float(calibration["threshold"]) if calibration is not None else None,
    )
    return summary, embedded.issues

