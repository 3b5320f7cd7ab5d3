"""Box vectors → their nearest catalogue rows, by cosine less the rows' hubness penalty.

FAISS returns the `k` rows of highest cosine; when the index stores hubness (models/cohort.py) each
similarity becomes cosine − weight × hubness and the rows are re-ordered by it, so a catalogue image
that resembles every worn garment no longer wins by default. Only the fetched rows are re-scored: with a
weight of 0.25 and hubness between 0.37 and 0.76 (viton-dev-00's catalogue) penalties differ by at most
0.1, so only a row within 0.1 of the k-th cosine can be missed. Measured: fetching 50 rows instead of
20 changes no top product and no top score on viton-dev's 3,600 clips (docs/EVALUATION.md).
"""

from __future__ import annotations

import numpy as np

from indexer.store import StreamIndex


def search(index: StreamIndex, vectors: np.ndarray, k: int, hubness_weight: float) -> tuple[np.ndarray, np.ndarray]:
    """(similarities, rows), each [len(vectors), min(k, ntotal)], best first; rows of -1 are empty slots."""
    sims, rows = index.index.search(vectors, min(k, index.index.ntotal))
    if index.hubness is None or hubness_weight == 0 or sims.size == 0:
        return sims, rows
    found = rows >= 0
    scores = np.where(found, sims - hubness_weight * index.hubness[np.where(found, rows, 0)], sims)
    order = np.argsort(np.where(found, -scores, np.inf), axis=1, kind="stable")
    return np.take_along_axis(scores, order, axis=1), np.take_along_axis(rows, order, axis=1)
