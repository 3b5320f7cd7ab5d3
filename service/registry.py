"""The Redis index registry on the service side: follow announced versions, switch loaded streams.

A background task subscribes to `WATCHBUY_REGISTRY_CHANNEL` (indexer/announce.py writes it). For each
announcement naming a stream this replica has loaded and a version newer than the one it serves, the
version is loaded and verified in a worker thread (`IndexCache.switch_to`: manifest checksums) and swapped
in; a corrupt one is refused and the old one keeps serving. After every (re)subscribe the registry hash
is read, so announcements missed while Redis was away still arrive. When Redis is down the listener
waits for `RedisLink` to see it back; meanwhile CURRENT polling (WATCHBUY_RELOAD_CHECK_SECONDS) reloads.
"""

from __future__ import annotations

import asyncio
import logging
import time

import anyio

from indexer.announce import Announcement, decode_announcement, registry_key
from indexer.store import is_version
from service.indexes import IndexCache
from service.metrics import Metrics
from service.redis_client import CONNECTION_ERRORS, RedisLink, RedisUnavailable, cancel_task

log = logging.getLogger(__name__)

#: How long one read on the subscription waits before looping (keeps cancellation prompt).
POLL_SECONDS = 1.0
#: Pause before resubscribing after a failure (Redis being down is waited out separately).
RETRY_SECONDS = 0.2


class IndexRegistry:
    """Keeps this replica's loaded streams on the newest announced version."""

    def __init__(self, link: RedisLink, indexes: IndexCache, channel: str, metrics: Metrics) -> None:
        self._link = link
        self._indexes = indexes
        self._channel = channel
        self._metrics = metrics
        self._task: asyncio.Task[None] | None = None
        self.subscribed = False

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="index-registry")

    async def aclose(self) -> None:
        await cancel_task(self._task)
        self._task = None

    async def apply(self, announcement: Announcement) -> str:
        """Switch to an announced version when it is newer than the loaded one; returns the outcome."""
        started = time.perf_counter()
        loaded = {index.stream_id: index.version for index in self._indexes.loaded()}
        serving = loaded.get(announcement.stream_id)
        if serving is None:
            outcome = "not_loaded"
        elif announcement.version < serving:  # version names sort by creation time
            outcome = "older"
        else:
            outcome = await anyio.to_thread.run_sync(
                self._indexes.switch_to, announcement.stream_id, announcement.version
            )
        self._metrics.count_announcement(outcome)
        level = logging.WARNING if outcome == "refused" else logging.INFO
        log.log(level, "announcement %s/%s: %s (%.0f ms)", announcement.stream_id, announcement.version, outcome,
                (time.perf_counter() - started) * 1000)
        return outcome

    async def catch_up(self) -> None:
        """Apply what the registry hash says for every loaded stream (missed while unsubscribed)."""
        streams = sorted(index.stream_id for index in self._indexes.loaded())
        if not streams:
            return
        key = registry_key(self._channel)
        versions = await self._link.run(lambda client: client.hmget(key, streams))
        for stream_id, version in zip(streams, versions, strict=True):
            if is_version(version):
                await self.apply(Announcement(stream_id, version))

    async def _run(self) -> None:
        while True:
            await self._link.wait_up()
            try:
                await self._listen()
            except asyncio.CancelledError:
                raise
            except CONNECTION_ERRORS as exc:
                self._link.mark_down(exc)
                await asyncio.sleep(RETRY_SECONDS)
            except RedisUnavailable as exc:
                log.warning("index registry: %s", exc)
                await asyncio.sleep(RETRY_SECONDS)
            except Exception:  # a bug here must not end hot reload for good
                log.exception("index registry listener failed; restarting it")
                await asyncio.sleep(RETRY_SECONDS)
            finally:
                self.subscribed = False

    async def _listen(self) -> None:
        generation = self._link.generation
        async with self._link.client.pubsub(ignore_subscribe_messages=True) as pubsub:
            await pubsub.subscribe(self._channel)
            self.subscribed = True
            log.info("index registry subscribed to %s", self._channel)
            await self.catch_up()
            while self._link.up and self._link.generation == generation:
                # after any outage the monitor saw, resubscribe on a fresh connection and catch up: a
                # subscription that silently died (a partition, a restarted server) would never error
                message = await pubsub.get_message(timeout=POLL_SECONDS)
                if message is None or message.get("type") != "message":
                    continue
                announcement = decode_announcement(message.get("data"))
                if announcement is None:
                    self._metrics.count_announcement("invalid")
                    log.warning("ignored a malformed announcement on %s", self._channel)
                    continue
                await self.apply(announcement)
