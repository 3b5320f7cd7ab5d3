"""The evaluator end to end with the real models: video reading, the WAB layout, report files, and
the in-process and HTTP paths giving the same answers."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
from anyio.from_thread import start_blocking_portal
from PIL import Image
from support.data import write_slice
from support.live_server import LiveServer

from evaluation.evaluate import EvalConfig, evaluate, run
from evaluation.identify import HttpIdentifier, InProcessIdentifier
from indexer.queries import find_streams, read_clips
from indexer.store import IndexStore
from indexer.video import VideoError, read_frames
from service.metrics import Metrics
from service.state import serving
from watchbuy.settings import Settings

VIDEO_INDICES = (0, 5, 10)


VIDEO_LENGTH = 12


GRAY = 128


def queries(stream: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (stream / "queries.jsonl").read_text().splitlines() if line.strip()]


def write_video(path: Path, frames: dict[int, np.ndarray], length: int) -> None:
    """An H.264 mp4: the given frames at their indices, flat gray everywhere else."""
    height, width = next(iter(frames.values())).shape[:2]
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=24)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"crf": "8", "g": "4"}
        for i in range(length):
            pixels = frames.get(i, np.full((height, width, 3), GRAY, dtype=np.uint8))
            for packet in stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def rgb(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


@pytest.fixture(scope="module")
def wab_dir(viton_stream: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Watch and Buy layout folder made from 3 real viton products and one real video of the first."""
    root = tmp_path_factory.mktemp("wab") / "wab-mini"
    products = [json.loads(line) for line in (viton_stream / "catalogue.jsonl").read_text().splitlines()[:3]]
    for product in products:
        item = product["product_id"]
        image = product["images"][0]
        (root / "image" / item).mkdir(parents=True)
        shutil.copyfile(viton_stream / image["path"], root / "image" / item / "0.jpg")
        boxes = [{"box": b, "label": "上衣", "instance_id": 7, "display": 1, "viewpoint": 0} for b in image["boxes"]]
        (root / "image_annotation" / item).mkdir(parents=True)
        (root / "image_annotation" / item / "0.json").write_text(
            json.dumps({"item_id": item, "img_name": "0.jpg", "annotations": boxes}, ensure_ascii=False)
        )
        (root / "image_text").mkdir(exist_ok=True)
        (root / "image_text" / f"{item}.txt").write_text(f"女装 上衣 {item}", encoding="utf-8")
    item = products[0]["product_id"]
    clip = next(q for q in queries(viton_stream) if q["product_id"] == item)
    frame = clip["frames"][0]
    pixels = rgb(viton_stream / frame["path"])
    shifted = np.roll(pixels, 3, axis=1)  # three different real frames
    darker = (pixels * 0.8).astype(np.uint8)
    frames = dict(zip(VIDEO_INDICES, (pixels, shifted, darker), strict=True))
    write_video(root / "video" / f"{item}.mp4", frames, VIDEO_LENGTH)
    annotations = [
        {"frame_index": i, "annotations": [
            {"box": b["box"], "label": "上衣", "instance_id": 7, "display": 1, "viewpoint": 0} for b in frame["boxes"]
        ] + [{"box": [0, 0, 20, 20], "label": "其他", "instance_id": 0, "display": 1, "viewpoint": 0}]}
        for i in VIDEO_INDICES
    ]
    (root / "video_annotation").mkdir()
    (root / "video_annotation" / f"{item}.json").write_text(json.dumps({"video_id": item, "frames": annotations}))
    (root / "video_text").mkdir()
    (root / "video_text" / f"{item}.txt").write_text("这件上衣很好看", encoding="utf-8")
    return root


def test_video_frames_are_read_at_their_indices(wab_dir: Path) -> None:
    video = next((wab_dir / "video").iterdir())
    frames = read_frames(video, VIDEO_INDICES + (3,))
    assert sorted(frames) == [0, 3, 5, 10]
    assert all(f.shape[2] == 3 and f.dtype == np.uint8 for f in frames.values())
    assert abs(float(frames[3].mean()) - GRAY) < 3  # a filler frame is gray
    for i in VIDEO_INDICES:
        assert float(np.abs(frames[i].astype(float) - GRAY).mean()) > 20  # real frames are not
    assert float(np.abs(frames[10].astype(float) - frames[0] * 0.8).mean()) < 8  # the darker copy at 10
    with pytest.raises(VideoError, match="shorter"):
        read_frames(video, [VIDEO_LENGTH + 5])


def test_wab_clips_have_frames_boxes_and_asr(wab_dir: Path) -> None:
    (source,) = find_streams(wab_dir)
    assert (source.stream_id, source.layout) == ("wab-mini", "wab")
    (clip,) = list(read_clips(source))
    item = clip.clip_id
    assert clip.product_id == item and clip.asr_text == "这件上衣很好看"
    assert [f.frame_index for f in clip.frames] == list(VIDEO_INDICES)
    frame = clip.frames[0]
    assert isinstance(frame.image, bytes) and frame.image[:3] == b"\xff\xd8\xff"
    assert [b.product_id for b in frame.boxes] == [item, None]  # instance 0 matches nothing


def test_wab_dataset_evaluates_end_to_end(wab_dir: Path, model_dir: Path, tmp_path: Path) -> None:
    config = EvalConfig(dataset=wab_dir, out_dir=tmp_path / "out", show_progress=False)
    evaluation = run(config, Settings(model_dir=model_dir))
    summary = evaluation.report["summary"]
    assert summary["clips"] == 1 and summary["frames"] == 3 and summary["gt_boxes"] == 3
    assert summary["missing_product"]["clips"] == 1  # the one product is held out and re-run without it
    missing = next(o for o in evaluation.outcomes if o.missing)
    assert missing.truth not in missing.ranked


@pytest.fixture(scope="module")
def two_streams(shared_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A streams-layout dataset of two sliced viton-dev streams (30 products each)."""
    root = tmp_path_factory.mktemp("dataset") / "viton-mini"
    for stream in ("viton-dev-00", "viton-dev-01"):
        source = shared_dir / "data" / "viton-dev" / "streams" / stream
        write_slice(source, root / "streams" / stream, 30)
    return root


def test_streams_dataset_report(two_streams: Path, model_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "report"
    config = EvalConfig(dataset=two_streams, out_dir=out, clips_per_stream=15, show_progress=False)
    evaluation = run(config, Settings(model_dir=model_dir))
    assert {p.name for p in out.iterdir()} == {
        "report.json", "report.md", "clips.jsonl", "r_at_k.png", "f1_vs_threshold.png"
    }
    report = json.loads((out / "report.json").read_text())
    assert set(report["streams"]) == {"viton-dev-00", "viton-dev-01"}
    assert report["mode"] == "inprocess" and report["config"]["clips_per_stream"] == 15
    for summary in [report["summary"], *report["streams"].values()]:
        assert summary["clips"] == summary["positive_clips"]
        for key in ("r1", "r5", "map", "detection_recall", "abstain_rate_normal"):
            assert 0.0 <= summary[key] <= 1.0, key
        assert summary["r1"] <= summary["r5"]
        assert len(summary["r_at_k"]) == 20 and summary["r_at_k"] == sorted(summary["r_at_k"])
        for level in ("clip", "frame", "box"):
            assert 0.0 <= summary["f1"][level]["f1"] <= 1.0
        assert summary["missing_product"]["clips"] >= 1
        assert 0.0 <= summary["missing_product"]["abstain"]["recall"] <= 1.0
        assert summary["latency_ms"]["median"] > 0
    assert report["summary"]["clips"] == 30
    assert report["threshold_sweep"] and report["best_threshold"]["clip_f1"] >= 0
    assert "| **all** |" in (out / "report.md").read_text()
    assert (out / "r_at_k.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len((out / "clips.jsonl").read_text().splitlines()) == len(evaluation.outcomes)
    held = [o for o in evaluation.outcomes if o.missing]
    assert held and all(o.truth not in o.ranked for o in held)  # removed from the index itself


def test_in_process_and_http_agree(slice_dir: Path, model_dir: Path, tmp_path: Path) -> None:
    """Same clips, same numbers: the request path in process (a started service, batchers and all) and
    POST /identify to a real uvicorn server."""
    import httpx

    config = EvalConfig(dataset=slice_dir, clips_per_stream=6, show_progress=False)
    local_settings = Settings(model_dir=model_dir, index_root=tmp_path / "local")
    server = LiveServer(tmp_path / "server.log", {"WATCHBUY_MODEL_DIR": str(model_dir),
                                                  "WATCHBUY_INDEX_ROOT": str(tmp_path / "http")})
    server.start()
    try:
        server.wait_ready()
        with start_blocking_portal() as portal:
            with portal.wrap_async_context_manager(serving(local_settings, Metrics())) as state:
                assert state.batchers is not None  # the served path: batching on, as by default
                local = evaluate(config, local_settings, InProcessIdentifier(state, portal), state.models,
                                 IndexStore(tmp_path / "local"))
                client = httpx.AsyncClient(base_url=server.base)
                try:
                    remote = evaluate(replace(config, mode="http", url=server.base), local_settings,
                                      HttpIdentifier(portal, client), state.models, IndexStore(tmp_path / "http"))
                finally:
                    portal.call(client.aclose)
    finally:
        server.stop()

    def answers(outcomes: Any) -> list[tuple[Any, ...]]:
        return [(o.clip_id, o.missing, o.abstain, o.ranked, o.scores, o.frames) for o in outcomes]

    assert len(local.outcomes) == 6 + local.report["summary"]["missing_product"]["clips"]
    assert answers(local.outcomes) == answers(remote.outcomes)
    drop = {"latency_ms"}
    assert {k: v for k, v in local.report["summary"].items() if k not in drop} == {
        k: v for k, v in remote.report["summary"].items() if k not in drop
    }
