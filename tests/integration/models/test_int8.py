"""The int8 copies `make models` makes (training/quantize.py): pinned, calibrated on *-train data, close to fp32."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from models.artifacts import DETECTOR, EMBEDDER, INT8, manifest_key, read_manifest, verify_file
from models.detector import Detector, DetectorConfig
from models.embedder import Embedder
from models.proposals import ProposalConfig
from models.sessions.ort import open_session
from models.types import box_ious
from training.fetch import Int8Plan, fetch_int8
from training.quantize import CalibrationSet, QuantizationError, quantize
from watchbuy.settings import Settings

CPU_ONLY = ("CPUExecutionProvider",)


@pytest.fixture(scope="module")
def int8_records(model_dir: Path) -> dict:
    records = read_manifest(model_dir)
    if manifest_key(EMBEDDER.role, INT8) not in records:
        pytest.fail(f"{model_dir} has no int8 copies: `make models` makes them from ../shared/data/*-train")
    return records


@pytest.fixture(scope="module")
def frames(viton_stream: Path) -> list[np.ndarray]:
    paths = sorted((viton_stream / "frames").glob("*.jpg"))[:6] + sorted((viton_stream / "images").glob("*.jpg"))[:6]
    return [np.asarray(Image.open(p).convert("RGB")) for p in paths]


def test_int8_copies_are_pinned_to_their_fp32_files_and_calibration_data(model_dir: Path, int8_records: dict) -> None:
    for spec in (DETECTOR, EMBEDDER):
        fp32, int8 = int8_records[spec.role], int8_records[manifest_key(spec.role, INT8)]
        assert (
            int8.precision == INT8
            and int8.role == spec.role
            and int8.file == spec.filename.replace(".onnx", ".int8.onnx")
        )
        assert int8.origin_sha256 == fp32.sha256 == int8.identity
        assert "viton-train" in int8.calibration and "-dev" not in int8.calibration
        verify_file(model_dir, int8)
        assert int8.bytes < fp32.bytes / 2  # int8 weights


def sessions(model_dir: Path, records: dict, role: str):
    return (
        open_session(model_dir / records[role].file, preferred=CPU_ONLY),
        open_session(model_dir / records[manifest_key(role, INT8)].file, preferred=CPU_ONLY),
    )


def test_int8_embeddings_stay_close_to_fp32(model_dir: Path, int8_records: dict, frames: list[np.ndarray]) -> None:
    fp32, int8 = (Embedder(s) for s in sessions(model_dir, int8_records, EMBEDDER.role))
    cosines = np.sum(fp32.embed(frames) * int8.embed(frames), axis=1)
    assert cosines.mean() > 0.9 and cosines.min() > 0.8, cosines


def test_int8_detector_finds_the_same_people(model_dir: Path, int8_records: dict, frames: list[np.ndarray]) -> None:
    config = DetectorConfig(classes=("person",))
    fp32, int8 = (Detector(s, config) for s in sessions(model_dir, int8_records, DETECTOR.role))
    for frame, want, got in zip(frames, fp32.detect_many(frames), int8.detect_many(frames), strict=True):
        for person in want:
            overlaps = box_ious(person.box, np.array([g.box for g in got])) if got else np.zeros(1)
            assert overlaps.max() > 0.7, (frame.shape, person, got)  # box recall: the evaluator's job


def test_a_failed_quantization_leaves_the_target_as_it_was(tmp_path: Path) -> None:
    source, target = tmp_path / "broken.onnx", tmp_path / "model.int8.onnx"
    source.write_bytes(b"not an onnx model")
    target.write_bytes(b"the good int8 model")
    with pytest.raises(QuantizationError, match="broken.onnx"):
        quantize(source, target, "images", [np.zeros((1, 3, 8, 8), dtype=np.float32)])
    assert target.read_bytes() == b"the good int8 model"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.onnx", "model.int8.onnx"]


def test_current_int8_copies_are_kept(model_dir: Path, int8_records: dict, shared_dir: Path) -> None:
    settings = Settings()
    plan = Int8Plan(
        CalibrationSet((shared_dir / "data" / "viton-train", shared_dir / "data" / "grocery-train")),
        DetectorConfig.from_settings(settings),
        ProposalConfig.from_settings(settings),
    )
    kept = fetch_int8(model_dir, int8_records, plan)  # would take a minute and rewrite the files if it quantized
    assert kept == {
        key: int8_records[key] for key in (manifest_key(DETECTOR.role, INT8), manifest_key(EMBEDDER.role, INT8))
    }
