"""Text fusion with the real sentence encoder and models on grocery-dev: titles embedded at build, no speech
changes nothing, speech naming a product lifts it."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import anyio
import numpy as np
import pytest

from indexer.build import build_stream
from indexer.catalogue import read_catalogue
from indexer.store import IndexStore
from models.text import TextEncoder
from service.aggregate import text_bonus
from service.calls import DirectCalls
from service.decode import decode_image
from service.pipeline import Pipeline, PipelineConfig
from service.values import DecodedFrame

GROCERY = "grocery-dev-00"


@pytest.fixture(scope="module")
def encoder() -> TextEncoder:
    return TextEncoder()


def test_encoder_gives_unit_vectors_and_matches_languages(encoder: TextEncoder) -> None:
    vectors = encoder.encode(["orange juice without pulp", "不含果肉的橙汁", "a black leather handbag"])
    assert vectors.shape == (3, encoder.dim)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    same, other = float(vectors[0] @ vectors[1]), float(vectors[0] @ vectors[2])
    assert same > other  # the Chinese translation is closer than an unrelated English sentence


@pytest.fixture(scope="module")
def grocery(shared_dir: Path, models, tmp_path_factory: pytest.TempPathFactory):
    stream_dir = shared_dir / "data" / "grocery-dev" / "streams" / GROCERY
    root = tmp_path_factory.mktemp("grocery-index")
    build_stream(read_catalogue(stream_dir, GROCERY, strict=True), models, IndexStore(root), show_progress=False)
    clips = [json.loads(line) for line in (stream_dir / "queries.jsonl").read_text().splitlines()[:6]]
    return IndexStore(root).load(GROCERY), stream_dir, clips


def identify(models, index, stream_dir: Path, clip: dict, asr_text: str | None, weight: float = 0.5):
    limiter = anyio.CapacityLimiter(1)
    pipeline = Pipeline(models, PipelineConfig(text_weight=weight), limiter)
    frames = [DecodedFrame(f["frame_index"], decode_image((stream_dir / f["path"]).read_bytes(), 1 << 24))
              for f in clip["frames"]]
    calls = DirectCalls(models, limiter)
    return anyio.run(functools.partial(pipeline.identify, frames, index, calls, top_k=10, asr_text=asr_text))


def ranking(result) -> list[tuple[str, float]]:
    return [(p.product_id, p.score) for p in result.products]


@pytest.mark.integration
def test_build_embeds_the_titles(grocery) -> None:
    index, _, _ = grocery
    assert index.text is not None
    assert set(index.text.product_ids) == set(index.titles)
    assert index.manifest["text_encoder"] == index.text.encoder


@pytest.mark.integration
def test_no_speech_changes_nothing(models, grocery) -> None:
    index, stream_dir, clips = grocery
    for clip in clips[:3]:
        plain = ranking(identify(models, index, stream_dir, clip, None))
        assert ranking(identify(models, index, stream_dir, clip, "")) == plain
        assert ranking(identify(models, index, stream_dir, clip, "   ")) == plain


@pytest.mark.integration
def test_speech_naming_a_product_lifts_it(models, grocery) -> None:
    index, stream_dir, clips = grocery
    clip = clips[0]
    plain = identify(models, index, stream_dir, clip, None)
    visual_order = [p.product_id for p in plain.products]

    def said(pid: str) -> str:
        return index.titles[pid].split(".")[0]  # the host says the product's name

    weakest = visual_order[-1]  # the weakest of the visual top 10 moves up when named
    fused_order = [p.product_id for p in identify(models, index, stream_dir, clip, said(weakest), weight=2.0).products]
    assert fused_order.index(weakest) < visual_order.index(weakest)

    # ... and goes first when the sentence encoder matches its name to its own title best (not always so:
    # "Arla Ecological Medium Fat Milk" is closer to another milk's title than to its own)
    def recognised(pid: str) -> bool:
        bonus = text_bonus(index.text, models.text.encode([said(pid)])[0], 1.0)
        return max(bonus, key=bonus.__getitem__) == pid

    target = next((pid for pid in reversed(visual_order) if recognised(pid)), None)
    assert target is not None and visual_order.index(target) >= 5, "no weak visual candidate known by its name"
    # It overtakes every product ranked above it exactly when weight × its text lead exceeds its visual
    # deficit; how large a weight that takes depends on the embedder (a look-alike named almost as well
    # may sit close behind), so the test finds the crossover and checks both sides of it.
    lead = text_bonus(index.text, models.text.encode([said(target)])[0], 1.0)
    visual = {p.product_id: p.score for p in plain.products}
    ahead = visual_order[: visual_order.index(target)]
    needed = max((visual[pid] - visual[target]) / (lead[target] - lead[pid]) for pid in ahead)
    assert needed <= 5.0, "the crossover lies outside the settings' text_weight range"
    below = identify(models, index, stream_dir, clip, said(target), weight=0.9 * needed)
    above = identify(models, index, stream_dir, clip, said(target), weight=1.1 * needed)
    assert below.products[0].product_id != target and above.products[0].product_id == target
