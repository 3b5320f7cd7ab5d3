"""Watch requests on a Redis Stream, read by the consumer group of watch workers.

- `submit` (the API): claims the stream's active key with a fresh token (SET NX: one watch per stream;
  a second is a 409), then `XADD`s the request to `watchbuy:watch:requests`.
- A worker reads new entries with `XREADGROUP`, and takes over entries whose worker stopped renewing them
  with `XAUTOCLAIM` (a dead worker's watches). A running worker renews its entries with `XCLAIM ... JUSTID`
  (which resets their idle time) and the active keys' expiry, and `XACK`s an entry when its watch is done.
- A running worker also keeps each watch's checkpoint (`service/watch/source.Checkpoint`: where its reading
  got to) beside the entry when it renews it, so a worker that takes the watch over goes on from there
  instead of from the source's start.
- `cancel` (DELETE): removes the active key; the worker holding the watch sees its token gone and stops.
  An entry whose token is no longer the active one is acknowledged and skipped.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from service.watch.runner import WatchRequest
from service.watch.source import Checkpoint

REQUESTS = "watchbuy:watch:requests"
GROUP = "watchers"
ACTIVE_KEY = "watchbuy:watch:active:{stream}"
CHECKPOINT_KEY = "watchbuy:watch:checkpoint:{entry}"
_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end"


@dataclass(frozen=True, slots=True)
class QueuedWatch:
    entry_id: str
    token: str
    request: WatchRequest


async def submit(client: aioredis.Redis, request: WatchRequest, ttl_s: float) -> str | None:
    """The new watch's token, or None when the stream is already watched."""
    token = uuid.uuid4().hex
    if not await client.set(ACTIVE_KEY.format(stream=request.stream_id), token, nx=True, px=int(ttl_s * 1000)):
        return None
    fields = {"stream_id": request.stream_id, "source": request.source, "sample_fps": str(request.sample_fps),
              "realtime": "1" if request.realtime else "0", "token": token}
    await client.xadd(REQUESTS, fields)  # type: ignore[arg-type]
    return token


async def cancel(client: aioredis.Redis, stream_id: str) -> bool:
    return bool(await client.delete(ACTIVE_KEY.format(stream=stream_id)))


async def ensure_group(client: aioredis.Redis) -> None:
    try:
        await client.xgroup_create(REQUESTS, GROUP, id="0", mkstream=True)
    except ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


async def read_new(client: aioredis.Redis, consumer: str, count: int, block_ms: int) -> list[QueuedWatch]:
    reply: Any = await client.xreadgroup(GROUP, consumer, {REQUESTS: ">"}, count=count, block=block_ms)
    return [_parsed(entry_id, fields) for _, entries in reply or [] for entry_id, fields in entries]


async def take_over(client: aioredis.Redis, consumer: str, count: int, idle_s: float) -> list[QueuedWatch]:
    """Entries another worker has not renewed for `idle_s` (it died): now this consumer's."""
    reply = await client.xautoclaim(REQUESTS, GROUP, consumer, min_idle_time=int(idle_s * 1000), count=count)
    return [_parsed(entry_id, fields) for entry_id, fields in reply[1] if fields]


async def renew(client: aioredis.Redis, consumer: str, watches: list[QueuedWatch], ttl_s: float) -> list[str]:
    """Reset the entries' idle time and the active keys' expiry; the streams whose watch was cancelled."""
    if not watches:
        return []
    await client.xclaim(REQUESTS, GROUP, consumer, min_idle_time=0,
                        message_ids=[w.entry_id for w in watches], justid=True)
    cancelled = []
    for watch in watches:
        key = ACTIVE_KEY.format(stream=watch.request.stream_id)
        if await client.get(key) == watch.token:
            await client.pexpire(key, int(ttl_s * 1000))
        else:
            cancelled.append(watch.request.stream_id)
    return cancelled


async def save_checkpoint(client: aioredis.Redis, watch: QueuedWatch, checkpoint: Checkpoint, ttl_s: float) -> None:
    value = json.dumps({"origin": checkpoint.origin, "time_s": checkpoint.time_s})
    await client.set(CHECKPOINT_KEY.format(entry=watch.entry_id), value, px=int(ttl_s * 1000))


async def checkpoint(client: aioredis.Redis, watch: QueuedWatch) -> Checkpoint | None:
    """Where the entry's watch got to on a worker that stopped renewing it; None for a new watch."""
    value = await client.get(CHECKPOINT_KEY.format(entry=watch.entry_id))
    if value is None:
        return None
    fields = json.loads(value)
    return Checkpoint(float(fields["origin"]), float(fields["time_s"]))


async def is_current(client: aioredis.Redis, watch: QueuedWatch) -> bool:
    return bool(await client.get(ACTIVE_KEY.format(stream=watch.request.stream_id)) == watch.token)


async def done(client: aioredis.Redis, watch: QueuedWatch) -> None:
    """Acknowledge the entry, and free the stream if this watch still holds it."""
    await client.xack(REQUESTS, GROUP, watch.entry_id)
    await client.xdel(REQUESTS, watch.entry_id)
    await client.delete(CHECKPOINT_KEY.format(entry=watch.entry_id))
    await client.eval(_RELEASE, 1, ACTIVE_KEY.format(stream=watch.request.stream_id), watch.token)


def _parsed(entry_id: Any, fields: dict[Any, Any]) -> QueuedWatch:
    f = {_text(k): _text(v) for k, v in fields.items()}
    request = WatchRequest(f.get("stream_id", ""), f.get("source", ""), float(f.get("sample_fps", "4") or 4),
                           f.get("realtime") == "1")
    return QueuedWatch(_text(entry_id), f.get("token", ""), request)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
