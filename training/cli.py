"""The training package's commands, each behind `watchbuy <command>` (watchbuy/cli.py):

- `models [--force]`: fill WATCHBUY_MODEL_DIR: detector copied (or downloaded) and made batch-dynamic,
  embedder exported from the configured weights, their cohort installed (what `make models` runs);
- `train ...`: fine-tune an embedder on the `*-train` sets into a work folder (what `make train` runs);
- `adopt RUN_DIR`: copy a finished run's weights into models/weights/ and record them in its manifest;
- `ensemble NAME MEMBER=WEIGHT ...`: record an ensemble of adopted weights, exported as one embedder.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from models.artifacts import ModelArtifactError
from watchbuy.settings import get_settings


def models_main(argv: list[str] | None = None) -> int:
    from models.detector import DetectorConfig
    from models.proposals import ProposalConfig
    from training.fetch import Int8Plan, fetch_models
    from training.quantize import CalibrationSet, QuantizationError

    parser = argparse.ArgumentParser(prog="watchbuy models", description="fetch the detector, export the embedder")
    parser.add_argument("--force", action="store_true", help="fetch again even if the files are fine")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    settings = get_settings()
    int8 = None
    if settings.quantization_data:
        int8 = Int8Plan(
            CalibrationSet(tuple(settings.quantization_data)),
            DetectorConfig.from_settings(settings),
            ProposalConfig.from_settings(settings),
        )
    try:
        records = fetch_models(
            settings.model_dir, settings.model_mirror, force=args.force, embedder_weights=settings.embedder_weights,
            int8=int8,
        )
    except (ModelArtifactError, QuantizationError, OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for record in records.values():
        print(f"{record.role:9s} {record.name:28s} {record.bytes:>10,d} B  sha256 {record.sha256[:16]}…  {record.file}")
    print(f"models ready in {settings.model_dir}")
    return 0


def ensemble_main(argv: list[str] | None = None) -> int:
    from training.trained import save_ensemble

    parser = argparse.ArgumentParser(prog="watchbuy ensemble",
                                     description="record an ensemble of trained weights in the weights manifest")
    parser.add_argument("name")
    parser.add_argument("members", nargs="+", metavar="MEMBER=WEIGHT", type=_member)
    parser.add_argument("--note", default="", help="why this ensemble (kept in the manifest)")
    args = parser.parse_args(argv)
    command = "watchbuy ensemble " + shlex.join(argv if argv is not None else sys.argv[1:])
    info = {"command": command, "note": args.note} if args.note else {"command": command}
    try:
        entry = save_ensemble(args.name, args.members, info)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"{args.name}: {len(entry['members'])} members, {entry['config']['dim']}-d vectors")
    return 0


def _member(text: str) -> tuple[str, float]:
    name, sep, weight = text.rpartition("=")
    try:
        value = float(weight)
    except ValueError:
        value = -1.0
    if not sep or not name or not value > 0:
        raise argparse.ArgumentTypeError(f"expected MEMBER=WEIGHT with a positive weight, got {text!r}")
    return name, value


def adopt_main(argv: list[str] | None = None) -> int:
    from training.trained import WEIGHTS_DIR, adopt

    parser = argparse.ArgumentParser(prog="watchbuy adopt",
                                     description="copy a training run's weights into models/weights/")
    parser.add_argument("run_dir", type=Path, help="the run's --work-dir (holds <name>.npz and manifest.json)")
    args = parser.parse_args(argv)
    try:
        names = adopt(args.run_dir)
    except (OSError, ValueError, KeyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"adopted {', '.join(names)} into {WEIGHTS_DIR}; export with WATCHBUY_EMBEDDER_WEIGHTS=NAME make models")
    return 0


def train_main(argv: list[str] | None = None) -> int:
    import torch

    from training.nets.efficientnet_lite import BACKBONES
    from training.train import TrainConfig, train
    from training.trained import RUN_MANIFEST, backbone_of, save_weights

    parser = argparse.ArgumentParser(prog="watchbuy train",
                                     description="fine-tune an embedder on the *-train sets into --work-dir")
    parser.add_argument("--datasets", nargs="+", default=["../shared/data/viton-train", "../shared/data/grocery-train"])
    parser.add_argument("--val-streams", nargs="+", default=["viton-train-11"])
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--batch", type=int, default=48)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work-dir", type=Path, required=True,
                        help="checkpoints, history and the finished weights (adopt them with `watchbuy adopt`)")
    parser.add_argument("--name", required=True, help="the weights' name, e.g. watchbuy-lite1-v8")
    parser.add_argument("--init", help="start from these trained weights (a models/weights/ entry)")
    parser.add_argument("--repeat", nargs="*", default=[], metavar="DATASET=N",
                        help="use a dataset's pairs N times per epoch, e.g. grocery-train=3")
    parser.add_argument("--val-share", nargs="*", default=[], metavar="STREAM=SHARE",
                        help="hold out a seeded share of a stream's clips for validation, e.g. grocery-train-00=0.15")
    parser.add_argument("--lr-scale", type=float, default=1.0, help="multiply both learning rates (fine-tuning)")
    parser.add_argument("--rotate", type=float, default=0.0, metavar="DEGREES",
                        help="turn half of the photo views by up to ± this many degrees")
    parser.add_argument("--hard-group", type=int, default=0, metavar="N",
                        help="build batches from groups of N look-alike products, mined each epoch (0: random)")
    parser.add_argument("--margin", type=float, default=0.0, metavar="M",
                        help="additive cosine margin on the true pair in the loss (0: plain InfoNCE)")
    parser.add_argument("--sigmoid-weight", type=float, default=0.0, metavar="W",
                        help="add W × the pairwise sigmoid loss (SigLIP) to InfoNCE (0: none)")
    parser.add_argument("--backbone", choices=sorted(BACKBONES), default=TrainConfig.backbone,
                        help="ImageNet EfficientNet-Lite variant to start from (ignored with --init)")
    parser.add_argument("--synthetic", type=int, default=0, metavar="N",
                        help="N synthetic live-view pairs per catalogue product per epoch (models/synthetic.py)")
    parser.add_argument("--anchor", type=float, default=0.0, metavar="W",
                        help="add W × ½‖θ − θ_start‖² over the trained backbone weights (L2-SP; 0: none)")
    parser.add_argument("--freeze-blocks", type=int, default=TrainConfig.freeze_blocks,
                        help="EfficientNet blocks kept frozen (of 16 in Lite0, 21 in Lite1)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(2)
    config = TrainConfig(
        tuple(args.datasets), tuple(args.val_streams), args.epochs, args.batch,
        lr_backbone=TrainConfig.lr_backbone * args.lr_scale, lr_head=TrainConfig.lr_head * args.lr_scale,
        seed=args.seed, init=args.init,
        repeat=tuple(_pair_arg(a, int) for a in args.repeat),
        val_share=tuple(_pair_arg(a, float) for a in args.val_share),
        rotate_degrees=args.rotate, freeze_blocks=args.freeze_blocks, hard_group=args.hard_group,
        margin=args.margin, sigmoid_weight=args.sigmoid_weight, synthetic=args.synthetic, anchor_weight=args.anchor,
        backbone=backbone_of(args.init) if args.init else args.backbone,
    )
    started = time.perf_counter()
    result = train(config, args.work_dir)
    history = result["history"]
    head = result["model"].head  # with --init it is the init weights' head, whatever --dim says
    (args.work_dir / "history.json").write_text(json.dumps(history, indent=2))
    entry = save_weights(
        result["model"],
        args.work_dir / f"{args.name}.npz",
        {
            "name": args.name,
            "architecture": f"EfficientNet-{config.backbone.title()} ({config.init or 'ImageNet'} init) "
            f"+ Linear({head.in_features}, {head.out_features}), L2-normalised",
            "data": list(config.datasets),
            "validation": list(config.val_streams),
            "command": "watchbuy train " + " ".join(argv if argv is not None else sys.argv[1:]),
            "seed": config.seed,
            "config": asdict(config),
            "history": history,
            "metrics": {"val_r1_gt_boxes": history[-1]["val_r1"], "val_r1_start": history[0]["val_r1"]},
            "train_seconds": round(sum(h.get("seconds", 0.0) for h in history), 1),
            "this_run_seconds": round(time.perf_counter() - started, 1),
            "machine": f"{os.cpu_count()} CPU cores, torch {torch.__version__}",
        },
        manifest=args.work_dir / RUN_MANIFEST,
    )
    logging.getLogger("train").info(
        "saved %s (%d bytes, sha256 %s); adopt it with `watchbuy adopt %s`",
        args.work_dir / entry["file"], entry["bytes"], entry["sha256"], args.work_dir,
    )
    return 0


def _pair_arg(text: str, kind: type) -> tuple[str, Any]:
    name, _, value = text.partition("=")
    if not name or not value:
        raise SystemExit(f"expected NAME=VALUE, got {text!r}")
    return name, kind(value)
