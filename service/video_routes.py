"""POST /identify/video: a short clip → frames sampled at `video_sample_fps` → /identify's pipeline.

The clip is decoded in a worker thread (timed as the `decode` stage); the decoded frames then take the
/identify path from detection on: batched model calls when batching is on, else one worker thread, and
the same session smoothing.
"""

from __future__ import annotations

from collections.abc import Callable

import anyio
from fastapi import APIRouter, Request

from indexer.store import StreamIndex
from service.pipeline import Identification, StageTimer
from service.schemas import ErrorResponse, IdentifyVideoResponse
from service.sessions import apply_session, candidates
from service.state import ServiceState
from service.video import SampledVideo, VideoLimits, sample_video
from service.video_request import VIDEO_OPENAPI, parse_video_request, video_response

StateGetter = Callable[[Request], ServiceState]
IndexLoader = Callable[[ServiceState, str], StreamIndex]

ERRORS = {code: {"model": ErrorResponse} for code in (400, 404, 413, 415, 422)}


def video_limits(state: ServiceState) -> VideoLimits:
    settings = state.settings
    return VideoLimits(
        max_seconds=settings.max_video_seconds,
        sample_fps=settings.video_sample_fps,
        max_frames=settings.max_frames,
        max_pixels=settings.max_image_pixels,
    )


async def identify_sampled(
    state: ServiceState,
    video: SampledVideo,
    index: StreamIndex,
    top_k: int,
    asr_text: str | None,
    timer: StageTimer,
) -> Identification:
    """Detection onwards for already decoded frames, the way `ServiceState.identify` runs /identify."""
    if state.batchers is not None:
        return await state.pipeline.identify_decoded_batched(
            video.frames, index, top_k, state.batchers, state.limiter, asr_text, timer
        )
    return await anyio.to_thread.run_sync(
        state.pipeline.identify_decoded,
        video.frames,
        index,
        top_k,
        asr_text,
        timer,
        limiter=state.limiter,
    )


def video_router(get_state: StateGetter, load_index: IndexLoader) -> APIRouter:
    """The route, given how the app finds its running state and a stream's index (with its API errors)."""
    router = APIRouter()

    @router.post(
        "/identify/video", response_model=IdentifyVideoResponse, responses=ERRORS, openapi_extra=VIDEO_OPENAPI
    )
    async def identify_video(request: Request) -> IdentifyVideoResponse:
        state = get_state(request)
        query = await parse_video_request(request, state.settings)
        index = await anyio.to_thread.run_sync(load_index, state, query.stream_id, limiter=state.limiter)
        if state.batchers is not None:
            state.batchers.detector.ensure_room(1)  # refuse before decoding when the detector queue is full
        timer = StageTimer()

        def decode() -> SampledVideo:
            with timer.stage("decode"):
                return sample_video(query.video, video_limits(state))

        video = await anyio.to_thread.run_sync(decode, limiter=state.limiter)
        top_k = candidates(state.sessions, query.session_id, query.top_k)  # more when smoothing
        result = await identify_sampled(state, video, index, top_k, query.asr_text, timer)
        state.metrics.observe_stages(result.timings_ms)
        state.metrics.observe_counts(len(result.frames), result.n_boxes)
        result, smoothing = await apply_session(
            state.sessions, query.session_id, result, index.titles, query.top_k, state.metrics
        )
        return await anyio.to_thread.run_sync(video_response, result, video, query.return_frames, smoothing)

    return router
