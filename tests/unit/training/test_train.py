"""Training pieces: pairs only from *-train sets, product-unique batches, augmentations, one real
optimisation step, and the fp16 weights round trip into an ONNX export."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from training.augment import jitter_box, rotate, view  # noqa: E402 - after the torch check
from training.losses import Anchor, PairSigmoid, info_nce  # noqa: E402 - after the torch check
from training.pairs import Pair, View, read_pairs  # noqa: E402 - after the torch check
from training.train import (  # noqa: E402 - after the torch check
    TrainConfig,
    batches,
    build_model,
    hard_batches,
    split_pairs,
    to_tensor,
)


def test_pairs_refuse_dev_sets(tmp_path: Path) -> None:
    (tmp_path / "viton-dev" / "streams").mkdir(parents=True)
    with pytest.raises(ValueError, match="-train"):
        read_pairs([tmp_path / "viton-dev"])


def test_pairs_from_a_train_layout(tmp_path: Path) -> None:
    stream = tmp_path / "toy-train" / "streams" / "s0"
    stream.mkdir(parents=True)
    products = [{"product_id": f"p{i}", "title": "", "images": [{"image_id": f"p{i}-0", "path": f"i{i}.jpg",
                 "boxes": [[1, 2, 30, 40]]}]} for i in range(3)]
    clips = [{"clip_id": "c0", "product_id": "p1", "asr_text": None,
              "frames": [{"frame_index": 0, "path": "f0.jpg", "boxes": [{"box": [5, 6, 50, 60], "product_id": "p1"}]}]},
             {"clip_id": "c1", "product_id": None, "asr_text": None, "frames": []}]
    (stream / "catalogue.jsonl").write_text("\n".join(json.dumps(p) for p in products))
    (stream / "queries.jsonl").write_text("\n".join(json.dumps(c) for c in clips))
    pairs = read_pairs([tmp_path / "toy-train"])
    assert len(pairs) == 1
    assert pairs[0].shop == View(stream / "i1.jpg", (1.0, 2.0, 30.0, 40.0))
    assert pairs[0].photo == View(stream / "f0.jpg", (5.0, 6.0, 50.0, 60.0))
    # with synthetic views: one more pair per catalogue product, clips or not, labelled like its real pairs
    both = read_pairs([tmp_path / "toy-train"], synthetic=True)
    synthetic = [p for p in both if p.photo.synthetic]
    assert len(both) == 4 and len(synthetic) == 3
    assert all(p.photo.path == p.shop.path and p.photo.box == p.shop.box for p in synthetic)
    real = next(p for p in both if not p.photo.synthetic)
    assert real.label == next(p.label for p in synthetic if p.shop.path.name == "i1.jpg")


def test_synthetic_pairs_repeat_in_training_and_never_leave_a_validation_stream() -> None:
    def pair(stream: str, label: int, synthetic: bool) -> Pair:
        path = Path(f"/d/toy-train/streams/{stream}/{label}.jpg")
        return Pair(label, View(path, None), View(path, None, synthetic))

    pairs = [pair("s0", 0, False), pair("s0", 0, True), pair("val", 1, False), pair("val", 1, True)]
    train_pairs, held = split_pairs(pairs, TrainConfig(("toy-train",), ("val",), synthetic=3))
    assert [p.photo.synthetic for p in train_pairs] == [False, True, True, True]
    assert [p.photo.synthetic for p in held["val"]] == [False]


def test_the_anchor_is_zero_at_the_start_and_grows_with_the_distance() -> None:
    weights = torch.nn.Parameter(torch.ones(3))
    anchor = Anchor([weights])
    assert float(anchor.loss()) == 0.0
    with torch.no_grad():
        weights += torch.tensor([0.0, 1.0, 2.0])
    assert float(anchor.loss()) == pytest.approx((1 + 4) / 2)


def test_batches_use_every_pair_once_without_repeating_a_product() -> None:
    view_ = View(Path("x.jpg"), None)
    pairs = [Pair(label=i % 7, shop=view_, photo=View(Path(f"{i}.jpg"), None)) for i in range(70)]
    groups = batches(pairs, 7, random.Random(0))
    assert all(len({p.label for p in g}) == len(g) for g in groups)
    used = [p.photo.path for g in groups for p in g]
    assert len(used) == len(set(used)) == 70


def test_hard_batches_put_look_alikes_together_and_use_every_pair_once() -> None:
    view_ = View(Path("x.jpg"), None)
    # 40 products, one pair each, plus a product with 8 pairs (a grocery item photographed many times)
    pairs = [Pair(label=i, shop=view_, photo=View(Path(f"{i}.jpg"), None)) for i in range(40)]
    pairs += [Pair(label=40, shop=view_, photo=View(Path(f"40-{k}.jpg"), None)) for k in range(8)]
    # look-alikes: products in blocks of four (0-3, 4-7, ...); 40 looks like 0
    neighbours = {i: [j for j in range(i - i % 4, i - i % 4 + 4) if j != i] + [(i + 4) % 40] for i in range(40)}
    neighbours[40] = [0, 1]
    out = hard_batches(pairs, 8, 4, neighbours, random.Random(0))
    assert all(len({p.label for p in b}) == len(b) for b in out)
    used = [p.photo.path for b in out for p in b]
    assert len(used) == len(set(used)) and len(used) >= 40
    whole_blocks = sum(1 for b in out for block in range(10)
                       if set(range(4 * block, 4 * block + 4)) <= {p.label for p in b})
    assert whole_blocks >= 6  # random batches of 8 from 41 products almost never hold a whole block of four
    assert sum(1 for b in batches(pairs, 8, random.Random(0)) for block in range(10)
               if set(range(4 * block, 4 * block + 4)) <= {p.label for p in b}) <= 1
    assert out != hard_batches(pairs, 8, 4, neighbours, random.Random(1))


def test_augmented_view_shape_and_box_jitter_stays_inside() -> None:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (120, 90, 3), dtype=np.uint8)
    for _ in range(50):
        x1, y1, x2, y2 = jitter_box((10, 20, 80, 100), 90, 120, rng, 0.3)
        assert 0 <= x1 < x2 <= 90 and 0 <= y1 < y2 <= 120
        out = view(image, (10, 20, 80, 100), 64, rng, strong=True)
        assert out.shape == (64, 64, 3) and out.dtype == np.uint8


def test_rotation_is_opt_in_and_keeps_the_v1_recipe_when_off() -> None:
    image = np.random.default_rng(1).integers(0, 255, (120, 90, 3), dtype=np.uint8)
    plain = [view(image, None, 64, np.random.default_rng(seed), strong=True) for seed in range(5)]
    off = [view(image, None, 64, np.random.default_rng(seed), strong=True, rotate_degrees=0) for seed in range(5)]
    on = [view(image, None, 64, np.random.default_rng(seed), strong=True, rotate_degrees=30) for seed in range(5)]
    assert all(np.array_equal(a, b) for a, b in zip(plain, off, strict=True))
    assert any(not np.array_equal(a, b) for a, b in zip(plain, on, strict=True))
    turned = rotate(image, np.random.default_rng(0), 30)
    assert turned.shape == image.shape and not np.array_equal(turned, image)


def test_one_step_lowers_the_contrastive_loss_on_its_batch() -> None:
    torch.manual_seed(0)
    config = TrainConfig(datasets=(), val_streams=(), size=64, dim=32, freeze_blocks=8)
    model = build_model(config)
    model.eval()  # BN statistics stay ImageNet's, as in training
    rng = np.random.default_rng(0)
    a = to_tensor([rng.integers(0, 255, (64, 64, 3), dtype=np.uint8) for _ in range(4)])
    b = a + 0.05 * torch.randn_like(a)
    trainable = [p for p in model.parameters() if p.requires_grad]
    frozen_before = model.backbone._conv_stem.weight.clone()
    optimiser = torch.optim.SGD(trainable, lr=1e-3)
    before = info_nce(model(a), model(b), 0.1)
    before.backward()
    optimiser.step()
    with torch.no_grad():
        after = info_nce(model(a), model(b), 0.1)
    assert after < before
    assert torch.equal(model.backbone._conv_stem.weight, frozen_before)


def test_the_margin_only_relaxes_once_the_true_pair_leads_by_it() -> None:
    # Two pairs on the unit circle: each photo is 0.9 cosine from its own shop image, 0.5 from the other.
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    b = torch.nn.functional.normalize(torch.tensor([[0.9, 0.5], [0.5, 0.9]]), dim=1)
    plain = info_nce(a, b, 0.05)
    assert torch.equal(info_nce(a, b, 0.05, margin=0.0), plain)  # no margin: the v3 loss exactly
    lead = float(a[0] @ b[0] - a[0] @ b[1])  # how far the true pair leads (about 0.39)
    assert plain < info_nce(a, b, 0.05, margin=0.1) < info_nce(a, b, 0.05, margin=lead)
    # At a margin equal to the lead, the true pair ties the wrong one: the loss is log 2 in both directions.
    assert float(info_nce(a, b, 0.05, margin=lead)) == pytest.approx(np.log(2), abs=1e-4)


def test_the_pairwise_sigmoid_loss_asks_each_pair_against_one_threshold() -> None:
    loss = PairSigmoid()  # scale 10, threshold at cosine 0.5 to start
    n = 4
    separated = torch.eye(n)  # true pairs at cosine 1, all others at 0: every pair 5 logits on its right side
    expected = -n * float(torch.nn.functional.logsigmoid(torch.tensor(5.0)))  # n terms per row, averaged over rows
    assert float(loss(separated, separated)) == pytest.approx(expected, rel=1e-5)
    # Every cosine exactly at the threshold: each of the n × n questions is a coin toss.
    at_threshold = torch.full((n, n), 0.5)
    assert float(loss(torch.eye(n), at_threshold)) == pytest.approx(n * np.log(2), rel=1e-5)
    # Swapping the true pairs for wrong ones costs more than either.
    assert float(loss(separated, separated.flip(0))) > float(loss(torch.eye(n), at_threshold)) > expected


def test_trained_weights_round_trip_and_export(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import onnxruntime as ort

    from training import trained
    from training.export import export_embedder

    monkeypatch.setattr(trained, "WEIGHTS_DIR", tmp_path)
    monkeypatch.setattr(trained, "WEIGHTS_MANIFEST", tmp_path / "manifest.json")
    model = build_model(TrainConfig(datasets=(), val_streams=(), dim=16)).eval()
    entry = trained.save_weights(model, tmp_path / "toy.npz", {"seed": 0})
    assert json.loads((tmp_path / "manifest.json").read_text())["toy"]["sha256"] == entry["sha256"]
    loaded = trained.load_trained("toy")
    x = torch.rand(2, 3, 224, 224)
    with torch.no_grad():
        assert torch.allclose(loaded(x), model(x), atol=5e-3)  # fp16 storage
    onnx_path = export_embedder(tmp_path / "embedder.onnx", loaded)
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    (out,) = session.run(None, {"images": x.numpy()})
    assert out.shape == (2, 16)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    (tmp_path / "toy.npz").write_bytes(b"tampered")
    with pytest.raises(ValueError, match="sha256"):
        trained.load_trained("toy")


def test_a_lite1_model_round_trips_with_its_backbone_recorded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from training import trained
    from training.nets.efficientnet_lite import BACKBONES

    monkeypatch.setattr(trained, "WEIGHTS_DIR", tmp_path)
    monkeypatch.setattr(trained, "WEIGHTS_MANIFEST", tmp_path / "manifest.json")
    config = TrainConfig(datasets=(), val_streams=(), dim=16, backbone="lite1", freeze_blocks=11)
    model = build_model(config).eval()
    assert len(model.backbone._blocks) == sum(s.repeats for s in BACKBONES["lite1"]) == 21
    trained.save_weights(model, tmp_path / "one.npz", {"config": {"backbone": "lite1"}})
    trained.save_weights(build_model(TrainConfig((), (), dim=16)), tmp_path / "zero.npz", {"config": {}})
    assert (trained.backbone_of("one"), trained.backbone_of("zero")) == ("lite1", "lite0")
    loaded = trained.load_trained("one")
    assert len(loaded.backbone._blocks) == 21
    x = torch.rand(2, 3, 224, 224)
    with torch.no_grad():  # fp16 storage keeps each embedding's direction (the deeper net drifts a bit more)
        assert (loaded(x) * model(x)).sum(1).min() > 0.999
    blocks = model.backbone._blocks
    assert not any(p.requires_grad for block in blocks[:11] for p in block.parameters())
    assert all(p.requires_grad for block in blocks[11:] for p in block.parameters())
