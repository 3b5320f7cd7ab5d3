"""`python -m indexer cohort DATASET --streams ...`: the configured embedder's query cohort (models/cohort.py).

Every frame of every clip of the given training streams goes through the service's own detect → propose →
embed steps; a seeded sample of the proposal vectors is saved as `models/weights/cohort-<weights>.npz`
and recorded under the weights' manifest entry, so `make models` ships it with the embedder. Streams
named `*-dev*` are refused: the dev sets are for evaluation only.
"""

from __future__ import annotations

import shlex
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from indexer.queries import StreamSource, find_streams, read_clips
from models.cohort import sample_rows
from models.fetch import embedder_name
from models.trained import save_cohort
from service.decode import DecodedFrame, decode_image
from service.errors import ApiError
from service.pipeline import Pipeline
from watchbuy.settings import Settings


class CohortBuildError(RuntimeError):
    """The cohort cannot be made (dev streams asked for, embedder not exported, nothing embedded)."""


@dataclass(frozen=True, slots=True)
class CohortSummary:
    weights: str
    streams: tuple[str, ...]
    proposals: int
    kept: int
    file: str


def embed_streams(pipeline: Pipeline, sources: Sequence[StreamSource], max_pixels: int) -> np.ndarray:
    """The embeddings of every proposal of every clip frame of `sources` (undecodable frames skipped)."""
    parts: list[np.ndarray] = []
    for source in sources:
        for clip in tqdm(list(read_clips(source)), desc=f"cohort {source.stream_id}", unit="clip"):
            decoded = []
            for frame in clip.frames:
                try:
                    decoded.append(DecodedFrame(frame.frame_index, decode_image(frame.image_bytes(), max_pixels)))
                except (ApiError, OSError):  # the service would answer 4xx for it
                    continue
            if decoded:
                parts.append(pipeline.embed_proposals(decoded)[1])
    if not parts:
        raise CohortBuildError("no clip frame could be embedded")
    return np.concatenate(parts)


def build_cohort(
    dataset: Path, streams: Sequence[str], pipeline: Pipeline, settings: Settings, size: int, seed: int
) -> CohortSummary:
    """Embed the streams' clip proposals, sample `size` of them and save them as the embedder's cohort."""
    dev = sorted(s for s in streams if "-dev" in s)
    if dev:
        raise CohortBuildError(f"dev streams are for evaluation, not for the cohort: {', '.join(dev)}")
    weights = settings.embedder_weights
    loaded = next(m.record for m in pipeline.models.loaded if m.record.role == "embedder")
    if loaded.name != embedder_name(weights):
        raise CohortBuildError(f"{settings.model_dir} holds {loaded.name}, not {weights}; run `make models`")
    sources = find_streams(dataset, set(streams))
    vectors = embed_streams(pipeline, sources, settings.max_image_pixels)
    kept = sample_rows(vectors, size, seed)
    record = save_cohort(weights, kept, {
        "data": [str(dataset)],
        "streams": [s.stream_id for s in sources],
        "command": "python -m indexer " + shlex.join(sys.argv[1:]),
        "seed": seed,
        "proposals": len(vectors),
    })
    return CohortSummary(weights, tuple(s.stream_id for s in sources), len(vectors), len(kept), record["file"])
