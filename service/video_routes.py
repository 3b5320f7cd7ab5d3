"""POST /identify/video: a short clip → frames sampled at `video_sample_fps` → the identify request path.

The clip is sampled in a worker thread (timed as the `decode` stage); the sampled frames then take the
same path as /identify's (service/identify.py): batched model calls, session window, metrics.
"""

from __future__ import annotations

import functools

import anyio
from fastapi import APIRouter, Request

from service.identify import identify
from service.schemas import IdentifyVideoResponse, error_responses
from service.state import running
from service.video import VideoLimits, sample_video
from service.video_request import VIDEO_OPENAPI, parse_video_request, video_response
from watchbuy.settings import Settings

ERRORS = error_responses(400, 404, 413, 415, 422)


def video_limits(settings: Settings) -> VideoLimits:
    return VideoLimits(
        max_seconds=settings.max_video_seconds,
        sample_fps=settings.video_sample_fps,
        max_frames=settings.max_frames,
        max_pixels=settings.max_image_pixels,
    )


def video_router() -> APIRouter:
    router = APIRouter()

    @router.post(
        "/identify/video", response_model=IdentifyVideoResponse, responses=ERRORS, openapi_extra=VIDEO_OPENAPI
    )
    async def identify_video(request: Request) -> IdentifyVideoResponse:
        state = running(request)
        query = await parse_video_request(request, state.settings)
        sample = functools.partial(sample_video, query.video, video_limits(state.settings))
        result, video = await identify(state, query.query, sample, n_frames=1)
        return await anyio.to_thread.run_sync(video_response, result, video, query.return_frames)

    return router
