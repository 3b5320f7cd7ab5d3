"""The "missing product" set-up: a seeded share of a stream's products, and an index without them."""

from __future__ import annotations

import random
from collections.abc import Iterable

import faiss
import numpy as np

from indexer.build import make_faiss_index
from indexer.store import RESERVED_MANIFEST_KEYS, IndexStore, TitleVectors

#: Suffix of the stream id under which the index without the held-out products is published.
HELD_OUT_SUFFIX = ".without-held-out"


def held_out_stream_id(stream_id: str) -> str:
    return f"{stream_id[: 128 - len(HELD_OUT_SUFFIX)]}{HELD_OUT_SUFFIX}"


def choose_held_out(products: Iterable[str], share: float, seed: int, stream_id: str) -> frozenset[str]:
    """round(share × n) of the distinct `products` (at least one when share > 0), seeded per stream."""
    distinct = sorted(set(products))
    if share <= 0 or not distinct:
        return frozenset()
    count = min(len(distinct), max(1, round(share * len(distinct))))
    return frozenset(random.Random(f"{seed}:{stream_id}").sample(distinct, count))


def index_vectors(index: faiss.Index) -> np.ndarray:
    """All stored vectors of an index (IVF indexes get a direct map first)."""
    try:
        vectors: np.ndarray = index.reconstruct_n(0, index.ntotal)
    except RuntimeError:
        faiss.extract_index_ivf(index).make_direct_map()
        vectors = index.reconstruct_n(0, index.ntotal)
    return vectors


def publish_without(
    store: IndexStore, stream_id: str, version: str, removed: frozenset[str], target_id: str
) -> str:
    """Publish `stream_id`'s `version` minus every row of the `removed` products as `target_id`.

    The rows are removed from the index itself (the search never sees them), rebuilt with the same
    factory; the kept rows keep their hubness and the kept products their title vectors, and the
    manifest keeps the model hashes, so the service accepts it like any built index.
    """
    source = store.load(stream_id, version)
    keep = [i for i, entry in enumerate(source.entries) if entry.product_id not in removed]
    if not keep:
        raise ValueError(f"stream {stream_id}: removing {len(removed)} products leaves an empty index")
    vectors = np.ascontiguousarray(index_vectors(source.index)[keep], dtype=np.float32)
    factory = str(source.manifest.get("factory", "Flat"))
    index = make_faiss_index(vectors, factory)
    entries = [source.entries[i] for i in keep]
    titles = {pid: title for pid, title in source.titles.items() if pid not in removed}
    extra = {k: v for k, v in source.manifest.items() if k not in RESERVED_MANIFEST_KEYS}
    extra.update({"derived_from": f"{stream_id}/{version}", "removed_products": sorted(removed)})
    hubness = source.hubness[keep] if source.hubness is not None else None
    return store.publish(target_id, index, entries, titles, extra, text=_titles_without(source.text, removed),
                         hubness=hubness)


def _titles_without(text: TitleVectors | None, removed: frozenset[str]) -> TitleVectors | None:
    if text is None:
        return None
    rows = [i for i, pid in enumerate(text.product_ids) if pid not in removed]
    if not rows:
        return None
    return TitleVectors(tuple(text.product_ids[i] for i in rows), text.vectors[rows], text.encoder)
