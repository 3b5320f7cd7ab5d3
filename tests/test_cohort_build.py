"""`python -m indexer cohort`: the service's own proposals of real clips, embedded and saved under the weights."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import SLICE_STREAM

from indexer.cohort import CohortBuildError, build_cohort, embed_streams
from indexer.queries import find_streams, read_clips
from models import trained
from service.pipeline import Pipeline
from service.state import pipeline_config
from watchbuy.settings import Settings

pytestmark = pytest.mark.integration


@pytest.fixture
def pipeline(models) -> Pipeline:
    return Pipeline(models, pipeline_config(Settings()))


def test_every_proposal_of_every_clip_frame_is_embedded(pipeline: Pipeline, slice_dir: Path) -> None:
    (source,) = find_streams(slice_dir)
    vectors = embed_streams(pipeline, [source], max_pixels=1 << 24)
    frames = [frame for clip in read_clips(source) for frame in clip.frames]
    assert len(vectors) >= len(frames) > 0  # at least the full frame of each, plus detections and centre crops
    assert vectors.shape[1] == pipeline.models.embedder.dim
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-3)


def test_the_cohort_is_saved_under_the_configured_weights(
    pipeline: Pipeline, slice_dir: Path, model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    weights_dir = tmp_path / "weights"
    weights_dir.mkdir()
    shutil.copyfile(trained.WEIGHTS_MANIFEST, weights_dir / "manifest.json")  # entries only: no net is loaded
    monkeypatch.setattr(trained, "WEIGHTS_DIR", weights_dir)
    monkeypatch.setattr(trained, "WEIGHTS_MANIFEST", weights_dir / "manifest.json")
    settings = Settings(model_dir=model_dir)

    summary = build_cohort(slice_dir, [SLICE_STREAM], pipeline, settings, size=50, seed=3)
    assert summary.streams == (SLICE_STREAM,) and summary.kept == 50 < summary.proposals
    record = json.loads((weights_dir / "manifest.json").read_text())[settings.embedder_weights]["cohort"]
    assert record["streams"] == [SLICE_STREAM] and record["seed"] == 3 and record["proposals"] == summary.proposals
    path, _ = trained.cohort_of(settings.embedder_weights)
    with np.load(path) as archive:
        assert archive["vectors"].shape == (50, pipeline.models.embedder.dim)

    with pytest.raises(CohortBuildError, match="dev streams"):
        build_cohort(slice_dir, ["viton-dev-00"], pipeline, settings, size=50, seed=0)
    with pytest.raises(CohortBuildError, match="make models"):
        build_cohort(slice_dir, [SLICE_STREAM], pipeline, Settings(model_dir=model_dir, embedder_weights="imagenet"), 50, 0)
