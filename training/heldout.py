"""Write the clips a training run held out for validation as a streams-layout dataset for the evaluator.

`watchbuy train --val-share grocery-train-00=0.15` trains on 85% of that stream's clip photos
and validates on the rest. Those held-out photos are the only labelled grocery photos the trained model
has not seen outside the dev set, so they are where the grocery abstain threshold is calibrated:

    watchbuy heldout-clips --val-share grocery-train-00=0.15 --out var/calibration/grocery
    watchbuy eval var/calibration/grocery

The split is the training run's own (`training.train.split_pairs`, same datasets, seed and shares).
Catalogues are copied, image folders symlinked; only the held-out clips are written to queries.jsonl.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from training.pairs import read_pairs
from training.train import TrainConfig, split_pairs


def held_out_photos(datasets: list[Path], val_share: dict[str, float], seed: int) -> dict[str, set[Path]]:
    """Per stream, the photo paths the training run validated on instead of training."""
    config = TrainConfig(tuple(map(str, datasets)), (), seed=seed, val_share=tuple(val_share.items()))
    _, groups = split_pairs(read_pairs(datasets), config)
    return {stream: {pair.photo.path for pair in pairs} for stream, pairs in groups.items()}


def write_stream(source: Path, target: Path, photos: set[Path]) -> int:
    """Copy the stream's catalogue, link its images and frames, keep only clips with a held-out frame."""
    target.mkdir(parents=True, exist_ok=True)
    (target / "catalogue.jsonl").write_text((source / "catalogue.jsonl").read_text())
    for folder in ("images", "frames"):
        if (source / folder).exists() and not (target / folder).exists():
            (target / folder).symlink_to((source / folder).resolve())
    kept = []
    for line in (source / "queries.jsonl").read_text().splitlines():
        if not line.strip():
            continue
        clip = json.loads(line)
        if any(source / frame["path"] in photos for frame in clip["frames"]):
            kept.append(line)
    (target / "queries.jsonl").write_text("".join(f"{line}\n" for line in kept))
    return len(kept)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="watchbuy heldout-clips", description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", type=Path,
                        default=[Path("../shared/data/viton-train"), Path("../shared/data/grocery-train")],
                        help="the training run's --datasets, in the same order")
    parser.add_argument("--val-share", nargs="+", required=True, metavar="STREAM=SHARE")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    shares = {name: float(value) for name, _, value in (item.partition("=") for item in args.val_share)}
    photos = held_out_photos(args.datasets, shares, args.seed)
    streams = {stream.name: stream for dataset in args.datasets for stream in (dataset / "streams").iterdir()}
    for stream_id in sorted(shares):
        kept = write_stream(streams[stream_id], args.out / "streams" / stream_id, photos.get(stream_id, set()))
        print(f"{stream_id}: {kept} held-out clips -> {args.out / 'streams' / stream_id}")
    return 0

