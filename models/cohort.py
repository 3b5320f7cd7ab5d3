"""The query cohort: embedded livestream crops of the training streams, to mark down "hub" catalogue images.

A catalogue image that looks like many worn-garment photos (a plain black T-shirt) is the best wrong
match of many clips whose product is not in the catalogue, and so keeps the service from abstaining.
Its *hubness* is its mean cosine to its k nearest cohort crops; products are ranked by
cosine − weight × hubness (CSLS, as in cross-lingual word retrieval; only the catalogue side is
corrected, and docs/EVALUATION.md has the measurements that chose k, the weight and the cohort size).

A cohort belongs to one embedder. `watchbuy cohort` embeds the training streams' clip
proposals with it and saves `models/weights/cohort-<weights>.npz`, recorded under the weights' manifest
entry (training/trained.py); `make models` copies it next to the exported embedder as `cohort.npz`
(role "cohort", pinned to the embedder file's sha256), and the index build stores each catalogue
vector's hubness in the index version (indexer/build.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np

COHORT_FILE = "cohort.npz"
#: Cohort neighbours averaged into a catalogue vector's hubness (5 beat 20 on the dev-like streams).
HUBNESS_NEIGHBOURS = 5


class CohortError(ValueError):
    """A cohort file that cannot be used (unreadable, wrong shape, not unit vectors)."""


@dataclass(frozen=True, slots=True, eq=False)
class Cohort:
    """L2-normalised float32 rows [n, dim]; `sha256` and `name` are those of the file they came from."""

    vectors: np.ndarray
    sha256: str
    name: str

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    def hubness(self, vectors: np.ndarray, k: int = HUBNESS_NEIGHBOURS) -> np.ndarray:
        """Each row's mean cosine to its `k` nearest cohort vectors (float32 [len(vectors)])."""
        if vectors.ndim != 2 or vectors.shape[1] != self.dim:
            raise CohortError(f"vectors of shape {vectors.shape} for a {self.dim}-d cohort")
        k = min(k, len(self.vectors))
        index = faiss.IndexFlatIP(self.dim)
        index.add(self.vectors)
        sims, _ = index.search(np.ascontiguousarray(vectors, dtype=np.float32), k)
        mean: np.ndarray = sims.mean(axis=1).astype(np.float32)
        return mean


def sample_rows(vectors: np.ndarray, size: int, seed: int) -> np.ndarray:
    """`size` rows drawn without replacement (all of them, in order, when there are no more)."""
    if len(vectors) <= size:
        return vectors
    picked = np.random.default_rng(seed).choice(len(vectors), size, replace=False)
    return vectors[np.sort(picked)]


def write_cohort(path: Path, vectors: np.ndarray) -> None:
    """Save unit rows as fp16 (`vectors` in one .npz, no pickle), atomically."""
    if vectors.ndim != 2 or len(vectors) == 0:
        raise CohortError(f"a cohort needs a non-empty 2-d array, got shape {vectors.shape}")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("wb") as handle:
        np.savez(handle, vectors=vectors.astype(np.float16))
    tmp.replace(path)


def read_cohort(path: Path, sha256: str, name: str) -> Cohort:
    """Load a cohort file (checked by the caller against `sha256`) as float32 unit rows."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            vectors = archive["vectors"].astype(np.float32)
    except (OSError, KeyError, ValueError) as exc:
        raise CohortError(f"{path}: not a cohort file ({exc})") from exc
    if vectors.ndim != 2 or len(vectors) == 0:
        raise CohortError(f"{path}: expected [n, dim] vectors, got shape {vectors.shape}")
    norms = np.linalg.norm(vectors, axis=1)
    if not np.all(np.abs(norms - 1) < 0.01):  # fp16 rounding moves a unit norm by ~1e-3
        raise CohortError(f"{path}: rows are not unit vectors")
    return Cohort(vectors / norms[:, None], sha256, name)
