"""Real clips: the studio videos of ../shared, and POST /identify/video on the real service."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from io import BytesIO
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from support.data import SLICE_STREAM
from support.video_clips import encode_clip, flat_stills, read_still

from service.app import create_app
from service.video import VideoLimits, sample_video
from watchbuy.settings import Settings

LIMITS = VideoLimits(max_seconds=10.0, sample_fps=2.0, max_frames=32, max_pixels=1_000_000)


def png(pixels: np.ndarray) -> bytes:
    buffer = BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def test_real_studio_clip(shared_dir: Path) -> None:
    data = (shared_dir / "data" / "clips" / "studio_upper_body.mp4").read_bytes()
    video = sample_video(data, VideoLimits(max_seconds=10.0, sample_fps=4.0, max_frames=32, max_pixels=10**7))
    assert [f.frame_index for f in video.frames] == [0, 6, 12, 18, 24, 30, 36, 42]
    assert video.frames[0].image.shape == (832, 624, 3)


def slice_stills(slice_dir: Path, count: int) -> list[np.ndarray]:
    lines = (slice_dir / "queries.jsonl").read_text().splitlines()
    queries = [json.loads(line) for line in lines if line.strip()]
    return [read_still(slice_dir / q["frames"][0]["path"], size=(192, 256)) for q in queries[:count]]


def assert_error(response: Any, status: int, code: str) -> None:
    assert response.status_code == status, (response.status_code, response.text)
    assert response.json()["error"]["code"] == code, response.text


@pytest.fixture(scope="module")
def client(model_dir: Path, slice_index_root: Path) -> Iterator[TestClient]:
    settings = Settings(
        model_dir=model_dir,
        index_root=slice_index_root,
        max_video_bytes=1_000_000,
        max_video_seconds=3.0,
        video_sample_fps=2.0,
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Image, "MAX_IMAGE_PIXELS", Image.MAX_IMAGE_PIXELS)  # create_app changes it
        with TestClient(create_app(settings), raise_server_exceptions=False) as test_client:
            yield test_client


@pytest.fixture(scope="module")
def clip(slice_dir: Path) -> bytes:
    return encode_clip(slice_stills(slice_dir, 4), fps=24, frames_per_still=12)  # 2 s, 4 garments


def post_video(client: TestClient, data: bytes, name: str = "clip.mp4", **fields: Any) -> Any:
    form = {"stream_id": SLICE_STREAM, **{k: str(v) for k, v in fields.items()}}
    return client.post("/identify/video", data=form, files={"video": (name, data, "video/mp4")})


@pytest.mark.integration
def test_a_clip_is_identified_like_its_frames_sent_to_identify(client: TestClient, clip: bytes) -> None:
    response = post_video(client, clip, top_k=3)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["stream_id"] == SLICE_STREAM and len(answer["products"]) == 3
    assert [f["frame_index"] for f in answer["frames"]] == [0, 12, 24, 36]
    assert all(f["width"] == 192 and f["height"] == 256 and f["boxes"] for f in answer["frames"])
    assert answer["video"]["frames_decoded"] == 48 and answer["video"]["duration_s"] == pytest.approx(2.0)
    assert [s["time_s"] for s in answer["video"]["sampled"]] == [0.0, 0.5, 1.0, 1.5]
    assert all(s["image"] is None for s in answer["video"]["sampled"])
    assert set(answer["timings_ms"]) >= {"decode", "detect", "embed", "search", "aggregate", "total"}

    # the same decoded frames, sent losslessly to /identify, get the same answer
    video = sample_video(clip, LIMITS)
    same = client.post(
        "/identify",
        data={
            "stream_id": SLICE_STREAM,
            "top_k": "3",
            "frame_index": [str(f.frame_index) for f in video.frames],
        },
        files=[("frames", (f"{f.frame_index}.png", png(f.image), "image/png")) for f in video.frames],
    )
    assert same.status_code == 200, same.text
    expected = same.json()
    assert [p["product_id"] for p in answer["products"]] == [p["product_id"] for p in expected["products"]]
    assert [p["score"] for p in answer["products"]] == pytest.approx(
        [p["score"] for p in expected["products"]], abs=1e-3
    )
    assert answer["abstain"] == expected["abstain"]
    assert [len(f["boxes"]) for f in answer["frames"]] == [len(f["boxes"]) for f in expected["frames"]]


@pytest.mark.integration
def test_webm_and_returned_frames(client: TestClient, slice_dir: Path) -> None:
    data = encode_clip(slice_stills(slice_dir, 2), frames_per_still=12, container="webm")
    response = post_video(client, data, name="clip.webm", return_frames="true")
    assert response.status_code == 200, response.text
    sampled = response.json()["video"]["sampled"]
    assert len(sampled) == 2
    for item in sampled:
        prefix = "data:image/jpeg;base64,"
        assert item["image"].startswith(prefix)
        with Image.open(BytesIO(base64.b64decode(item["image"][len(prefix) :]))) as image:
            assert image.format == "JPEG" and image.size == (192, 256)


@pytest.mark.integration
def test_video_mistakes_are_clear_client_errors(client: TestClient, clip: bytes, slice_dir: Path) -> None:
    assert_error(post_video(client, clip[:32] + bytes(4000)), 400, "invalid_video")
    assert_error(post_video(client, clip[: len(clip) // 2]), 400, "invalid_video")
    frame = next((slice_dir / "frames").iterdir()).read_bytes()
    assert_error(post_video(client, frame, name="frame.jpg"), 415, "unsupported_video_format")
    assert_error(
        post_video(client, b"hello, not a video" * 10, name="x.txt"), 415, "unsupported_video_format"
    )
    too_big = clip[:32] + bytes(1_000_001)
    assert_error(post_video(client, too_big), 413, "video_too_large")
    too_long = encode_clip(flat_stills(4), fps=24, frames_per_still=24)  # 4 s > 3 s
    assert_error(post_video(client, too_long), 422, "video_too_long")
    assert_error(post_video(client, clip, top_k=0), 422, "invalid_request")
    assert_error(post_video(client, clip, colour="red"), 422, "invalid_request")
    no_video = client.post("/identify/video", files={"stream_id": (None, SLICE_STREAM)})  # multipart, no file
    assert_error(no_video, 422, "invalid_request")
    two = [("video", ("a.mp4", clip, "video/mp4")), ("video", ("b.mp4", clip, "video/mp4"))]
    assert_error(
        client.post("/identify/video", data={"stream_id": SLICE_STREAM}, files=two), 422, "invalid_request"
    )
    assert_error(
        client.post("/identify/video", json={"stream_id": SLICE_STREAM}), 415, "unsupported_media_type"
    )
    unknown = client.post(
        "/identify/video",
        data={"stream_id": "no-such-stream"},
        files={"video": ("c.mp4", b"not decoded", "video/mp4")},
    )
    assert_error(unknown, 404, "stream_not_found")  # the stream is checked before the clip is decoded
    assert_error(post_video(client, clip, stream_id="../etc"), 422, "invalid_request")


@pytest.mark.integration
def test_without_batching_the_clip_gets_the_same_answer(
    client: TestClient, clip: bytes, model_dir: Path, slice_index_root: Path
) -> None:
    batched = post_video(client, clip, top_k=3).json()
    settings = Settings(
        model_dir=model_dir, index_root=slice_index_root, video_sample_fps=2.0, batching=False
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Image, "MAX_IMAGE_PIXELS", Image.MAX_IMAGE_PIXELS)
        with TestClient(create_app(settings), raise_server_exceptions=False) as unbatched_client:
            response = post_video(unbatched_client, clip, top_k=3)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert [p["product_id"] for p in answer["products"]] == [p["product_id"] for p in batched["products"]]
    assert [p["score"] for p in answer["products"]] == pytest.approx(
        [p["score"] for p in batched["products"]], abs=1e-3
    )
    assert answer["video"] == batched["video"]


@pytest.mark.integration
def test_a_product_seen_in_a_few_frames_of_a_video_keeps_its_score(
    model_dir: Path, slice_index_root: Path, slice_dir: Path, shared_dir: Path
) -> None:
    """A real studio clip without the product, with a garment of the catalogue shown for 3 of its 11 sampled
    frames: pooled over its best frames the garment is named with the frames that show it; averaged over
    every frame (the old rule) its score sinks."""
    studio = (shared_dir / "data" / "clips" / "studio_upper_body.mp4").read_bytes()
    scenes = [np.asarray(Image.fromarray(f.image).resize((192, 256)))
              for f in sample_video(studio, VideoLimits(10.0, 4.0, 32, 10**7)).frames[:6]]
    queries = [json.loads(line) for line in (slice_dir / "queries.jsonl").read_text().splitlines() if line.strip()]
    answers = {}
    for pool in (3, 0):
        settings = Settings(model_dir=model_dir, index_root=slice_index_root, video_sample_fps=4.0, frame_pool=pool)
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(Image, "MAX_IMAGE_PIXELS", Image.MAX_IMAGE_PIXELS)
            with TestClient(create_app(settings), raise_server_exceptions=False) as test_client:
                if pool == 3:  # a garment the service names from its photo alone
                    query = next(q for q in queries[:8] if q["product_id"] == _top1(test_client, slice_dir, q))
                    garment = read_still(slice_dir / query["frames"][0]["path"], size=(192, 256))
                    stills = [*scenes[:3], garment, garment, *scenes[3:]]
                    video = encode_clip(stills, fps=24, frames_per_still=8)  # 8 stills, 2.67 s
                response = post_video(test_client, video, top_k=40)
                assert response.status_code == 200, response.text
                answers[pool] = response.json()
    pooled, everything = answers[3], answers[0]
    shown = {f["frame_index"] for f in pooled["frames"] if 24 <= f["frame_index"] < 40}
    assert len(pooled["frames"]) == 11 and len(shown) == 3
    best = pooled["products"][0]
    assert best["product_id"] == query["product_id"]
    assert best["evidence_frames"] and set(best["evidence_frames"]) <= shown
    diluted = next(p["score"] for p in everything["products"] if p["product_id"] == query["product_id"])
    assert diluted < best["score"] - 0.05


def _top1(client: TestClient, slice_dir: Path, query: dict[str, Any]) -> str | None:
    data = (slice_dir / query["frames"][0]["path"]).read_bytes()
    response = client.post("/identify", data={"stream_id": SLICE_STREAM, "top_k": "1"},
                           files=[("frames", ("f.jpg", data, "image/jpeg"))])
    products = response.json()["products"]
    return products[0]["product_id"] if products else None
