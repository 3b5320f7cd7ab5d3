"""What one running service holds: settings, models, pipeline, batchers, index cache, metrics."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import anyio
import faiss

from indexer.store import IndexStore, StreamIndex
from models.artifacts import COHORT_ROLE
from models.loader import Models, load_configured_models
from models.proposals import ProposalConfig
from service.aggregate import AbstainThresholds
from service.auth import RateLimiter
from service.batching import ModelBatchers, start_batchers
from service.indexes import IndexCache
from service.metrics import Metrics
from service.pipeline import Identification, Pipeline, PipelineConfig
from service.redis_client import RedisLink
from service.registry import IndexRegistry
from service.request_parsing import EncodedFrame
from service.sessions import Sessions
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
    # set by start_redis when WATCHBUY_REDIS_URL is set (None = one machine, no Redis)
    redis: RedisLink | None = None
    registry: IndexRegistry | None = None
    sessions: Sessions | None = None
    rate_limiter: RateLimiter | None = None
    # set by start_batching when WATCHBUY_BATCHING is true (None = each request calls the models itself)
    batchers: ModelBatchers | None = None

    async def identify(
        self, frames: Sequence[EncodedFrame], index: StreamIndex, top_k: int, asr_text: str | None = None
    ) -> Identification:
        """The pipeline: model calls batched across requests, or (batching off) all in one worker thread."""
        if self.batchers is not None:
            return await self.pipeline.identify_batched(
                frames, index, top_k, self.batchers, self.limiter, asr_text
            )
        return await anyio.to_thread.run_sync(
            self.pipeline.identify, frames, index, top_k, asr_text, limiter=self.limiter
        )


def start_service(settings: Settings, metrics: Metrics) -> ServiceState:
    """Verify and open the models (ModelArtifactError names `make models` when they are missing)."""
    models = load_configured_models(settings)
    if settings.faiss_threads:
        faiss.omp_set_num_threads(settings.faiss_threads)  # process-wide; one small search per request
    for loaded in models.loaded:
        record = loaded.record
        metrics.set_model(record.role, record.name, loaded.session.provider, record.sha256)
        log.info("%s %s on %s", record.role, record.name, list(loaded.session.providers))
    if models.cohort is not None:  # vectors, not a session: no provider
        metrics.set_model(COHORT_ROLE, models.cohort.name, "none", models.cohort.sha256)
    pipeline = Pipeline(models, pipeline_config(settings))

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


def pipeline_config(settings: Settings) -> PipelineConfig:
    """The /identify pipeline's configuration from the settings (the service, the evaluator, the cohort)."""
    return PipelineConfig(
        max_image_pixels=settings.max_image_pixels,
        neighbours_per_box=settings.neighbours_per_box,
        matches_per_box=settings.matches_per_box,
        abstain=abstain_thresholds(settings),
        text_weight=settings.text_weight,
        hubness_weight=settings.hubness_weight,
        proposal_weights=settings.proposal_weights,
        proposals=ProposalConfig(
            always_full_frame=settings.propose_full_frame, center_crops=tuple(settings.propose_center_crops)
        ),
    )


def abstain_thresholds(settings: Settings) -> AbstainThresholds:
    return AbstainThresholds(settings.abstain_threshold, tuple(settings.abstain_threshold_overrides.items()))


async def start_redis(state: ServiceState) -> None:
    """With WATCHBUY_REDIS_URL: connect (a down Redis only means degraded), sessions, rate limit, registry.

    Runs in the event loop (redis.asyncio); the service starts even when Redis is not there yet.
    """
    settings = state.settings
    if not settings.redis_url:
        return
    link = RedisLink(settings.redis_url, settings.redis_timeout_seconds, state.metrics)
    await link.start()
    state.redis = link
    state.sessions = Sessions(
        link, settings.session_window, settings.session_ttl_seconds, abstain_thresholds(settings), state.metrics
    )
    if settings.rate_limit_per_minute:
        state.rate_limiter = RateLimiter(link, settings.rate_limit_per_minute, state.metrics)
    state.registry = IndexRegistry(link, state.indexes, settings.registry_channel, state.metrics)
    state.registry.start()


async def start_batching(state: ServiceState) -> None:
    """Start the detector and embedder batchers on this event loop (WATCHBUY_BATCHING)."""
    state.batchers = await start_batchers(state.models, state.settings, state.metrics)


async def stop_batching(state: ServiceState) -> None:
    """Stop the batchers; requests still waiting on them get 503."""
    if state.batchers is not None:
        await state.batchers.aclose()
        state.batchers = None


async def stop_redis(state: ServiceState) -> None:
    if state.registry is not None:
        await state.registry.aclose()
    if state.redis is not None:
        await state.redis.aclose()
