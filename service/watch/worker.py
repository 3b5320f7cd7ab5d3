"""`watchbuy watch-worker`: one member of the consumer group that runs the queued watches (service/watch/queue.py).

Each worker loads the models once, runs up to WATCHBUY_WATCH_MAX_PER_WORKER watches, renews them every
third of WATCHBUY_WATCH_CLAIM_IDLE_SECONDS, and takes over the watches of a worker that stopped renewing
(killed, crashed, partitioned) after that many seconds. A taken-over watch goes on from the checkpoint its
last worker saved with the renewal (the open segment's start, or the frame after the last one analysed):
a file is sought there, a live source goes on from its live edge. Events go to the Redis event log (and the webhook), so
the API replicas serve `now` and the SSE stream of any worker's watches. Metrics on WATCHBUY_WORKER_METRICS_PORT.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import socket
import sys

import redis.asyncio as aioredis
from prometheus_client import start_http_server
from redis.exceptions import RedisError

from service.metrics import Metrics
from service.state import serving
from service.watch import queue
from service.watch.events import WatchState
from service.watch.hub import watch_hub
from service.watch.runner import WatchRunner
from watchbuy.settings import Settings, get_settings

log = logging.getLogger("watchbuy.watch_worker")


class Worker:
    def __init__(self, client: aioredis.Redis, runner: WatchRunner, settings: Settings, name: str) -> None:
        self.client = client
        self.runner = runner
        self.settings = settings
        self.name = name
        self.held: dict[str, queue.QueuedWatch] = {}
        self.ttl_s = settings.watch_claim_idle_seconds * 3

    async def run(self) -> None:
        await queue.ensure_group(self.client)
        log.info("watch worker %s: up to %d watches", self.name, self.settings.watch_max_per_worker)
        renew_every = self.settings.watch_claim_idle_seconds / 3
        loop = asyncio.get_running_loop()
        next_renew = loop.time()
        while True:
            try:
                next_renew = await self._step(loop.time(), next_renew, renew_every)
            except RedisError as exc:  # Redis away: keep the running watches, try again shortly
                log.warning("redis: %s", exc)
                await asyncio.sleep(1.0)

    async def _step(self, now: float, next_renew: float, renew_every: float) -> float:
        """Take over, read new entries, renew; the time of the next renewal."""
        free = self.settings.watch_max_per_worker - len(self.held)
        if free > 0:
            idle = self.settings.watch_claim_idle_seconds
            for watch in await queue.take_over(self.client, self.name, free, idle):
                log.info("taking over the watch of %s", watch.request.stream_id)
                await self._start(watch)
            free = self.settings.watch_max_per_worker - len(self.held)
        if free > 0:
            block_ms = int(max(0.1, min(renew_every, 2.0)) * 1000)
            for watch in await queue.read_new(self.client, self.name, free, block_ms):
                await self._start(watch)
        else:
            await asyncio.sleep(min(renew_every, 1.0))
        if now >= next_renew:
            next_renew = now + renew_every
            for stream_id in await queue.renew(self.client, self.name, list(self.held.values()), self.ttl_s):
                log.info("the watch of %s was cancelled", stream_id)
                self.runner.stop(stream_id)
            for stream_id, watch in list(self.held.items()):
                if (checkpoint := self.runner.checkpoint(stream_id)) is not None:
                    await queue.save_checkpoint(self.client, watch, checkpoint, self.ttl_s)
        return next_renew

    async def _start(self, watch: queue.QueuedWatch) -> None:
        stream_id = watch.request.stream_id
        if stream_id in self.held:
            return  # running here already (its own entry), or a newer request that waits for this one to end
        if not await queue.is_current(self.client, watch):
            await queue.done(self.client, watch)  # cancelled or replaced before it started
            return
        resume = await queue.checkpoint(self.client, watch)  # saved by a worker that held it before
        if resume is not None:
            log.info("the watch of %s goes on from %.2f s", stream_id, resume.time_s)
        self.held[stream_id] = watch
        self.runner.start(watch.request, on_done=self._done, resume=resume)

    async def _done(self, stream_id: str, final: WatchState) -> None:
        watch = self.held.pop(stream_id, None)
        log.info("the watch of %s is %s", stream_id, final)
        if watch is not None:
            await queue.done(self.client, watch)


async def serve(settings: Settings, name: str) -> None:
    if not settings.redis_url:
        raise SystemExit("watchbuy watch-worker: WATCHBUY_REDIS_URL is required")
    metrics = Metrics()
    if settings.worker_metrics_port:
        start_http_server(settings.worker_metrics_port, registry=metrics.registry)
    client = aioredis.from_url(settings.redis_url, socket_timeout=30, socket_connect_timeout=5, decode_responses=True)
    async with serving(settings, metrics) as state, watch_hub(state) as hub:
        try:
            await Worker(client, hub.runner, settings, name).run()
        finally:
            await client.aclose()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="watchbuy watch-worker", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--name", default=f"{socket.gethostname()}-{os.getpid()}", help="this consumer's name")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        asyncio.run(serve(get_settings(), args.name))
    except KeyboardInterrupt:
        return 0
    return 0
