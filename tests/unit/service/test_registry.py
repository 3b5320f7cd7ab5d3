"""The index registry without Redis: announcements as untrusted messages, verified one-reference swaps."""

from __future__ import annotations

import json
import threading
from pathlib import Path

from support.helpers import corrupt_copy, publish_tiny

from indexer.announce import decode_announcement, encode_announcement
from indexer.store import IndexStore, new_version_name
from service.indexes import IndexCache


def test_announcement_round_trip_and_untrusted_messages() -> None:
    version = new_version_name()
    parsed = decode_announcement(encode_announcement("s1", version))
    assert parsed is not None and (parsed.stream_id, parsed.version) == ("s1", version)
    assert decode_announcement(encode_announcement("s1", version).encode()) == parsed
    for bad in (
        "not json", "[]", "{}", json.dumps({"stream_id": "../etc", "version": version}),
        json.dumps({"stream_id": "s1", "version": "../../x"}), json.dumps({"stream_id": 5, "version": version}),
        None, 42, "x" * 5000,
    ):
        assert decode_announcement(bad) is None, bad


def test_switch_to_verifies_before_swapping(tmp_path: Path) -> None:
    store = IndexStore(tmp_path, keep_versions=10)
    first = publish_tiny(store, "s1", n=3)
    cache = IndexCache(store, max_loaded=2, check_seconds=3600)
    assert cache.switch_to("s1", first) == "not_loaded"  # nothing loaded: the next request loads CURRENT
    old = cache.get("s1")
    assert cache.switch_to("s1", first) == "current"
    second = publish_tiny(store, "s1", n=5)
    assert cache.get("s1") is old  # check_seconds=3600: no polling, only an explicit switch moves it
    assert cache.switch_to("s1", second) == "switched"
    new = cache.get("s1")
    assert new.version == second and new.n_vectors == 5 and old.index.ntotal == 3

    bad = corrupt_copy(tmp_path, "s1", second)
    assert cache.switch_to("s1", bad) == "refused"
    assert cache.get("s1") is new  # the old one keeps serving
    assert cache.switch_to("s1", new_version_name()) == "refused"  # a version that does not exist
    assert cache.get("s1") is new
    assert cache.switch_to("s1", "not-a-version") == "refused"


def test_no_request_sees_a_half_loaded_index(tmp_path: Path) -> None:
    """Readers racing switches only ever get complete, verified versions."""
    store = IndexStore(tmp_path, keep_versions=50)
    versions = {publish_tiny(store, "s1", n=4): 4}
    cache = IndexCache(store, max_loaded=2, check_seconds=3600)
    cache.get("s1")
    stop, seen, problems = threading.Event(), set(), []

    def read() -> None:
        while not stop.is_set():
            index = cache.get("s1")
            seen.add(index.version)
            if index.index.ntotal != len(index.entries) or versions.get(index.version) != index.n_vectors:
                problems.append(index.version)

    readers = [threading.Thread(target=read) for _ in range(3)]
    for reader in readers:
        reader.start()
    try:
        for n in range(5, 12):
            version = publish_tiny(store, "s1", n=n)
            versions[version] = n
            assert cache.switch_to("s1", version) == "switched"
    finally:
        stop.set()
        for reader in readers:
            reader.join()
    assert not problems and len(seen) > 1
