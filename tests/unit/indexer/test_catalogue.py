"""Catalogue readers: WAB and JSONL layouts, broken entries, strict mode."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from indexer.catalogue import CatalogueError, read_catalogue


def write_jpeg(path: Path, size: tuple[int, int] = (64, 80)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (200, 30, 30)).save(path, format="JPEG")


def annotation(item_id: str, name: str, *boxes: tuple[list[float], int]) -> dict:
    return {
        "item_id": item_id,
        "img_name": name,
        "annotations": [
            {"box": box, "label": "短袖上衣", "instance_id": instance_id, "display": 1, "viewpoint": 0}
            for box, instance_id in boxes
        ],
    }


@pytest.fixture
def wab_root(tmp_path: Path) -> Path:
    root = tmp_path / "wab-part"
    for k in ("0", "2", "10"):
        write_jpeg(root / "image" / "1001" / f"{k}.jpg")
    (root / "image_annotation" / "1001").mkdir(parents=True)
    docs = {
        "0": annotation("1001", "0.jpg", ([1, 1, 20, 20], 0), ([10, 5, 60, 70], 7)),
        "2": annotation("1001", "2.jpg", ([0, 0, 64, 80], 7)),
        "10": annotation("1001", "10.jpg", ([2, 2, 30, 30], 7)),
    }
    for k, doc in docs.items():
        (root / "image_annotation" / "1001" / f"{k}.json").write_text(json.dumps(doc, ensure_ascii=False))
    (root / "image_text").mkdir()
    (root / "image_text" / "1001.txt").write_text("夏季新款 纯棉短袖T恤 女\n", encoding="utf-8")
    write_jpeg(root / "image" / "1002" / "0.jpg", (100, 50))  # no annotation, no title
    write_jpeg(root / "image" / "0999" / "0.jpg")  # only an instance_id 0 box: nothing usable
    (root / "image_annotation" / "0999").mkdir(parents=True)
    only_zero = annotation("0999", "0.jpg", ([1, 1, 9, 9], 0))
    (root / "image_annotation" / "0999" / "0.json").write_text(json.dumps(only_zero))
    (root / "video").mkdir()
    (root / "video" / "1001.mp4").write_bytes(b"not read")
    return root


def test_wab_layout(wab_root: Path) -> None:
    catalogue = read_catalogue(wab_root, "wab-00")
    assert catalogue.layout == "wab" and catalogue.stream_id == "wab-00"
    assert [p.product_id for p in catalogue.products] == ["1001", "1002"]
    shirt, plain = catalogue.products
    assert shirt.title == "夏季新款 纯棉短袖T恤 女"
    assert [i.image_id for i in shirt.images] == ["1001-0", "1001-2", "1001-10"]
    first = shirt.images[0]
    assert first.boxes == ((10.0, 5.0, 60.0, 70.0),)  # the instance_id 0 box is dropped
    assert (first.width, first.height) == (64, 80)
    assert first.path == wab_root.resolve() / "image" / "1001" / "0.jpg" and first.path.is_absolute()
    assert first.source.endswith("image_annotation/1001/0.json")
    assert plain.title == "" and plain.images[0].boxes == () and plain.images[0].width == 100
    assert catalogue.n_images == 4
    assert len(catalogue.issues) == 1 and "0999" in catalogue.issues[0].message


def test_wab_bad_annotation_is_an_issue(wab_root: Path) -> None:
    (wab_root / "image_annotation" / "1001" / "2.json").write_text("{oops")
    (wab_root / "image_annotation" / "1001" / "10.json").write_text(
        json.dumps(annotation("1001", "10.jpg", ([5, 5, 500, 30], 7)))
    )
    catalogue = read_catalogue(wab_root, "wab-00")
    assert [i.image_id for i in catalogue.products[0].images] == ["1001-0"]
    messages = " | ".join(f"{i.source}: {i.message}" for i in catalogue.issues)
    assert "2.json: invalid JSON" in messages and "outside 64x80 image" in messages


@pytest.fixture
def jsonl_root(tmp_path: Path) -> Path:
    root = tmp_path / "stream-a"
    write_jpeg(root / "images" / "a.jpg")
    write_jpeg(root / "images" / "b.jpg")
    (root / "images" / "corrupt.jpg").write_bytes(b"this is not a jpeg at all")
    write_jpeg(tmp_path / "x.jpg")  # exists, but outside the stream folder

    def product(pid: str, *images: tuple[str, str, list]) -> dict:
        return {"product_id": pid, "title": f"title {pid}",
                "images": [{"image_id": i, "path": p, "boxes": b} for i, p, b in images]}

    lines = [  # line numbers as the issues must report them
        json.dumps(product("p1", ("p1-0", "images/a.jpg", [[10, 10, 50, 60]]),
                           ("p1-1", "images/b.jpg", [[-0.5, 0, 64.5, 80]]))),  # 1: ok, overshoot clipped
        '{"product_id": "p2", "images": [',  # 2: bad JSON
        json.dumps(product("p3", ("p3-0", "images/missing.jpg", []))),  # 3: missing file
        json.dumps(product("p4", ("p4-0", "images/a.jpg", [[0, 0, 200, 50], [1, 2, 30, 40]]))),  # 4: box out
        json.dumps(product("p5", ("p5-0", "images/corrupt.jpg", []))),  # 5: corrupt image
        json.dumps(product("p6", ("p6-0", "../x.jpg", []))),  # 6: escapes the stream folder
        json.dumps(product("p1", ("p1-9", "images/a.jpg", []))),  # 7: duplicate product
        "",  # 8: blank, ignored
        json.dumps({"title": "no id", "images": []}),  # 9: no product_id
        json.dumps(product("p7", ("p7-0", "images/b.jpg", [[1, 2, 3], [5, 5, 5, 10]]))),  # 10: all boxes bad
        json.dumps(product("p8", ("p8-0", "/etc/passwd", []), ("p8-1", "images/b.jpg", []))),  # 11: abs path
    ]
    (root / "catalogue.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


def test_jsonl_layout_skips_broken_entries(jsonl_root: Path) -> None:
    catalogue = read_catalogue(jsonl_root, "stream-a")
    assert catalogue.layout == "jsonl"
    assert [p.product_id for p in catalogue.products] == ["p1", "p4", "p8"]
    p1, p4, p8 = catalogue.products
    assert p1.title == "title p1"
    assert p1.images[0].boxes == ((10.0, 10.0, 50.0, 60.0),)
    assert p1.images[1].boxes == ((0.0, 0.0, 64.0, 80.0),)
    assert p1.images[0].path == (jsonl_root / "images" / "a.jpg").resolve()
    assert p1.images[0].source == f"{jsonl_root.resolve() / 'catalogue.jsonl'}:1"
    assert p4.images[0].boxes == ((1.0, 2.0, 30.0, 40.0),)
    assert [i.image_id for i in p8.images] == ["p8-1"]

    by_line: dict[int, list[str]] = {}
    for issue in catalogue.issues:
        file, line = issue.source.rsplit(":", 1)
        assert file == str(jsonl_root.resolve() / "catalogue.jsonl")
        by_line.setdefault(int(line), []).append(issue.message)
    assert sorted(by_line) == [2, 3, 4, 5, 6, 7, 9, 10, 11]
    assert by_line[2][0].startswith("invalid JSON")
    assert "missing image file images/missing.jpg" in by_line[3][0]
    assert by_line[4] == ["box [0, 0, 200, 50] outside 64x80 image"]
    assert "unreadable image corrupt.jpg" in by_line[5][0]
    assert "escapes the stream folder" in by_line[6][0]
    assert "duplicate product_id 'p1'" in by_line[7][0]
    assert "product_id" in by_line[9][0]
    assert len(by_line[10]) == 4 and "none of its boxes is usable" in by_line[10][2]
    assert by_line[10][3] == "product 'p7' has no usable images"
    assert "must be relative" in by_line[11][0]


def test_strict_mode_raises_on_first_issue(jsonl_root: Path) -> None:
    with pytest.raises(CatalogueError, match=r"catalogue\.jsonl:2: invalid JSON"):
        read_catalogue(jsonl_root, "stream-a", strict=True)


def test_strict_mode_accepts_a_clean_catalogue(wab_root: Path) -> None:
    (wab_root / "image_annotation" / "0999" / "0.json").unlink()
    catalogue = read_catalogue(wab_root, "wab-00", strict=True)
    assert [p.product_id for p in catalogue.products] == ["0999", "1001", "1002"]


def test_unreadable_catalogue(tmp_path: Path) -> None:
    with pytest.raises(CatalogueError, match="no catalogue folder"):
        read_catalogue(tmp_path / "nope", "s")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CatalogueError, match="no catalogue layout"):
        read_catalogue(tmp_path / "empty", "s")
