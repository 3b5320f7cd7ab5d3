"""The real model files: providers, artifact checks (manifest, size, sha256, signature), the embedder, fetch."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from PIL import Image
from support.data import expected_embedder

from models.artifacts import (
    DETECTOR,
    DETECTOR_MIRROR_SHA256,
    DETECTOR_SOURCE_FILENAME,
    EMBEDDER,
    FIX_COMMAND,
    MANIFEST,
    ModelArtifactError,
    read_manifest,
    sha256_file,
)
from models.embedder import Embedder, crop
from models.loader import load_configured_models
from models.sessions.ort import PREFERRED_PROVIDERS, open_session
from training.fetch import fetch_models
from watchbuy.settings import Settings

WEIGHTS = Settings().embedder_weights  # what `make models` exported into var/models


CPU, CUDA, TRT = "CPUExecutionProvider", "CUDAExecutionProvider", "TensorrtExecutionProvider"


def test_real_session_reports_the_provider_it_runs_on(model_dir: Path) -> None:
    available = ort.get_available_providers()
    session = open_session(model_dir / EMBEDDER.filename)
    assert session.providers == tuple(session.inner.get_providers())
    assert session.provider == session.providers[0]
    assert session.provider in PREFERRED_PROVIDERS
    if CUDA not in available and TRT not in available:
        # A CPU-only onnxruntime build (this machine): the session runs on, and says, CPU.
        assert session.provider == CPU
        assert session.providers == (CPU,)
    pinned = open_session(model_dir / EMBEDDER.filename, preferred=[CPU])
    assert pinned.providers == (CPU,)


def test_loaded_models_say_which_provider_they_run_on(models) -> None:
    assert [m.record.role for m in models.loaded] == ["detector", "embedder"]
    if CUDA not in ort.get_available_providers():
        assert all(m.session.provider == CPU for m in models.loaded)


@pytest.fixture()
def model_copy(model_dir: Path, tmp_path: Path) -> Path:
    target = tmp_path / "models"
    shutil.copytree(model_dir, target)
    return target


def load(model_dir: Path):
    return load_configured_models(Settings(model_dir=model_dir))


def test_copied_models_load(model_copy: Path) -> None:
    loaded = load(model_copy)
    assert loaded.embedder.dim == expected_embedder()[1] and loaded.embedder.input_size == 224
    records = read_manifest(model_copy)
    pinned = [records["detector"].sha256, records["embedder"].sha256]
    assert [m.record.identity for m in loaded.loaded] == pinned  # the fp32 files, or int8 copies of them
    assert records["detector"].origin_sha256 == DETECTOR_MIRROR_SHA256  # converted to a dynamic batch


def test_truncated_embedder_is_refused(model_copy: Path) -> None:
    path = model_copy / EMBEDDER.filename
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(ModelArtifactError, match=FIX_COMMAND) as raised:
        load(model_copy)
    assert "embedder" in str(raised.value) and "bytes" in str(raised.value)


def test_modified_embedder_of_the_same_size_is_refused(model_copy: Path) -> None:
    path = model_copy / EMBEDDER.filename
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ModelArtifactError, match=FIX_COMMAND) as raised:
        load(model_copy)
    assert "sha256" in str(raised.value)


@pytest.mark.parametrize("filename", [DETECTOR.filename, EMBEDDER.filename])
def test_missing_model_file_is_refused(model_copy: Path, filename: str) -> None:
    (model_copy / filename).unlink()
    with pytest.raises(ModelArtifactError, match=FIX_COMMAND) as raised:
        load(model_copy)
    assert "missing" in str(raised.value)


def test_missing_manifest_is_refused(model_copy: Path) -> None:
    (model_copy / MANIFEST).unlink()
    with pytest.raises(ModelArtifactError, match=FIX_COMMAND):
        load(model_copy)


@pytest.mark.parametrize("text", ["not json", "{}", '{"models": {"detector": {"role": "detector"}}}'])
def test_unreadable_manifest_is_refused(model_copy: Path, text: str) -> None:
    (model_copy / MANIFEST).write_text(text)
    with pytest.raises(ModelArtifactError, match=FIX_COMMAND):
        load(model_copy)


def test_manifest_without_a_role_is_refused(model_copy: Path) -> None:
    manifest = json.loads((model_copy / MANIFEST).read_text())
    del manifest["models"]["embedder"]
    (model_copy / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(ModelArtifactError, match=FIX_COMMAND) as raised:
        load(model_copy)
    assert "embedder" in str(raised.value)


def test_wrong_signature_is_refused(model_copy: Path) -> None:
    """The detector role pointing at the embedder file (its true size and sha256): the shapes give it away."""
    manifest = json.loads((model_copy / MANIFEST).read_text())
    manifest["models"]["detector"] = dict(manifest["models"]["embedder"], role="detector")
    (model_copy / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(ModelArtifactError, match=FIX_COMMAND) as raised:
        load(model_copy)
    assert "detector" in str(raised.value) and "expected" in str(raised.value)


def test_swapped_roles_are_refused(model_copy: Path) -> None:
    manifest = json.loads((model_copy / MANIFEST).read_text())
    models = manifest["models"]
    models["detector"], models["embedder"] = (
        dict(models["embedder"], role="detector"),
        dict(models["detector"], role="embedder"),
    )
    (model_copy / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(ModelArtifactError, match=FIX_COMMAND):
        load(model_copy)


def test_unloadable_model_file_pinned_in_the_manifest_is_refused(model_copy: Path) -> None:
    path = model_copy / EMBEDDER.filename
    path.write_bytes(b"this is not an onnx model" * 100)
    manifest = json.loads((model_copy / MANIFEST).read_text())
    manifest["models"]["embedder"].update(sha256=sha256_file(path), bytes=path.stat().st_size)
    (model_copy / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(ModelArtifactError, match=FIX_COMMAND):
        load(model_copy)


@pytest.fixture(scope="module")
def crops(viton_stream: Path) -> list[np.ndarray]:
    """Five real crops of different sizes (catalogue images and clip frames)."""
    names = ["images/000003_1.jpg", "frames/000003_0.jpg", "images/000004_1.jpg", "frames/000005_0.jpg"]
    pixels = []
    for name in names:
        with Image.open(viton_stream / name) as image:
            pixels.append(np.asarray(image.convert("RGB")))
    return [
        pixels[0],
        crop(pixels[1], (23, 70, 153, 243)),
        crop(pixels[2], (5, 23, 187, 232)),
        crop(pixels[3], (10.5, 20.2, 60.7, 90.1)),
        crop(pixels[3], (0, 0, 300, 300)),  # larger than the image: clipped
    ]


def test_embedding_shape_and_unit_rows(models, crops: list[np.ndarray]) -> None:
    vectors = models.embedder.embed(crops)
    assert vectors.shape == (5, expected_embedder()[1]) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    assert vectors.flags["C_CONTIGUOUS"]
    # Different pictures give different vectors; the same garment (flat vs worn) is not identical either.
    sims = vectors @ vectors.T
    assert np.all(sims[~np.eye(5, dtype=bool)] < 0.9999)


def test_batching_does_not_change_embeddings(models, crops: list[np.ndarray]) -> None:
    together = models.embedder.embed(crops)
    one_by_one = np.concatenate([models.embedder.embed([patch]) for patch in crops])
    np.testing.assert_allclose(together, one_by_one, atol=1e-4)
    small_batches = Embedder(models.embedder.session, max_batch=2).embed(crops)
    np.testing.assert_allclose(together, small_batches, atol=1e-4)


def test_empty_input_gives_an_empty_matrix(models) -> None:
    vectors = models.embedder.embed([])
    assert vectors.shape == (0, models.embedder.dim) and vectors.dtype == np.float32


def test_fetch_copies_the_detector_from_the_mirror_and_keeps_a_valid_embedder(
    model_copy: Path, shared_dir: Path
) -> None:
    mirror = shared_dir / "models"
    embedder = model_copy / EMBEDDER.filename
    before = embedder.stat().st_mtime_ns
    (model_copy / DETECTOR.filename).unlink()
    records = fetch_models(model_copy, mirror, embedder_weights=WEIGHTS)
    assert records["detector"].origin_sha256 == DETECTOR_MIRROR_SHA256
    assert records["detector"].source == f"mirror:{mirror / DETECTOR_SOURCE_FILENAME} (dynamic batch)"
    assert sha256_file(model_copy / DETECTOR_SOURCE_FILENAME) == DETECTOR_MIRROR_SHA256
    assert sha256_file(model_copy / DETECTOR.filename) == records["detector"].sha256
    assert embedder.stat().st_mtime_ns == before  # not exported again
    assert read_manifest(model_copy) == records
    load(model_copy)  # and the result is loadable


def test_fetch_with_a_valid_manifest_changes_nothing(model_copy: Path, shared_dir: Path) -> None:
    mtimes = {name: (model_copy / name).stat().st_mtime_ns for name in (DETECTOR.filename, EMBEDDER.filename)}
    records = fetch_models(model_copy, shared_dir / "models", embedder_weights=WEIGHTS)
    assert records == read_manifest(model_copy)
    assert {name: (model_copy / name).stat().st_mtime_ns for name in mtimes} == mtimes


def test_fetch_replaces_a_corrupt_detector(model_copy: Path, shared_dir: Path) -> None:
    detector = model_copy / DETECTOR.filename
    detector.write_bytes(b"corrupt")
    before = (model_copy / EMBEDDER.filename).stat().st_mtime_ns
    records = fetch_models(model_copy, shared_dir / "models", embedder_weights=WEIGHTS)
    assert sha256_file(detector) == records["detector"].sha256
    assert records["detector"].origin_sha256 == DETECTOR_MIRROR_SHA256
    assert (model_copy / EMBEDDER.filename).stat().st_mtime_ns == before


def test_fetch_refuses_a_mirror_copy_with_the_wrong_sha(model_copy: Path, tmp_path: Path) -> None:
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / DETECTOR_SOURCE_FILENAME).write_bytes(b"not the detector")
    (model_copy / DETECTOR.filename).unlink()
    with pytest.raises(ModelArtifactError, match=DETECTOR_MIRROR_SHA256):
        fetch_models(model_copy, mirror, embedder_weights=WEIGHTS)
    assert not (model_copy / DETECTOR.filename).exists()
