"""Small helpers shared by test modules: tiny indexes (publishing one, a corrupt copy), polling with a
bound, and product scores for the session-window tests."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import faiss
import numpy as np
import pytest

from indexer.store import INDEX_FILE, MANIFEST_FILE, IndexStore, VectorEntry, new_version_name
from service.aggregate import ProductScores

TINY_DIM = 8
STORE_DIM = 16
WAIT_S = 30.0  # bounds on waiting, never assertions on speed


def random_index(n: int, seed: int = 0, dim: int = STORE_DIM) -> faiss.IndexFlatIP:
    """n seeded random unit vectors in a flat inner-product index."""
    vectors = np.random.default_rng(seed).standard_normal((n, dim)).astype("float32")
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    index = faiss.IndexFlatIP(dim)
    index.add(vectors)
    return index


def entries_for(n: int) -> list[VectorEntry]:
    """n rows of three products (p0, p1, p2), one box each."""
    return [VectorEntry(f"p{i % 3}", f"p{i % 3}-{i}", (0.0, 1.0, 10.5, 20.0)) for i in range(n)]


def publish_tiny(store: IndexStore, stream_id: str, n: int = 4) -> str:
    """Publish an n-vector index of one product (vectors seeded by n) and return its version."""
    vectors = np.random.default_rng(n).standard_normal((n, TINY_DIM)).astype("float32")
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    index = faiss.IndexFlatIP(TINY_DIM)
    index.add(vectors)
    entries = [VectorEntry("p", f"p-{i}", (0.0, 0.0, 1.0, 1.0)) for i in range(n)]
    return store.publish(stream_id, index, entries, {"p": "a product"}, {})


def wait_for(predicate: Callable[[], object], what: str, timeout: float = WAIT_S, interval: float = 0.02) -> None:
    """Poll `predicate` until it is truthy; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    pytest.fail(f"timed out waiting for {what}")


def corrupt_copy(root: Path, stream_id: str, version: str) -> str:
    """A new, newer-named version whose index file is truncated (its manifest checksum no longer fits)."""
    bad = new_version_name()
    shutil.copytree(root / stream_id / version, root / stream_id / bad)
    manifest_path = root / stream_id / bad / MANIFEST_FILE
    manifest = json.loads(manifest_path.read_text())
    manifest["version"] = bad
    manifest_path.write_text(json.dumps(manifest))
    index_path = root / stream_id / bad / INDEX_FILE
    index_path.write_bytes(index_path.read_bytes()[:-100])
    return bad


#: Product titles of the session-window tests (the stream's current index; "x" is not in it).
TITLES = {"a": "A", "b": "B", "c": "C", "gone": ""}


def product_scores(*scores: tuple[str, float]) -> ProductScores:
    """One request's product scores (its floor: the lowest of them)."""
    return ProductScores(dict(scores), min(score for _, score in scores))
