"""The detector with a dynamic batch: the converted graph equals the published batch-1 export on real
frames, `detect_many` equals one call per image, and `make models` converts (and upgrades) the file."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from models.artifacts import (
    DETECTOR,
    DETECTOR_MIRROR_SHA256,
    DETECTOR_SOURCE_FILENAME,
    EMBEDDER,
    MANIFEST,
    read_manifest,
    sha256_file,
)
from models.detector import Detector, letterbox
from models.sessions.ort import open_session
from service.decode import decode_image
from training.detector_graph import GraphConversionError, check_same_outputs, make_batch_dynamic
from training.fetch import fetch_models
from watchbuy.settings import Settings


@pytest.fixture(scope="module")
def published(shared_dir: Path) -> Path:
    return shared_dir / "models" / DETECTOR_SOURCE_FILENAME


@pytest.fixture(scope="module")
def frames(viton_stream: Path, shared_dir: Path) -> list[np.ndarray]:
    """Real frames of two datasets and shapes (portrait viton frames, grocery frames)."""
    paths = sorted((viton_stream / "frames").iterdir())[:6]
    paths += sorted((shared_dir / "data" / "grocery-dev" / "streams").glob("*/frames/*"))[:3]
    return [decode_image(p.read_bytes(), 16_777_216) for p in paths]


def cpu_session(path: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def test_converted_graph_equals_the_published_one_on_real_frames(
    published: Path, frames: list[np.ndarray], tmp_path: Path
) -> None:
    converted = tmp_path / DETECTOR.filename
    make_batch_dynamic(published, converted)
    fixed, dynamic = cpu_session(published), cpu_session(converted)
    assert dynamic.get_inputs()[0].shape[0] == "batch" and fixed.get_inputs()[0].shape[0] == 1
    tensors = np.concatenate([letterbox(frame)[0] for frame in frames])
    single = np.concatenate([fixed.run(None, {"images": tensors[i : i + 1]})[0] for i in range(len(tensors))])
    for batch in (2, 4, len(tensors)):
        batched = np.concatenate([
            dynamic.run(None, {"images": tensors[i : i + batch]})[0] for i in range(0, len(tensors), batch)
        ])
        assert batched.shape == single.shape == (len(frames), 3549, 85)
        assert np.abs(batched - single).max() <= 1e-5
    assert check_same_outputs(published, converted) <= 1e-5


def test_detect_many_equals_the_published_file_one_image_at_a_time(
    models, published: Path, frames: list[np.ndarray]
) -> None:
    config = models.detector.config
    one_by_one = Detector(open_session(published, intra_op_threads=1), config)
    assert one_by_one.max_batch == 1 and models.detector.max_batch > 1
    batched = models.detector.detect_many(frames)
    assert any(batched)  # real frames with real detections
    for got, want in zip(batched, one_by_one.detect_many(frames), strict=True):
        assert [d.label for d in got] == [d.label for d in want]
        np.testing.assert_allclose([d.box for d in got], [d.box for d in want], atol=1e-3)
        np.testing.assert_allclose([d.score for d in got], [d.score for d in want], atol=1e-5)
    assert models.detector.detect_many([]) == []


def test_detect_many_splits_into_runs_of_max_batch(models, frames: list[np.ndarray]) -> None:
    whole = Detector(models.detector.session, models.detector.config, max_batch=len(frames))
    single = Detector(models.detector.session, models.detector.config, max_batch=1)
    for got, want in zip(whole.detect_many(frames), single.detect_many(frames), strict=True):
        assert [d.label for d in got] == [d.label for d in want]
        np.testing.assert_allclose([d.score for d in got], [d.score for d in want], atol=1e-5)


def test_conversion_refuses_a_graph_it_does_not_know(model_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(GraphConversionError):
        make_batch_dynamic(model_dir / EMBEDDER.filename, tmp_path / "out.onnx")
    assert not (tmp_path / "out.onnx").exists()


def test_fetch_upgrades_a_manifest_that_pins_the_batch_1_file(
    model_dir: Path, shared_dir: Path, tmp_path: Path
) -> None:
    """A model dir made before the conversion: its detector entry names the published file."""
    old = tmp_path / "models"
    old.mkdir()
    shutil.copyfile(model_dir / EMBEDDER.filename, old / EMBEDDER.filename)
    shutil.copyfile(shared_dir / "models" / DETECTOR_SOURCE_FILENAME, old / DETECTOR_SOURCE_FILENAME)
    manifest = json.loads((model_dir / MANIFEST).read_text())
    manifest["models"]["detector"] = {
        "role": "detector", "name": "yolox-nano-coco", "file": DETECTOR_SOURCE_FILENAME,
        "sha256": DETECTOR_MIRROR_SHA256, "bytes": (old / DETECTOR_SOURCE_FILENAME).stat().st_size,
        "source": "mirror", "created_at": "2026-01-01T00:00:00+00:00",
    }
    (old / MANIFEST).write_text(json.dumps(manifest))
    weights = Settings().embedder_weights
    records = fetch_models(old, shared_dir / "models", embedder_weights=weights)
    detector = records["detector"]
    assert detector.file == DETECTOR.filename and detector.origin_sha256 == DETECTOR_MIRROR_SHA256
    assert sha256_file(old / DETECTOR.filename) == detector.sha256 != DETECTOR_MIRROR_SHA256
    assert read_manifest(old) == records
    (old / DETECTOR.filename).unlink()  # converting again gives the same bytes
    again = fetch_models(old, shared_dir / "models", embedder_weights=weights)
    assert again["detector"].sha256 == detector.sha256
