"""`watchbuy cohort DATASET --streams ...`: the configured embedder's query cohort (models/cohort.py).

Every frame of every clip of the given training streams goes through the service's own detect → propose →
embed steps (`Pipeline.propose_and_embed`, the models called as the service calls them); a seeded sample
of the proposal vectors is saved as `models/weights/cohort-<weights>.npz` and recorded under the weights'
manifest entry, so `make models` ships it with the embedder. Streams named `*-dev*` are refused: the dev
sets are for evaluation only.
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from anyio.from_thread import BlockingPortal, start_blocking_portal
from tqdm import tqdm

from indexer.queries import DatasetError, StreamSource, find_streams, read_clips
from models.artifacts import ModelArtifactError
from models.cohort import sample_rows
from service.decode import decode_image
from service.errors import ApiError
from service.metrics import Metrics
from service.state import ServiceState, serving
from service.values import DecodedFrame
from training.fetch import embedder_name
from training.trained import save_cohort
from watchbuy.settings import Settings, get_settings


class CohortBuildError(RuntimeError):
    """The cohort cannot be made (dev streams asked for, embedder not exported, nothing embedded)."""


@dataclass(frozen=True, slots=True)
class CohortSummary:
    weights: str
    streams: tuple[str, ...]
    proposals: int
    kept: int
    file: str


def embed_streams(
    state: ServiceState, portal: BlockingPortal, sources: Sequence[StreamSource]
) -> np.ndarray:
    """The embeddings of every proposal of every clip frame of `sources` (undecodable frames skipped)."""
    parts: list[np.ndarray] = []
    max_pixels = state.settings.max_image_pixels
    for source in sources:
        for clip in tqdm(list(read_clips(source)), desc=f"cohort {source.stream_id}", unit="clip"):
            decoded = []
            for frame in clip.frames:
                try:
                    decoded.append(DecodedFrame(frame.frame_index, decode_image(frame.image_bytes(), max_pixels)))
                except (ApiError, OSError):  # the service would answer 4xx for it
                    continue
            if decoded:
                parts.append(portal.call(state.pipeline.propose_and_embed, decoded, state.calls).vectors)
    if not parts:
        raise CohortBuildError("no clip frame could be embedded")
    return np.concatenate(parts)


def build_cohort(dataset: Path, streams: Sequence[str], settings: Settings, size: int, seed: int) -> CohortSummary:
    """Embed the streams' clip proposals, sample `size` of them and save them as the embedder's cohort."""
    dev = sorted(s for s in streams if "-dev" in s)
    if dev:
        raise CohortBuildError(f"dev streams are for evaluation, not for the cohort: {', '.join(dev)}")
    weights = settings.embedder_weights
    sources = find_streams(dataset, set(streams))
    with start_blocking_portal() as portal, portal.wrap_async_context_manager(serving(settings, Metrics())) as state:
        loaded = next(m.record for m in state.models.loaded if m.record.role == "embedder")
        if loaded.name != embedder_name(weights):
            raise CohortBuildError(f"{settings.model_dir} holds {loaded.name}, not {weights}; run `make models`")
        vectors = embed_streams(state, portal, sources)
    kept = sample_rows(vectors, size, seed)
    record = save_cohort(weights, kept, {
        "data": [str(dataset)],
        "streams": [s.stream_id for s in sources],
        "command": "watchbuy cohort " + shlex.join(sys.argv[2:]),
        "seed": seed,
        "proposals": len(vectors),
    })
    return CohortSummary(weights, tuple(s.stream_id for s in sources), len(vectors), len(kept), record["file"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="watchbuy cohort",
                                     description="embed training streams' clip proposals as the embedder's cohort")
    parser.add_argument("dataset", type=Path, help="a dataset in the streams layout (e.g. ../shared/data/viton-train)")
    parser.add_argument("--streams", nargs="+", required=True, help="training stream ids (never *-dev*)")
    parser.add_argument("--size", type=int, default=4000, help="vectors kept, sampled with --seed (default 4000)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        summary = build_cohort(args.dataset, args.streams, get_settings(), args.size, args.seed)
    except (CohortBuildError, DatasetError, ModelArtifactError, ValueError) as exc:
        print(f"cohort failed: {exc}", file=sys.stderr)
        return 1
    print(f"cohort of {summary.weights}: {summary.kept} of {summary.proposals} proposal vectors from "
          f"{len(summary.streams)} streams → models/weights/{summary.file}; run `make models` to install it")
    return 0
