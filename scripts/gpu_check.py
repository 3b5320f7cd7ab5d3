"""`make gpu-check`: the TensorRT path end to end on real frames, checked against ONNX Runtime on the CPU.

On a machine with an NVIDIA GPU and `pip install '.[gpu]'`:
1. builds (or reuses) the FP16 engines of both models (`make engines` does the same);
2. opens the models twice, through the service's own start-up: native TensorRT, and ONNX Runtime
   restricted to the CPU provider (the reference);
3. runs real frames of viton-dev-00 through both and compares: detector scores (max |Δ| over the raw
   output), detections (each CPU detection matched by a TensorRT one of the same class at IoU ≥ 0.9),
   embeddings of the same crops (cosine), and the top-1 product of the whole pipeline against an index
   built here — FP16 tolerances below;
4. prints latency (p50 ms) and throughput next to the CPU path: detector, embedder at batch 1/8/32,
   and the pipeline per frame; when faiss has a GPU, checks GPU search against the CPU index too;
5. writes everything to var/gpu-check/report.json.

Exit status: 0 all checks pass, 1 a check failed, 2 this machine cannot run TensorRT (no NVIDIA GPU, or
the GPU extra is not installed) — then nothing ran and nothing is claimed.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from anyio.from_thread import BlockingPortal, start_blocking_portal

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.data import DEFAULT_STREAM_DIR, labelled_frames
from benchmarks.report import machine_info, percentile
from indexer.build import build_stream
from indexer.catalogue import read_catalogue
from indexer.store import IndexStore
from models.detector import letterbox
from models.embedder import crop
from models.proposals import propose
from models.sessions.trt import probe
from models.types import box_iou
from service.decode import decode_image, decode_images
from service.faiss_device import gpu_count, to_device
from service.identify import identify
from service.metrics import Metrics
from service.state import ServiceState, serving
from service.values import EncodedFrame, Identification, IdentifyQuery
from watchbuy.settings import Settings

STREAM = "gpu-check"
#: FP16 against FP32 tolerances.
MAX_SCORE_DIFF = 0.05
DETECTION_IOU = 0.9
MIN_DETECTIONS_MATCHED = 0.95
MIN_COSINE = 0.98
MIN_MEAN_COSINE = 0.995
MIN_TOP1_AGREEMENT = 0.9


def timed(fn: Callable[[], Any], repeats: int) -> dict[str, float]:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        fn()
        times.append((time.perf_counter() - began) * 1000)
    return {"p50_ms": percentile(times, 50) or 0.0, "p95_ms": percentile(times, 95) or 0.0}


def open_backends(root: Path, model_dir: Path, portal: BlockingPortal,
                  stack: contextlib.ExitStack) -> dict[str, ServiceState]:
    """Both services started the way the app starts (`serving`), on `portal`'s event loop, closed by `stack`."""
    common = {"model_dir": model_dir, "index_root": root / "indexes", "batching": False}
    settings = {
        "tensorrt": Settings(inference_backend="tensorrt", **common),
        "cpu": Settings(inference_backend="onnxruntime", execution_providers=["CPUExecutionProvider"], **common),
    }
    states = {name: stack.enter_context(portal.wrap_async_context_manager(serving(s, Metrics())))
              for name, s in settings.items()}
    for loaded in states["tensorrt"].models.loaded:
        if loaded.session.backend != "tensorrt":
            raise SystemExit(f"error: the {loaded.record.role} fell back to {loaded.session.provider}: "
                             f"{loaded.session.reason}")
    return states


def compare_detector(states: dict[str, ServiceState], images: list[np.ndarray]) -> dict[str, Any]:
    trt_det, cpu_det = states["tensorrt"].models.detector, states["cpu"].models.detector
    max_diff, matched, total = 0.0, 0, 0
    for image in images:
        tensor, _ = letterbox(image)
        raw_trt = trt_det.session.run({trt_det.session.input_name: tensor})[0][0]
        raw_cpu = cpu_det.session.run({cpu_det.session.input_name: tensor})[0][0]
        scores_trt = raw_trt[:, 4:5] * raw_trt[:, 5:]
        scores_cpu = raw_cpu[:, 4:5] * raw_cpu[:, 5:]
        max_diff = max(max_diff, float(np.max(np.abs(scores_trt - scores_cpu))))
        found = trt_det.detect(image)
        for want in cpu_det.detect(image):
            total += 1
            matched += any(d.label == want.label and box_iou(d.box, want.box) >= DETECTION_IOU for d in found)
    share = matched / total if total else 1.0
    return {"frames": len(images), "max_score_diff": round(max_diff, 5), "cpu_detections": total,
            "matched_share": round(share, 4),
            "ok": max_diff <= MAX_SCORE_DIFF and share >= MIN_DETECTIONS_MATCHED}


def frame_crops(states: dict[str, ServiceState], images: list[np.ndarray]) -> list[np.ndarray]:
    cpu = states["cpu"]
    crops = []
    for image in images:
        h, w = image.shape[:2]
        for proposal in propose(cpu.models.detector.detect(image), w, h, cpu.pipeline.config.proposals):
            crops.append(crop(image, proposal.box))
    return crops


def compare_embedder(states: dict[str, ServiceState], crops: list[np.ndarray]) -> dict[str, Any]:
    a = states["tensorrt"].models.embedder.embed(crops)
    b = states["cpu"].models.embedder.embed(crops)
    cosine = np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    return {"crops": len(crops), "min_cosine": round(float(cosine.min()), 5),
            "mean_cosine": round(float(cosine.mean()), 5),
            "ok": float(cosine.min()) >= MIN_COSINE and float(cosine.mean()) >= MIN_MEAN_COSINE}


def identify_frame(portal: BlockingPortal, state: ServiceState, data: bytes, top_k: int) -> Identification:
    """One frame through the routes' request path (`service.identify.identify`), no HTTP."""
    decode = functools.partial(decode_images, [EncodedFrame(0, data)], state.settings.max_image_pixels)
    result, _ = portal.call(identify, state, IdentifyQuery(STREAM, top_k), decode, 1)
    return result


def compare_pipeline(states: dict[str, ServiceState], frames: list[bytes], portal: BlockingPortal) -> dict[str, Any]:
    agree = 0
    for data in frames:
        tops = []
        for name in ("tensorrt", "cpu"):
            result = identify_frame(portal, states[name], data, top_k=1)
            tops.append(result.products[0].product_id if result.products else None)
        agree += tops[0] == tops[1]
    share = agree / len(frames)
    return {"frames": len(frames), "top1_agreement": round(share, 4), "ok": share >= MIN_TOP1_AGREEMENT}


def compare_faiss(index, queries: np.ndarray) -> dict[str, Any]:
    if gpu_count() == 0:
        return {"skipped": "faiss has no GPU here (faiss-cpu, or no GPU visible)", "ok": True}
    on_gpu = to_device(index)
    k = min(10, index.index.ntotal)
    sims_cpu, rows_cpu = index.index.search(queries, k)
    sims_gpu, rows_gpu = on_gpu.index.search(queries, k)
    top1 = float(np.mean(rows_cpu[:, 0] == rows_gpu[:, 0]))
    diff = float(np.max(np.abs(sims_cpu - sims_gpu)))
    return {"on_gpu": on_gpu.index is not index.index, "top1_same": round(top1, 4),
            "max_similarity_diff": round(diff, 6),
            "ok": top1 >= 0.99 and diff <= 1e-3}


def speed(states: dict[str, ServiceState], images: list[np.ndarray], crops: list[np.ndarray], frames: list[bytes],
          portal: BlockingPortal, repeats: int) -> list[dict[str, Any]]:
    rows = []
    for name, state in states.items():
        det, emb = state.models.detector, state.models.embedder
        row: dict[str, Any] = {"backend": name, "provider": det.session.provider}
        row["detector_ms"] = timed(lambda det=det: det.detect(images[0]), repeats)["p50_ms"]
        for batch in (1, 8, 32):
            batch_crops = [crops[i % len(crops)] for i in range(batch)]
            ms = timed(lambda emb=emb, batch_crops=batch_crops: emb.embed(batch_crops), repeats)["p50_ms"]
            row[f"embed_b{batch}_ms"] = ms
            row[f"embed_b{batch}_crops_per_s"] = round(batch * 1000 / ms, 1) if ms else None
        counter = iter(range(10**9))

        def one_frame(state: ServiceState = state, counter: Any = counter) -> None:
            identify_frame(portal, state, frames[next(counter) % len(frames)], top_k=5)

        per_frame = timed(one_frame, repeats)
        row["pipeline_frame_p50_ms"] = per_frame["p50_ms"]
        row["pipeline_frames_per_s"] = round(1000 / per_frame["p50_ms"], 1) if per_frame["p50_ms"] else None
        rows.append(row)
    return rows


def print_table(rows: list[dict[str, Any]]) -> None:
    keys = [k for k in rows[0] if k not in ("backend", "provider")]
    print(f"{'':28s}" + "".join(f"{r['backend']:>14s}" for r in rows) + "     speed-up")
    for key in keys:
        values = [r[key] for r in rows]
        ratio = ""
        if all(isinstance(v, (int, float)) and v for v in values):
            better = values[1] / values[0] if key.endswith("_ms") else values[0] / values[1]
            ratio = f"{better:10.1f}×"
        print(f"{key:28s}" + "".join(f"{v:>14}" for v in values) + f"   {ratio}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stream-dir", type=Path, default=DEFAULT_STREAM_DIR)
    parser.add_argument("--frames", type=int, default=32, help="real frames compared")
    parser.add_argument("--repeats", type=int, default=50, help="timed runs per latency figure")
    parser.add_argument("--out", type=Path, default=Path("var/gpu-check"))
    args = parser.parse_args(argv)

    found = probe()
    if not found.available:
        print(found.refusal("run `make gpu-check`"), file=sys.stderr)
        return 2
    settings = Settings()
    paths = [path for path, _ in labelled_frames(args.stream_dir, args.frames)]
    frames = [p.read_bytes() for p in paths]
    images = [decode_image(data, settings.max_image_pixels) for data in frames]
    root = Path(tempfile.mkdtemp(prefix="watchbuy-gpu-check-"))
    try:
        with contextlib.ExitStack() as stack:
            portal = stack.enter_context(start_blocking_portal())
            began = time.perf_counter()
            states = open_backends(root, settings.model_dir, portal, stack)
            took = time.perf_counter() - began
            print(f"models open on {found.reason} and on the CPU ({took:.0f} s incl. engine builds)")
            store = IndexStore(root / "indexes")
            build_stream(read_catalogue(args.stream_dir, STREAM), states["cpu"].models, store, show_progress=False)
            index = store.load(STREAM)
            crops = frame_crops(states, images)
            checks = {
                "detector": compare_detector(states, images),
                "embedder": compare_embedder(states, crops),
                "pipeline": compare_pipeline(states, frames, portal),
                "faiss_gpu": compare_faiss(index, states["cpu"].models.embedder.embed(crops[:64])),
            }
            rows = speed(states, images, crops, frames, portal, args.repeats)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    for name, result in checks.items():
        details = json.dumps({k: v for k, v in result.items() if k != "ok"})
        print(f"{'PASS' if result['ok'] else 'FAIL'} {name}: {details}")
    print_table(rows)
    args.out.mkdir(parents=True, exist_ok=True)
    report = {"machine": machine_info(), "gpu": found.gpu_name, "tensorrt": found.trt_version, "checks": checks,
              "speed": rows, "tolerances": {"max_score_diff": MAX_SCORE_DIFF, "detection_iou": DETECTION_IOU,
                                            "min_detections_matched": MIN_DETECTIONS_MATCHED, "min_cosine": MIN_COSINE,
                                            "min_mean_cosine": MIN_MEAN_COSINE,
                                            "min_top1_agreement": MIN_TOP1_AGREEMENT}}
    (args.out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"report: {args.out / 'report.json'}")
    return 0 if all(result["ok"] for result in checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
