"""The demo page's routes on the real service: the page and its static files, the stream list, catalogue
images and labelled clips (only files the index's catalogue lists, nothing outside its folder), API keys."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from PIL import Image
from support.data import SLICE_PRODUCTS, SLICE_STREAM, write_slice

from indexer.build import build_stream
from indexer.catalogue import read_catalogue
from indexer.store import IndexStore
from service.app import create_app
from watchbuy.settings import Settings

KEY = "demo-test-key"


def catalogue(folder: Path) -> list[dict[str, Any]]:
    return [
        json.loads(line) for line in (folder / "catalogue.jsonl").read_text().splitlines() if line.strip()
    ]


def assert_error(response: Any, status: int, code: str) -> None:
    assert response.status_code == status, (response.status_code, response.text)
    assert response.json()["error"]["code"] == code, response.text


def app_client(settings: Settings) -> Iterator[TestClient]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Image, "MAX_IMAGE_PIXELS", Image.MAX_IMAGE_PIXELS)  # create_app changes it
        with TestClient(create_app(settings), raise_server_exceptions=False) as test_client:
            yield test_client


@pytest.fixture(scope="module")
def client(model_dir: Path, slice_index_root: Path) -> Iterator[TestClient]:
    yield from app_client(Settings(model_dir=model_dir, index_root=slice_index_root))


def test_the_page_and_its_static_files_are_served(client: TestClient) -> None:
    page = client.get("/demo")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert '<script src="/demo/static/demo.js"' in page.text and "/demo/static/demo.css" in page.text
    script = client.get("/demo/static/demo.js")
    assert script.status_code == 200 and script.headers["content-type"].startswith("text/javascript")
    assert "X-API-Key" in script.text
    assert client.get("/demo/static/demo.css").headers["content-type"].startswith("text/css")
    for name in ("demo.html", "nope.js", "..%2Fvideo.py", "..%2F..%2Fpyproject.toml"):
        assert_error(client.get(f"/demo/static/{name}"), 404, "not_found")


def test_streams_are_listed_from_their_manifests(client: TestClient) -> None:
    response = client.get("/streams")
    assert response.status_code == 200, response.text
    (stream,) = response.json()["streams"]
    assert stream["stream_id"] == SLICE_STREAM and stream["products"] == SLICE_PRODUCTS
    assert stream["vectors"] >= SLICE_PRODUCTS and stream["index_version"] and stream["built_at"]
    assert stream["abstain_threshold_source"] == "catalogue"  # the slice's index was calibrated at build
    assert stream["abstain_threshold"] == client.get(f"/streams/{SLICE_STREAM}").json()["abstain_threshold"]


def test_catalogue_images_are_served_by_image_id(client: TestClient, slice_dir: Path) -> None:
    product = catalogue(slice_dir)[0]
    image = product["images"][0]
    response = client.get(f"/streams/{SLICE_STREAM}/images/{image['image_id']}")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/jpeg"
    assert response.content == (slice_dir / image["path"]).read_bytes()


@pytest.mark.parametrize(
    "path",
    [
        f"/streams/{SLICE_STREAM}/images/no-such-image",
        f"/streams/{SLICE_STREAM}/images/..%2F..%2Fcatalogue.jsonl",
        f"/streams/{SLICE_STREAM}/images/%2Fetc%2Fpasswd",
        f"/streams/{SLICE_STREAM}/images/catalogue.jsonl",
        f"/streams/{SLICE_STREAM}/images/images%2F000003_1.jpg",
        f"/streams/{SLICE_STREAM}/clips/no-such-clip/frames/0",
        f"/streams/{SLICE_STREAM}/clips/..%2Fqueries.jsonl/frames/0",
    ],
)
def test_unknown_ids_and_paths_are_not_found(client: TestClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 404, response.text
    assert response.json()["error"]["code"] in {"file_not_found", "not_found"}


def test_traversal_in_the_raw_path_never_reaches_a_file(client: TestClient) -> None:
    for raw in ("/streams/viton-slice/images/../../../etc/passwd", "/streams/..%2F..%2Fetc/images/passwd"):
        response = client.get(raw)
        assert response.status_code in {400, 404, 422}, (raw, response.status_code)
        assert "root:" not in response.text
    assert_error(client.get("/streams/no-such-stream/images/x"), 404, "stream_not_found")


def test_labelled_clips_are_listed_and_their_frames_served(client: TestClient, slice_dir: Path) -> None:
    queries = [
        json.loads(line) for line in (slice_dir / "queries.jsonl").read_text().splitlines() if line.strip()
    ]
    response = client.get(f"/streams/{SLICE_STREAM}/clips")
    assert response.status_code == 200, response.text
    clips = response.json()["clips"]
    assert [c["clip_id"] for c in clips] == [q["clip_id"] for q in queries]
    first = queries[0]
    assert clips[0] == {
        "clip_id": first["clip_id"],
        "product_id": first["product_id"],
        "frames": len(first["frames"]),
    }
    frame = client.get(f"/streams/{SLICE_STREAM}/clips/{first['clip_id']}/frames/0")
    assert frame.status_code == 200 and frame.content == (slice_dir / first["frames"][0]["path"]).read_bytes()
    out_of_range = client.get(
        f"/streams/{SLICE_STREAM}/clips/{first['clip_id']}/frames/{len(first['frames'])}"
    )
    assert_error(out_of_range, 404, "file_not_found")


def test_a_catalogue_file_linked_from_outside_its_folder_is_not_served(
    models: Any, model_dir: Path, slice_dir: Path, tmp_path: Path
) -> None:
    """The index lists the image, but its file is a symlink leaving the folder: refused, the others served."""
    folder = write_slice(slice_dir, tmp_path / "linked", 3)
    products = catalogue(folder)
    outside = tmp_path / "outside.jpg"
    victim = folder / products[1]["images"][0]["path"]
    shutil.move(victim, outside)
    os.symlink(outside, victim)
    root = tmp_path / "indexes"
    build_stream(read_catalogue(folder, "linked", strict=True), models, IndexStore(root), show_progress=False)
    for test_client in app_client(Settings(model_dir=model_dir, index_root=root)):
        kept = test_client.get(f"/streams/linked/images/{products[0]['images'][0]['image_id']}")
        assert kept.status_code == 200, kept.text
        linked = test_client.get(f"/streams/linked/images/{products[1]['images'][0]['image_id']}")
        assert_error(linked, 404, "file_not_found")


def test_the_catalogue_root_setting_is_the_fallback_folder(
    model_dir: Path, slice_index_root: Path, slice_dir: Path, tmp_path: Path
) -> None:
    """An index whose recorded catalogue folder is gone: images come from catalogue_root/<stream_id>."""
    root = tmp_path / "indexes"
    shutil.copytree(slice_index_root, root)
    manifests = list((root / SLICE_STREAM).glob("*/manifest.json"))
    for manifest_path in manifests:  # rewrite the recorded folder, keeping the checked files intact
        manifest = json.loads(manifest_path.read_text())
        manifest["catalogue"]["root"] = str(tmp_path / "moved-away")
        manifest_path.write_text(json.dumps(manifest))
    image = catalogue(slice_dir)[0]["images"][0]
    path = f"/streams/{SLICE_STREAM}/images/{image['image_id']}"
    for test_client in app_client(Settings(model_dir=model_dir, index_root=root)):
        assert_error(test_client.get(path), 404, "file_not_found")
    for test_client in app_client(
        Settings(model_dir=model_dir, index_root=root, catalogue_root=slice_dir.parent)
    ):
        assert test_client.get(path).content == (slice_dir / image["path"]).read_bytes()


def test_with_api_keys_the_page_is_public_and_its_data_needs_the_key(
    model_dir: Path, slice_index_root: Path, slice_dir: Path
) -> None:
    image_id = catalogue(slice_dir)[0]["images"][0]["image_id"]
    settings = Settings(model_dir=model_dir, index_root=slice_index_root, api_keys=[KEY])
    for test_client in app_client(settings):
        assert test_client.get("/demo").status_code == 200
        assert test_client.get("/demo/static/demo.js").status_code == 200
        for path in (
            "/streams",
            f"/streams/{SLICE_STREAM}/images/{image_id}",
            f"/streams/{SLICE_STREAM}/clips",
        ):
            assert_error(test_client.get(path), 401, "unauthorized")
            assert test_client.get(path, headers={"X-API-Key": KEY}).status_code == 200, path
        assert_error(
            test_client.post("/identify/video", files={"stream_id": (None, SLICE_STREAM)}),
            401,
            "unauthorized",
        )
