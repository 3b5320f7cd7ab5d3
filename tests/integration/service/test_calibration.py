"""Per-catalogue calibration with the real models: synthetic views through the service's pipeline."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from support.data import SLICE_STREAM

from indexer.build import build_stream
from indexer.catalogue import Catalogue, read_catalogue
from indexer.store import IndexStore, StreamIndex
from models.loader import Models
from service.calibration import IMPOSTOR_MARGIN, CatalogueCalibrator, threshold_from_scores
from service.pipeline import PipelineConfig
from watchbuy.settings import Settings


def test_synthetic_views_score_their_own_product_above_the_others(
    slice_dir: Path, slice_index_root: Path, models: Models
) -> None:
    catalogue = read_catalogue(slice_dir, SLICE_STREAM)
    index = IndexStore(slice_index_root).load(SLICE_STREAM)
    calibrator = CatalogueCalibrator(models, PipelineConfig.from_settings(Settings()), views=12, seed=3)
    scores = calibrator.view_scores(catalogue, index)
    assert scores.shape == (12, 2)
    genuine, impostor = scores[:, 0], scores[:, 1]
    assert np.median(genuine) > np.median(impostor)  # the embedder tells the pasted product from the others
    assert np.array_equal(scores, calibrator.view_scores(catalogue, index))  # seeded: the same views again
    assert threshold_from_scores(impostor) == pytest.approx(float(np.median(impostor)) + IMPOSTOR_MARGIN, abs=1e-4)


def test_a_failing_calibration_publishes_nothing(slice_dir: Path, models: Models, tmp_path: Path) -> None:
    store = IndexStore(tmp_path / "indexes")

    def broken(catalogue: Catalogue, index: StreamIndex) -> None:
        assert index.version == "draft" and index.n_products == len(catalogue.products)
        raise RuntimeError("calibration failed")

    with pytest.raises(RuntimeError, match="calibration failed"):
        build_stream(read_catalogue(slice_dir, SLICE_STREAM), models, store, show_progress=False, calibrate=broken)
    assert store.streams() == [] and store.current_version(SLICE_STREAM) is None


def test_a_catalogue_of_one_product_is_not_calibrated(slice_dir: Path, models: Models, tmp_path: Path) -> None:
    full = read_catalogue(slice_dir, SLICE_STREAM)
    single = Catalogue(full.stream_id, full.root, full.layout, full.products[:1], ())
    store = IndexStore(tmp_path / "indexes")
    calibrate = CatalogueCalibrator(models, PipelineConfig.from_settings(Settings()), views=4)
    summary, _ = build_stream(single, models, store, show_progress=False, calibrate=calibrate)
    assert summary.threshold is None and store.load(SLICE_STREAM).manifest["calibration"] is None
