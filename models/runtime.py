"""ONNX Runtime sessions on the best execution provider that is really installed.

Preference: TensorRT → CUDA → CPU. Only providers that the installed onnxruntime build reports as
available are requested, and the providers a session actually got are read back from the session
(ONNX Runtime silently falls back when a provider fails to initialise).

`choose_backend` picks the inference backend first: native TensorRT (models/tensorrt_backend.py) when
`tensorrt` and `cuda-python` import and a CUDA GPU is visible, else ONNX Runtime on the providers above;
the choice carries a human-readable reason that the loader logs and `/models` reports.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

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


BACKENDS: tuple[str, ...] = ("auto", "tensorrt", "onnxruntime")


class BackendUnavailable(RuntimeError):
    """The explicitly requested backend cannot run on this machine (the message says why)."""


@dataclass(frozen=True, slots=True)
class BackendChoice:
    """Which backend runs the models ("tensorrt": native engines, "onnxruntime"), on what, and why."""

    backend: str
    providers: tuple[str, ...]
    reason: str


def choose_backend(
    requested: str = "auto",
    preferred: Sequence[str] | None = None,
    available: Sequence[str] | None = None,
    trt_probe: object | None = None,
) -> BackendChoice:
    """Native TensorRT when it can run here, else ONNX Runtime on the best installed providers.

    `available` (providers) and `trt_probe` (a `tensorrt_backend.Probe`) default to what this machine has.
    """
    if requested not in BACKENDS:
        raise ValueError(f"unknown inference backend {requested!r}; expected one of {BACKENDS}")
    providers = tuple(select_providers(available, preferred or PREFERRED_PROVIDERS))
    if requested == "onnxruntime":
        return BackendChoice("onnxruntime", providers, f"onnxruntime requested; providers {list(providers)}")
    if trt_probe is None:
        from models.tensorrt_backend import probe

        trt_probe = probe()
    if trt_probe.available:
        return BackendChoice("tensorrt", providers, f"native {trt_probe.reason}")
    if requested == "tensorrt":
        raise BackendUnavailable(f"the tensorrt backend was requested but cannot run: {trt_probe.reason}")
    gpu_providers = [p for p in providers if p != "CPUExecutionProvider"]
    where = (f"onnxruntime offers {gpu_providers}" if gpu_providers
             else "onnxruntime has no TensorRT/CUDA provider here, so the CPU runs the models")
    return BackendChoice("onnxruntime", providers, f"native TensorRT unavailable ({trt_probe.reason}); {where}")


@dataclass(frozen=True, slots=True)
class Session:
    """An inference session and what it really runs on."""

    inner: ort.InferenceSession
    path: Path
    providers: tuple[str, ...]
    backend: str = "onnxruntime"
    reason: str = ""

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
    path: Path, intra_op_threads: int = 0, preferred: Sequence[str] | None = None, reason: str = ""
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
        reason = f"{reason}; onnxruntime fell back from {providers[0]} to {got[0]}".lstrip("; ")
    return Session(inner=inner, path=path, providers=got, reason=reason)
