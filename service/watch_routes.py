"""The stream watcher API: start and stop a watch, what is on screen now, and the events as SSE.

POST /streams/{id}/watch checks the source (policy: schemes, hosts, no private addresses, local files
only under a folder → 403/422), that the stream has an index (404), and that the source opens and
decodes (422 `source_unreadable`), then runs the watch here or queues it for the watch workers
(WATCHBUY_WATCH_WORKERS; 409 when the stream is already watched). GET /streams/{id}/events streams
`segment_started`, `segment_ended`, `reconnecting`, `watch_ended` and `watch_failed` events; a client
that reconnects with Last-Event-ID gets what it missed (as far as the kept log reaches). POST /timeline
watches an uploaded clip (the /identify/video form) to its end and answers its segments (the demo page's
timeline).
"""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from pathlib import Path as FilePath
from typing import Annotated, TypeVar

import anyio
import redis.asyncio as aioredis
from fastapi import APIRouter, Header, Path, Request
from fastapi.sse import EventSourceResponse, ServerSentEvent
from redis.exceptions import RedisError

from service.errors import (
    Conflict,
    InvalidVideo,
    NotWatched,
    ServiceUnavailable,
    SourceUnreadable,
    UnsupportedVideoFormat,
    VideoTooLong,
)
from service.redis_client import RedisUnavailable
from service.schemas import (
    ID_PATTERN,
    SegmentOut,
    TimelineResponse,
    WatchAccepted,
    WatchIn,
    WatchNow,
    error_responses,
)
from service.state import ServiceState, running
from service.video import sniff_container
from service.video_request import parse_video_request
from service.watch import queue
from service.watch.events import WatchEvent, WatchStatus
from service.watch.hub import WatchHub
from service.watch.policy import SourcePolicy
from service.watch.runner import WatchRequest
from service.watch.source import FrameReader, SourceError, SourceTooLong
from service.watch.watcher import WatchConfig, Watcher

T = TypeVar("T")
StreamPath = Annotated[str, Path(pattern=ID_PATTERN)]
#: How long one SSE read waits for an event before checking that the client is still there.
READ_WAIT_S = 5.0


def hub_of(request: Request) -> tuple[ServiceState, WatchHub]:
    state = running(request)
    hub: WatchHub | None = getattr(request.app.state, "watch", None)
    if hub is None:
        raise ServiceUnavailable("the service is starting; retry shortly")
    return state, hub


def watch_router() -> APIRouter:
    router = APIRouter()

    @router.post("/streams/{stream_id}/watch", status_code=202, response_model=WatchAccepted,
                 responses=error_responses(400, 403, 404, 409, 422, 503))
    async def start_watch(request: Request, stream_id: StreamPath, body: WatchIn) -> WatchAccepted:
        state, hub = hub_of(request)
        settings = state.settings
        # the policy resolves the host name (blocking DNS): off the event loop
        source = await anyio.to_thread.run_sync(SourcePolicy.from_settings(settings).check, body.source)
        await anyio.to_thread.run_sync(state.load_index, stream_id, limiter=state.limiter)
        config = WatchConfig.from_settings(settings, body.sample_fps)
        try:
            await anyio.to_thread.run_sync(FrameReader(source, config.source).probe)
        except SourceError as exc:
            raise SourceUnreadable(str(exc)) from None
        watch = WatchRequest(stream_id, source, config.source.sample_fps, body.realtime)
        if settings.watch_workers:
            ttl = settings.watch_claim_idle_seconds * 3
            token = await _redis(state, lambda r: queue.submit(r, watch, ttl))
            if token is None:
                raise Conflict(f"stream {stream_id!r} is already watched; DELETE its watch first")
        else:
            if hub.runner.running(stream_id):
                raise Conflict(f"stream {stream_id!r} is already watched; DELETE its watch first")
            hub.runner.start(watch)
        return WatchAccepted(stream_id=stream_id, source=body.source, sample_fps=watch.sample_fps,
                             runs_on="workers" if settings.watch_workers else "api")

    @router.delete("/streams/{stream_id}/watch", status_code=202, responses=error_responses(404, 503))
    async def stop_watch(request: Request, stream_id: StreamPath) -> dict[str, str]:
        state, hub = hub_of(request)
        if state.settings.watch_workers:
            stopped = await _redis(state, lambda r: queue.cancel(r, stream_id))
        else:
            stopped = hub.runner.stop(stream_id)
        if not stopped:
            raise NotWatched(f"stream {stream_id!r} is not being watched")
        return {"stream_id": stream_id, "status": "stopping"}

    @router.get("/streams/{stream_id}/now", response_model=WatchNow, responses=error_responses(404, 503))
    async def now(request: Request, stream_id: StreamPath) -> WatchNow:
        state, hub = hub_of(request)
        try:
            status = await hub.log.now(stream_id)
        except (RedisUnavailable, RedisError) as exc:
            raise ServiceUnavailable(f"redis is unavailable: {exc}") from None
        if status is None:
            raise NotWatched(f"stream {stream_id!r} has not been watched")
        return WatchNow.model_validate(status)

    @router.get("/streams/{stream_id}/events", response_class=EventSourceResponse,
                responses=error_responses(503))
    async def events(
        request: Request, stream_id: StreamPath, last_event_id: Annotated[str | None, Header()] = None
    ) -> AsyncIterator[ServerSentEvent]:
        _, hub = hub_of(request)
        after = last_event_id
        while not await request.is_disconnected():
            try:
                entries = await hub.log.read(stream_id, after, READ_WAIT_S)
            except (RedisUnavailable, RedisError):
                await anyio.sleep(1.0)
                continue
            for entry_id, event in entries:
                after = entry_id
                yield ServerSentEvent(data=event, event=str(event.get("kind", "message")), id=entry_id)

    @router.post("/timeline", response_model=TimelineResponse, responses=error_responses(400, 404, 413, 415, 422))
    async def timeline(request: Request) -> TimelineResponse:
        """An uploaded clip watched to its end like a stream: its product segments, with their best frames."""
        state = running(request)
        video = await parse_video_request(request, state.settings)
        if sniff_container(video.video) is None:
            raise UnsupportedVideoFormat("not an MP4 or WebM video")
        index = await anyio.to_thread.run_sync(state.load_index, video.stream_id, limiter=state.limiter)
        sink = SegmentsKept()
        with tempfile.TemporaryDirectory(prefix="watchbuy-timeline-") as folder:
            path = FilePath(folder) / "upload"
            await anyio.to_thread.run_sync(path.write_bytes, video.video)
            config = WatchConfig.from_settings(state.settings)
            config = replace(config, source=replace(config.source, max_seconds=state.settings.max_video_seconds))
            watcher = Watcher(state, video.stream_id, str(path), config, sink)
            if await watcher.run() == "failed":
                if isinstance(watcher.failure, SourceTooLong):
                    raise VideoTooLong(f"{watcher.failure} (WATCHBUY_MAX_VIDEO_SECONDS)")
                raise InvalidVideo(f"the video cannot be watched: {watcher.status.message}")
        interval = 1.0 / state.settings.watch_sample_fps
        return TimelineResponse(
            stream_id=video.stream_id, index_version=index.version, frames=watcher.status.frames,
            duration_s=round((watcher.status.time_s or 0.0) + interval, 3),
            segments=[SegmentOut(product_id=e.product_id or "", title=index.titles.get(e.product_id or "", ""),
                                 start_s=e.start_s or 0.0, end_s=e.end_s or 0.0, score=e.score or 0.0, best=e.best)
                      for e in sink.segments],
        )

    return router


class SegmentsKept:
    """The sink of an uploaded clip's watch: its finished segments."""

    def __init__(self) -> None:
        self.segments: list[WatchEvent] = []

    async def emit(self, event: WatchEvent) -> None:
        if event.kind == "segment_ended":
            self.segments.append(event)

    async def status(self, status: WatchStatus) -> None:
        return None


async def _redis(state: ServiceState, op: Callable[[aioredis.Redis], Awaitable[T]]) -> T:
    """A Redis step of a route (the watch queue); no Redis or a Redis outage is a 503, not a 500."""
    if state.redis is None:
        raise ServiceUnavailable("watch workers need WATCHBUY_REDIS_URL")
    try:
        return await state.redis.run(op)
    except RedisUnavailable as exc:
        raise ServiceUnavailable(f"redis is unavailable: {exc}") from None
