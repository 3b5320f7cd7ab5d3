"""Fine-tune EfficientNet-Lite (Lite0 or Lite1) + a projection head with a symmetric InfoNCE loss on shop ↔ photo pairs.

`watchbuy train` (training/cli.py; what `make train` runs). Seeded, resumable (a checkpoint per epoch
under the work dir), validated on held-out *-train streams; the CLI saves the result as fp16 numpy weights
with a manifest in the work dir, and `watchbuy adopt` moves it into models/weights/.
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from PIL import Image
from torch import nn

from models.embedder import MEAN, STD, crop, pad_to_square
from models.synthetic import LiveViewConfig, live_view_and_box
from models.types import Box
from training.augment import view
from training.export import load_imagenet
from training.losses import Anchor, PairSigmoid, info_nce
from training.nets.efficientnet_lite import EmbeddingNet
from training.pairs import Pair, View, read_pairs
from training.trained import is_ensemble, load_trained

log = logging.getLogger("train")


@dataclass(frozen=True)
class TrainConfig:
    datasets: tuple[str, ...]
    val_streams: tuple[str, ...]
    epochs: int = 6
    batch: int = 48
    size: int = 224
    dim: int = 256
    freeze_blocks: int = 8
    lr_backbone: float = 2e-4
    lr_head: float = 2e-3
    temperature: float = 0.05
    seed: int = 0
    init: str | None = None  # start from these trained weights (models/weights/) instead of ImageNet
    repeat: tuple[tuple[str, int], ...] = ()  # (dataset name, times): oversample a small dataset per epoch
    val_share: tuple[tuple[str, float], ...] = ()  # (stream, share): hold out a seeded share of its clips
    rotate_degrees: float = 0.0  # photos turned by up to ± this (0: the v1 recipe)
    hard_group: int = 0  # batches of groups of this many look-alike products (0: random batches, the v2 recipe)
    margin: float = 0.0  # additive cosine margin on the true pair (CosFace-style; 0: plain InfoNCE, the v3 recipe)
    sigmoid_weight: float = 0.0  # weight of the pairwise sigmoid loss added to InfoNCE (0: none, the v4 recipe)
    backbone: str = "lite0"  # ImageNet EfficientNet-Lite variant to start from (efficientnet_lite.BACKBONES)
    synthetic: int = 0  # synthetic live-view pairs per catalogue product per epoch (0: none, the v6 recipe)
    anchor_weight: float = 0.0  # L2-SP: weight of ½‖θ − θ_start‖² over the trained backbone weights (0: none)


class ImageCache:
    def __init__(self) -> None:
        self._images: dict[Path, np.ndarray] = {}

    def get(self, path: Path) -> np.ndarray:
        if path not in self._images:
            with Image.open(path) as handle:
                self._images[path] = np.asarray(handle.convert("RGB"))
        return self._images[path]


def to_tensor(batch: list[np.ndarray]) -> torch.Tensor:
    x = np.stack(batch).astype(np.float32)
    return torch.from_numpy((x - MEAN) / STD).permute(0, 3, 1, 2).contiguous()


def build_model(config: TrainConfig) -> EmbeddingNet:
    if config.init:
        refusal = f"--init {config.init}: an ensemble cannot be fine-tuned; start from one of its members"
        if is_ensemble(config.init):
            raise ValueError(refusal)
        loaded = load_trained(config.init)
        if not isinstance(loaded, EmbeddingNet):
            raise ValueError(refusal)
        model = loaded
        backbone = model.backbone
    else:
        backbone = load_imagenet(config.backbone)
        model = EmbeddingNet(backbone, nn.Linear(backbone.feature_dim, config.dim))
    for module in [backbone._conv_stem, backbone._bn0, *backbone._blocks[: config.freeze_blocks]]:
        for p in module.parameters():
            p.requires_grad_(False)
    return model


def batches(pairs: list[Pair], size: int, rng: random.Random) -> list[list[Pair]]:
    """Every pair once, in batches where no product appears twice (every other row is a true negative)."""
    order = pairs[:]
    rng.shuffle(order)
    return _pack([[pair] for pair in order], size)


def _pack(groups: list[list[Pair]], size: int) -> list[list[Pair]]:
    """Groups of pairs (each with distinct products) into batches of `size`, in order, each group into the
    first open batch with room and none of its products; batches under half full are dropped."""
    filling: list[tuple[list[Pair], set[int]]] = []
    done: list[list[Pair]] = []
    for members in groups:
        labels_in = {p.label for p in members}
        for batch, labels in filling:
            if len(batch) + len(members) <= size and not labels & labels_in:
                break
        else:
            batch, labels = [], set()
            filling.append((batch, labels))
        batch.extend(members)
        labels |= labels_in
        if len(batch) == size:
            done.append(batch)
            filling = [(b, seen) for b, seen in filling if b is not batch]
    done.extend(b for b, _ in filling if len(b) >= size // 2)
    return done


def hard_batches(
    pairs: list[Pair], size: int, group: int, neighbours: dict[int, list[int]], rng: random.Random
) -> list[list[Pair]]:
    """Every pair once, in batches built from groups of `group` products that look alike (a seed product and
    its nearest products by shop-image embedding), so each photo meets near-twins among its in-batch
    negatives. No product appears twice in a batch; groups are packed into batches in random seed order."""
    pool: dict[int, list[Pair]] = {}
    for pair in pairs:
        pool.setdefault(pair.label, []).append(pair)
    for stack in pool.values():
        rng.shuffle(stack)
    seeds = [pair.label for pair in pairs]  # a product with n pairs seeds up to n groups
    rng.shuffle(seeds)
    groups: list[list[Pair]] = []
    for seed in seeds:
        if not pool[seed]:
            continue
        members = [pool[seed].pop()]
        for label in neighbours.get(seed, []):
            if len(members) == group:
                break
            if pool.get(label):
                members.append(pool[label].pop())
        groups.append(members)
    done = _pack(groups, size)
    rng.shuffle(done)
    return done


def shop_neighbours(model: nn.Module, pairs: list[Pair], cache: ImageCache, size: int, k: int) -> dict[int, list[int]]:
    """Each product's k most similar other products, by the current model's embedding of its shop image."""
    model.eval()
    shops: dict[int, View] = {p.label: p.shop for p in pairs}
    labels = sorted(shops)
    gallery = embed_views(model, [shops[label] for label in labels], cache, size)
    sims = gallery @ gallery.t()
    sims.fill_diagonal_(-2.0)
    nearest = sims.topk(min(k, len(labels) - 1), dim=1).indices.tolist()
    return {label: [labels[j] for j in row] for label, row in zip(labels, nearest, strict=True)}


@torch.no_grad()
def embed_views(model: nn.Module, views: list[View], cache: ImageCache, size: int) -> torch.Tensor:
    out = []
    for start in range(0, len(views), 64):
        chunk = views[start : start + 64]
        crops = [_clean_view(cache.get(v.path), v.box, size) for v in chunk]
        out.append(model(to_tensor(crops)))
    return torch.cat(out)


def _clean_view(image: np.ndarray, box: Box | None, size: int) -> np.ndarray:
    """The unaugmented crop, squared and resized the way `augment.view` does it."""
    h, w = image.shape[:2]
    patch = crop(image, box if box is not None else (0, 0, w, h))
    return cv2.resize(pad_to_square(np.ascontiguousarray(patch)), (size, size), interpolation=cv2.INTER_AREA)


def validate(model: nn.Module, groups: dict[str, list[Pair]], cache: ImageCache, size: int) -> dict[str, float]:
    """R@1 per validation stream: photo crops against all shop crops of that stream's products."""
    return {stream: _r_at_1(model, pairs, cache, size) for stream, pairs in sorted(groups.items())}


def _r_at_1(model: nn.Module, pairs: list[Pair], cache: ImageCache, size: int) -> float:
    model.eval()
    shops: dict[int, View] = {p.label: p.shop for p in pairs}
    labels = sorted(shops)
    gallery = embed_views(model, [shops[k] for k in labels], cache, size)
    queries = embed_views(model, [p.photo for p in pairs], cache, size)
    best = (queries @ gallery.t()).argmax(1)
    truth = torch.tensor([labels.index(p.label) for p in pairs])
    return float((best == truth).float().mean())


def stream_of(pair: Pair) -> str:
    """The stream folder a pair's photo comes from (<dataset>/streams/<stream>/...)."""
    parts = pair.photo.path.parts
    return parts[parts.index("streams") + 1]


def dataset_of(pair: Pair) -> str:
    parts = pair.photo.path.parts
    return parts[parts.index("streams") - 1]


def split_pairs(pairs: list[Pair], config: TrainConfig) -> tuple[list[Pair], dict[str, list[Pair]]]:
    """Training pairs (small datasets repeated) and validation pairs per stream: whole `val_streams`,
    and a seeded share of the clip photos of each `val_share` stream (its products stay in training)."""
    shares = dict(config.val_share)
    rng = random.Random(config.seed)
    train_pairs: list[Pair] = []
    groups: dict[str, list[Pair]] = {}
    for pair in pairs:
        stream = stream_of(pair)
        if pair.photo.synthetic:  # never validated on; a validation stream's products stay out of training
            if stream not in config.val_streams:
                train_pairs.extend([pair] * config.synthetic)
            continue
        held_out = stream in config.val_streams or (stream in shares and rng.random() < shares[stream])
        if held_out:
            groups.setdefault(stream, []).append(pair)
        else:
            train_pairs.append(pair)
    times = dict(config.repeat)
    repeated = [p for p in train_pairs for _ in range(times.get(dataset_of(p), 1))]
    return repeated, groups


def epoch_batches(
    model: nn.Module, pairs: list[Pair], config: TrainConfig, cache: ImageCache, rng: random.Random, steps: int
) -> list[list[Pair]]:
    """This epoch's batches: random (v1/v2), or look-alike groups mined with the model as it is now (at most
    `steps` of them, the learning-rate schedule's length)."""
    if config.hard_group <= 1:
        return batches(pairs, config.batch, rng)
    neighbours = shop_neighbours(model, pairs, cache, config.size, k=4 * config.hard_group)
    _train_mode(model)
    return hard_batches(pairs, config.batch, config.hard_group, neighbours, rng)[:steps]


def _train_mode(model: nn.Module) -> None:
    model.train()
    for module in model.modules():  # small batches: keep the ImageNet BN statistics
        if isinstance(module, nn.BatchNorm2d):
            module.eval()


class Views:
    """The augmented crops of a batch: shop views, and photo views (real, or synthetic live views of the shop
    image placed on a real training photo as the scene)."""

    def __init__(self, config: TrainConfig, cache: ImageCache, scenes: list[Path], rng: np.random.Generator) -> None:
        self.config, self.cache, self.scenes, self.rng = config, cache, scenes, rng

    def shop(self, pair: Pair) -> np.ndarray:
        return view(self.cache.get(pair.shop.path), pair.shop.box, self.config.size, self.rng, strong=False)

    def photo(self, pair: Pair) -> np.ndarray:
        if not pair.photo.synthetic:
            return view(self.cache.get(pair.photo.path), pair.photo.box, self.config.size, self.rng, strong=True,
                        rotate_degrees=self.config.rotate_degrees)
        scene = self.cache.get(self.scenes[int(self.rng.integers(len(self.scenes)))])
        frame, box = live_view_and_box(self.cache.get(pair.photo.path), pair.photo.box, scene, self.rng, SYNTHETIC)
        return view(frame, box, self.config.size, self.rng, strong=False)  # already turned, blurred, covered


#: Synthetic live frames for training: smaller than the index build's (the crop is resized to 224 anyway), at
#: a quarter of the rendering time.
SYNTHETIC = LiveViewConfig(width=288, height=384)


def train(config: TrainConfig, work_dir: Path) -> dict:
    torch.manual_seed(config.seed)
    np_rng = np.random.default_rng(config.seed)
    py_rng = random.Random(config.seed)
    pairs = read_pairs([Path(d) for d in config.datasets], synthetic=config.synthetic > 0)
    train_pairs, val_groups = split_pairs(pairs, config)
    scenes = sorted({p.photo.path for p in train_pairs if not p.photo.synthetic})
    log.info("pairs: %d train, validation %s", len(train_pairs), {k: len(v) for k, v in val_groups.items()})
    model = build_model(config)
    head_params = list(model.head.parameters())
    body_params = [p for n, p in model.backbone.named_parameters() if p.requires_grad]
    anchor = Anchor(body_params) if config.anchor_weight else None
    groups: list[dict[str, Any]] = [
        {"params": body_params, "lr": config.lr_backbone}, {"params": head_params, "lr": config.lr_head},
    ]
    pair_loss = PairSigmoid() if config.sigmoid_weight else None
    if pair_loss is not None:  # a scale and a threshold: a larger step, or they barely move in ~600 steps
        groups.append({"params": list(pair_loss.parameters()), "lr": 25 * config.lr_head, "weight_decay": 0.0})
    optimiser = torch.optim.AdamW(groups, weight_decay=1e-4)
    steps_per_epoch = len(batches(train_pairs, config.batch, random.Random(0)))
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimiser, max_lr=[float(g["lr"]) for g in groups], total_steps=config.epochs * steps_per_epoch
    )
    cache = ImageCache()
    views = Views(config, cache, scenes, np_rng)
    work_dir.mkdir(parents=True, exist_ok=True)
    checkpoint = work_dir / "checkpoint.pt"
    start_epoch, history = 0, []
    if checkpoint.exists():
        state = torch.load(checkpoint, map_location="cpu", weights_only=False)
        model.load_state_dict(state["model"])
        if pair_loss is not None:
            pair_loss.load_state_dict(state["pair_loss"])
        optimiser.load_state_dict(state["optimiser"])
        scheduler.load_state_dict(state["scheduler"])
        start_epoch, history = state["epoch"], state["history"]
        py_rng.setstate(state["py_rng"])
        np_rng.bit_generator.state = state["np_rng"]
        torch.set_rng_state(state["torch_rng"])
        log.info("resumed after epoch %d", start_epoch)
    elif not history:
        history.append({"epoch": 0, "val_r1": validate(model, val_groups, cache, config.size)})
        log.info("epoch 0 (%s): val R@1 %s", config.init or "ImageNet", history[-1]["val_r1"])
    for epoch in range(start_epoch + 1, config.epochs + 1):
        _train_mode(model)
        started, losses = time.perf_counter(), []
        for step, group in enumerate(epoch_batches(model, train_pairs, config, cache, py_rng, steps_per_epoch)):
            shop_vectors = model(to_tensor([views.shop(p) for p in group]))
            photo_vectors = model(to_tensor([views.photo(p) for p in group]))
            loss = info_nce(shop_vectors, photo_vectors, config.temperature, config.margin)
            if anchor is not None:
                loss = loss + config.anchor_weight * anchor.loss()
            if pair_loss is not None:
                loss = loss + config.sigmoid_weight * pair_loss(shop_vectors, photo_vectors)
            optimiser.zero_grad()
            loss.backward()  # type: ignore[no-untyped-call]
            optimiser.step()
            scheduler.step()
            losses.append(loss.item())
            if step % 10 == 0:
                log.info("epoch %d step %d loss %.3f (%.1f s)", epoch, step, losses[-1], time.perf_counter() - started)
        val = validate(model, val_groups, cache, config.size)
        history.append({"epoch": epoch, "loss": float(np.mean(losses)), "val_r1": val,
                        "seconds": time.perf_counter() - started})
        if pair_loss is not None:  # the learned threshold, as a cosine
            history[-1]["sigmoid_threshold"] = float(-pair_loss.bias / pair_loss.log_scale.exp())
        log.info("epoch %d: loss %.3f val R@1 %s", epoch, np.mean(losses), val)
        torch.save(
            {"model": model.state_dict(), "optimiser": optimiser.state_dict(), "scheduler": scheduler.state_dict(),
             "epoch": epoch, "history": history, "py_rng": py_rng.getstate(), "np_rng": np_rng.bit_generator.state,
             "torch_rng": torch.get_rng_state(),
             "pair_loss": pair_loss.state_dict() if pair_loss is not None else None},
            checkpoint.with_suffix(".tmp"),
        )
        checkpoint.with_suffix(".tmp").replace(checkpoint)
    return {"model": model, "history": history}
