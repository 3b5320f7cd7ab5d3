"""Backend selection with the real models: they say they run on the CPU and why, `tensorrt` fails with
the reason, `/models` reports it, the GPU scripts exit 2, FAISS indexes stay on the CPU.

No test here pretends a GPU ran."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from support.data import PROJECT_DIR

from models.artifacts import ModelArtifactError
from models.sessions.trt import probe
from service.faiss_device import gpu_count, to_device

HAS_TENSORRT_GPU = probe().available


cpu_only = pytest.mark.skipif(HAS_TENSORRT_GPU, reason="this machine can run TensorRT: `make gpu-check` covers it")


@cpu_only
def test_loaded_models_say_they_run_on_the_cpu_and_why(models) -> None:
    for loaded in models.loaded:
        assert loaded.session.backend == "onnxruntime"
        assert loaded.session.provider == "CPUExecutionProvider"
        assert "TensorRT unavailable" in loaded.session.reason


@cpu_only
def test_requesting_tensorrt_here_fails_with_the_reason(model_dir: Path) -> None:
    from models.loader import load_configured_models
    from watchbuy.settings import Settings

    with pytest.raises(ModelArtifactError, match="tensorrt backend was requested but cannot run"):
        load_configured_models(Settings(model_dir=model_dir, inference_backend="tensorrt"))


@cpu_only
def test_models_route_reports_backend_and_reason(model_dir: Path, slice_index_root: Path) -> None:
    from fastapi.testclient import TestClient

    from service.app import create_app
    from watchbuy.settings import Settings

    app = create_app(Settings(model_dir=model_dir, index_root=slice_index_root))
    with TestClient(app) as client:
        body = client.get("/models").json()
    assert {m["role"] for m in body["models"]} == {"detector", "embedder"}
    for model in body["models"]:
        assert model["backend"] == "onnxruntime"
        assert model["provider"] == "CPUExecutionProvider"
        assert "TensorRT unavailable" in model["backend_reason"]


@cpu_only
@pytest.mark.parametrize("script", ["scripts/gpu_check.py", "scripts/build_engines.py"])
def test_gpu_scripts_exit_2_with_a_clear_message(script: str) -> None:
    done = subprocess.run([sys.executable, script], cwd=PROJECT_DIR, capture_output=True, text=True, timeout=120,
                          check=False)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "pip install '.[gpu]'" in done.stderr and "NVIDIA GPU" in done.stderr
    assert "PASS" not in done.stdout


@pytest.mark.skipif(gpu_count() > 0, reason="faiss has a GPU here")
def test_faiss_indexes_stay_on_the_cpu_without_a_gpu(slice_index_root: Path) -> None:
    from support.data import SLICE_STREAM

    from indexer.store import IndexStore

    index = IndexStore(slice_index_root).load(SLICE_STREAM)
    assert to_device(index) is index
