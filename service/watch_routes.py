"""The stream watcher API: start and stop a watch, what is on screen now, and the events as SSE.

POST /streams/{id}/watch checks the source (policy: schemes, hosts, no private addresses, local files
only under a folder → 403/422), that the stream has an index (404), and that the source opens and
decodes (422 `source_unreadable`), then runs the watch here or queues it for the watch workers
(WATCHBUY_WATCH_WORKERS; 409 when the stream is already watched). GET /streams/{id}/events streams
`segment_started`, `segment_ended`, `reconnecting`, `watch_ended` and `watch_failed` events; a client
that reconnects with Last-Event-ID gets what it missed (as far as the kept log reaches).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated, TypeVar

import anyio
import redis.asyncio as aioredis
from fastapi import APIRouter, Header, Path, Request
from fastapi.sse import EventSourceResponse, ServerSentEvent
from redis.exceptions import RedisError

from service.errors import Conflict, NotWatched, ServiceUnavailable, SourceUnreadable
from service.redis_client import RedisUnavailable
from service.schemas import ID_PATTERN, WatchAccepted, WatchIn, WatchNow, error_responses
from service.state import ServiceState, running
from service.watch import queue
from service.watch.hub import WatchHub
from service.watch.policy import SourcePolicy
from service.watch.runner import WatchRequest
from service.watch.source import FrameReader, SourceError
from service.watch.watcher import WatchConfig

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
        source = SourcePolicy.from_settings(settings).check(body.source)
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

    return router


async def _redis(state: ServiceState, op: Callable[[aioredis.Redis], Awaitable[T]]) -> T:
    """A Redis step of a route (the watch queue); no Redis or a Redis outage is a 503, not a 500."""
    if state.redis is None:
        raise ServiceUnavailable("watch workers need WATCHBUY_REDIS_URL")
    try:
        return await state.redis.run(op)
    except RedisUnavailable as exc:
        raise ServiceUnavailable(f"redis is unavailable: {exc}") from None
