"""FastAPI application factory: routes only; the work lives in pipeline, indexes and respond."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from indexer.store import IndexCorrupt, StreamIndex, StreamNotFound
from models.embedder import PREPROCESS
from models.loader import Models
from service.auth import ApiKeyMiddleware
from service.demo_routes import demo_router
from service.drain import Drain
from service.errors import ServiceUnavailable, StreamNotFoundError, install_error_handlers
from service.limits import BodySizeLimitMiddleware
from service.metrics import Metrics, MetricsMiddleware
from service.redis_client import redis_state
from service.request_parsing import IDENTIFY_OPENAPI, parse_identify
from service.respond import identify_response, models_response, stream_info
from service.schemas import ErrorResponse, IdentifyResponse, ModelsResponse, StreamInfo
from service.sessions import apply_session, candidates
from service.state import ServiceState, start_batching, start_redis, start_service, stop_batching, stop_redis
from service.video_routes import video_router
from watchbuy.settings import Settings, get_settings

log = logging.getLogger(__name__)

ERRORS = {code: {"model": ErrorResponse} for code in (400, 404, 413, 415, 422)}


def _missing_stream(stream_id: str) -> StreamNotFoundError:
    return StreamNotFoundError(
        f"stream {stream_id!r} has no index; build it with `make build-index STREAM={stream_id}`"
    )


def embedder_mismatch(index: StreamIndex, models: Models) -> str | None:
    """Why this index's vectors cannot be compared with the loaded embedder's (and scored with its cohort), or None."""
    if index.index.d != models.embedder.dim:
        return f"has {index.index.d}-d vectors, the embedder makes {models.embedder.dim}-d ones"
    built_with = index.manifest.get("models", {})
    if built_with.get("embedder") != models.sha256("embedder"):
        return "was built with another embedder"
    if index.manifest.get("embedder_preprocess") != PREPROCESS:
        return "was built with another crop preprocessing"
    if models.cohort is not None and (index.hubness is None or built_with.get("cohort") != models.cohort.sha256):
        return "was built without the embedder's cohort (its hubness scores are missing or stale)"
    return None


def load_index(state: ServiceState, stream_id: str) -> StreamIndex:
    """The stream's current index, or the client-facing error that explains why there is none."""
    try:
        index = state.indexes.get(stream_id)
    except (StreamNotFound, ValueError):
        raise _missing_stream(stream_id) from None
    except IndexCorrupt as exc:
        raise ServiceUnavailable(f"the index of stream {stream_id!r} cannot be loaded: {exc}") from None
    problem = embedder_mismatch(index, state.models)
    if problem:
        raise ServiceUnavailable(
            f"the index of stream {stream_id!r} {problem}; rebuild it with `make build-index STREAM={stream_id}`"
        )
    return index


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    metrics = Metrics()
    drain = Drain(settings.drain_seconds)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.service = await anyio.to_thread.run_sync(start_service, settings, metrics)
        await start_redis(app.state.service)
        await start_batching(app.state.service)
        drain.install()
        yield
        drain.uninstall()
        await stop_batching(app.state.service)
        await stop_redis(app.state.service)
        app.state.service = None

    app = FastAPI(title="watchbuy", version="0.1.0", lifespan=lifespan)
    app.state.service = None
    install_error_handlers(app, on_error=metrics.count_error)
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.max_body_bytes, on_reject=metrics.count_error)
    app.add_middleware(ApiKeyMiddleware, keys=settings.api_keys, metrics=metrics,
                       limiter=lambda: getattr(app.state.service, "rate_limiter", None))
    app.add_middleware(MetricsMiddleware, metrics=metrics)

    def service(request: Request) -> ServiceState:
        state = request.app.state.service
        if state is None:
            raise ServiceUnavailable("the service is starting; retry shortly")
        return state

    @app.post("/identify", response_model=IdentifyResponse, responses=ERRORS, openapi_extra=IDENTIFY_OPENAPI)
    async def identify(request: Request) -> IdentifyResponse:
        state = service(request)
        query = await parse_identify(request, state.settings)

        index = await anyio.to_thread.run_sync(load_index, state, query.stream_id, limiter=state.limiter)
        top_k = candidates(state.sessions, query.session_id, query.top_k)  # more when smoothing
        result = await state.identify(query.frames, index, top_k, query.asr_text)
        state.metrics.observe_stages(result.timings_ms)
        state.metrics.observe_counts(len(result.frames), result.n_boxes)
        result, smoothing = await apply_session(
            state.sessions, query.session_id, result, index.titles, query.top_k, state.metrics
        )
        return identify_response(result, smoothing)

    app.include_router(video_router(service, load_index))
    app.include_router(demo_router(service, load_index, settings.catalogue_root))

    @app.get("/streams/{stream_id}", response_model=StreamInfo, responses=ERRORS)
    async def get_stream(request: Request, stream_id: str) -> StreamInfo:
        state = service(request)

        def load() -> StreamInfo:
            return stream_info(load_index(state, stream_id))

        return await anyio.to_thread.run_sync(load, limiter=state.limiter)

    @app.get("/models", response_model=ModelsResponse)
    async def get_models(request: Request) -> ModelsResponse:
        return models_response(service(request).models)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "alive"}

    @app.get("/readyz")
    async def readyz(request: Request) -> Response:
        if drain.draining:
            return Response(b'{"status":"draining"}', status_code=503, media_type="application/json")
        state = request.app.state.service
        if state is None:
            return Response(b'{"status":"starting"}', status_code=503, media_type="application/json")
        # Redis down is "degraded", still 200: requests succeed without it (no smoothing, CURRENT polling).
        redis = redis_state(state.redis)
        return JSONResponse({"status": "degraded" if redis == "down" else "ready", "redis": redis})

    @app.get("/metrics")
    async def get_metrics() -> Response:
        body, content_type = metrics.render()
        return Response(body, media_type=content_type)

    return app
