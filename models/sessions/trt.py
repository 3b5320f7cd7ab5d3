"""Native TensorRT: FP16 engines built from the ONNX files, cached on disk, run on device buffers.

Import-guarded: this module imports on any machine; `probe()` says whether TensorRT can run here (the
`tensorrt` and `cuda-python` packages import and a CUDA GPU is visible) and why not.

- `build_engine` parses an ONNX file with the TensorRT ONNX parser, sets the FP16 builder flag (when the
  GPU has fast FP16), gives every dynamic input one optimisation profile (batch 1 … max_batch) and writes
  the serialised engine atomically.
- `engine_path` keys the cache by the ONNX file's sha256, the GPU name and the TensorRT version, so a
  new model, another GPU or another TensorRT never loads a stale engine (engines are not portable).
- `TrtSession` deserialises an engine and runs it with one execution context, device buffers sized for
  the profile's largest shape (allocated once), and a CUDA stream: set_input_shape → memcpy H2D →
  set_tensor_address → execute_async_v3 → memcpy D2H → synchronise. Calls are serialised by a lock (an
  execution context is not thread-safe). It is a `models.sessions.Session`, like the ONNX Runtime one.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from models.sessions import Session, TensorSpec

log = logging.getLogger(__name__)

try:  # the GPU extra: pip install '.[gpu]'
    import tensorrt as trt
except ImportError as exc:
    trt = None
    _TRT_IMPORT_ERROR: str | None = f"tensorrt is not installed ({exc.msg})"
else:
    _TRT_IMPORT_ERROR = None

try:  # cuda-python ≥ 12.6 / 13 moved the runtime bindings; older releases have cuda.cudart
    from cuda.bindings import runtime as cudart
except ImportError:
    try:
        from cuda import cudart
    except ImportError as exc:
        cudart = None
        _CUDA_IMPORT_ERROR: str | None = f"cuda-python is not installed ({exc.msg})"
    else:
        _CUDA_IMPORT_ERROR = None
else:
    _CUDA_IMPORT_ERROR = None

ENGINE_DIR_NAME = "engines"
#: Largest batch an engine accepts on a dynamic batch axis (Embedder.max_batch is 64).
DEFAULT_MAX_BATCH = 64
WORKSPACE_BYTES = 1 << 30


class TensorRTError(RuntimeError):
    """TensorRT cannot build or run an engine here; the message says why."""


@dataclass(frozen=True, slots=True)
class Probe:
    """Whether native TensorRT can run on this machine, and why (not)."""

    available: bool
    reason: str
    gpu_name: str | None = None
    trt_version: str | None = None

    def refusal(self, task: str) -> str:
        """The error a GPU-only command prints when it cannot `task` here (what it needs, and why not)."""
        return (f"error: cannot {task} on this machine: {self.reason}.\n"
                "       This needs an NVIDIA GPU with its driver and `pip install '.[gpu]'` "
                "(tensorrt, cuda-python, onnxruntime-gpu).")


def _check(result: Any) -> Any:
    """cuda-python calls return (error, *values): raise on an error, return the value(s)."""
    err, *values = result if isinstance(result, tuple) else (result,)
    if err != cudart.cudaError_t.cudaSuccess:
        _, name = cudart.cudaGetErrorName(err)
        raise TensorRTError(f"CUDA error {name.decode() if isinstance(name, bytes) else name}")
    if not values:
        return None
    return values[0] if len(values) == 1 else values


def probe() -> Probe:
    """TensorRT importable, cuda-python importable, and at least one CUDA device visible."""
    if _TRT_IMPORT_ERROR:
        return Probe(False, _TRT_IMPORT_ERROR)
    if _CUDA_IMPORT_ERROR:
        return Probe(False, _CUDA_IMPORT_ERROR, trt_version=trt.__version__)
    err, count = cudart.cudaGetDeviceCount()
    if err != cudart.cudaError_t.cudaSuccess or count == 0:
        return Probe(False, f"no CUDA GPU visible ({err})", trt_version=trt.__version__)
    return Probe(True, f"TensorRT {trt.__version__} on {gpu_name()}", gpu_name=gpu_name(), trt_version=trt.__version__)


def gpu_name(device: int = 0) -> str:
    props = _check(cudart.cudaGetDeviceProperties(device))
    name = props.name
    return (name.decode(errors="replace") if isinstance(name, bytes) else str(name)).strip("\x00 ")


def engine_path(engine_dir: Path, role: str, onnx_sha256: str, gpu: str, trt_version: str) -> Path:
    """The cache file for one model on one GPU with one TensorRT version."""
    gpu_slug = re.sub(r"[^A-Za-z0-9]+", "-", gpu).strip("-").lower() or "gpu"
    return Path(engine_dir) / f"{role}-{onnx_sha256[:16]}-{gpu_slug}-trt{trt_version}.engine"


def _require() -> Probe:
    found = probe()
    if not found.available:
        raise TensorRTError(found.reason)
    return found


def build_engine(onnx_path: Path, out_path: Path, max_batch: int = DEFAULT_MAX_BATCH, fp16: bool = True) -> Path:
    """Parse `onnx_path`, build a (FP16) engine with a batch profile for dynamic inputs, write it atomically."""
    _require()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # TensorRT 10: explicit batch is the only mode
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise TensorRTError(f"TensorRT cannot parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, WORKSPACE_BYTES)
    use_fp16 = fp16 and getattr(builder, "platform_has_fast_fp16", True)
    if use_fp16:
        config.set_flag(trt.BuilderFlag.FP16)
    profile = builder.create_optimization_profile()
    dynamic = False
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        shape = tuple(tensor.shape)
        if any(d < 0 for d in shape[1:]):
            raise TensorRTError(f"{onnx_path}: input {tensor.name}{shape} is dynamic beyond the batch axis")
        if shape[0] < 0:
            dynamic = True
            rest = shape[1:]
            opt = max(1, min(8, max_batch))
            profile.set_shape(tensor.name, (1, *rest), (opt, *rest), (max_batch, *rest))
    if dynamic:
        config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise TensorRTError(f"TensorRT failed to build an engine from {onnx_path} (see its log above)")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(f".{out_path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as handle:
        handle.write(memoryview(serialized))
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, out_path)
    log.info("built TensorRT engine %s (fp16=%s)", out_path, use_fp16)
    return out_path


def ensure_engine(
    onnx_path: Path, onnx_sha256: str, role: str, engine_dir: Path, max_batch: int = DEFAULT_MAX_BATCH
) -> Path:
    """The cached engine for this model/GPU/TensorRT, built first when missing."""
    found = _require()
    path = engine_path(engine_dir, role, onnx_sha256, found.gpu_name or "gpu", found.trt_version or "unknown")
    if not path.is_file():
        log.info("no cached engine for %s on %s: building %s (takes a while, once)", role, found.gpu_name, path)
        build_engine(onnx_path, path, max_batch=max_batch)
    return path


class TrtSession(Session):
    """A deserialised engine with one execution context and device buffers; thread-safe by a lock."""

    backend = "tensorrt"

    def __init__(self, engine_file: Path, onnx_path: Path, reason: str = "") -> None:
        _require()
        self.path = onnx_path
        self.engine_file = engine_file
        self.reason = reason
        self.providers = ("TensorRT",)
        self._lock = threading.Lock()
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        self._engine = self._runtime.deserialize_cuda_engine(Path(engine_file).read_bytes())
        if self._engine is None:
            raise TensorRTError(f"cannot deserialise {engine_file}: rebuild it with `make engines`")
        self._context = self._engine.create_execution_context()
        self._stream = _check(cudart.cudaStreamCreate())
        self._inputs: list[str] = []
        self._outputs: list[str] = []
        self._dtypes: dict[str, np.dtype] = {}
        self._buffers: dict[str, tuple[int, int]] = {}  # name → (device pointer, capacity in bytes)
        specs_in: list[TensorSpec] = []
        specs_out: list[TensorSpec] = []
        for i in range(self._engine.num_io_tensors):
            name = self._engine.get_tensor_name(i)
            shape = tuple(None if d < 0 else int(d) for d in self._engine.get_tensor_shape(name))
            self._dtypes[name] = np.dtype(trt.nptype(self._engine.get_tensor_dtype(name)))
            if self._engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT:
                self._inputs.append(name)
                specs_in.append(TensorSpec(name, shape))
            else:
                self._outputs.append(name)
                specs_out.append(TensorSpec(name, shape))
        self.inputs = tuple(specs_in)
        self.outputs = tuple(specs_out)
        # the largest batch the optimisation profile accepts (None: a fixed-shape engine)
        first = self._inputs[0]
        self.max_batch = (int(self._engine.get_tensor_profile_shape(first, 0)[2][0])
                          if self._engine.get_tensor_shape(first)[0] < 0 else None)

    def _buffer(self, name: str, nbytes: int) -> int:
        """A device buffer of at least `nbytes` for `name` (grown when a bigger batch arrives)."""
        ptr, capacity = self._buffers.get(name, (0, 0))
        if capacity < nbytes:
            if ptr:
                _check(cudart.cudaFree(ptr))
            ptr = _check(cudart.cudaMalloc(nbytes))
            self._buffers[name] = (int(ptr), nbytes)
        return self._buffers[name][0]

    def run(self, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        """Like onnxruntime's `run(None, feeds)`: every output, as host numpy arrays.

        A batch larger than the engine's profile runs in profile-sized chunks along axis 0.
        """
        size = len(next(iter(feeds.values())))
        if self.max_batch is not None and size > self.max_batch:
            parts = [self.run({k: v[i : i + self.max_batch] for k, v in feeds.items()})
                     for i in range(0, size, self.max_batch)]
            return [np.concatenate([part[j] for part in parts]) for j in range(len(parts[0]))]
        with self._lock:
            h2d = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
            d2h = cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
            held = []  # host arrays must stay alive until the stream is synchronised
            for name in self._inputs:
                host = np.ascontiguousarray(feeds[name], dtype=self._dtypes[name])
                held.append(host)
                if not self._context.set_input_shape(name, tuple(host.shape)):
                    raise TensorRTError(
                        f"{self.engine_file.name}: input {name}{host.shape} outside the engine's profile"
                    )
                device = self._buffer(name, host.nbytes)
                _check(cudart.cudaMemcpyAsync(device, host.ctypes.data, host.nbytes, h2d, self._stream))
                self._context.set_tensor_address(name, device)
            outputs = []
            for name in self._outputs:
                shape = tuple(self._context.get_tensor_shape(name))
                host = np.empty(shape, dtype=self._dtypes[name])
                self._context.set_tensor_address(name, self._buffer(name, max(host.nbytes, 1)))
                outputs.append(host)
            if not self._context.execute_async_v3(int(self._stream)):
                raise TensorRTError(f"{self.engine_file.name}: execute_async_v3 failed")
            for name, host in zip(self._outputs, outputs, strict=True):
                _check(cudart.cudaMemcpyAsync(host.ctypes.data, self._buffers[name][0], host.nbytes, d2h,
                                              self._stream))
            _check(cudart.cudaStreamSynchronize(self._stream))
            del held
            return outputs

    def close(self) -> None:
        """Free the device buffers and the stream (also safe on a half-constructed session)."""
        lock = getattr(self, "_lock", None)
        if lock is None:
            return
        with lock:
            for ptr, _ in getattr(self, "_buffers", {}).values():
                cudart.cudaFree(ptr)
            self._buffers = {}
            if getattr(self, "_stream", None) is not None:
                cudart.cudaStreamDestroy(self._stream)
                self._stream = None

    def __del__(self) -> None:  # best effort: the process usually owns these until it exits
        try:
            self.close()
        except Exception as exc:  # noqa: BLE001 - interpreter shutdown may have torn CUDA down already
            log.debug("closing a TensorRT session: %s", exc)


def open_trt_session(
    onnx_path: Path, onnx_sha256: str, role: str, engine_dir: Path, reason: str = "",
    max_batch: int = DEFAULT_MAX_BATCH,
) -> TrtSession:
    """Build (once, cached) and open the engine of one model."""
    engine = ensure_engine(onnx_path, onnx_sha256, role, engine_dir, max_batch=max_batch)
    return TrtSession(engine, onnx_path, reason=reason)
