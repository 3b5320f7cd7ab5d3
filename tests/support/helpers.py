"""Small helpers shared by test modules: tiny indexes (and publishing one), and polling with a bound."""

from __future__ import annotations

import time
from collections.abc import Callable

import faiss
import numpy as np
import pytest

from indexer.store import IndexStore, VectorEntry

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
