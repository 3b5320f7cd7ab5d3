"""Index builds with the real models on real catalogue slices: vectors, manifest, issues, strict mode, CLI."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import faiss
import numpy as np
import pytest
from PIL import Image
from support.data import PROJECT_DIR, expected_embedder, write_slice

from indexer.build import CATALOGUE_PROPOSALS, BuildError, IndexRecipe, build_stream
from indexer.catalogue import read_catalogue
from indexer.store import IndexStore
from models.artifacts import read_manifest
from models.embedder import crop
from models.proposals import propose

STREAM = "build-test"


@pytest.fixture(scope="module")
def small_slice(viton_stream: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first 20 products of viton-dev-00, images copied (read-only: copy before editing)."""
    return write_slice(viton_stream, tmp_path_factory.mktemp("build") / "slice20", 20)


def catalogue_lines(root: Path) -> list[dict]:
    return [json.loads(line) for line in (root / "catalogue.jsonl").read_text().splitlines() if line.strip()]


def copy_slice(small_slice: Path, tmp_path: Path) -> Path:
    target = tmp_path / "catalogue"
    shutil.copytree(small_slice, target)
    return target


def test_build_publishes_one_vector_per_annotated_box(
    small_slice: Path, models, model_dir: Path, tmp_path: Path
) -> None:
    store = IndexStore(tmp_path / "indexes")
    catalogue = read_catalogue(small_slice, STREAM, strict=True)
    summary, issues = build_stream(catalogue, models, store, show_progress=False)
    assert issues == []
    lines = catalogue_lines(small_slice)
    expected = [
        (p["product_id"], image["image_id"], tuple(float(v) for v in box))
        for p in lines for image in p["images"] for box in image["boxes"]
    ]
    assert len(expected) >= 20 and all(image["boxes"] for p in lines for image in p["images"])
    assert (summary.stream_id, summary.products, summary.skipped) == (STREAM, 20, 0)
    assert summary.vectors == len(expected)
    assert summary.images == sum(len(p["images"]) for p in lines)

    assert store.current_version(STREAM) == summary.version
    index = store.load(STREAM)
    assert index.index.ntotal == index.n_vectors == len(expected)
    assert [(e.product_id, e.image_id, e.box) for e in index.entries] == expected
    assert set(index.titles) == {p["product_id"] for p in lines}
    records = read_manifest(model_dir)
    fp32 = {key: record.sha256 for key, record in records.items() if record.precision == "fp32"}
    assert index.manifest["models"] == fp32  # the files' identities: an int8 copy's is its fp32 file
    assert index.manifest["dim"] == expected_embedder()[1] and index.manifest["factory"] == "Flat"
    assert index.manifest["catalogue"]["layout"] == "jsonl"

    # Row i really is the embedding of entry i's box: re-embed one and find it again.
    entry = index.entries[7]
    with Image.open(small_slice / lines[7]["images"][0]["path"]) as image:
        pixels = np.asarray(image.convert("RGB"))
    vector = models.embedder.embed([crop(pixels, entry.box)])
    sims, rows = index.index.search(vector, 1)
    assert rows[0, 0] == 7 and sims[0, 0] == pytest.approx(1.0, abs=1e-4)

    # With a cohort (the shipped embedder has one) each row's hubness is stored, computed from its vector.
    assert ("cohort" in records) == (models.cohort is not None)
    if models.cohort is None:
        assert index.hubness is None and index.manifest["hubness_neighbours"] is None
    else:
        assert index.hubness.shape == (index.n_vectors,) and index.manifest["hubness_neighbours"] == 5
        assert index.hubness[7] == pytest.approx(float(models.cohort.hubness(vector)[0]), abs=1e-3)


def _unboxed_catalogue(viton_stream: Path, tmp_path: Path) -> Path:
    """A worn garment (a clip frame: a person is detected) and a flat product shot, both without boxes."""
    root = tmp_path / "catalogue"
    (root / "images").mkdir(parents=True)
    shutil.copyfile(viton_stream / "frames" / "000003_0.jpg", root / "images" / "worn.jpg")
    shutil.copyfile(viton_stream / "images" / "000004_1.jpg", root / "images" / "flat.jpg")
    products = [
        {"product_id": "p-worn", "title": "worn",
         "images": [{"image_id": "worn", "path": "images/worn.jpg", "boxes": []}]},
        {"product_id": "p-flat", "title": "flat",
         "images": [{"image_id": "flat", "path": "images/flat.jpg"}]},
    ]
    (root / "catalogue.jsonl").write_text("".join(json.dumps(p) + "\n" for p in products))
    return root


def test_image_without_boxes_is_embedded_whole_by_default(viton_stream: Path, models, tmp_path: Path) -> None:
    root = _unboxed_catalogue(viton_stream, tmp_path)
    store = IndexStore(tmp_path / "indexes")
    summary, issues = build_stream(read_catalogue(root, STREAM, strict=True), models, store, show_progress=False)
    assert issues == []
    index = store.load(STREAM)
    for image_id, name in (("worn", "worn.jpg"), ("flat", "flat.jpg")):
        with Image.open(root / "images" / name) as image:
            w, h = image.size
        assert [e.box for e in index.entries if e.image_id == image_id] == [(0.0, 0.0, float(w), float(h))]
    assert summary.vectors == index.n_vectors == 2
    assert index.manifest["unboxed_images"] == "whole"


def test_image_without_boxes_gets_proposals_and_the_full_image_in_detect_mode(
    viton_stream: Path, models, tmp_path: Path
) -> None:
    root = _unboxed_catalogue(viton_stream, tmp_path)
    store = IndexStore(tmp_path / "indexes")
    catalogue = read_catalogue(root, STREAM, strict=True)
    summary, issues = build_stream(catalogue, models, store, IndexRecipe(unboxed="detect"), show_progress=False)
    assert issues == []
    index = store.load(STREAM)

    for image_id, name in (("worn", "worn.jpg"), ("flat", "flat.jpg")):
        with Image.open(root / "images" / name) as image:
            pixels = np.asarray(image.convert("RGB"))
        h, w = pixels.shape[:2]
        proposals = propose(models.detector.detect(pixels), w, h, CATALOGUE_PROPOSALS)
        boxes = [e.box for e in index.entries if e.image_id == image_id]
        expected = [p.box for p in proposals] + [(0.0, 0.0, float(w), float(h))]
        np.testing.assert_allclose(boxes, expected, atol=1e-3)
        if image_id == "worn":
            assert {p.label for p in proposals} == {"person", "upper_body", "lower_body"}
    assert summary.vectors == index.n_vectors >= 5


def test_broken_lines_are_skipped_and_reported(small_slice: Path, models, tmp_path: Path) -> None:
    root = copy_slice(small_slice, tmp_path)
    lines = (root / "catalogue.jsonl").read_text().splitlines()[:5]
    bad_box = json.loads(lines[4])
    bad_box["product_id"] = "p-bad-box"
    bad_box["images"][0]["image_id"] = "bad-box-0"
    bad_box["images"][0]["boxes"] = [[50, 50, 10, 10]]
    broken = [
        lines[0],
        "{not json",
        lines[1],
        json.dumps({"product_id": "p-missing", "images": [{"image_id": "m-0", "path": "images/nope.jpg"}]}),
        json.dumps({"product_id": "p-escape", "images": [{"image_id": "e-0", "path": "../../etc/passwd"}]}),
        lines[2],
        json.dumps(bad_box),
        lines[0],  # duplicate product
        lines[3],
    ]
    (root / "catalogue.jsonl").write_text("\n".join(broken) + "\n")
    store = IndexStore(tmp_path / "indexes")
    summary, issues = build_stream(read_catalogue(root, STREAM), models, store, show_progress=False)
    assert summary.products == 4 and summary.vectors == 4
    sources = [issue.source.rsplit(":", 1)[1] for issue in issues]
    assert {"2", "4", "5", "7", "8"} <= set(sources), issues
    assert summary.skipped == len(issues)
    messages = " | ".join(issue.message for issue in issues)
    for fragment in ("invalid JSON", "missing image file", "escapes", "malformed box", "duplicate"):
        assert fragment in messages
    assert store.load(STREAM).n_products == 4


def test_undecodable_image_is_skipped_or_fails_a_strict_build(
    small_slice: Path, models, tmp_path: Path
) -> None:
    root = copy_slice(small_slice, tmp_path)
    lines = catalogue_lines(root)[:3]
    (root / "catalogue.jsonl").write_text("".join(json.dumps(p) + "\n" for p in lines))
    victim = root / lines[1]["images"][0]["path"]
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) // 2])  # header intact, pixels cut off
    store = IndexStore(tmp_path / "indexes")
    catalogue = read_catalogue(root, STREAM, strict=True)  # the header check passes
    assert catalogue.issues == ()
    with pytest.raises(BuildError, match="cannot decode"):
        build_stream(catalogue, models, store, strict=True, show_progress=False)
    assert store.current_version(STREAM) is None
    summary, issues = build_stream(catalogue, models, store, show_progress=False)
    assert summary.products == 2 and summary.images == 2 and len(issues) == 1
    assert "cannot decode" in issues[0].message


def test_strict_build_with_a_broken_entry_leaves_current_unchanged(
    small_slice: Path, models, tmp_path: Path
) -> None:
    store = IndexStore(tmp_path / "indexes")
    clean = read_catalogue(small_slice, STREAM, strict=True)
    good, _ = build_stream(clean, models, store, show_progress=False)
    assert store.current_version(STREAM) == good.version

    root = copy_slice(small_slice, tmp_path)
    with (root / "catalogue.jsonl").open("a") as handle:
        handle.write("{broken\n")
    catalogue = read_catalogue(root, STREAM)
    assert len(catalogue.issues) == 1
    with pytest.raises(BuildError, match="invalid JSON"):
        build_stream(catalogue, models, store, strict=True, show_progress=False)
    assert store.current_version(STREAM) == good.version
    assert store.versions(STREAM) == [good.version]
    assert store.load(STREAM).n_products == 20


def test_nothing_usable_is_a_build_error(tmp_path: Path, models) -> None:
    root = tmp_path / "catalogue"
    root.mkdir()
    line = {"product_id": "p", "images": [{"image_id": "i", "path": "x.jpg"}]}
    (root / "catalogue.jsonl").write_text(json.dumps(line) + "\n")
    store = IndexStore(tmp_path / "indexes")
    with pytest.raises(BuildError, match="no usable catalogue image"):
        build_stream(read_catalogue(root, STREAM), models, store, show_progress=False)
    assert store.streams() == []


def test_search_parameters_travel_inside_the_published_index(small_slice: Path, models, tmp_path: Path) -> None:
    store = IndexStore(tmp_path / "indexes")
    recipe = IndexRecipe(factory="IVF2,Flat", search_params="nprobe=2")
    build_stream(read_catalogue(small_slice, STREAM), models, store, recipe, show_progress=False)
    loaded = store.load(STREAM)  # read back from disk, as a service process would
    assert faiss.extract_index_ivf(loaded.index).nprobe == 2
    assert (loaded.manifest["factory"], loaded.manifest["search_params"]) == ("IVF2,Flat", "nprobe=2")


def run_cli(
    *args: str, index_root: Path, model_dir: Path, calibration_views: int = 8
) -> subprocess.CompletedProcess[str]:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("WATCHBUY_")},
        "WATCHBUY_INDEX_ROOT": str(index_root),
        "WATCHBUY_MODEL_DIR": str(model_dir),
        "WATCHBUY_CALIBRATION_VIEWS": str(calibration_views),
        "COLUMNS": "200",
    }
    return subprocess.run(
        [sys.executable, "-m", "watchbuy", *args],
        cwd=PROJECT_DIR, env=env, capture_output=True, text=True, timeout=300, check=False,
    )


def test_cli_builds_and_prints_the_summary(small_slice: Path, model_dir: Path, tmp_path: Path) -> None:
    root = copy_slice(small_slice, tmp_path)
    lines = (root / "catalogue.jsonl").read_text().splitlines()[:5]
    (root / "catalogue.jsonl").write_text("\n".join(lines) + "\n")
    index_root = tmp_path / "indexes"
    result = run_cli(
        "build-index", "--stream", "cli-stream", "--catalogue", str(root),
        index_root=index_root, model_dir=model_dir,
    )
    assert result.returncode == 0, result.stderr
    store = IndexStore(index_root)
    version = store.current_version("cli-stream")
    assert version is not None and store.load("cli-stream").n_products == 5
    calibration = store.load("cli-stream").manifest["calibration"]  # the job calibrates before it publishes
    assert calibration["views"] == 8 and len(calibration["genuine"]) == len(calibration["impostor"]) == 3
    output = result.stdout + result.stderr
    assert f"cli-stream {version}" in output
    for label in ("products", "vectors", "images/s", "published to"):
        assert label in output
    row = next(line for line in output.splitlines() if "abstain threshold" in line)
    assert f"{calibration['threshold']:.3f}" in row
    assert str(index_root / "cli-stream" / version) in output


def test_cli_missing_catalogue_exits_1(model_dir: Path, tmp_path: Path) -> None:
    missing = tmp_path / "no-such-catalogue"
    result = run_cli(
        "build-index", "--stream", "cli-stream", "--catalogue", str(missing),
        index_root=tmp_path / "ix", model_dir=model_dir,
    )
    assert result.returncode == 1
    assert "build failed" in result.stderr and "no catalogue folder" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "ix" / "cli-stream").exists()


def test_cli_invalid_stream_id_exits_1(small_slice: Path, model_dir: Path, tmp_path: Path) -> None:
    result = run_cli(
        "build-index", "--stream", "../evil", "--catalogue", str(small_slice),
        index_root=tmp_path / "ix", model_dir=model_dir,
    )
    assert result.returncode == 1
    assert "build failed" in result.stderr and "Traceback" not in result.stderr


def test_cli_unknown_factory_exits_1_and_publishes_nothing(small_slice: Path, model_dir: Path, tmp_path: Path) -> None:
    root = copy_slice(small_slice, tmp_path)
    result = run_cli(
        "build-index", "--stream", "cli-stream", "--catalogue", str(root), "--factory", "NoSuchIndex",
        index_root=tmp_path / "ix", model_dir=model_dir,
    )
    assert result.returncode == 1
    assert "build failed" in result.stderr and "NoSuchIndex" in result.stderr
    assert "Traceback" not in result.stderr
    assert IndexStore(tmp_path / "ix").current_version("cli-stream") is None
