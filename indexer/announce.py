"""Announce a published index version in Redis: the registry hash and the pub/sub channel.

After `IndexStore.publish` has switched CURRENT, `announce_version` records `stream → version` in the
hash `<channel>:current` and publishes `{"stream_id", "version"}` on `<channel>` in one MULTI/EXEC, so
every replica (service/registry.py) can switch at once; a replica that was disconnected reads the hash
when it resubscribes. The message format lives here, for the indexer and the service alike.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import redis
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.retry import Retry

from indexer.store import is_stream_id, is_version


class AnnounceError(Exception):
    """Redis could not be reached or refused the commands (the index itself is published)."""


@dataclass(frozen=True, slots=True)
class Announcement:
    stream_id: str
    version: str


def registry_key(channel: str) -> str:
    """The hash that records each stream's newest announced version."""
    return f"{channel}:current"


def encode_announcement(stream_id: str, version: str) -> str:
    return json.dumps({"stream_id": stream_id, "version": version}, separators=(",", ":"))


def decode_announcement(data: object) -> Announcement | None:
    """A channel message → Announcement, or None when it is not a well-formed one (never trusted blindly)."""
    if isinstance(data, bytes):
        data = data.decode("utf-8", "replace")
    if not isinstance(data, str) or len(data) > 1024:
        return None
    try:
        message = json.loads(data)
    except json.JSONDecodeError:
        return None
    if not isinstance(message, dict):
        return None
    stream_id, version = message.get("stream_id"), message.get("version")
    if not is_stream_id(stream_id) or not is_version(version):
        return None
    return Announcement(stream_id, version)


def announce_version(
    redis_url: str, channel: str, stream_id: str, version: str, timeout_seconds: float = 2.0
) -> int:
    """Record and publish `(stream_id, version)`; returns how many subscribers got the message."""
    client = redis.Redis.from_url(
        redis_url, socket_timeout=timeout_seconds, socket_connect_timeout=timeout_seconds,
        retry=Retry(NoBackoff(), 1), decode_responses=True,
    )
    try:
        with client.pipeline(transaction=True) as pipe:
            pipe.hset(registry_key(channel), stream_id, version)
            pipe.publish(channel, encode_announcement(stream_id, version))
            _, receivers = pipe.execute()
        return int(receivers)
    except (RedisError, OSError) as exc:
        raise AnnounceError(f"{type(exc).__name__}: {exc}") from exc
    finally:
        client.close()
