"""What a process needs to run and serve watches, built once: the event log readers use, the sink a
watcher writes to (event log + webhook), and the runner of this process's watchers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from service.state import ServiceState
from service.watch.eventlog import EventLog, MemoryEventLog, RedisEventLog
from service.watch.events import EventSink, Fanout
from service.watch.runner import WatchRunner
from service.watch.webhook import Webhook


@dataclass(frozen=True, slots=True)
class WatchHub:
    log: EventLog
    sink: Fanout
    runner: WatchRunner


@asynccontextmanager
async def watch_hub(state: ServiceState) -> AsyncIterator[WatchHub]:
    """Redis event log when the service has Redis (else in memory), the webhook when configured."""
    settings = state.settings
    log: RedisEventLog | MemoryEventLog
    if state.redis is not None and settings.redis_url:
        log = RedisEventLog(state.redis, settings.redis_url, settings.watch_events_maxlen)
    else:
        log = MemoryEventLog(settings.watch_events_maxlen)
    sinks: list[EventSink] = [log]
    webhook = None
    if settings.watch_webhook_url:
        webhook = Webhook(settings.watch_webhook_url, settings.watch_webhook_secret,
                          settings.watch_webhook_retries, state.metrics)
        webhook.start()
        sinks.append(webhook)
    sink = Fanout(sinks, on_error=lambda kind: state.metrics.watch_errors.labels(kind).inc())
    runner = WatchRunner(state, sink, settings.watch_restarts)
    try:
        yield WatchHub(log, sink, runner)
    finally:
        await runner.aclose()
        if webhook is not None:
            await webhook.aclose()
        await log.aclose()
