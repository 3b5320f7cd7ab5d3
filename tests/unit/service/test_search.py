"""The search step: FAISS neighbours re-scored by cosine − weight × hubness, best first."""

from __future__ import annotations

import faiss
import numpy as np

from indexer.store import StreamIndex, VectorEntry
from service.search import search


def stream_index(vectors: np.ndarray, hubness: np.ndarray | None, factory: faiss.Index | None = None) -> StreamIndex:
    index = factory or faiss.IndexFlatIP(vectors.shape[1])
    if not index.is_trained:
        index.train(vectors)
    index.add(vectors)
    entries = tuple(VectorEntry(f"p{i}", f"p{i}-0", (0.0, 0.0, 1.0, 1.0)) for i in range(len(vectors)))
    return StreamIndex("s", "v", index, entries, {e.product_id: "" for e in entries}, {}, hubness=hubness)


def unit(rows: list[list[float]]) -> np.ndarray:
    x = np.asarray(rows, dtype=np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_a_hub_loses_its_lead_to_a_specific_match() -> None:
    catalogue = unit([[1, 0.20, 0], [1, 0.35, 0], [0, 0, 1]])  # row 0: a plain top close to every worn photo
    query = unit([[1, 0.1, 0]])
    index = stream_index(catalogue, np.array([0.8, 0.3, 0.1], np.float32))
    cosines = (query @ catalogue.T)[0]
    assert cosines[0] > cosines[1]

    sims, rows = search(index, query, k=3, hubness_weight=0.25)
    assert rows.tolist() == [[1, 0, 2]]
    np.testing.assert_allclose(sims[0], cosines[[1, 0, 2]] - 0.25 * np.array([0.3, 0.8, 0.1]), atol=1e-6)
    assert np.all(np.diff(sims[0]) <= 0)

    plain_sims, plain_rows = search(index, query, k=3, hubness_weight=0.0)
    assert plain_rows.tolist() == [[0, 1, 2]]
    np.testing.assert_allclose(plain_sims[0], cosines, atol=1e-6)
    assert search(stream_index(catalogue, None), query, 3, 0.25)[1].tolist() == [[0, 1, 2]]
    assert search(index, query, k=10, hubness_weight=0.25)[1].shape == (1, 3)  # k capped at the index size


def test_empty_slots_stay_last_and_untouched() -> None:
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(64, 8)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    ivf = faiss.IndexIVFFlat(faiss.IndexFlatIP(8), 8, 8, faiss.METRIC_INNER_PRODUCT)
    index = stream_index(vectors, rng.uniform(0, 1, 64).astype(np.float32), ivf)  # nprobe 1: few rows found
    sims, rows = search(index, vectors[:5], k=40, hubness_weight=0.5)
    for sim_row, row in zip(sims, rows, strict=True):
        found = row >= 0
        assert found.any() and not found.all()
        assert found[: found.sum()].all()  # all empty slots after the found rows
        assert np.all(np.diff(sim_row[found]) <= 1e-6)
