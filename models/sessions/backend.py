"""Which backend runs the models: native TensorRT when it can run here, else ONNX Runtime, with the reason."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from models.sessions.ort import PREFERRED_PROVIDERS, select_providers
from models.sessions.trt import Probe, probe

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
    trt_probe: Probe | None = None,
) -> BackendChoice:
    """Native TensorRT when it can run here, else ONNX Runtime on the best installed providers.

    `available` (providers) and `trt_probe` default to what this machine has.
    """
    if requested not in BACKENDS:
        raise ValueError(f"unknown inference backend {requested!r}; expected one of {BACKENDS}")
    providers = tuple(select_providers(available, preferred or PREFERRED_PROVIDERS))
    if requested == "onnxruntime":
        return BackendChoice("onnxruntime", providers, f"onnxruntime requested; providers {list(providers)}")
    found = trt_probe if trt_probe is not None else probe()
    if found.available:
        return BackendChoice("tensorrt", providers, f"native {found.reason}")
    if requested == "tensorrt":
        raise BackendUnavailable(f"the tensorrt backend was requested but cannot run: {found.reason}")
    gpu_providers = [p for p in providers if p != "CPUExecutionProvider"]
    where = (f"onnxruntime offers {gpu_providers}" if gpu_providers
             else "onnxruntime has no TensorRT/CUDA provider here, so the CPU runs the models")
    return BackendChoice("onnxruntime", providers, f"native TensorRT unavailable ({found.reason}); {where}")
