"""One session interface for every inference backend: ONNX Runtime (`ort.py`) and native TensorRT (`trt.py`).

Detector and Embedder only see `Session`: the tensors it takes and returns (`inputs`, `outputs`), where it
runs (`backend`, `providers`, and why: `reason`) and `run`. `backend.py` chooses the backend from what this
machine can run; `models/loader.py` opens the sessions.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True, slots=True)
class TensorSpec:
    """A model input or output: its name and shape (None for a dynamic axis)."""

    name: str
    shape: tuple[int | None, ...]


class Session(ABC):
    """A loaded model, whatever runs it. Subclasses set the attributes and implement `run`."""

    backend: str  # "onnxruntime" or "tensorrt"
    path: Path  # the ONNX file the session was made from
    providers: tuple[str, ...]  # what really runs it, best first (ONNX Runtime's providers, or ("TensorRT",))
    reason: str  # why this backend (logged at start-up, reported by GET /models)
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    @property
    def provider(self) -> str:
        """The provider that runs (most of) the graph: the first one the session got."""
        return self.providers[0]

    @property
    def input_name(self) -> str:
        return self.inputs[0].name

    @abstractmethod
    def run(self, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        """Every output for the given inputs, as host arrays."""
