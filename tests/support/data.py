"""Where the real models and data are, and the slice of viton-dev-00 the integration tests index."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

PROJECT_DIR = Path(__file__).resolve().parents[2]
#: The shared development folder sits next to the project: `<project>/../shared`.
SHARED_DIR = PROJECT_DIR.parent / "shared"
MODEL_DIR = PROJECT_DIR / "var" / "models"
SLICE_STREAM = "viton-slice"
SLICE_PRODUCTS = 40
SLICE_CALIBRATION_VIEWS = 16  # synthetic views that calibrate the slice's index (the indexer job's default: 64)


def missing(message: str) -> None:
    """Skip locally, fail in CI (CI=true): CI must have everything the integration tests need."""
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


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


def expected_embedder() -> tuple[str, int]:
    """(manifest name, vector size) of the embedder `make models` exports under the current settings."""
    from training.fetch import IMAGENET, embedder_name
    from training.trained import read_weights_manifest
    from watchbuy.settings import Settings

    weights = Settings().embedder_weights
    dim = 1280 if weights == IMAGENET else int(read_weights_manifest()[weights]["config"]["dim"])
    return embedder_name(weights), dim
