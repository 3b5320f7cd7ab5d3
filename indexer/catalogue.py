"""Read one stream's product catalogue, in the JSONL layout or the original Watch and Buy (WAB) layout.

Broken entries become `CatalogueIssue`s and are skipped; with `strict=True` the first one raises.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from models.types import Box, clip_box

#: Pixels a box may overshoot the image before it counts as outside (the overshoot is clipped away).
BOX_TOLERANCE_PX = 1.0
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp")


@dataclass(frozen=True, slots=True)
class CatalogueImage:
    """One catalogue image of a product, with its product boxes (empty = none known)."""

    image_id: str
    path: Path
    boxes: tuple[Box, ...]
    width: int
    height: int
    source: str


@dataclass(frozen=True, slots=True)
class Product:
    product_id: str
    title: str
    images: tuple[CatalogueImage, ...]


@dataclass(frozen=True, slots=True)
class CatalogueIssue:
    """A broken catalogue entry that was skipped; `source` is "file:line" (JSONL) or a file path (WAB)."""

    source: str
    message: str


@dataclass(frozen=True, slots=True)
class Catalogue:
    stream_id: str
    root: Path
    layout: str
    products: tuple[Product, ...]
    issues: tuple[CatalogueIssue, ...]

    @property
    def n_images(self) -> int:
        return sum(len(product.images) for product in self.products)


class CatalogueError(Exception):
    """The catalogue cannot be read at all, or (strict mode) it has a broken entry."""


class _Issues:
    """Collects issues; in strict mode the first one raises `CatalogueError`."""

    def __init__(self, strict: bool) -> None:
        self.strict = strict
        self.found: list[CatalogueIssue] = []

    def add(self, source: str, message: str) -> None:
        if self.strict:
            raise CatalogueError(f"{source}: {message}")
        self.found.append(CatalogueIssue(source, message))


def read_catalogue(root: Path, stream_id: str, *, strict: bool = False) -> Catalogue:
    """Read the catalogue in `root` (layout detected from its files)."""
    root = Path(root).resolve()
    if not root.is_dir():
        raise CatalogueError(f"no catalogue folder {root}")
    issues = _Issues(strict)
    if (root / "catalogue.jsonl").is_file():
        layout, products = "jsonl", _read_jsonl(root, issues)
    elif (root / "image").is_dir():
        layout, products = "wab", _read_wab(root, issues)
    else:
        raise CatalogueError(f"no catalogue layout recognised in {root} (expected catalogue.jsonl or image/)")
    return Catalogue(stream_id, root, layout, tuple(products), tuple(issues.found))



def _image_size(path: Path) -> tuple[int, int]:
    """Width and height from the image header (no full decode); raises ValueError when unreadable."""
    try:
        with Image.open(path) as image:
            width, height = image.size
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise ValueError(f"unreadable image {path.name}: {exc}") from exc
    if width <= 0 or height <= 0:
        raise ValueError(f"image {path.name} has no pixels")
    return width, height


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check_box(raw: Any, width: int, height: int) -> Box:
    """A valid box clipped to the image; raises ValueError saying what is wrong."""
    if not isinstance(raw, (list, tuple)) or len(raw) != 4 or not all(_is_number(v) for v in raw):
        raise ValueError(f"malformed box {raw!r} (need 4 numbers)")
    x1, y1, x2, y2 = (float(v) for v in raw)
    if x2 <= x1 or y2 <= y1:
        raise ValueError(f"malformed box {list(raw)} (need x1 < x2 and y1 < y2)")
    tol = BOX_TOLERANCE_PX
    if x1 < -tol or y1 < -tol or x2 > width + tol or y2 > height + tol:
        raise ValueError(f"box {list(raw)} outside {width}x{height} image")
    box = clip_box((x1, y1, x2, y2), width, height)
    if box[2] <= box[0] or box[3] <= box[1]:
        raise ValueError(f"box {list(raw)} is empty inside {width}x{height} image")
    return box


def _checked_image(
    image_id: str, path: Path, raw_boxes: list[Any], source: str, issues: _Issues
) -> CatalogueImage | None:
    """The image with its usable boxes, or None (issues recorded) when it or all its boxes are bad."""
    try:
        width, height = _image_size(path)
    except ValueError as exc:
        issues.add(source, str(exc))
        return None
    boxes: list[Box] = []
    for raw in raw_boxes:
        try:
            boxes.append(_check_box(raw, width, height))
        except ValueError as exc:
            issues.add(source, str(exc))
    if raw_boxes and not boxes:
        issues.add(source, f"image {image_id!r} skipped: none of its boxes is usable")
        return None
    return CatalogueImage(image_id, path, tuple(boxes), width, height, source)



def _safe_relative(root: Path, rel: str) -> Path:
    """`root / rel`, refusing absolute paths and paths that leave `root`; raises ValueError."""
    if not rel or os.path.isabs(rel):
        raise ValueError(f"image path {rel!r} must be relative to the stream folder")
    normal = os.path.normpath(rel)
    if normal == ".." or normal.startswith(".." + os.sep):
        raise ValueError(f"image path {rel!r} escapes the stream folder")
    return root / normal


def _read_jsonl(root: Path, issues: _Issues) -> list[Product]:
    path = root / "catalogue.jsonl"
    products: list[Product] = []
    seen_products: set[str] = set()
    seen_images: set[str] = set()
    with path.open("r", encoding="utf-8", errors="replace") as lines:
        for line_no, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            source = f"{path}:{line_no}"
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                issues.add(source, f"invalid JSON: {exc}")
                continue
            product = _jsonl_product(record, root, source, seen_images, issues)
            if product is None:
                continue
            if product.product_id in seen_products:
                issues.add(source, f"duplicate product_id {product.product_id!r} (kept the first)")
                continue
            seen_products.add(product.product_id)
            seen_images.update(image.image_id for image in product.images)
            products.append(product)
    return products


def _jsonl_product(
    record: Any, root: Path, source: str, seen_images: set[str], issues: _Issues
) -> Product | None:
    if not isinstance(record, dict):
        issues.add(source, "line is not a JSON object")
        return None
    product_id, title, images = record.get("product_id"), record.get("title", ""), record.get("images")
    if not isinstance(product_id, str) or not product_id:
        issues.add(source, "missing or non-string product_id")
        return None
    if not isinstance(title, str):
        issues.add(source, f"product {product_id!r}: title must be a string")
        return None
    if not isinstance(images, list):
        issues.add(source, f"product {product_id!r}: missing or non-list images")
        return None
    usable: list[CatalogueImage] = []
    for image in filter(None, (_jsonl_image(entry, root, source, issues) for entry in images)):
        if image.image_id in seen_images or image.image_id in {u.image_id for u in usable}:
            issues.add(source, f"duplicate image_id {image.image_id!r} (kept the first)")
        else:
            usable.append(image)
    if not usable:
        issues.add(source, f"product {product_id!r} has no usable images")
        return None
    return Product(product_id, title, tuple(usable))


def _jsonl_image(entry: Any, root: Path, source: str, issues: _Issues) -> CatalogueImage | None:
    if not isinstance(entry, dict):
        issues.add(source, "image entry is not an object")
        return None
    image_id, rel, raw_boxes = entry.get("image_id"), entry.get("path"), entry.get("boxes", [])
    if not isinstance(image_id, str) or not image_id or not isinstance(rel, str):
        issues.add(source, "image entry needs string image_id and path")
        return None
    if not isinstance(raw_boxes, list):
        issues.add(source, f"image {image_id!r}: boxes must be a list")
        return None
    try:
        path = _safe_relative(root, rel)
    except ValueError as exc:
        issues.add(source, str(exc))
        return None
    if not path.is_file():
        issues.add(source, f"missing image file {rel}")
        return None
    return _checked_image(image_id, path, raw_boxes, source, issues)



def _stem_order(path: Path) -> tuple[int, int, str]:
    """Numeric stems in numeric order (2 before 10), then the rest by name."""
    return (0, int(path.stem), path.name) if path.stem.isdigit() else (1, 0, path.name)


def _read_wab(root: Path, issues: _Issues) -> list[Product]:
    products: list[Product] = []
    for item_dir in sorted((d for d in (root / "image").iterdir() if d.is_dir()), key=lambda d: d.name):
        item_id = item_dir.name
        image_files = sorted(
            (f for f in item_dir.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES),
            key=_stem_order,
        )
        images = [image for f in image_files if (image := _wab_image(root, item_id, f, issues))]
        if not images:
            issues.add(str(item_dir), f"product {item_id!r} has no usable images")
            continue
        products.append(Product(item_id, _wab_title(root, item_id), tuple(images)))
    return products


def _wab_title(root: Path, item_id: str) -> str:
    path = root / "image_text" / f"{item_id}.txt"
    if not path.is_file():
        return ""
    return path.read_text(encoding="utf-8", errors="replace").strip()


def _wab_image(root: Path, item_id: str, image_path: Path, issues: _Issues) -> CatalogueImage | None:
    image_id = f"{item_id}-{image_path.stem}"
    annotation_path = root / "image_annotation" / item_id / f"{image_path.stem}.json"
    if not annotation_path.is_file():
        return _checked_image(image_id, image_path, [], str(image_path), issues)
    try:
        annotations = _wab_annotations(annotation_path)
    except ValueError as exc:
        issues.add(str(annotation_path), str(exc))
        return None
    raw_boxes = [a.get("box") for a in annotations if a.get("instance_id") != 0]
    if annotations and not raw_boxes:
        return None  # every box matches nothing: the image shows no product of this item
    return _checked_image(image_id, image_path, raw_boxes, str(annotation_path), issues)


def _wab_annotations(path: Path) -> list[dict[str, Any]]:
    """The annotation list of one WAB image annotation file; raises ValueError when malformed."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"invalid JSON: {exc}") from exc
    annotations = document.get("annotations", []) if isinstance(document, dict) else None
    if not isinstance(annotations, list) or not all(isinstance(a, dict) for a in annotations):
        raise ValueError("annotations must be a list of objects")
    for annotation in annotations:
        if not isinstance(annotation.get("instance_id", 0), int):
            raise ValueError(f"non-integer instance_id {annotation.get('instance_id')!r}")  # noqa: TRY004 (bad data)
    return annotations
