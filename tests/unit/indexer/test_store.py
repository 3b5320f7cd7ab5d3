"""Index store: publish/load round trip, CURRENT, pruning, failed publishes, corruption, bad ids."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pytest
from support.helpers import STORE_DIM, entries_for, random_index

from indexer import store as store_module
from indexer.store import IndexCorrupt, IndexStore, StreamNotFound

DIM = STORE_DIM


TITLES = {"p0": "红色连衣裙", "p1": "Blue shirt", "p2": ""}


def publish(store: IndexStore, stream_id: str = "s1", n: int = 6, seed: int = 0) -> str:
    return store.publish(stream_id, random_index(n, seed), entries_for(n), TITLES, {"factory": "Flat"})


def test_round_trip(tmp_path: Path) -> None:
    store = IndexStore(tmp_path)
    version = publish(store)
    assert store.current_version("s1") == version and store.versions("s1") == [version]
    assert store.streams() == ["s1"]
    loaded = store.load("s1")
    assert loaded.version == version and loaded.stream_id == "s1"
    assert loaded.n_vectors == loaded.index.ntotal == 6 and loaded.n_products == 3
    assert loaded.entries == tuple(entries_for(6)) and loaded.titles == TITLES
    assert loaded.manifest["factory"] == "Flat" and loaded.manifest["dim"] == DIM
    assert loaded.manifest["index_type"] == "IndexFlatIP" and loaded.built_at.endswith("Z")
    expected = random_index(6)
    query = np.zeros((1, DIM), dtype="float32")
    query[0, 3] = 1.0
    assert np.array_equal(loaded.index.search(query, 3)[1], expected.search(query, 3)[1])
    files = sorted(p.name for p in (tmp_path / "s1" / version).iterdir())
    assert files == ["index.faiss", "manifest.json", "metadata.json"]


def test_current_switches_and_old_versions_stay_loadable(tmp_path: Path) -> None:
    store = IndexStore(tmp_path)
    first = publish(store, n=3)
    second = publish(store, n=5, seed=1)
    assert first < second and store.versions("s1") == [first, second]
    assert store.current_version("s1") == second and store.load("s1").n_vectors == 5
    assert store.load("s1", first).n_vectors == 3


def test_pruning_keeps_newest_and_removes_stale_temp_dirs(tmp_path: Path) -> None:
    store = IndexStore(tmp_path, keep_versions=2)
    stale = tmp_path / "s1" / ".tmp-20000101T000000.000000Z-abcdef"
    stale.mkdir(parents=True)
    os.utime(stale, (time.time() - 7200, time.time() - 7200))
    in_progress = tmp_path / "s1" / ".tmp-20990101T000000.000000Z-abcdef"  # another publisher, just now
    in_progress.mkdir()
    versions = [publish(store, seed=i) for i in range(4)]
    assert store.versions("s1") == versions[-2:] and store.current_version("s1") == versions[-1]
    assert not stale.exists() and in_progress.exists()


def test_prune_never_deletes_the_current_version(tmp_path: Path) -> None:
    store = IndexStore(tmp_path, keep_versions=1)
    old = publish(store)
    original = store._write_current
    try:  # simulate a publisher whose CURRENT swap is skipped: CURRENT keeps naming `old`
        store._write_current = lambda stream_dir, version: None  # type: ignore[method-assign]
        publish(store)
    finally:
        store._write_current = original  # type: ignore[method-assign]
    assert old in store.versions("s1") and store.current_version("s1") == old


def assert_untouched(tmp_path: Path, store: IndexStore, version: str) -> None:
    assert store.current_version("s1") == version
    assert store.versions("s1") == [version]
    assert [p.name for p in (tmp_path / "s1").iterdir() if p.name.startswith((".tmp", "CURRENT.tmp"))] == []


def test_failed_publish_leaves_current(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = IndexStore(tmp_path)
    version = publish(store)
    with pytest.raises(ValueError, match="entries"):
        store.publish("s1", random_index(4), entries_for(3), TITLES, {})
    with pytest.raises(ValueError, match="title"):
        store.publish("s1", random_index(3), entries_for(3), {"p0": "x"}, {})
    with pytest.raises(ValueError, match="reserved"):
        store.publish("s1", random_index(3), entries_for(3), TITLES, {"n_vectors": 1})

    def disk_full(*args: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(store_module, "_write_json", disk_full)
    with pytest.raises(OSError, match="No space"):
        publish(store)
    assert_untouched(tmp_path, store, version)
    monkeypatch.undo()

    monkeypatch.setattr(store_module.os, "replace", disk_full)  # the CURRENT swap itself fails
    with pytest.raises(OSError, match="No space"):
        publish(store)
    monkeypatch.undo()
    assert_untouched(tmp_path, store, version)
    assert store.load("s1").version == version


def test_corruption_is_detected(tmp_path: Path) -> None:
    store = IndexStore(tmp_path)
    version = publish(store)
    version_dir = tmp_path / "s1" / version
    index_bytes = (version_dir / "index.faiss").read_bytes()

    (version_dir / "index.faiss").write_bytes(index_bytes[:-10])
    with pytest.raises(IndexCorrupt, match="index.faiss"):
        store.load("s1")
    (version_dir / "index.faiss").write_bytes(index_bytes)
    store.load("s1")

    metadata = json.loads((version_dir / "metadata.json").read_text())
    metadata["entries"][0]["product_id"] = "p1"
    (version_dir / "metadata.json").write_text(json.dumps(metadata))
    with pytest.raises(IndexCorrupt, match="metadata.json"):
        store.load("s1")

    (version_dir / "manifest.json").unlink()
    with pytest.raises(IndexCorrupt, match="manifest.json"):
        store.load("s1")

    (tmp_path / "s1" / "CURRENT").write_text("../../etc\n")
    with pytest.raises(IndexCorrupt, match="CURRENT"):
        store.load("s1")


def test_consistent_edit_with_wrong_counts_is_corrupt(tmp_path: Path) -> None:
    """Even with checksums recomputed, entries that disagree with the index are refused."""
    store = IndexStore(tmp_path)
    version_dir = tmp_path / "s1" / publish(store)
    metadata = json.loads((version_dir / "metadata.json").read_text())
    metadata["entries"].pop()
    (version_dir / "metadata.json").write_text(json.dumps(metadata))
    manifest = json.loads((version_dir / "manifest.json").read_text())
    manifest["files"]["metadata.json"] = store_module._file_digest(version_dir / "metadata.json")
    (version_dir / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(IndexCorrupt, match="counts disagree"):
        store.load("s1")


@pytest.mark.parametrize("bad", ["../x", "", "a/b", "..", ".", "x" * 129, "a\\b", "s 1"])
def test_bad_stream_ids(tmp_path: Path, bad: str) -> None:
    store = IndexStore(tmp_path)
    for call in (store.current_version, store.versions, store.load):
        with pytest.raises(ValueError):
            call(bad)
    with pytest.raises(ValueError):
        store.publish(bad, random_index(1), entries_for(1), TITLES, {})
    assert list(tmp_path.iterdir()) == []


def test_bad_version_names(tmp_path: Path) -> None:
    store = IndexStore(tmp_path)
    publish(store)
    for bad in ("../s1", "CURRENT", ".tmp-x", ""):
        with pytest.raises(ValueError):
            store.load("s1", bad)


def test_unknown_stream(tmp_path: Path) -> None:
    store = IndexStore(tmp_path / "missing-root")
    assert store.streams() == [] and store.versions("nope") == [] and store.current_version("nope") is None
    with pytest.raises(StreamNotFound):
        store.load("nope")
    publish(IndexStore(tmp_path / "missing-root"))
    with pytest.raises(StreamNotFound):
        store.load("s1", "20000101T000000.000000Z-abcdef")


def test_hubness_round_trip_and_checks(tmp_path: Path) -> None:
    store = IndexStore(tmp_path)
    hubness = np.linspace(0.2, 0.7, 6, dtype=np.float32)
    version = store.publish("s1", random_index(6), entries_for(6), TITLES, {}, hubness=hubness)
    loaded = store.load("s1")
    np.testing.assert_array_equal(loaded.hubness, hubness)
    assert "hubness.npy" in loaded.manifest["files"]
    assert store.load("s1", publish(store)).hubness is None  # built without a cohort

    with pytest.raises(ValueError, match="hubness of shape"):
        store.publish("s1", random_index(6), entries_for(6), TITLES, {}, hubness=hubness[:5])
    np.save(tmp_path / "s1" / version / "hubness.npy", hubness[::-1].copy())
    with pytest.raises(IndexCorrupt, match="sha256"):
        store.load("s1", version)
