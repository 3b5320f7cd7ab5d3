"""The query cohort: hubness scores, the fp16 file, its record under the weights, and its pin to the embedder."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from models.artifacts import (
    COHORT_ROLE,
    EMBEDDER,
    ModelArtifactError,
    ModelRecord,
    read_manifest,
    write_manifest,
)
from models.cohort import COHORT_FILE, Cohort, CohortError, read_cohort, sample_rows, write_cohort
from models.loader import open_cohort
from training import trained
from training.fetch import install_cohort


def unit_rows(n: int, dim: int, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_hubness_is_the_mean_cosine_to_the_nearest_cohort_rows() -> None:
    cohort = Cohort(unit_rows(300, 16, 0), "x", "cohort-x")
    queries = unit_rows(7, 16, 1)
    brute = np.sort(queries @ cohort.vectors.T, axis=1)[:, -5:].mean(axis=1)
    np.testing.assert_allclose(cohort.hubness(queries, 5), brute, atol=1e-5)
    # a catalogue vector in the middle of a crowd of cohort crops is more of a hub than one away from it
    crowd = np.eye(16, dtype=np.float32)[:1] + 0.3 * unit_rows(50, 16, 3)
    crowded = crowd / np.linalg.norm(crowd, axis=1, keepdims=True)
    clustered = Cohort(np.concatenate([crowded, unit_rows(50, 16, 4)]), "y", "cohort-y")
    hub, loner = clustered.hubness(np.eye(16, dtype=np.float32)[:2])
    assert hub > 0.9 > loner
    with pytest.raises(CohortError, match="16-d"):
        cohort.hubness(unit_rows(2, 8, 2))


def test_cohort_file_round_trip_and_refusals(tmp_path: Path) -> None:
    vectors = unit_rows(50, 12, 3)
    write_cohort(tmp_path / "c.npz", vectors)
    loaded = read_cohort(tmp_path / "c.npz", "sha", "cohort-c")
    np.testing.assert_allclose(loaded.vectors, vectors, atol=2e-3)
    np.testing.assert_allclose(np.linalg.norm(loaded.vectors, axis=1), 1, atol=1e-5)

    np.savez(tmp_path / "bad.npz", vectors=(2 * vectors).astype(np.float16))
    with pytest.raises(CohortError, match="unit"):
        read_cohort(tmp_path / "bad.npz", "sha", "cohort-bad")
    np.savez(tmp_path / "other.npz", something=vectors)
    with pytest.raises(CohortError, match="not a cohort"):
        read_cohort(tmp_path / "other.npz", "sha", "cohort-other")
    with pytest.raises(CohortError, match="non-empty"):
        write_cohort(tmp_path / "empty.npz", np.zeros((0, 12), np.float32))


def test_sample_rows_is_seeded_and_keeps_small_sets_whole() -> None:
    vectors = unit_rows(100, 4, 4)
    a, b = sample_rows(vectors, 30, seed=0), sample_rows(vectors, 30, seed=0)
    np.testing.assert_array_equal(a, b)
    assert len(a) == 30 and len(np.unique(a, axis=0)) == 30
    assert not np.array_equal(a, sample_rows(vectors, 30, seed=1))
    assert sample_rows(vectors, 500, seed=0) is vectors


@pytest.fixture
def weights_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A weights manifest of its own with one entry, "w", whose file is a few bytes (never loaded as a net)."""
    folder = tmp_path / "weights"
    folder.mkdir()
    monkeypatch.setattr(trained, "WEIGHTS_DIR", folder)
    monkeypatch.setattr(trained, "WEIGHTS_MANIFEST", folder / "manifest.json")
    (folder / "w.npz").write_bytes(b"weights")
    entry = {"file": "w.npz", "sha256": trained.sha256_file(folder / "w.npz"), "config": {"dim": 12}}
    (folder / "manifest.json").write_text(json.dumps({"w": entry}))
    return folder


def test_a_cohort_is_recorded_under_its_weights_and_pinned_to_them(weights_dir: Path) -> None:
    record = trained.save_cohort("w", unit_rows(40, 12, 5), {"seed": 0, "streams": ["s-train-00"]})
    assert record["vectors"] == 40 and record["dim"] == 12 and record["embedder_source"] == trained.describe("w")
    path, info = trained.cohort_of("w")
    assert path == weights_dir / "cohort-w.npz" and info["sha256"] == trained.sha256_file(path)

    manifest = json.loads((weights_dir / "manifest.json").read_text())
    manifest["w"]["sha256"] = "0" * 64  # the weights were retrained: the cohort belongs to the old ones
    (weights_dir / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="other weights"):
        trained.cohort_of("w")


def test_a_tampered_cohort_file_is_refused(weights_dir: Path) -> None:
    trained.save_cohort("w", unit_rows(40, 12, 5), {"streams": ["s"]})
    (weights_dir / "cohort-w.npz").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="sha256"):
        trained.cohort_of("w")


def test_make_models_installs_the_cohort_pinned_to_the_embedder_file(weights_dir: Path, tmp_path: Path) -> None:
    model_dir = tmp_path / "models"
    model_dir.mkdir()
    embedder = ModelRecord(EMBEDDER.role, "embedder-w", EMBEDDER.filename, "e" * 64, 1, "export", "now")
    assert install_cohort(model_dir, "w", embedder, None) is None  # weights without a cohort
    trained.save_cohort("w", unit_rows(40, 12, 5), {"streams": ["s"]})

    record = install_cohort(model_dir, "w", embedder, None)
    assert record is not None and record.role == COHORT_ROLE and record.embedder_sha256 == "e" * 64
    assert trained.sha256_file(model_dir / COHORT_FILE) == record.sha256
    write_manifest(model_dir, {COHORT_ROLE: record})
    cohort = open_cohort(model_dir, read_manifest(model_dir), embedder, dim=12)
    assert cohort is not None and cohort.vectors.shape == (40, 12)
    assert (cohort.name, cohort.sha256) == (record.name, record.sha256)

    with pytest.raises(ModelArtifactError, match="another embedder file"):
        open_cohort(model_dir, {COHORT_ROLE: record}, replace(embedder, sha256="f" * 64), dim=12)
    with pytest.raises(ModelArtifactError, match="12-d, the embedder 16-d"):
        open_cohort(model_dir, {COHORT_ROLE: record}, embedder, dim=16)
    assert open_cohort(model_dir, {}, embedder, dim=12) is None

    # weights that lose their cohort (imagenet) take the old file away with them
    assert install_cohort(model_dir, "imagenet", embedder, record) is None
    assert not (model_dir / COHORT_FILE).exists()
