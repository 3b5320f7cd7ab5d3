"""Text fusion's pieces: the centred, scaled bonus, and title vectors stored with the index."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from support.helpers import entries_for, random_index

from indexer.store import TEXT_FILE, IndexCorrupt, IndexStore, TitleVectors
from service.aggregate import text_bonus


def test_text_bonus_is_centred_and_scaled() -> None:
    titles = TitleVectors(("a", "b", "c"), np.eye(3, dtype=np.float32), "test")
    bonus = text_bonus(titles, np.array([1.0, 0.0, 0.0], dtype=np.float32), weight=0.6)
    assert bonus["a"] == pytest.approx(0.6 * (1 - 1 / 3))
    assert bonus["b"] == pytest.approx(0.6 * (0 - 1 / 3))
    assert sum(bonus.values()) == pytest.approx(0.0, abs=1e-6)
    assert text_bonus(titles, np.ones(3, dtype=np.float32), weight=0.0) == {}


def test_store_round_trips_title_vectors_and_detects_corruption(tmp_path: Path) -> None:
    store = IndexStore(tmp_path)
    entries = entries_for(6)
    titles = {e.product_id: f"title {e.product_id}" for e in entries}
    ids = tuple(sorted(titles))
    text = TitleVectors(ids, np.random.default_rng(0).normal(size=(len(ids), 8)).astype(np.float32), "enc")
    version = store.publish("s1", random_index(6), entries, titles, extra={}, text=text)
    loaded = store.load("s1")
    assert loaded.text is not None and loaded.text.product_ids == ids and loaded.text.encoder == "enc"
    np.testing.assert_array_equal(loaded.text.vectors, text.vectors)

    path = tmp_path / "s1" / version / TEXT_FILE
    path.write_bytes(path.read_bytes()[:-16])
    with pytest.raises(IndexCorrupt):
        store.load("s1")


def test_index_without_titles_has_no_text(tmp_path: Path) -> None:
    store = IndexStore(tmp_path)
    entries = entries_for(4)
    store.publish("s1", random_index(4), entries, {e.product_id: "" for e in entries}, extra={})
    assert store.load("s1").text is None
