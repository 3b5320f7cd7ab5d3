"""Loaded stream indexes moved to the GPU when faiss has one; GPU searches serialised by a lock.

Guarded: with faiss-cpu (no `StandardGpuResources`) or no visible GPU, `to_device` returns the index
unchanged and says why. One `StandardGpuResources` (scratch memory, streams) serves the whole process;
GPU faiss search is not thread-safe, so `LockedGpuIndex.search` holds one process-wide lock (CPU
indexes are searched concurrently, as before). Index types faiss cannot put on a GPU (e.g. HNSW) stay
on the CPU.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from typing import Any, cast

import faiss
import numpy as np

from indexer.store import StreamIndex

log = logging.getLogger(__name__)

_resources: Any = None
_resources_lock = threading.Lock()
_search_lock = threading.Lock()


def gpu_count() -> int:
    """GPUs faiss can use (0 with faiss-cpu)."""
    if not hasattr(faiss, "StandardGpuResources") or not hasattr(faiss, "get_num_gpus"):
        return 0
    try:
        return int(faiss.get_num_gpus())
    except RuntimeError:
        return 0


def device_reason() -> str:
    if not hasattr(faiss, "StandardGpuResources"):
        return "faiss is the CPU build (no GPU support compiled in)"
    return f"faiss sees {gpu_count()} GPU(s)"


def _gpu_resources() -> Any:
    global _resources
    with _resources_lock:
        if _resources is None:
            _resources = faiss.StandardGpuResources()
        return _resources


class LockedGpuIndex:
    """A GPU faiss index with the attributes the service reads (`d`, `ntotal`, `search`), one search at a time."""

    def __init__(self, gpu_index: Any, lock: threading.Lock | None = None) -> None:
        self.inner = gpu_index
        self._lock = lock or _search_lock

    @property
    def d(self) -> int:
        return int(self.inner.d)

    @property
    def ntotal(self) -> int:
        return int(self.inner.ntotal)

    def search(self, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        with self._lock:
            found: tuple[np.ndarray, np.ndarray] = self.inner.search(vectors, k)
            return found


def to_device(index: StreamIndex, device: int = 0) -> StreamIndex:
    """The same stream index on GPU `device` when faiss has one, else `index` itself."""
    if gpu_count() == 0:
        return index
    try:
        gpu = faiss.index_cpu_to_gpu(_gpu_resources(), device, index.index)
    except (RuntimeError, AttributeError) as exc:  # e.g. HNSW has no GPU implementation
        log.warning("index %s/%s stays on the CPU: %s", index.stream_id, index.version, exc)
        return index
    log.info("index %s/%s moved to GPU %d", index.stream_id, index.version, device)
    # the wrapper offers what the service reads of an index (d, ntotal, search), not all of faiss.Index
    return dataclasses.replace(index, index=cast(faiss.Index, LockedGpuIndex(gpu)))
