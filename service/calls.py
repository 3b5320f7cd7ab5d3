"""How the pipeline calls the two image models: directly, or through the shared batchers.

`ModelCalls` is the one small interface the pipeline needs. `DirectCalls` runs each call in a worker
thread of the service's CPU limiter (batching off, and tools that own the machine); `ModelBatchers`
(service/batching.py) puts the items of concurrent requests into shared model calls. Both refuse work
they cannot take with `admit` before a request decodes anything.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import anyio
import numpy as np

from models.loader import Models
from models.types import Detection


class ModelCalls(Protocol):
    def admit(self, n_frames: int) -> None:
        """Raise `Overloaded` (429) now when a request of `n_frames` would be refused."""
        ...

    async def detect(self, images: Sequence[np.ndarray]) -> list[list[Detection]]:
        """The detector's detections per image."""
        ...

    async def embed(self, crops: Sequence[np.ndarray]) -> np.ndarray:
        """[len(crops), dim] unit vectors."""
        ...


class DirectCalls:
    """Each call is one model run of the caller's own items, in a worker thread of `limiter`."""

    def __init__(self, models: Models, limiter: anyio.CapacityLimiter) -> None:
        self._models = models
        self._limiter = limiter

    def admit(self, n_frames: int) -> None:
        """Nothing queues here: a request waits for a worker thread instead."""

    async def detect(self, images: Sequence[np.ndarray]) -> list[list[Detection]]:
        return await anyio.to_thread.run_sync(self._models.detector.detect_many, images, limiter=self._limiter)

    async def embed(self, crops: Sequence[np.ndarray]) -> np.ndarray:
        return await anyio.to_thread.run_sync(self._models.embedder.embed, crops, limiter=self._limiter)
