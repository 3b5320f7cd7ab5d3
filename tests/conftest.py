"""Shared pytest fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

#: The shared development folder sits next to the project: `<project>/../shared`.
SHARED_DIR = Path(__file__).resolve().parents[1].parent / "shared"


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """`../shared`; tests using it skip when it is absent, except in CI (CI=true) where they fail."""
    if not (SHARED_DIR / "data").is_dir():
        message = f"shared data folder not found at {SHARED_DIR}"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return SHARED_DIR


# --- real models and a real slice of viton-dev-00 ----------------------------------------------------

import json
import shutil

PROJECT_DIR = Path(__file__).resolve().parents[1]
MODEL_DIR = PROJECT_DIR / "var" / "models"
SLICE_STREAM = "viton-slice"
SLICE_PRODUCTS = 40


def _missing(message: str) -> None:
    """Skip locally, fail in CI (CI=true): CI must have everything the integration tests need."""
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def model_dir() -> Path:
    """The real model files made by `make models` (var/models)."""
    if not (MODEL_DIR / "manifest.json").is_file():
        _missing(f"no model files in {MODEL_DIR}; run `make models`")
    return MODEL_DIR


@pytest.fixture(scope="session")
def models(model_dir: Path):
    """Both real models, verified and opened once per session."""
    from models.loader import load_configured_models
    from watchbuy.settings import Settings

    return load_configured_models(Settings(model_dir=model_dir))


@pytest.fixture(scope="session")
def viton_stream(shared_dir: Path) -> Path:
    """The real viton-dev-00 stream folder."""
    path = shared_dir / "data" / "viton-dev" / "streams" / "viton-dev-00"
    if not (path / "catalogue.jsonl").is_file():
        _missing(f"no catalogue at {path}")
    return path


def write_slice(source: Path, target: Path, n_products: int) -> Path:
    """The first `n_products` of a JSONL stream (catalogue + their queries) copied into `target`."""
    target.mkdir(parents=True, exist_ok=True)
    lines = [line for line in (source / "catalogue.jsonl").read_text().splitlines() if line.strip()]
    kept = [json.loads(line) for line in lines[:n_products]]
    ids = {product["product_id"] for product in kept}
    query_lines = (source / "queries.jsonl").read_text().splitlines()
    queries = [json.loads(line) for line in query_lines if line.strip()]
    queries = [query for query in queries if query["product_id"] in ids]
    rel_paths = [image["path"] for product in kept for image in product["images"]]
    rel_paths += [frame["path"] for query in queries for frame in query["frames"]]
    for rel in rel_paths:
        (target / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source / rel, target / rel)
    (target / "catalogue.jsonl").write_text("".join(json.dumps(p) + "\n" for p in kept))
    (target / "queries.jsonl").write_text("".join(json.dumps(q) + "\n" for q in queries))
    return target


@pytest.fixture(scope="session")
def slice_dir(viton_stream: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """First SLICE_PRODUCTS products of viton-dev-00 and their clips, images copied into a tmp folder."""
    return write_slice(viton_stream, tmp_path_factory.mktemp("slice") / SLICE_STREAM, SLICE_PRODUCTS)


@pytest.fixture(scope="session")
def slice_index_root(slice_dir: Path, models, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An index root holding one published real index of the slice, as stream SLICE_STREAM.

    Shared by several tests: treat it as read-only (copy it before publishing into it).
    """
    from indexer.build import build_stream
    from indexer.catalogue import read_catalogue
    from indexer.store import IndexStore

    root = tmp_path_factory.mktemp("indexes")
    catalogue = read_catalogue(slice_dir, SLICE_STREAM, strict=True)
    build_stream(catalogue, models, IndexStore(root), show_progress=False)
    return root


def expected_embedder() -> tuple[str, int]:
    """(manifest name, vector size) of the embedder `make models` exports under the current settings."""
    from models.fetch import IMAGENET, embedder_name
    from models.trained import read_weights_manifest
    from watchbuy.settings import Settings

    weights = Settings().embedder_weights
    dim = 1280 if weights == IMAGENET else int(read_weights_manifest()[weights]["config"]["dim"])
    return embedder_name(weights), dim


# --- a real redis-server ------------------------------------------------------------------------------

from collections.abc import Iterator

from redis_server import RedisServer


@pytest.fixture
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A fresh `redis-server` (system package) on a free loopback port, no persistence; stopped after."""
    binary = shutil.which("redis-server")
    if binary is None:
        _missing("redis-server not found; install the redis-server package (.ci/run does)")
    server = RedisServer(binary, tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        yield server
    finally:
        server.stop()
