"""Dynamic micro-batching with the real models: batches form, answers equal unbatched calls, the queue
is bounded (429 + Retry-After through the real app), cancelled callers leave nothing behind, and a
failing model call fails only its own batch.

Where a test needs a queue to exist, a `Gate` holds the real model call until the test releases it,
so the order of events is fixed rather than timed.
"""

from __future__ import annotations

import asyncio
import base64
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import anyio
import httpx
import numpy as np
import pytest
from support.data import SLICE_STREAM

from models.embedder import crop
from models.proposals import propose
from service.app import create_app
from service.batching import Batcher, BatchFailed, ModelBatchers, start_batchers
from service.decode import decode_image, decode_images
from service.errors import Overloaded, ServiceUnavailable
from service.metrics import Metrics
from service.pipeline import StageTimer
from service.respond import identify_response
from service.state import stop_batching
from service.values import EncodedFrame
from watchbuy.settings import Settings

WAIT_S = 60.0  # a bound on waiting for a real model call, never an assertion on speed


class Gate:
    """Wraps a real model call: the call waits until `release` is set (so a queue forms behind it)."""

    def __init__(self, run: Callable[[list[Any]], Any]) -> None:
        self.run = run
        self.entered = threading.Event()
        self.release = threading.Event()
        self.calls = 0
        self._lock = threading.Lock()

    def __call__(self, items: list[Any]) -> Any:
        with self._lock:
            self.calls += 1
        self.entered.set()
        if not self.release.wait(WAIT_S):
            raise TimeoutError("the test never released the gate")
        return self.run(items)

    async def wait_entered(self) -> None:
        assert await anyio.to_thread.run_sync(self.entered.wait, WAIT_S)


class Recorder:
    """A BatchObserver that keeps what it was told."""

    def __init__(self) -> None:
        self.sizes: list[int] = []
        self.depths: list[int] = []

    def observe_batch(self, model: str, size: int, waits_seconds: list[float]) -> None:
        self.sizes.append(size)

    def set_queue_depth(self, model: str, items: int) -> None:
        self.depths.append(items)


async def until(condition: Callable[[], bool]) -> None:
    """Yield to the event loop until `condition` holds (bounded)."""
    with anyio.fail_after(WAIT_S):
        while not condition():
            await asyncio.sleep(0.001)


@pytest.fixture(scope="module")
def images(viton_stream: Path) -> list[np.ndarray]:
    paths = sorted((viton_stream / "frames").iterdir())[:10]
    return [decode_image(p.read_bytes(), 16_777_216) for p in paths]


@pytest.fixture(scope="module")
def crops(models, images: list[np.ndarray]) -> list[np.ndarray]:
    found = models.detector.detect_many(images)
    return [
        crop(image, p.box)
        for image, dets in zip(images, found, strict=True)
        for p in propose(dets, *image.shape[1::-1])
    ]


def same_detections(got: Sequence, want: Sequence) -> bool:
    return len(got) == len(want) and all(
        g.label == w.label and np.allclose(g.box, w.box, atol=1e-3) and abs(g.score - w.score) < 1e-5
        for g, w in zip(got, want, strict=True)
    )


@pytest.mark.asyncio
async def test_concurrent_detector_submits_share_calls_and_match_single_calls(models, images) -> None:
    recorder = Recorder()
    async with Batcher(
        "detector", models.detector.detect_many, max_batch=4, queue_size=64, observer=recorder
    ) as batcher:
        answers = await asyncio.gather(*(batcher.submit([image]) for image in images))
    assert sum(recorder.sizes) == len(images)
    assert max(recorder.sizes) > 1 and max(recorder.sizes) <= 4  # shared calls, never over max_batch
    assert len(recorder.sizes) < len(images)
    for image, answer in zip(images, answers, strict=True):
        assert len(answer) == 1 and same_detections(answer[0], models.detector.detect(image))
    assert recorder.depths[-1] == 0


@pytest.mark.asyncio
async def test_concurrent_embedder_jobs_get_their_own_rows(models, crops) -> None:
    jobs = [crops[i : i + 3] for i in range(0, 12, 3)] + [crops[12:13]]
    recorder = Recorder()
    embed = models.embedder.embed
    async with Batcher("embedder", embed, max_batch=8, queue_size=64, observer=recorder) as batcher:
        answers = await asyncio.gather(*(batcher.submit(job) for job in jobs))
    assert max(recorder.sizes) > 3  # jobs were merged (whole jobs only: 3 + 3 + 1 <= 8)
    for job, answer in zip(jobs, answers, strict=True):
        np.testing.assert_allclose(answer, models.embedder.embed(job), atol=1e-5)


@pytest.mark.asyncio
async def test_a_request_bigger_than_max_batch_is_split_across_the_call_slots(models, crops) -> None:
    recorder = Recorder()
    embed = models.embedder.embed
    slots = anyio.CapacityLimiter(2)
    async with Batcher("embedder", embed, max_batch=2, queue_size=4, slots=slots, observer=recorder) as batcher:
        answer = await batcher.submit(crops[:7])  # an empty queue admits any request
        assert (await batcher.submit([])).shape == (0, models.embedder.dim)
    assert sorted(recorder.sizes) == [1, 2, 2, 2]  # jobs of max_batch, run by both workers
    np.testing.assert_allclose(answer, models.embedder.embed(crops[:7]), atol=1e-5)  # rows in request order


@pytest.mark.asyncio
async def test_a_split_detector_request_keeps_its_frames_in_order(models, images) -> None:
    async with Batcher("detector", models.detector.detect_many, max_batch=1, queue_size=8,
                       slots=anyio.CapacityLimiter(2)) as batcher:
        answer = await batcher.submit(images[:3])
    assert len(answer) == 3
    for got, image in zip(answer, images[:3], strict=True):
        assert same_detections(got, models.detector.detect(image))


@pytest.mark.asyncio
async def test_app_with_batching_answers_like_direct_model_calls(
    model_dir: Path, slice_index_root: Path, slice_dir: Path
) -> None:
    frames = sorted((slice_dir / "frames").iterdir())[:6]
    app = create_app(Settings(model_dir=model_dir, index_root=slice_index_root, batching=True))
    async with app.router.lifespan_context(app):
        state = app.state.service
        assert state.batchers is not None
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as http:
            responses = await asyncio.gather(*(
                http.post("/identify", json={
                    "stream_id": SLICE_STREAM, "top_k": 5,
                    "frames": [{"image": base64.b64encode(path.read_bytes()).decode()}],
                })
                for path in frames
            ))
            metrics = (await http.get("/metrics")).text
        index = state.load_index(SLICE_STREAM)
        for path, response in zip(frames, responses, strict=True):
            assert response.status_code == 200, response.text
            timer = StageTimer()
            with timer.stage("decode"):
                decoded = decode_images([EncodedFrame(0, path.read_bytes())], state.settings.max_image_pixels)
            direct = await state.pipeline.identify(decoded.frames, index, state.direct, top_k=5, timer=timer)
            want = identify_response(direct).model_dump(mode="json")
            got = response.json()
            assert [p["product_id"] for p in got["products"]] == [p["product_id"] for p in want["products"]]
            scores = [p["score"] for p in want["products"]]
            assert [p["score"] for p in got["products"]] == pytest.approx(scores)
            assert [len(f["boxes"]) for f in got["frames"]] == [len(f["boxes"]) for f in want["frames"]]
    assert f'watchbuy_batch_size_sum{{model="detector"}} {float(len(frames))}' in metrics
    assert 'watchbuy_batch_queue_depth{model="embedder"} 0.0' in metrics


@pytest.mark.asyncio
async def test_the_models_share_the_call_slots(models, images, crops) -> None:
    slots = anyio.CapacityLimiter(2)
    detect, embed = Gate(models.detector.detect_many), Gate(models.embedder.embed)
    async with (
        Batcher("detector", detect, max_batch=1, queue_size=8, slots=slots) as detector,
        Batcher("embedder", embed, max_batch=1, queue_size=8, slots=slots) as embedder,
    ):
        frames = [asyncio.create_task(detector.submit([image])) for image in images[:3]]
        await until(lambda: detect.calls == 2)  # two detector calls at once: both slots
        boxes = asyncio.create_task(embedder.submit(crops[:1]))
        await until(lambda: embedder.pending == 1 and detector.pending == 1)
        assert slots.borrowed_tokens == 2 and embed.calls == 0  # the embedder waits for a free slot
        detect.release.set()
        embed.release.set()
        assert [len(answer) for answer in await asyncio.gather(*frames)] == [1, 1, 1]
        assert (await boxes).shape == (1, models.embedder.dim)
    assert detect.calls == 3 and embed.calls == 1


@pytest.mark.asyncio
async def test_a_full_queue_is_refused_with_overloaded(models, images) -> None:
    gate = Gate(models.detector.detect_many)
    async with Batcher("detector", gate, max_batch=4, queue_size=2) as batcher:
        running = asyncio.create_task(batcher.submit(images[:1]))
        await gate.wait_entered()
        queued = asyncio.create_task(batcher.submit(images[1:3]))
        await until(lambda: batcher.pending == 2)
        with pytest.raises(Overloaded) as refused:
            await batcher.submit(images[3:4])
        assert refused.value.status == 429 and refused.value.code == "overloaded"
        assert int(refused.value.headers["Retry-After"]) >= 1
        gate.release.set()
        assert len(await running) == 1 and len(await queued) == 2
        assert len(await batcher.submit(images[3:4])) == 1  # room again


@pytest.mark.asyncio
async def test_full_detector_queue_answers_429_with_retry_after_through_the_app(
    model_dir: Path, slice_index_root: Path, slice_dir: Path
) -> None:
    frame = next((slice_dir / "frames").iterdir()).read_bytes()
    body = {"stream_id": SLICE_STREAM, "frames": [{"image": base64.b64encode(frame).decode()}]}
    app = create_app(
        Settings(model_dir=model_dir, index_root=slice_index_root, batching=True, detector_queue_size=1)
    )
    async with app.router.lifespan_context(app):
        state = app.state.service
        await stop_batching(state)  # the same batchers, with the detector call held by a gate
        gate = Gate(state.models.detector.detect_many)
        state.batchers = ModelBatchers(
            detector=Batcher("detector", gate, max_batch=4, queue_size=1, observer=state.metrics),
            embedder=Batcher("embedder", state.models.embedder.embed, max_batch=32, queue_size=512),
        )
        state.batchers.detector.start()
        state.batchers.embedder.start()
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as http:
            first = asyncio.create_task(http.post("/identify", json=body))
            await gate.wait_entered()
            second = asyncio.create_task(http.post("/identify", json=body))
            await until(lambda: state.batchers.detector.pending == 1)
            refused = await http.post("/identify", json=body)
            assert refused.status_code == 429
            assert refused.json()["error"]["code"] == "overloaded" and refused.json()["error"]["message"]
            assert int(refused.headers["retry-after"]) >= 1
            gate.release.set()
            assert (await first).status_code == 200 and (await second).status_code == 200
            assert (await http.post("/identify", json=body)).status_code == 200
            metrics = (await http.get("/metrics")).text
    assert 'watchbuy_errors_total{code="overloaded"} 1.0' in metrics


@pytest.mark.asyncio
async def test_cancelled_and_timed_out_callers_leave_nothing_behind(models, crops) -> None:
    gate = Gate(models.embedder.embed)
    recorder = Recorder()
    async with Batcher("embedder", gate, max_batch=64, queue_size=64, observer=recorder) as batcher:
        in_call = asyncio.create_task(batcher.submit(crops[:1]))
        await gate.wait_entered()
        cancelled = asyncio.create_task(batcher.submit(crops[1:3]))
        kept = asyncio.create_task(batcher.submit(crops[3:4]))
        await until(lambda: batcher.pending == 3)

        cancelled.cancel()
        with pytest.raises(asyncio.CancelledError):
            await cancelled
        assert batcher.pending == 1
        with pytest.raises(TimeoutError):  # a caller's own deadline
            await asyncio.wait_for(batcher.submit(crops[4:6]), timeout=0.05)
        assert batcher.pending == 1
        in_call.cancel()  # cancelled while its items are in the model call
        with pytest.raises(asyncio.CancelledError):
            await in_call

        gate.release.set()
        np.testing.assert_allclose(await kept, models.embedder.embed(crops[3:4]), atol=1e-5)
        assert batcher.pending == 0
    assert recorder.sizes == [1, 1]  # the cancelled and timed-out items never reached the model
    assert recorder.depths[-1] == 0


@pytest.mark.asyncio
async def test_a_failing_model_call_fails_only_its_batch(models, crops) -> None:
    gate = Gate(models.embedder.embed)
    empty = np.zeros((0, 0, 3), dtype=np.uint8)  # the real embedder cannot resize an empty crop
    async with Batcher("embedder", gate, max_batch=64, queue_size=64) as batcher:
        first = asyncio.create_task(batcher.submit(crops[:1]))
        await gate.wait_entered()
        good = asyncio.create_task(batcher.submit(crops[1:2]))
        bad = asyncio.create_task(batcher.submit([empty]))
        await until(lambda: batcher.pending == 2)
        gate.release.set()
        assert (await first).shape == (1, models.embedder.dim)
        for same_batch in (good, bad):
            with pytest.raises(BatchFailed, match="embedder"):
                await same_batch
        after = await batcher.submit(crops[2:3])  # the worker survived
        np.testing.assert_allclose(after, models.embedder.embed(crops[2:3]), atol=1e-5)


@pytest.mark.asyncio
async def test_closing_fails_waiting_callers_with_service_unavailable(models, images) -> None:
    gate = Gate(models.detector.detect_many)
    batcher = Batcher("detector", gate, max_batch=1, queue_size=8)
    batcher.start()
    running = asyncio.create_task(batcher.submit(images[:1]))
    await gate.wait_entered()
    queued = asyncio.create_task(batcher.submit(images[1:2]))
    await until(lambda: batcher.pending == 1)
    closing = asyncio.create_task(batcher.aclose())
    gate.release.set()
    await closing
    for caller in (running, queued):
        with pytest.raises(ServiceUnavailable):
            await caller
    with pytest.raises(ServiceUnavailable):
        await batcher.submit(images[:1])
    assert batcher.pending == 0


@pytest.mark.asyncio
async def test_batching_off_starts_no_batchers(models) -> None:
    assert await start_batchers(models, Settings(batching=False)) is None
    batchers = await start_batchers(models, Settings(batching=True, detector_max_batch=2), Metrics())
    assert batchers is not None and batchers.detector.max_batch == 2
    await batchers.aclose()


def test_batcher_refuses_bad_bounds(models) -> None:
    with pytest.raises(ValueError):
        Batcher("detector", models.detector.detect_many, max_batch=0, queue_size=1)
    with pytest.raises(ValueError):
        Batcher("detector", models.detector.detect_many, max_batch=1, queue_size=1, max_wait_s=-1)
