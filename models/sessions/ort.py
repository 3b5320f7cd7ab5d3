"""ONNX Runtime sessions on the best execution provider that is really installed.

Preference: TensorRT → CUDA → CPU. Only providers that the installed onnxruntime build reports as
available are requested, and the providers a session actually got are read back from the session
(ONNX Runtime silently falls back when a provider fails to initialise).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort

from models.sessions import Session, TensorSpec

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


def _specs(args: Sequence[ort.NodeArg]) -> tuple[TensorSpec, ...]:
    return tuple(TensorSpec(a.name, tuple(d if isinstance(d, int) else None for d in a.shape)) for a in args)


class OrtSession(Session):
    """An ONNX Runtime inference session and what it really runs on."""

    backend = "onnxruntime"

    def __init__(self, inner: ort.InferenceSession, path: Path, reason: str = "") -> None:
        self.inner = inner
        self.path = path
        self.reason = reason
        self.providers = tuple(inner.get_providers())
        self.inputs = _specs(inner.get_inputs())
        self.outputs = _specs(inner.get_outputs())

    def run(self, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        outputs: list[np.ndarray] = self.inner.run(None, dict(feeds))
        return outputs


def open_session(
    path: Path, intra_op_threads: int = 0, preferred: Sequence[str] | None = None, reason: str = ""
) -> OrtSession:
    """Open `path` on the best available provider; `intra_op_threads=0` keeps the runtime default."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if intra_op_threads:
        options.intra_op_num_threads = intra_op_threads
    providers = select_providers(preferred=preferred or PREFERRED_PROVIDERS)
    inner = ort.InferenceSession(str(path), sess_options=options, providers=providers)
    got = inner.get_providers()
    if got[0] != providers[0]:
        log.warning("%s: asked for %s, got %s", path.name, providers, list(got))
        reason = f"{reason}; onnxruntime fell back from {providers[0]} to {got[0]}".lstrip("; ")
    return OrtSession(inner, path, reason)
