"""Shared pytest fixtures: the real models, a real slice of viton-dev-00 and its index, a real Redis.

Tests under tests/integration/ are marked `integration` (real models, servers, browsers and tools);
tests under tests/unit/ need none of them. Tests needing `../shared` fail under `CI=true` instead of
skipping (support/data.py `missing`).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.data import (
    MODEL_DIR,
    SHARED_DIR,
    SLICE_CALIBRATION_VIEWS,
    SLICE_PRODUCTS,
    SLICE_STREAM,
    missing,
    write_slice,
)
from support.redis_server import RedisServer

from models.loader import Models


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "integration" in item.path.parts:
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """`../shared`; tests using it skip when it is absent, except in CI (CI=true) where they fail."""
    if not (SHARED_DIR / "data").is_dir():
        missing(f"shared data folder not found at {SHARED_DIR}")
    return SHARED_DIR


@pytest.fixture(scope="session")
def model_dir() -> Path:
    """The real model files made by `make models` (var/models)."""
    if not (MODEL_DIR / "manifest.json").is_file():
        missing(f"no model files in {MODEL_DIR}; run `make models`")
    return MODEL_DIR


@pytest.fixture(scope="session")
def models(model_dir: Path) -> Models:
    """Both real models, verified and opened once per session."""
    from models.loader import load_configured_models
    from watchbuy.settings import Settings

    return load_configured_models(Settings(model_dir=model_dir))


@pytest.fixture(scope="session")
def viton_stream(shared_dir: Path) -> Path:
    """The real viton-dev-00 stream folder."""
    path = shared_dir / "data" / "viton-dev" / "streams" / "viton-dev-00"
    if not (path / "catalogue.jsonl").is_file():
        missing(f"no catalogue at {path}")
    return path


@pytest.fixture(scope="session")
def slice_dir(viton_stream: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """First SLICE_PRODUCTS products of viton-dev-00 and their clips, images copied into a tmp folder."""
    return write_slice(viton_stream, tmp_path_factory.mktemp("slice") / SLICE_STREAM, SLICE_PRODUCTS)


@pytest.fixture(scope="session")
def slice_index_root(slice_dir: Path, models: Models, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An index root holding one published real index of the slice, as stream SLICE_STREAM, calibrated as
    the indexer job does (with SLICE_CALIBRATION_VIEWS synthetic views, fewer than the default, for time).

    Shared by several tests: treat it as read-only (copy it before publishing into it).
    """
    from indexer.build import build_stream
    from indexer.catalogue import read_catalogue
    from indexer.store import IndexStore
    from service.calibration import CatalogueCalibrator
    from service.pipeline import PipelineConfig
    from watchbuy.settings import Settings

    root = tmp_path_factory.mktemp("indexes")
    catalogue = read_catalogue(slice_dir, SLICE_STREAM, strict=True)
    calibrate = CatalogueCalibrator(models, PipelineConfig.from_settings(Settings()), views=SLICE_CALIBRATION_VIEWS)
    build_stream(catalogue, models, IndexStore(root), show_progress=False, calibrate=calibrate)
    return root


@pytest.fixture
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A fresh `redis-server` (system package) on a free loopback port, no persistence; stopped after."""
    binary = shutil.which("redis-server")
    if binary is None:
        missing("redis-server not found; install the redis-server package (.ci/run does)")
    server = RedisServer(str(binary), tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        yield server
    finally:
        server.stop()
