"""Index cache: lazy load, LRU eviction, reload on a new CURRENT, keep serving through bad versions."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import pytest
from support.helpers import publish_tiny

from indexer.store import IndexStore, StreamIndex, StreamNotFound
from service.indexes import IndexCache


class Counter:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> None:
        self.calls += 1


def test_lazy_load_and_lru_eviction(tmp_path: Path) -> None:
    store = IndexStore(tmp_path)
    for stream_id in ("s1", "s2", "s3"):
        publish_tiny(store, stream_id)
    changes = Counter()
    cache = IndexCache(store, max_loaded=2, check_seconds=1000, on_change=changes)
    assert cache.loaded() == []
    first = cache.get("s1")
    assert cache.get("s1") is first and changes.calls == 1
    cache.get("s2")
    cache.get("s1")  # s1 is now the most recently used
    cache.get("s3")  # evicts s2
    assert [index.stream_id for index in cache.loaded()] == ["s1", "s3"]
    assert changes.calls == 3
    assert cache.get("s2").stream_id == "s2"  # loads again, evicting s1
    assert [index.stream_id for index in cache.loaded()] == ["s3", "s2"]


def test_unknown_and_invalid_streams(tmp_path: Path) -> None:
    cache = IndexCache(IndexStore(tmp_path), max_loaded=2, check_seconds=0)
    with pytest.raises(StreamNotFound):
        cache.get("nope")
    with pytest.raises(ValueError):
        cache.get("../etc")
    assert cache.loaded() == []


def test_new_current_is_picked_up(tmp_path: Path) -> None:
    store = IndexStore(tmp_path)
    first_version = publish_tiny(store, "s1", n=3)
    changes = Counter()
    cache = IndexCache(store, max_loaded=2, check_seconds=0, on_change=changes)
    old = cache.get("s1")
    assert old.version == first_version and cache.get("s1") is old  # unchanged CURRENT: same object
    second_version = publish_tiny(store, "s1", n=5)
    new = cache.get("s1")
    assert new.version == second_version and new.n_vectors == 5 and changes.calls == 2
    assert old.index.ntotal == 3  # holders of the old object keep a working index
    assert cache.loaded() == [new]


def test_no_reload_before_check_seconds(tmp_path: Path) -> None:
    store = IndexStore(tmp_path)
    first_version = publish_tiny(store, "s1")
    cache = IndexCache(store, max_loaded=2, check_seconds=3600)
    cache.get("s1")
    publish_tiny(store, "s1", n=6)
    assert cache.get("s1").version == first_version


def test_corrupt_new_version_keeps_old_serving(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store = IndexStore(tmp_path, keep_versions=5)
    first_version = publish_tiny(store, "s1")
    cache = IndexCache(store, max_loaded=2, check_seconds=0)
    cache.get("s1")
    bad_version = publish_tiny(store, "s1", n=6)
    index_file = tmp_path / "s1" / bad_version / "index.faiss"
    index_file.write_bytes(index_file.read_bytes()[:20])
    with caplog.at_level(logging.WARNING, logger="service.indexes"):
        assert cache.get("s1").version == first_version
        assert cache.get("s1").version == first_version
    warnings = [r for r in caplog.records if bad_version in r.getMessage()]
    assert len(warnings) == 1  # logged once, not on every check
    good_version = publish_tiny(store, "s1", n=7)
    assert cache.get("s1").version == good_version


def test_missing_current_keeps_serving(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store = IndexStore(tmp_path)
    version = publish_tiny(store, "s1")
    cache = IndexCache(store, max_loaded=2, check_seconds=0)
    cache.get("s1")
    (tmp_path / "s1" / "CURRENT").unlink()
    with caplog.at_level(logging.WARNING, logger="service.indexes"):
        assert cache.get("s1").version == version
    assert "CURRENT disappeared" in caplog.text


class GatedStore(IndexStore):
    """A store whose loads of one stream wait until the test opens the gate."""

    def __init__(self, root: Path, slow_stream: str) -> None:
        super().__init__(root)
        self.slow_stream = slow_stream
        self.loading = threading.Event()
        self.gate = threading.Event()

    def load(self, stream_id: str, version: str | None = None) -> StreamIndex:
        if stream_id == self.slow_stream:
            self.loading.set()
            assert self.gate.wait(timeout=10)
        return super().load(stream_id, version)


def test_slow_load_blocks_neither_other_streams_nor_old_readers(tmp_path: Path) -> None:
    store = GatedStore(tmp_path, slow_stream="none-yet")
    first_version = publish_tiny(store, "big")
    publish_tiny(store, "small")
    cache = IndexCache(store, max_loaded=3, check_seconds=0)
    cache.get("big")
    publish_tiny(store, "big", n=9)
    store.slow_stream = "big"
    results: list[StreamIndex] = []
    reloader = threading.Thread(target=lambda: results.append(cache.get("big")))
    reloader.start()
    try:
        assert store.loading.wait(timeout=10)
        assert cache.get("small").stream_id == "small"  # other streams keep serving
        assert cache.get("big").version == first_version  # the reload in flight does not block readers
    finally:
        store.gate.set()
        reloader.join(timeout=10)
    assert results[0].n_vectors == 9 and cache.get("big").n_vectors == 9


def test_concurrent_first_loads_share_one_index(tmp_path: Path) -> None:
    store = IndexStore(tmp_path)
    publish_tiny(store, "s1")
    cache = IndexCache(store, max_loaded=2, check_seconds=1000)
    results: list[StreamIndex] = []
    threads = [threading.Thread(target=lambda: results.append(cache.get("s1"))) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert len(results) == 8 and len({id(index) for index in results}) == 1
