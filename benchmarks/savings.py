"""What each CPU saving buys, in one run: the service as it was before them (fp32, every crop embedded, every
proposal kind), with crops reused, as shipped (reuse and the proposal budget), with int8 models, and as shipped
with int8 models.

Every variant is a real uvicorn server (batching on, the default) on the benchmark stream's index, given its
settings as environment. Per variant: closed-loop clients send one-frame POST /identify requests for a fixed
time at each concurrency (frames/s, p50/p99, crops embedded per frame, top-1 of those answers against the
frames' labels), then each video is sent to POST /identify/video once, one at a time, and its real-time
factor is taken: seconds of video per second of wall time. The videos: the shared studio clips and a 15-s
1280×720 clip made of them.
"""

from __future__ import annotations

import asyncio
import time
from itertools import count
from pathlib import Path
from typing import Any

import av
import httpx
import numpy as np

from benchmarks.data import BENCH_STREAM, PROJECT_DIR, Workspace
from benchmarks.report import BenchReport, Plot, percentile
from benchmarks.service_http import STARTUP_DEADLINE_S, STOP_TIMEOUT_S, UVICORN_ARGS, server_environment
from indexer.video import encode_video
from watchbuy.server_process import ServerProcess

NAME = "savings"
CLIPS_DIR = PROJECT_DIR.parent / "shared" / "data" / "clips"
WARMUP_SECONDS = 3.0
REQUEST_TIMEOUT_S = 120.0
#: The proposals of main before the budget (issue 21): person, parts, whole frame, centred 45 % and 70 %.
ALL_PROPOSALS = {
    "WATCHBUY_PROPOSE_CENTER_CROPS": "[0.45, 0.7]",
    "WATCHBUY_PROPOSE_FULL_FRAME": "true",
    "WATCHBUY_PROPOSE_PERSON": "true",
    "WATCHBUY_PROPOSE_PARTS": "true",
}
#: name → server environment; "fp32" is the baseline every ratio is taken against.
INT8 = {"WATCHBUY_INT8_MODELS": '["detector", "embedder"]'}
VARIANTS: dict[str, dict[str, str]] = {
    "fp32": {"WATCHBUY_INT8_MODELS": "[]", "WATCHBUY_REUSE_CROPS": "false", **ALL_PROPOSALS},
    "fp32+reuse": {"WATCHBUY_INT8_MODELS": "[]", **ALL_PROPOSALS},
    "shipped": {},
    "int8": {**INT8, "WATCHBUY_REUSE_CROPS": "false", **ALL_PROPOSALS},
    "shipped+int8": INT8,
}
LONG_VIDEO = ("long-720p.mp4", 15.0, (1280, 720))
VIDEO_FPS = 24
COLUMNS = ("variant", "kind", "frames_per_s", "p50_ms", "p99_ms", "top1", "crops_embedded_per_frame",
           "crops_reused_per_frame", "video_s", "frames_sampled", "wall_s", "realtime_factor", "errors")
#: Top-1 is compared on one pass over every benchmark frame (the same frames for each variant).
TOP1_CONCURRENCY = 8


def letterbox(scene: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """`scene` scaled into `size` (width, height), even-sized, centred on black."""
    width, height = size
    scale = min(width / scene.shape[1], height / scene.shape[0])
    shown = (
        av.VideoFrame.from_ndarray(scene, format="rgb24")
        .reformat(width=int(scene.shape[1] * scale) // 2 * 2, height=int(scene.shape[0] * scale) // 2 * 2)
        .to_ndarray(format="rgb24")
    )
    canvas = np.zeros((height, width, 3), dtype=np.uint8)
    top, left = (height - shown.shape[0]) // 2, (width - shown.shape[1]) // 2
    canvas[top : top + shown.shape[0], left : left + shown.shape[1]] = shown
    return canvas


def long_video(clips: list[Path], seconds: float, size: tuple[int, int]) -> bytes:
    """The clips back to back, letterboxed to `size`, looped to `seconds`, as H.264 in MP4."""
    scenes: list[np.ndarray] = []
    for path in clips:
        with av.open(str(path)) as container:
            scenes += [letterbox(frame.to_ndarray(format="rgb24"), size) for frame in container.decode(video=0)]
    return encode_video((scenes[n % len(scenes)] for n in range(int(seconds * VIDEO_FPS))), VIDEO_FPS)


def videos(ws: Workspace, quick: bool) -> dict[str, bytes]:
    """The shared clips and the long 720p clip made of them (quick: the long clip only, 3 s)."""
    clips = sorted(CLIPS_DIR.glob("*.mp4"))
    if not clips:
        return {}
    name, seconds, size = LONG_VIDEO
    made = {name: long_video(clips, 3.0 if quick else seconds, size)}
    return made if quick else {**{p.name: p.read_bytes() for p in clips}, **made}


async def _frames_load(ws: Workspace, base: str, concurrency: int, seconds: float | None) -> dict[str, Any]:
    """`concurrency` clients sending one-frame requests back to back for `seconds`; None: every frame once."""
    latencies: list[float] = []
    answered = right = labelled = embedded = reused = errors = 0
    counter = count()
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=REQUEST_TIMEOUT_S) as http:
        deadline = time.perf_counter() + (seconds if seconds is not None else REQUEST_TIMEOUT_S * len(ws.frames))

        async def client() -> None:
            nonlocal answered, right, labelled, embedded, reused, errors
            while time.perf_counter() < deadline:
                i = next(counter)
                if seconds is None and i >= len(ws.frames):
                    return
                i %= len(ws.frames)
                began = time.perf_counter()
                response = await http.post(
                    "/identify",
                    data={"stream_id": BENCH_STREAM, "top_k": "5"},
                    files=[("frames", ("frame.jpg", ws.frames[i], "image/jpeg"))],
                )
                if response.status_code != 200:
                    errors += 1
                    continue
                latencies.append((time.perf_counter() - began) * 1000)
                answer = response.json()
                answered += 1
                embedded += answer["crops"]["embedded"]
                reused += answer["crops"]["reused"]
                if ws.labels[i] is not None:
                    labelled += 1
                    right += bool(answer["products"]) and answer["products"][0]["product_id"] == ws.labels[i]

        started = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return {
        "kind": f"frames c={concurrency}" if seconds is not None else f"every frame once c={concurrency}",
        "concurrency": concurrency,
        "frames_per_s": round(answered / elapsed, 3) if elapsed > 0 else None,
        "p50_ms": percentile(latencies, 50),
        "p99_ms": percentile(latencies, 99),
        "crops_embedded_per_frame": round(embedded / answered, 2) if answered else None,
        "crops_reused_per_frame": round(reused / answered, 2) if answered else None,
        "top1": round(right / labelled, 3) if labelled else None,
        "requests": answered + errors,
        "errors": errors,
    }


def _video_row(base: str, name: str, data: bytes) -> dict[str, Any]:
    began = time.perf_counter()
    response = httpx.post(
        f"{base}/identify/video",
        data={"stream_id": BENCH_STREAM, "top_k": "5"},
        files={"video": (name, data, "video/mp4")},
        timeout=REQUEST_TIMEOUT_S,
    )
    wall = time.perf_counter() - began
    if response.status_code != 200:
        return {"kind": f"video {name}", "errors": 1, "status": response.status_code}
    answer = response.json()
    duration, frames = answer["video"]["duration_s"], len(answer["frames"])
    return {
        "kind": f"video {name}",
        "video_s": round(duration, 2),
        "frames_sampled": frames,
        "wall_s": round(wall, 2),
        "realtime_factor": round(duration / wall, 2) if wall > 0 else None,
        "crops_embedded_per_frame": round(answer["crops"]["embedded"] / frames, 2) if frames else None,
        "crops_reused_per_frame": round(answer["crops"]["reused"] / frames, 2) if frames else None,
        "errors": 0,
    }


def run(ws: Workspace, out_root: Path, seconds: float = 15.0, quick: bool = False) -> BenchReport:
    """Every variant (quick: fp32 and shipped only, at concurrency 1 and 8, and a 3-s video)."""
    variants = ("fp32", "shipped") if quick else tuple(VARIANTS)
    concurrency = (1, 8) if quick else (1, 8, 16)
    ws.index  # noqa: B018 - the benchmark stream's index exists before the servers start
    clips = videos(ws, quick)
    log_path = out_root / NAME / "server.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log_path.write_bytes(b"")
    rows: list[dict[str, Any]] = []
    for variant in variants:
        env = server_environment(ws, batching=True, extra_env=VARIANTS[variant])
        with ServerProcess(
            log_path, env=env, cwd=PROJECT_DIR, uvicorn_args=UVICORN_ARGS, stop_timeout_s=STOP_TIMEOUT_S
        ) as server:
            server.wait_ready(STARTUP_DEADLINE_S)
            asyncio.run(_frames_load(ws, server.base_url, 4, WARMUP_SECONDS))
            levels: list[tuple[int, float | None]] = [(c, seconds) for c in concurrency] + [(TOP1_CONCURRENCY, None)]
            for c, level_seconds in levels:
                rows.append({"variant": variant, **asyncio.run(_frames_load(ws, server.base_url, c, level_seconds))})
                print(
                    f"  savings {variant} {rows[-1]['kind']}: {rows[-1]['frames_per_s']} frames/s, "
                    f"top-1 {rows[-1]['top1']}",
                    flush=True,
                )
            for name, data in clips.items():
                rows.append({"variant": variant, **_video_row(server.base_url, name, data)})
                print(f"  savings {variant} {name}: real-time factor {rows[-1].get('realtime_factor')}", flush=True)
    rows = [{**dict.fromkeys(COLUMNS), **row} for row in rows]  # frame rows have no video columns and back
    return BenchReport(
        name=NAME,
        title="What each CPU saving buys (uvicorn servers, one-frame requests and videos)",
        columns=list(COLUMNS),
        rows=rows,
        params={
            "seconds_per_level": seconds,
            "concurrency": list(concurrency),
            "variants": {v: VARIANTS[v] for v in variants},
            "videos": {k: len(v) for k, v in clips.items()},
            "frames_available": len(ws.frames),
        },
        summary=summarise(rows),
        notes=[
            "fp32 is main's configuration before issue 21 (fp32 e3, six proposals a frame, no reuse).",
            "Client and servers share the machine's cores; one server runs at a time.",
            "top1: first product = the frame's labelled product, over the labelled frames answered; variants are "
            "compared on the `every frame once` rows, the same frames for each.",
            "realtime_factor: seconds of video ÷ seconds from sending the video to the answer (one request).",
        ],
        plots=[Plot(x="concurrency", y="frames_per_s", series="variant", title="frames/s")],
    )


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Speed-ups and top-1 changes against fp32 at concurrency 8 (the issue's bar), and the long video's
    real-time factors."""

    def find(variant: str, kind: str) -> dict[str, Any] | None:
        return next((r for r in rows if r["variant"] == variant and r["kind"] == kind), None)

    summary: dict[str, Any] = {}
    timed, once = "frames c=8", f"every frame once c={TOP1_CONCURRENCY}"
    base, base_once = find("fp32", timed), find("fp32", once)
    for variant in dict.fromkeys(r["variant"] for r in rows):
        row, row_once = find(variant, timed), find(variant, once)
        if base and row and base["frames_per_s"] and row["frames_per_s"]:
            summary[f"{variant}_c8_speedup"] = round(row["frames_per_s"] / base["frames_per_s"], 2)
        if base_once and row_once and base_once["top1"] is not None and row_once["top1"] is not None:
            summary[f"{variant}_top1_change"] = round(row_once["top1"] - base_once["top1"], 3)
        video = find(variant, f"video {LONG_VIDEO[0]}")
        if video and video.get("realtime_factor") is not None:
            summary[f"{variant}_long_video_realtime_factor"] = video["realtime_factor"]
            summary[f"{variant}_long_video_wall_s"] = video["wall_s"]
    return summary
