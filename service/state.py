"""What one running service holds: settings, models, pipeline, index cache, metrics."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import anyio

from indexer.store import IndexStore
from models.loader import Models, load_configured_models
from models.proposals import ProposalConfig
from service.indexes import IndexCache
from service.metrics import Metrics
from service.pipeline import Pipeline, PipelineConfig
from watchbuy.settings import Settings

log = logging.getLogger(__name__)


@dataclass(slots=True)
class ServiceState:
    settings: Settings
    models: Models
    pipeline: Pipeline
    indexes: IndexCache
    metrics: Metrics
    limiter: anyio.CapacityLimiter


def start_service(settings: Settings, metrics: Metrics) -> ServiceState:
    """Verify and open the models (ModelArtifactError names `make models` when they are missing)."""
    models = load_configured_models(settings)
    for loaded in models.loaded:
        record = loaded.record
        metrics.set_model(record.role, record.name, loaded.session.provider, record.sha256)
        log.info("%s %s on %s", record.role, record.name, list(loaded.session.providers))
    pipeline = Pipeline(
        models,
        PipelineConfig(
            max_image_pixels=settings.max_image_pixels,
            neighbours_per_box=settings.neighbours_per_box,
            matches_per_box=settings.matches_per_box,
            abstain_threshold=settings.abstain_threshold,
            proposal_weights=settings.proposal_weights,
            proposals=ProposalConfig(always_full_frame=settings.propose_full_frame),
        ),
    )

    def refresh_stream_gauges() -> None:
        metrics.set_loaded_streams({i.stream_id: i.n_vectors for i in indexes.loaded()})

    indexes = IndexCache(
        IndexStore(settings.index_root, keep_versions=settings.index_keep_versions),
        max_loaded=settings.max_loaded_streams,
        check_seconds=settings.reload_check_seconds,
        on_change=refresh_stream_gauges,
    )
    return ServiceState(
        settings=settings,
        models=models,
        pipeline=pipeline,
        indexes=indexes,
        metrics=metrics,
        limiter=anyio.CapacityLimiter(settings.inference_threads),
    )
