"""Per-stream index cache for the service: lazy loads, LRU eviction, reload when CURRENT moves, and
`switch_to(stream, version)` for the Redis index registry (service/registry.py).

Thread-safe. A global lock guards only the dict; loading runs under a per-stream lock, so a big load
never stalls other streams, and requests for a stream being reloaded keep getting the old index.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from indexer.store import IndexCorrupt, IndexStore, StoreError, StreamIndex
from service.faiss_device import to_device

log = logging.getLogger(__name__)

#: A version that failed to load is retried no sooner than this (re-hashing a big bad file is costly).
RETRY_FAILED_SECONDS = 30.0


@dataclass(slots=True)
class _Cached:
    """A loaded index, when CURRENT was last checked, the last problem seen (mutated under the lock)."""

    index: StreamIndex
    checked_at: float
    problem: str | None = None
    failed_version: str | None = None
    failed_at: float = 0.0


class IndexCache:
    """Loaded stream indexes, at most `max_loaded`, least recently used evicted first."""

    def __init__(
        self,
        store: IndexStore,
        max_loaded: int,
        check_seconds: float,
        on_change: Callable[[], None] | None = None,
    ) -> None:
        if max_loaded < 1:
            raise ValueError("max_loaded must be at least 1")
        self._store = store
        self._max_loaded = max_loaded
        self._check_seconds = check_seconds
        self._on_change = on_change
        self._lock = threading.Lock()
        self._cached: OrderedDict[str, _Cached] = OrderedDict()
        self._stream_locks: dict[str, threading.Lock] = {}

    def get(self, stream_id: str) -> StreamIndex:
        """The stream's index, loading or reloading it when due; StreamNotFound if it has no CURRENT."""
        with self._lock:
            cached = self._cached.get(stream_id)
            if cached is not None:
                self._cached.move_to_end(stream_id)
                if not self._due(cached):
                    return cached.index
            stream_lock = self._stream_locks.setdefault(stream_id, threading.Lock())
        if cached is not None:
            if not stream_lock.acquire(blocking=False):
                return cached.index  # another thread is reloading it: keep serving the old one
            try:
                return self._refresh(stream_id, cached)
            finally:
                stream_lock.release()
        with stream_lock:
            return self._first_load(stream_id)

    def switch_to(self, stream_id: str, version: str) -> str:
        """Load and verify `version` of a loaded stream now and swap it in (the registry's entry point).

        Returns "switched", "current" (already serving it), "not_loaded" (the stream is not in memory:
        its next request loads CURRENT) or "refused" (missing or failing verification: the loaded
        version keeps serving). Requests never see a half-loaded index: the swap is one reference.
        """
        with self._lock:
            cached = self._cached.get(stream_id)
            if cached is None:
                return "not_loaded"
            if cached.index.version == version:
                return "current"
            stream_lock = self._stream_locks.setdefault(stream_id, threading.Lock())
        with stream_lock:  # waits for a reload in progress, then decides on what it left
            with self._lock:
                cached = self._cached.get(stream_id)
            if cached is None:
                return "not_loaded"
            if cached.index.version == version:
                return "current"
            try:
                index = self._load(stream_id, version)
            except (StoreError, ValueError) as exc:
                if isinstance(exc, IndexCorrupt):
                    with self._lock:  # CURRENT polling will not re-hash it for RETRY_FAILED_SECONDS
                        cached.failed_version, cached.failed_at = version, time.monotonic()
                self._keep(stream_id, cached, f"version {version} refused ({exc})")
                return "refused"
            log.info("switched index %s: %s -> %s", stream_id, cached.index.version, index.version)
            self._put(stream_id, index)
            return "switched"

    def loaded(self) -> list[StreamIndex]:
        """Loaded indexes, least recently used first."""
        with self._lock:
            return [cached.index for cached in self._cached.values()]

    def _load(self, stream_id: str, version: str | None = None) -> StreamIndex:
        """Load and verify a version from the store; on the GPU when faiss has one (service/faiss_device.py)."""
        return to_device(self._store.load(stream_id, version))

    def _due(self, cached: _Cached) -> bool:
        return time.monotonic() - cached.checked_at > self._check_seconds

    def _first_load(self, stream_id: str) -> StreamIndex:
        with self._lock:
            cached = self._cached.get(stream_id)
        if cached is not None:  # another thread loaded it while this one waited
            return cached.index
        try:
            index = self._load(stream_id)
        except BaseException:
            with self._lock:  # keep the lock table bounded by streams that exist
                self._stream_locks.pop(stream_id, None)
            raise
        log.info("loaded index %s/%s (%d vectors)", stream_id, index.version, index.n_vectors)
        self._put(stream_id, index)
        return index

    def _refresh(self, stream_id: str, cached: _Cached) -> StreamIndex:
        """Swap in the version CURRENT now names; on any trouble keep serving the loaded one."""
        old = cached.index
        try:
            current = self._store.current_version(stream_id)
        except StoreError as exc:
            return self._keep(stream_id, cached, f"CURRENT unreadable ({exc})")
        if current is None:
            return self._keep(stream_id, cached, "CURRENT disappeared")
        if current == old.version:
            return self._keep(stream_id, cached, None)
        if current == cached.failed_version and time.monotonic() - cached.failed_at < RETRY_FAILED_SECONDS:
            return self._keep(stream_id, cached, cached.problem)
        try:
            index = self._load(stream_id, current)
        except StoreError as exc:
            with self._lock:
                cached.failed_version, cached.failed_at = current, time.monotonic()
            return self._keep(stream_id, cached, f"new version {current} failed to load ({exc})")
        log.info("swapped index %s: %s -> %s", stream_id, old.version, index.version)
        self._put(stream_id, index)
        return index

    def _keep(self, stream_id: str, cached: _Cached, problem: str | None) -> StreamIndex:
        """Mark the loaded index checked and keep serving it; log `problem` when it is new."""
        if problem is not None and problem != cached.problem:
            log.warning("stream %s: %s; still serving %s", stream_id, problem, cached.index.version)
        with self._lock:
            cached.checked_at = time.monotonic()
            cached.problem = problem
        return cached.index

    def _put(self, stream_id: str, index: StreamIndex) -> None:
        evicted: list[str] = []
        with self._lock:
            self._cached[stream_id] = _Cached(index, time.monotonic())
            self._cached.move_to_end(stream_id)
            while len(self._cached) > self._max_loaded:
                old_id, _ = self._cached.popitem(last=False)
                self._stream_locks.pop(old_id, None)
                evicted.append(old_id)
        for old_id in evicted:
            log.info("evicted index %s (LRU, max_loaded=%d)", old_id, self._max_loaded)
        self._changed()

    def _changed(self) -> None:
        if self._on_change is None:
            return
        try:
            self._on_change()
        except Exception:  # a broken gauge update must not fail a request
            log.exception("index cache on_change callback failed")
