"""Index build: images/s of the indexer's `build_stream` against the bare embedder's throughput.

The build (read and decode each catalogue image, crop its boxes, embed EMBED_BATCH crops per call,
build the FAISS index, publish atomically) is timed end to end on a real catalogue. The same crops are
then embedded alone, in the same batch size, for the embedder's ceiling: the ratio says how much of the
build is the model.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from PIL import Image

from benchmarks.data import Workspace
from benchmarks.report import BenchReport, Plot
from indexer.build import EMBED_BATCH, catalogue_boxes
from models.embedder import crop

NAME = "build"


def _crops(ws: Workspace, limit: int) -> list[np.ndarray]:
    found: list[np.ndarray] = []
    for product in ws.catalogue().products:
        for image in product.images:
            with Image.open(image.path) as handle:
                pixels = np.asarray(handle.convert("RGB"))
            found += [crop(pixels, box) for box in catalogue_boxes(image, pixels, ws.models)]
            if len(found) >= limit:
                return found[:limit]
    return found


def _embedder_rate(ws: Workspace, crops: list[np.ndarray], batch: int, seconds: float) -> dict[str, Any]:
    embedder = ws.models.embedder

    def batch_at(call: int) -> list[np.ndarray]:  # full batches even from a few crops (wrapping around)
        return [crops[(call * batch + i) % len(crops)] for i in range(batch)]

    embedder.embed(batch_at(0))  # warm-up (a new input shape)
    done, calls = 0, 0
    began = time.perf_counter()
    while True:
        embedder.embed(batch_at(calls))
        done += batch
        calls += 1
        elapsed = time.perf_counter() - began
        if elapsed >= seconds and calls >= 2:
            break
    return {"batch": batch, "crops": done, "seconds": round(elapsed, 2), "crops_per_s": round(done / elapsed, 2),
            "ms_per_call": round(elapsed * 1000 / calls, 2)}


def run(ws: Workspace, seconds: float = 10.0) -> BenchReport:
    ws.models  # noqa: B018 - load the models before the clock starts (the indexer CLI loads them first too)
    summary = ws.build_index()
    vectors_per_image = summary.vectors / summary.images if summary.images else 0.0
    crops = _crops(ws, 256)
    rows: list[dict[str, Any]] = [{
        "what": "indexer build_stream", "batch": EMBED_BATCH, "images": summary.images, "vectors": summary.vectors,
        "seconds": round(summary.seconds, 2), "images_per_s": round(summary.images_per_second, 2),
        "vectors_per_s": round(summary.vectors / summary.seconds, 2) if summary.seconds else None,
        "ms_per_call": None,
    }]
    for batch in sorted({1, EMBED_BATCH}):
        rate = _embedder_rate(ws, crops, batch, seconds / 2)
        rows.append({
            "what": f"bare embedder, batch {batch}", "batch": batch, "images": None, "vectors": rate["crops"],
            "seconds": rate["seconds"], "vectors_per_s": rate["crops_per_s"], "ms_per_call": rate["ms_per_call"],
            "images_per_s": round(rate["crops_per_s"] / vectors_per_image, 2) if vectors_per_image else None,
        })
    bare = next(r for r in rows if r["what"] == f"bare embedder, batch {EMBED_BATCH}")
    build_vps = rows[0]["vectors_per_s"]
    return BenchReport(
        name=NAME,
        title="Index build against the bare embedder",
        columns=["what", "batch", "images", "vectors", "seconds", "images_per_s", "vectors_per_s", "ms_per_call"],
        rows=rows,
        params={"stream_dir": str(ws.stream_dir), "products": summary.products, "embed_batch": EMBED_BATCH,
                "embedder_seconds": seconds, "factory": "Flat"},
        summary={
            "build_images_per_s": rows[0]["images_per_s"],
            "embedder_images_per_s": bare["images_per_s"],
            "build_vs_embedder": (round(build_vps / bare["vectors_per_s"], 3)
                                  if build_vps and bare["vectors_per_s"] else None),
            "vectors_per_image": round(vectors_per_image, 2),
        },
        notes=["images/s of the bare embedder = its crops/s ÷ the catalogue's vectors per image.",
               ("build_vs_embedder = build vectors/s ÷ bare embedder crops/s at the build's batch size "
               "(1.0 = the build costs only the model).")],
        plots=[Plot(x="batch", y="vectors_per_s", series="what", logx=True, title="vectors (crops) per second")],
    )
