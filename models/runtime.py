"""ONNX Runtime sessions on the best execution provider that is really installed.

Preference: TensorRT → CUDA → CPU. Only providers that the installed onnxruntime build reports as
available are requested, and the providers a session actually got are read back from the session
(ONNX Runtime silently falls back when a provider fails to initialise).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import onnxruntime as ort

log = logging.getLogger(__name__)

PREFERRED_PROVIDERS: tuple[str, ...] = (
    "TensorrtExecutionProvider",
    "CUDAExecutionProvider",
    "CPUExecutionProvider",
)


def select_providers(
    available: Sequence[str] | None = None, preferred: Sequence[str] = PREFERRED_PROVIDERS
) -> list[str]:
    """The preferred providers that are available, in preference order (CPU is always kept last)."""
    have = set(ort.get_available_providers() if available is None else available)
    chosen = [p for p in preferred if p in have]
    if "CPUExecutionProvider" not in chosen:
        chosen.append("CPUExecutionProvider")
    return chosen


@dataclass(frozen=True, slots=True)
class Session:
    """An inference session and what it really runs on."""

    inner: ort.InferenceSession
    path: Path
    providers: tuple[str, ...]

    @property
    def provider(self) -> str:
        """The provider that runs (most of) the graph: the first one the session got."""
        return self.providers[0]

    @property
    def input_name(self) -> str:
        return self.inner.get_inputs()[0].name

    def run(self, feeds: dict[str, object]) -> list:
        return self.inner.run(None, feeds)


def open_session(
    path: Path, intra_op_threads: int = 0, preferred: Sequence[str] | None = None
) -> Session:
    """Open `path` on the best available provider; `intra_op_threads=0` keeps the runtime default."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if intra_op_threads:
        options.intra_op_num_threads = intra_op_threads
    providers = select_providers(preferred=preferred or PREFERRED_PROVIDERS)
    inner = ort.InferenceSession(str(path), sess_options=options, providers=providers)
    got = tuple(inner.get_providers())
    if got[0] != providers[0]:
        log.warning("%s: asked for %s, got %s", path.name, providers, list(got))
    return Session(inner=inner, path=path, providers=got)
