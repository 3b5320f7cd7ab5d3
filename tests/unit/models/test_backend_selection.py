"""Backend selection from given facts: this CPU machine picks ONNX Runtime and says why; the decision table;
the TensorRT module imports and refuses clearly; engine cache keys; the GPU FAISS wrapper.

No test here pretends a GPU ran."""

from __future__ import annotations

import threading
from pathlib import Path

import faiss
import numpy as np
import pytest

from models.sessions.backend import BackendUnavailable, choose_backend
from models.sessions.trt import Probe, TensorRTError, build_engine, engine_path, probe
from service.faiss_device import LockedGpuIndex

HAS_TENSORRT_GPU = probe().available


cpu_only = pytest.mark.skipif(HAS_TENSORRT_GPU, reason="this machine can run TensorRT: `make gpu-check` covers it")


@cpu_only
def test_this_machine_picks_onnxruntime_and_says_why() -> None:
    choice = choose_backend()
    assert choice.backend == "onnxruntime"
    assert choice.providers[-1] == "CPUExecutionProvider"
    assert "TensorRT unavailable" in choice.reason
    assert probe().reason in choice.reason
    if choice.providers == ("CPUExecutionProvider",):
        assert "CPU runs the models" in choice.reason


def test_decision_table_from_given_facts() -> None:
    gpu = Probe(True, "TensorRT 10.0 on Some GPU", gpu_name="Some GPU", trt_version="10.0")
    none = Probe(False, "no CUDA GPU visible")
    cpu_only_ort = ["CPUExecutionProvider"]
    cuda_ort = ["CUDAExecutionProvider", "CPUExecutionProvider"]

    assert choose_backend(trt_probe=gpu, available=cpu_only_ort).backend == "tensorrt"
    assert "Some GPU" in choose_backend(trt_probe=gpu, available=cpu_only_ort).reason

    fallback = choose_backend(trt_probe=none, available=cuda_ort)
    assert (fallback.backend, fallback.providers) == ("onnxruntime", ("CUDAExecutionProvider", "CPUExecutionProvider"))
    assert "no CUDA GPU visible" in fallback.reason and "CUDAExecutionProvider" in fallback.reason

    cpu = choose_backend(trt_probe=none, available=cpu_only_ort)
    assert (cpu.backend, cpu.providers) == ("onnxruntime", ("CPUExecutionProvider",))

    forced = choose_backend("onnxruntime", trt_probe=gpu, available=cuda_ort)
    assert forced.backend == "onnxruntime" and "requested" in forced.reason

    with pytest.raises(BackendUnavailable, match="no CUDA GPU visible"):
        choose_backend("tensorrt", trt_probe=none, available=cuda_ort)
    with pytest.raises(ValueError, match="unknown inference backend"):
        choose_backend("tpu", trt_probe=none, available=cpu_only_ort)


@cpu_only
def test_tensorrt_module_imports_and_refuses_clearly(tmp_path: Path) -> None:
    found = probe()
    assert not found.available and found.reason
    with pytest.raises(TensorRTError, match=found.reason.split(" (")[0]):
        build_engine(tmp_path / "model.onnx", tmp_path / "model.engine")
    assert not (tmp_path / "model.engine").exists()


def test_engine_cache_key_covers_model_gpu_and_tensorrt_version(tmp_path: Path) -> None:
    base = engine_path(tmp_path, "embedder", "ab" * 32, "NVIDIA A100-SXM4-80GB", "10.3.0")
    assert base.parent == tmp_path and base.suffix == ".engine"
    assert "/" not in base.name and " " not in base.name
    others = {
        engine_path(tmp_path, "embedder", "cd" * 32, "NVIDIA A100-SXM4-80GB", "10.3.0"),
        engine_path(tmp_path, "embedder", "ab" * 32, "NVIDIA L4", "10.3.0"),
        engine_path(tmp_path, "embedder", "ab" * 32, "NVIDIA A100-SXM4-80GB", "10.4.0"),
        engine_path(tmp_path, "detector", "ab" * 32, "NVIDIA A100-SXM4-80GB", "10.3.0"),
    }
    assert base not in others and len(others) == 4


def test_locked_index_wrapper_delegates_and_serialises() -> None:
    """The wrapper used for GPU indexes, exercised around a CPU index (no GPU involved)."""
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((500, 16)).astype(np.float32)
    faiss.normalize_L2(vectors)
    inner = faiss.IndexFlatIP(16)
    inner.add(vectors)
    lock = threading.Lock()
    wrapped = LockedGpuIndex(inner, lock)
    assert (wrapped.d, wrapped.ntotal) == (16, 500)
    expected = inner.search(vectors[:7], 5)
    got = wrapped.search(vectors[:7], 5)
    assert np.array_equal(expected[1], got[1]) and np.allclose(expected[0], got[0])

    finished = threading.Event()

    def search_while_locked() -> None:
        wrapped.search(vectors[:1], 1)
        finished.set()

    with lock:  # a search must wait for the lock the wrapper holds around every call
        thread = threading.Thread(target=search_while_locked)
        thread.start()
        assert not finished.wait(0.3)
    assert finished.wait(10)
    thread.join()
