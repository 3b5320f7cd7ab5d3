"""`watchbuy cohort`: the service's own proposals of real clips, embedded and saved under the weights."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal
from support.data import SLICE_STREAM

from evaluation.cohort import CohortBuildError, build_cohort, embed_streams
from indexer.queries import find_streams, read_clips
from service.metrics import Metrics
from service.state import ServiceState, serving
from training import trained
from watchbuy.settings import Settings


@pytest.fixture
def started(model_dir: Path) -> Iterator[tuple[ServiceState, BlockingPortal]]:
    """The service's own start-up (models, batchers) on an event loop of its own."""
    with start_blocking_portal() as portal:
        with portal.wrap_async_context_manager(serving(Settings(model_dir=model_dir), Metrics())) as state:
            yield state, portal


def test_every_proposal_of_every_clip_frame_is_embedded(started: tuple[ServiceState, BlockingPortal],
                                                        slice_dir: Path) -> None:
    state, portal = started
    (source,) = find_streams(slice_dir)
    vectors = embed_streams(state, portal, [source])
    frames = [frame for clip in read_clips(source) for frame in clip.frames]
    assert len(vectors) >= len(frames) > 0  # at least the full frame of each, plus detections and centre crops
    assert vectors.shape[1] == state.models.embedder.dim
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-3)


def test_the_cohort_is_saved_under_the_configured_weights(
    models, slice_dir: Path, model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    weights_dir = tmp_path / "weights"
    weights_dir.mkdir()
    shutil.copyfile(trained.WEIGHTS_MANIFEST, weights_dir / "manifest.json")  # entries only: no net is loaded
    monkeypatch.setattr(trained, "WEIGHTS_DIR", weights_dir)
    monkeypatch.setattr(trained, "WEIGHTS_MANIFEST", weights_dir / "manifest.json")
    settings = Settings(model_dir=model_dir)

    summary = build_cohort(slice_dir, [SLICE_STREAM], settings, size=50, seed=3)
    assert summary.streams == (SLICE_STREAM,) and summary.kept == 50 < summary.proposals
    record = json.loads((weights_dir / "manifest.json").read_text())[settings.embedder_weights]["cohort"]
    assert record["streams"] == [SLICE_STREAM] and record["seed"] == 3 and record["proposals"] == summary.proposals
    path, _ = trained.cohort_of(settings.embedder_weights)
    with np.load(path) as archive:
        assert archive["vectors"].shape == (50, models.embedder.dim)

    with pytest.raises(CohortBuildError, match="dev streams"):
        build_cohort(slice_dir, ["viton-dev-00"], settings, size=50, seed=0)
    with pytest.raises(CohortBuildError, match="make models"):
        build_cohort(slice_dir, [SLICE_STREAM], Settings(model_dir=model_dir, embedder_weights="imagenet"), 50, 0)
