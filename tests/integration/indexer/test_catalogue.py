"""Catalogue readers on the real dev data in ../shared."""

from __future__ import annotations

from pathlib import Path

import pytest

from indexer.catalogue import read_catalogue


@pytest.mark.parametrize(
    ("dataset", "stream_id", "n_products", "boxed"),
    [("viton-dev", "viton-dev-00", 200, True), ("grocery-dev", "grocery-dev-00", 31, False)],
)
def test_real_dev_catalogues(
    shared_dir: Path, dataset: str, stream_id: str, n_products: int, boxed: bool
) -> None:
    catalogue = read_catalogue(shared_dir / "data" / dataset / "streams" / stream_id, stream_id, strict=True)
    assert catalogue.layout == "jsonl" and catalogue.issues == ()
    assert len(catalogue.products) == n_products
    assert len({p.product_id for p in catalogue.products}) == n_products
    for product in catalogue.products:
        for image in product.images:
            assert image.path.is_file() and image.width > 0 and image.height > 0
            assert bool(image.boxes) == boxed
            for x1, y1, x2, y2 in image.boxes:
                assert 0 <= x1 < x2 <= image.width and 0 <= y1 < y2 <= image.height
