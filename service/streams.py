"""Which index answers a stream: the cache's current version, refused when the loaded models cannot use it."""

from __future__ import annotations

from indexer.store import IndexCorrupt, StreamIndex, StreamNotFound
from models.embedder import PREPROCESS
from models.loader import Models
from service.errors import ServiceUnavailable, StreamNotFoundError
from service.indexes import IndexCache


def embedder_mismatch(index: StreamIndex, models: Models) -> str | None:
    """Why this index's vectors cannot be compared with the loaded embedder's (and scored with its cohort), or None."""
    if index.index.d != models.embedder.dim:
        return f"has {index.index.d}-d vectors, the embedder makes {models.embedder.dim}-d ones"
    built_with = index.manifest.get("models", {})
    if built_with.get("embedder") != models.identity("embedder"):
        return "was built with another embedder"
    if index.manifest.get("embedder_preprocess") != PREPROCESS:
        return "was built with another crop preprocessing"
    if models.cohort is not None and (index.hubness is None or built_with.get("cohort") != models.cohort.sha256):
        return "was built without the embedder's cohort (its hubness scores are missing or stale)"
    return None


def load_index(indexes: IndexCache, models: Models, stream_id: str) -> StreamIndex:
    """The stream's current index, or the client-facing error that explains why there is none."""
    try:
        index = indexes.get(stream_id)
    except (StreamNotFound, ValueError):
        raise StreamNotFoundError(
            f"stream {stream_id!r} has no index; build it with `make build-index STREAM={stream_id}`"
        ) from None
    except IndexCorrupt as exc:
        raise ServiceUnavailable(f"the index of stream {stream_id!r} cannot be loaded: {exc}") from None
    problem = embedder_mismatch(index, models)
    if problem:
        raise ServiceUnavailable(
            f"the index of stream {stream_id!r} {problem}; rebuild it with `make build-index STREAM={stream_id}`"
        )
    return index
