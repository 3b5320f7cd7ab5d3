"""FastAPI application factory: middleware and routes only; the work lives in identify, pipeline and respond."""

from __future__ import annotations

import functools
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from service.auth import ApiKeyMiddleware
from service.decode import decode_images
from service.demo_routes import demo_router
from service.drain import Drain
from service.errors import install_error_handlers
from service.identify import identify
from service.limits import BodySizeLimitMiddleware
from service.metrics import Metrics, MetricsMiddleware
from service.redis_client import redis_state
from service.request_parsing import IDENTIFY_OPENAPI, parse_identify
from service.respond import identify_response, models_response, stream_info
from service.schemas import IdentifyResponse, ModelsResponse, StreamInfo, error_responses
from service.state import running, serving
from service.video_routes import video_router
from service.watch.hub import watch_hub
from service.watch_routes import watch_router
from watchbuy.settings import Settings, get_settings

log = logging.getLogger(__name__)

ERRORS = error_responses(400, 404, 413, 415, 422)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    metrics = Metrics()
    drain = Drain(settings.drain_seconds)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            async with serving(settings, metrics) as state, watch_hub(state) as hub:
                app.state.service, app.state.watch = state, hub
                drain.install()
                try:
                    yield
                finally:
                    drain.uninstall()
        finally:
            app.state.service = app.state.watch = None

    app = FastAPI(title="watchbuy", version="0.1.0", lifespan=lifespan)
    app.state.service = app.state.watch = None
    install_error_handlers(app, on_error=metrics.count_error)
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.max_body_bytes, on_reject=metrics.count_error)
    app.add_middleware(ApiKeyMiddleware, keys=settings.api_keys, metrics=metrics,
                       limiter=lambda: getattr(app.state.service, "rate_limiter", None))
    app.add_middleware(MetricsMiddleware, metrics=metrics)

    @app.post("/identify", response_model=IdentifyResponse, responses=ERRORS, openapi_extra=IDENTIFY_OPENAPI)
    async def identify_frames(request: Request) -> IdentifyResponse:
        state = running(request)
        query = await parse_identify(request, state.settings)
        decode = functools.partial(decode_images, query.frames, state.settings.max_image_pixels)
        result, _ = await identify(state, query.query, decode, n_frames=len(query.frames))
        return identify_response(result)

    app.include_router(video_router())
    app.include_router(watch_router())
    app.include_router(demo_router(settings.catalogue_root))

    @app.get("/streams/{stream_id}", response_model=StreamInfo, responses=ERRORS)
    async def get_stream(request: Request, stream_id: str) -> StreamInfo:
        state = running(request)
        index = await anyio.to_thread.run_sync(state.load_index, stream_id, limiter=state.limiter)
        return stream_info(index, state.pipeline.config.abstain.for_index(index))

    @app.get("/models", response_model=ModelsResponse)
    async def get_models(request: Request) -> ModelsResponse:
        return models_response(running(request).models)

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
