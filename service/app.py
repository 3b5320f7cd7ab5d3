"""FastAPI application factory: routes only; the work lives in pipeline, indexes and respond."""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager
from typing import AsyncIterator

import anyio
from fastapi import FastAPI, Request
from fastapi.responses import Response

from indexer.store import IndexCorrupt, StreamIndex, StreamNotFound
from models.embedder import PREPROCESS
from models.loader import Models
from service.errors import ServiceUnavailable, StreamNotFoundError, install_error_handlers
from service.limits import BodySizeLimitMiddleware
from service.metrics import Metrics, MetricsMiddleware
from service.request_parsing import IDENTIFY_OPENAPI, parse_identify
from service.respond import identify_response, model_info, stream_info
from service.schemas import ErrorResponse, IdentifyResponse, ModelsResponse, StreamInfo
from service.state import ServiceState, start_service
from watchbuy.settings import Settings, get_settings

log = logging.getLogger(__name__)

ERRORS = {code: {"model": ErrorResponse} for code in (400, 404, 413, 415, 422)}


def _missing_stream(stream_id: str) -> StreamNotFoundError:
    return StreamNotFoundError(
        f"stream {stream_id!r} has no index; build it with `make build-index STREAM={stream_id}`"
    )


def embedder_mismatch(index: StreamIndex, models: Models) -> str | None:
    """Why this index's vectors cannot be compared with the loaded embedder's, or None."""
    if index.index.d != models.embedder.dim:
        return f"has {index.index.d}-d vectors, the embedder makes {models.embedder.dim}-d ones"
    built_with = index.manifest.get("models", {}).get("embedder")
    if built_with != models.sha256("embedder"):
        return "was built with another embedder"
    if index.manifest.get("embedder_preprocess") != PREPROCESS:
        return "was built with another crop preprocessing"
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

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.service = await anyio.to_thread.run_sync(start_service, settings, metrics)
        yield
        app.state.service = None

    app = FastAPI(title="watchbuy", version="0.1.0", lifespan=lifespan)
    app.state.service = None
    install_error_handlers(app, on_error=metrics.count_error)
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.max_body_bytes, on_reject=metrics.count_error)
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

        def run() -> IdentifyResponse:
            index = load_index(state, query.stream_id)
            result = state.pipeline.identify(query.frames, index, query.top_k)
            state.metrics.observe_stages(result.timings_ms)
            state.metrics.observe_counts(len(result.frames), result.n_boxes)
            return identify_response(result)

        return await anyio.to_thread.run_sync(run, limiter=state.limiter)

    @app.get("/streams/{stream_id}", response_model=StreamInfo, responses=ERRORS)
    async def get_stream(request: Request, stream_id: str) -> StreamInfo:
        state = service(request)

        def load() -> StreamInfo:
            return stream_info(load_index(state, stream_id))

        return await anyio.to_thread.run_sync(load, limiter=state.limiter)

    @app.get("/models", response_model=ModelsResponse)
    async def get_models(request: Request) -> ModelsResponse:
        return ModelsResponse(models=[model_info(m) for m in service(request).models.loaded])

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "alive"}

    @app.get("/readyz")
    async def readyz(request: Request) -> Response:
        ready = request.app.state.service is not None
        body = b'{"status":"ready"}' if ready else b'{"status":"starting"}'
        return Response(body, status_code=200 if ready else 503, media_type="application/json")

    @app.get("/metrics")
    async def get_metrics() -> Response:
        body, content_type = metrics.render()
        return Response(body, media_type=content_type)

    return app
