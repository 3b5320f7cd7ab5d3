"""`watchbuy heldout-clips` reproduces a training run's split: its clips are the validation pairs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from support.data import PROJECT_DIR

from training.pairs import read_pairs
from training.train import (
    TrainConfig,
    split_pairs,
)


def test_heldout_clips_writes_exactly_the_validation_split(tmp_path: Path) -> None:
    """`watchbuy heldout-clips` reproduces the training run's split: its clips are the validation pairs."""
    stream = tmp_path / "toy-train" / "streams" / "s0"
    stream.mkdir(parents=True)
    products = [{"product_id": f"p{i}", "title": "", "images": [{"image_id": f"p{i}", "path": f"images/{i}.jpg",
                 "boxes": []}]} for i in range(4)]
    clips = [{"clip_id": f"c{k}", "product_id": f"p{k % 4}", "asr_text": None,
              "frames": [{"frame_index": 0, "path": f"frames/{k}.jpg", "boxes": []}]} for k in range(40)]
    (stream / "catalogue.jsonl").write_text("\n".join(json.dumps(p) for p in products))
    (stream / "queries.jsonl").write_text("\n".join(json.dumps(c) for c in clips))
    (stream / "images").mkdir()
    (stream / "frames").mkdir()
    out = tmp_path / "heldout"
    done = subprocess.run(
        [str(Path(sys.executable).with_name("watchbuy")), "heldout-clips", "--datasets", str(tmp_path / "toy-train"),
         "--val-share", "s0=0.3", "--seed", "3", "--out", str(out)],
        capture_output=True, text=True, cwd=PROJECT_DIR, check=False,
    )
    assert done.returncode == 0, done.stderr
    config = TrainConfig((str(tmp_path / "toy-train"),), (), seed=3, val_share=(("s0", 0.3),))
    train_pairs, groups = split_pairs(read_pairs([tmp_path / "toy-train"]), config)
    written = [json.loads(line) for line in (out / "streams" / "s0" / "queries.jsonl").read_text().splitlines()]
    assert {stream / c["frames"][0]["path"] for c in written} == {p.photo.path for p in groups["s0"]}
    assert 0 < len(written) < 40 and len(written) + len(train_pairs) == 40
    assert (out / "streams" / "s0" / "frames").resolve() == (stream / "frames").resolve()
