"""The demo page in a real browser: Debian's headless Chromium driven by Playwright against a real uvicorn
server (real models, the viton slice and the grocery-dev-00 catalogue, which has product titles).

Upload → results: frames with boxes drawn, each box's matched shop images, products with titles, the
decision and timings. The screenshot lands in test-output/browser/demo.png (the README's image is a copy).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from support.data import PROJECT_DIR, SLICE_STREAM, missing
from support.live_server import LiveServer, running_server
from support.video_clips import encode_clip, read_still

from indexer.build import build_stream
from indexer.catalogue import read_catalogue
from indexer.store import IndexStore

GROCERY_STREAM = "grocery-dev-00"


GROCERY_PRODUCT = "grocery-Garant-Ecological-Standard-Milk"


KEY = "browser-test-key"


SCREENSHOT = PROJECT_DIR / "test-output" / "browser" / "demo.png"


RESULT_TIMEOUT_MS = 180_000  # a bound on waiting for the answer on a busy 2-core machine, not a speed check


PALETTE = {
    (0xE6, 0x19, 0x4B),
    (0x3C, 0xB4, 0x4B),
    (0x43, 0x63, 0xD8),
    (0xF5, 0x82, 0x31),
    (0x91, 0x1E, 0xB4),
    (0x42, 0xD4, 0xF4),
    (0xF0, 0x32, 0xE6),
    (0x9A, 0x63, 0x24),
    (0x46, 0x99, 0x90),
    (0x80, 0x80, 0x00),
}


def jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def chromium() -> str:
    path = shutil.which("chromium")
    if path is None:
        missing("Debian's chromium is not installed (apt-get install chromium; .ci/run installs it)")
    return str(path)


@pytest.fixture(scope="module")
def grocery_dir(shared_dir: Path) -> Path:
    path = shared_dir / "data" / "grocery-dev" / "streams" / GROCERY_STREAM
    if not (path / "catalogue.jsonl").is_file():
        missing(f"no catalogue at {path}")
    return path


@pytest.fixture(scope="module")
def index_root(
    slice_index_root: Path, grocery_dir: Path, models: Any, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """The slice's index plus a fresh index of grocery-dev-00 (31 products with titles)."""
    root = tmp_path_factory.mktemp("browser") / "indexes"
    shutil.copytree(slice_index_root, root)
    catalogue = read_catalogue(grocery_dir, GROCERY_STREAM, strict=True)
    build_stream(catalogue, models, IndexStore(root), show_progress=False)
    return root


def serve(model_dir: Path, index_root: Path, log_path: Path, **env: str) -> Iterator[LiveServer]:
    settings = {"WATCHBUY_MODEL_DIR": str(model_dir), "WATCHBUY_INDEX_ROOT": str(index_root),
                "WATCHBUY_VIDEO_SAMPLE_FPS": "2", **env}
    with running_server(log_path, settings) as server:
        yield server


@pytest.fixture(scope="module")
def server(
    model_dir: Path, index_root: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    yield from serve(model_dir, index_root, tmp_path_factory.mktemp("server") / "server.log")


@pytest.fixture(scope="module")
def keyed_server(
    model_dir: Path, index_root: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    log_path = tmp_path_factory.mktemp("keyed") / "server.log"
    yield from serve(model_dir, index_root, log_path, WATCHBUY_API_KEYS=json.dumps([KEY]))


@pytest.fixture(scope="module")
def browser(chromium: str) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=chromium, args=["--no-sandbox", "--disable-dev-shm-usage"]
        )
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1600, "height": 1000})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    try:
        yield page
    finally:
        context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


@pytest.fixture(scope="module")
def grocery_clip(grocery_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2 s MP4: four photos of one product held up to the camera, half a second each."""
    frames = [
        q["frames"][0]["path"]
        for q in jsonl(grocery_dir / "queries.jsonl")
        if q["product_id"] == GROCERY_PRODUCT
    ]
    stills = [read_still(grocery_dir / rel, size=(348, 348)) for rel in frames[:4]]
    path = tmp_path_factory.mktemp("clip") / "milk.mp4"
    path.write_bytes(encode_clip(stills, fps=24, frames_per_still=12))
    return path


def open_demo(page: Any, server: LiveServer, stream_id: str) -> None:
    page.goto(f"{server.base}/demo")
    page.wait_for_selector(f"#stream option[value='{stream_id}']", state="attached")
    page.select_option("#stream", stream_id)


def identify(page: Any) -> dict[str, Any]:
    """Click Identify, wait for the page to show the answer; the answer's JSON as the page received it."""

    def is_answer(response: Any) -> bool:
        return response.request.method == "POST" and "/identify" in response.url

    with page.expect_response(is_answer, timeout=RESULT_TIMEOUT_MS) as answer:
        page.click("#go")
    page.wait_for_selector("#status.ok, #status.error", timeout=RESULT_TIMEOUT_MS)
    status = page.locator("#status")
    assert "ok" in (status.get_attribute("class") or ""), status.inner_text()
    return answer.value.json()


def drawn_boxes(page: Any) -> list[int]:
    """Boxes drawn per frame canvas (set by the page once the frame and its boxes are painted)."""
    return page.eval_on_selector_all(
        "canvas.frame-canvas.drawn", "cs => cs.map(c => Number(c.dataset.boxes))"
    )


def wait_for_thumbnails(page: Any, count: int) -> None:
    page.wait_for_function(
        f"document.querySelectorAll('canvas.thumb.drawn').length >= {count}", timeout=RESULT_TIMEOUT_MS
    )


def box_edge_colour(page: Any, box: list[float]) -> tuple[int, int, int]:
    """The first frame canvas's pixel on the left edge of `box`, halfway down."""
    x, y = int(box[0]), int((box[1] + box[3]) / 2)
    pixel = page.evaluate(
        """([x, y]) => Array.from(document.querySelector('canvas.frame-canvas.drawn')
                                  .getContext('2d').getImageData(x, y, 1, 1).data).slice(0, 3)""",
        [x, y],
    )
    return (pixel[0], pixel[1], pixel[2])


def test_a_video_upload_shows_boxes_matches_and_titled_products(
    page: Any, server: LiveServer, grocery_clip: Path, grocery_dir: Path
) -> None:
    titles = {p["title"] for p in jsonl(grocery_dir / "catalogue.jsonl")}
    open_demo(page, server, GROCERY_STREAM)
    page.set_input_files("#video-file", str(grocery_clip))
    answer = identify(page)

    boxes = drawn_boxes(page)
    assert boxes == [len(f["boxes"]) for f in answer["frames"]] and len(boxes) == 4, (
        boxes
    )  # one per half second
    assert all(n >= 1 for n in boxes)
    assert box_edge_colour(page, answer["frames"][0]["boxes"][0]["box"]) in PALETTE  # painted over the frame
    shown = page.locator(".product-title").all_inner_texts()
    assert len(shown) == 5 and all(title in titles for title in shown), shown
    assert page.locator(".badge").inner_text().lower() in {"match", "abstains"}
    assert page.locator(".timing-item").count() >= 6  # five stages and the total
    wait_for_thumbnails(page, 5)  # shop images of the matches, with their boxes
    assert page.locator(".box-row figure.match").count() >= sum(boxes)

    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOT), full_page=True)
    assert SCREENSHOT.stat().st_size > 10_000


def test_a_labelled_clip_shows_its_truth(page: Any, server: LiveServer, slice_dir: Path) -> None:
    first = jsonl(slice_dir / "queries.jsonl")[0]
    open_demo(page, server, SLICE_STREAM)
    page.wait_for_selector(f"#clip option[value='{first['clip_id']}']", state="attached")
    page.check("input[name=source][value=clip]")
    page.select_option("#clip", first["clip_id"])
    identify(page)
    assert len(drawn_boxes(page)) == len(first["frames"])
    assert first["product_id"] in page.locator(".truth").inner_text()


def test_with_an_api_key_the_page_sends_it_everywhere(
    page: Any, keyed_server: LiveServer, slice_dir: Path
) -> None:
    page.goto(f"{keyed_server.base}/demo")  # the page itself is public
    page.wait_for_selector("#status.error")
    assert "401" in page.locator("#status").inner_text()

    page.fill("#api-key", KEY)
    page.press("#api-key", "Enter")
    page.wait_for_selector(f"#stream option[value='{SLICE_STREAM}']", state="attached")
    assert page.evaluate("localStorage.getItem('watchbuy.apiKey')") == KEY
    frames = [slice_dir / q["frames"][0]["path"] for q in jsonl(slice_dir / "queries.jsonl")[:2]]
    page.select_option("#stream", SLICE_STREAM)
    page.check("input[name=source][value=images]")
    page.set_input_files("#image-files", [str(f) for f in frames])
    identify(page)
    assert len(drawn_boxes(page)) == 2
    wait_for_thumbnails(page, 3)  # catalogue images fetched with the key, shown through blob URLs
    assert page.locator("canvas.thumb.missing").count() == 0


TIMELINE_PRODUCTS = (GROCERY_PRODUCT, "grocery-God-Morgon-Orange-Juice")
TIMELINE_SCREENSHOT = PROJECT_DIR / "test-output" / "browser" / "timeline.png"


@pytest.fixture(scope="module")
def two_product_clip(grocery_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An 8 s MP4: four photos of one product, one second each, then four of another."""
    queries = jsonl(grocery_dir / "queries.jsonl")
    stills = [
        read_still(grocery_dir / q["frames"][0]["path"], size=(348, 348))
        for product in TIMELINE_PRODUCTS
        for q in [q for q in queries if q["product_id"] == product][:4]
    ]
    path = tmp_path_factory.mktemp("timeline") / "two-products.mp4"
    path.write_bytes(encode_clip(stills, fps=12, frames_per_still=12))
    return path


def test_the_timeline_shows_each_products_segment_and_its_best_frame(
    page: Any, server: LiveServer, two_product_clip: Path
) -> None:
    open_demo(page, server, GROCERY_STREAM)
    page.set_input_files("#video-file", str(two_product_clip))
    with page.expect_response(lambda r: r.request.method == "POST" and r.url.endswith("/timeline"),
                              timeout=RESULT_TIMEOUT_MS) as answer:
        page.click("#watch-clip")
    page.wait_for_selector("#timeline-status.ok, #timeline-status.error", timeout=RESULT_TIMEOUT_MS)
    assert "ok" in (page.locator("#timeline-status").get_attribute("class") or ""), page.inner_text("#timeline-status")
    segments = answer.value.json()["segments"]
    assert [s["product_id"] for s in segments] == list(TIMELINE_PRODUCTS), segments
    blocks = page.locator("#timeline-bar .segment")
    assert blocks.count() == 2
    assert [blocks.nth(i).get_attribute("data-product") for i in range(2)] == list(TIMELINE_PRODUCTS)
    page.wait_for_selector("#timeline-bar .segment img.segment-thumb", timeout=30_000)  # the shop image
    blocks.nth(1).click()
    page.wait_for_selector("#segment-frame.drawn", timeout=30_000)
    canvas = page.locator("#segment-frame")
    assert int(canvas.get_attribute("data-boxes") or 0) == len(segments[1]["best"]["boxes"]) > 0
    assert TIMELINE_PRODUCTS[1] in page.inner_text("#segment-text")
    TIMELINE_SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(TIMELINE_SCREENSHOT), full_page=True)


@pytest.fixture(scope="module")
def watch_server(
    model_dir: Path, index_root: Path, two_product_clip: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    """The server with API keys, allowed to watch the clip's folder (a file paced at real time stands in for
    a live stream)."""
    log_path = tmp_path_factory.mktemp("watching") / "server.log"
    yield from serve(model_dir, index_root, log_path, WATCHBUY_API_KEYS=json.dumps([KEY]),
                     WATCHBUY_WATCH_LOCAL_ROOT=str(two_product_clip.parent))


def test_following_a_running_watcher_draws_its_segments_as_they_end(
    page: Any, watch_server: LiveServer, two_product_clip: Path
) -> None:
    page.goto(f"{watch_server.base}/demo")
    page.fill("#api-key", KEY)
    page.press("#api-key", "Enter")
    page.wait_for_selector(f"#stream option[value='{GROCERY_STREAM}']", state="attached")
    page.select_option("#stream", GROCERY_STREAM)
    page.click("#follow-watcher")
    page.wait_for_selector("#timeline-status.busy")
    started = httpx.post(f"{watch_server.base}/streams/{GROCERY_STREAM}/watch", headers={"X-API-Key": KEY},
                         json={"source": str(two_product_clip), "realtime": True}, timeout=60)
    assert started.status_code == 202, started.text
    page.wait_for_selector("#timeline-status.ok, #timeline-status.error", timeout=RESULT_TIMEOUT_MS)
    assert "ended" in page.inner_text("#timeline-status"), page.inner_text("#timeline-status")
    blocks = page.locator("#timeline-bar .segment")
    assert [blocks.nth(i).get_attribute("data-product") for i in range(blocks.count())] == list(TIMELINE_PRODUCTS)
    blocks.nth(0).click()
    assert TIMELINE_PRODUCTS[0] in page.inner_text("#segment-text")
    page.wait_for_selector("#segment-frame.drawn", timeout=30_000)  # the event's picture, with its boxes
    assert int(page.locator("#segment-frame").get_attribute("data-boxes") or 0) > 0
