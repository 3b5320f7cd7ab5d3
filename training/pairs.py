"""Training pairs from the `*-train` sets: (shop crop, worn/held photo crop, product label).

Only datasets whose names end in `-train` are accepted: the `-dev` sets are for evaluation.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from models.types import Box


@dataclass(frozen=True, slots=True)
class View:
    path: Path
    box: Box | None  # None: the whole image
    synthetic: bool = False  # a synthetic live view of this catalogue image (models/synthetic.py), made per step


@dataclass(frozen=True, slots=True)
class Pair:
    label: int
    shop: View
    photo: View


def _first_box(boxes: list) -> Box | None:
    if not boxes:
        return None
    raw = boxes[0]["box"] if isinstance(boxes[0], dict) else boxes[0]
    return tuple(float(v) for v in raw)  # type: ignore[return-value]


def read_pairs(dataset_dirs: list[Path], synthetic: bool = False) -> list[Pair]:
    """Every labelled clip frame paired with its product's first shop image; labels are dense ints.

    With `synthetic`, also one pair per catalogue product (with clips or not): its shop image and a
    synthetic live view of that image, rendered at each training step.
    """
    labels: dict[str, int] = {}
    pairs: list[Pair] = []
    for dataset in dataset_dirs:
        if not dataset.name.endswith("-train"):
            raise ValueError(f"{dataset}: training reads only *-train datasets")
        for stream in sorted((dataset / "streams").iterdir()):
            shops: dict[str, View] = {}
            for line in (stream / "catalogue.jsonl").read_text().splitlines():
                product = json.loads(line)
                image = product["images"][0]
                shops[product["product_id"]] = View(stream / image["path"], _first_box(image["boxes"]))
                if synthetic:
                    shop = shops[product["product_id"]]
                    label = labels.setdefault(product["product_id"], len(labels))
                    pairs.append(Pair(label, shop, View(shop.path, shop.box, synthetic=True)))
            for line in (stream / "queries.jsonl").read_text().splitlines():
                clip = json.loads(line)
                pid = clip["product_id"]
                if pid is None or pid not in shops:
                    continue
                label = labels.setdefault(pid, len(labels))
                for frame in clip["frames"]:
                    photo = View(stream / frame["path"], _first_box(frame["boxes"]))
                    pairs.append(Pair(label, shops[pid], photo))
    return pairs
