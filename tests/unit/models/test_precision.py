"""Which file runs a model: its int8 copy on ONNX Runtime's CPU provider, its fp32 file everywhere else."""

from __future__ import annotations

import logging

import pytest

from models.artifacts import EMBEDDER, INT8, ModelArtifactError, ModelRecord, manifest_key, model_filename
from models.loader import choose_record
from models.sessions.backend import BackendChoice

CPU = BackendChoice("onnxruntime", ("CPUExecutionProvider",), "cpu")
CUDA = BackendChoice("onnxruntime", ("CUDAExecutionProvider", "CPUExecutionProvider"), "cuda")
TRT = BackendChoice("tensorrt", ("CPUExecutionProvider",), "native TensorRT")


def record(precision: str = "fp32") -> ModelRecord:
    return ModelRecord(
        role="embedder",
        name=f"e-{precision}",
        file=model_filename(EMBEDDER, precision),
        sha256=f"sha-{precision}",
        bytes=1,
        source="test",
        created_at="now",
        precision=precision,
        origin_sha256="sha-fp32" if precision == INT8 else None,
    )


RECORDS = {"embedder": record(), manifest_key("embedder", INT8): record(INT8)}


def test_int8_runs_on_the_cpu_provider() -> None:
    chosen = choose_record(RECORDS, "embedder", {"embedder"}, CPU)
    assert chosen.precision == INT8 and chosen.file == "embedder.int8.onnx"


@pytest.mark.parametrize("choice", [CUDA, TRT], ids=["cuda", "tensorrt"])
def test_gpu_backends_run_the_fp32_file(choice: BackendChoice) -> None:
    assert choose_record(RECORDS, "embedder", {"embedder"}, choice).precision == "fp32"


def test_fp32_when_int8_is_not_asked_for() -> None:
    assert choose_record(RECORDS, "embedder", set(), CPU).precision == "fp32"


def test_a_missing_int8_copy_falls_back_to_fp32_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        chosen = choose_record({"embedder": record()}, "embedder", {"embedder"}, CPU)
    assert chosen.precision == "fp32" and "no int8 copy" in caplog.text


def test_a_missing_fp32_file_is_refused() -> None:
    with pytest.raises(ModelArtifactError, match="make models"):
        choose_record({}, "embedder", set(), CPU)


def test_an_int8_copy_has_the_identity_of_its_fp32_file() -> None:
    assert record(INT8).identity == record().identity == "sha-fp32"
