"""What one running service holds (settings, models, pipeline, how models are called, indexes, metrics,
Redis) and its start-up and shutdown steps."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import anyio
import faiss
from starlette.requests import Request

from indexer.store import IndexStore, StreamIndex
from models.artifacts import COHORT_ROLE
from models.loader import Models, load_configured_models
from service.auth import RateLimiter
from service.batching import ModelBatchers, start_batchers
from service.calls import DirectCalls, ModelCalls
from service.errors import ServiceUnavailable
from service.indexes import IndexCache
from service.metrics import Metrics
from service.pipeline import Pipeline, PipelineConfig
from service.redis_client import RedisLink
from service.registry import IndexRegistry
from service.sessions import RequestWindow, Sessions, request_window
from service.streams import load_index
from watchbuy.settings import Settings

log = logging.getLogger(__name__)


@dataclass(slots=True)
class ServiceState:
    settings: Settings
    models: Models
    pipeline: Pipeline
    indexes: IndexCache
    metrics: Metrics
    limiter: anyio.CapacityLimiter  # worker threads for CPU work off the event loop
    direct: DirectCalls
    # set by start_redis when WATCHBUY_REDIS_URL is set (None = one machine, no Redis)
    redis: RedisLink | None = None
    registry: IndexRegistry | None = None
    sessions: Sessions | None = None
    rate_limiter: RateLimiter | None = None
    # set by start_batching when WATCHBUY_BATCHING is true (None = each request calls the models itself)
    batchers: ModelBatchers | None = None

    @property
    def calls(self) -> ModelCalls:
        """How this service calls the models now: the shared batchers when running, else directly."""
        return self.batchers if self.batchers is not None else self.direct

    def load_index(self, stream_id: str) -> StreamIndex:
        """The stream's current index, or the API error saying why there is none (blocking: a worker thread)."""
        return load_index(self.indexes, self.models, stream_id)

    def window(self, stream_id: str, session_id: str | None) -> RequestWindow:
        """The requests an answer for this viewer session is ranked over."""
        return request_window(self.sessions, stream_id, session_id, self.metrics)


def running(request: Request) -> ServiceState:
    """The app's running state; 503 while it is still starting (or already stopped)."""
    state: ServiceState | None = request.app.state.service
    if state is None:
        raise ServiceUnavailable("the service is starting; retry shortly")
    return state


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
    limiter = anyio.CapacityLimiter(settings.inference_threads)

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
        pipeline=Pipeline(models, PipelineConfig.from_settings(settings), limiter),
        indexes=indexes,
        metrics=metrics,
        limiter=limiter,
        direct=DirectCalls(models, limiter),
    )


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
    state.sessions = Sessions(link, settings.session_window, settings.session_ttl_seconds, state.metrics)
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


@asynccontextmanager
async def serving(settings: Settings, metrics: Metrics) -> AsyncIterator[ServiceState]:
    """A started service on this event loop (models, Redis, batchers), stopped on exit: the app's lifespan,
    and what the in-process evaluator and the benchmarks run without HTTP."""
    state = await anyio.to_thread.run_sync(start_service, settings, metrics)
    await start_redis(state)
    await start_batching(state)
    try:
        yield state
    finally:
        await stop_batching(state)
        await stop_redis(state)
