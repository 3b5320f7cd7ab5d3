"""15-second videos in which the product is seen for 2 seconds, through the /identify/video path.

For the first `--clips` labelled clips of each dataset, a 720×960 H.264 video is made from a real studio
clip of `../shared/data/clips` (people in outfits, none of them in these catalogues), looped for 15 s, with
the clip's photo shown from 6.5 to 8.5 s. Each video goes through what `POST /identify/video` runs after
parsing (`sample_video` → `service.identify.identify` on a started service, batchers included) once per
value of the `--vary` setting, and the answers are compared: right product first, abstained, the evidence
frames inside the 2 seconds, seconds of video per second of wall time, crops embedded and reused, and
whether the top-5 is the one of the first value.

    python scripts/padded_videos.py ../shared/data/grocery-dev ../shared/data/dior-dev --clips 12
    python scripts/padded_videos.py ../shared/data/grocery-dev ../shared/data/dior-dev --vary reuse_crops=false,true
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import tempfile
import time
from pathlib import Path

import av
import numpy as np
from anyio.from_thread import start_blocking_portal
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from indexer.build import build_stream  # noqa: E402
from indexer.catalogue import read_catalogue  # noqa: E402
from indexer.store import IndexStore  # noqa: E402
from indexer.video import encode_video  # noqa: E402
from service.identify import identify  # noqa: E402
from service.metrics import Metrics  # noqa: E402
from service.state import serving  # noqa: E402
from service.values import IdentifyQuery  # noqa: E402
from service.video import sample_video  # noqa: E402
from service.video_routes import video_limits  # noqa: E402
from watchbuy.settings import get_settings  # noqa: E402

SIZE = (720, 960)  # width, height: a portrait live stream
FPS = 12
SECONDS = 15.0
SHOWN = (6.5, 8.5)  # when the product is on screen


def fit(image: Image.Image) -> np.ndarray:
    """The image letterboxed into SIZE on black."""
    canvas = Image.new("RGB", SIZE)
    scaled = image.convert("RGB")
    scaled.thumbnail(SIZE)
    canvas.paste(scaled, ((SIZE[0] - scaled.width) // 2, (SIZE[1] - scaled.height) // 2))
    return np.asarray(canvas)


def scene_frames(clips_dir: Path) -> list[np.ndarray]:
    frames = []
    for path in sorted(clips_dir.glob("*.mp4")):
        with av.open(str(path)) as container:
            frames += [fit(Image.fromarray(frame.to_ndarray(format="rgb24"))) for frame in container.decode(video=0)]
    return frames


def padded_video(photo: Path, scenes: list[np.ndarray]) -> bytes:
    with Image.open(photo) as image:
        product = fit(image)
    frames = (product if SHOWN[0] <= n / FPS < SHOWN[1] else scenes[(n * 2) % len(scenes)]
              for n in range(int(SECONDS * FPS)))
    return encode_video(frames, FPS)


def labelled_clips(dataset: Path, limit: int) -> list[tuple[Path, str, Path]]:
    """(stream folder, product, photo) of `limit` clips spread over the dataset whose product is in their
    catalogue."""
    found = []
    for stream in sorted((dataset / "streams").iterdir()):
        for line in (stream / "queries.jsonl").read_text().splitlines():
            clip = json.loads(line)
            if clip["product_id"] is not None:
                found.append((stream, clip["product_id"], stream / clip["frames"][0]["path"]))
    step = max(1, len(found) // limit)
    return found[::step][:limit]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("datasets", nargs="+", type=Path)
    parser.add_argument("--clips", type=int, default=12, help="videos per dataset")
    parser.add_argument("--vary", default="frame_pool=0,3",
                        help="SETTING=V1,V2,...: a setting (its field name) and the values to compare")
    parser.add_argument("--out", type=Path, default=Path("var/eval/padded-videos.json"))
    args = parser.parse_args()
    settings = get_settings()
    scenes = scene_frames(Path("../shared/data/clips"))
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="watchbuy-padded-") as root, start_blocking_portal() as portal:
        store = IndexStore(Path(root))
        videos = [(dataset.name, stream, product, padded_video(photo, scenes))
                  for dataset in args.datasets for stream, product, photo in labelled_clips(dataset, args.clips)]
        name, _, values = args.vary.partition("=")
        first_top5: dict[int, list[str]] = {}
        for value in values.split(","):
            pooled = settings.model_validate({**settings.model_dump(), name: value, "index_root": Path(root)})
            with portal.wrap_async_context_manager(serving(pooled, Metrics())) as state:
                for n, (dataset_name, stream_dir, product, data) in enumerate(videos):
                    stream = stream_dir.name
                    if store.current_version(stream) is None:
                        build_stream(read_catalogue(stream_dir, stream), state.models, store, show_progress=False)
                    sample = functools.partial(sample_video, data, video_limits(pooled))
                    started = time.perf_counter()
                    result, video = portal.call(identify, state, IdentifyQuery(stream, 5), sample, 1)
                    wall = time.perf_counter() - started
                    shown = {f.frame_index for f, t in zip(video.frames, video.times_s, strict=True)
                             if SHOWN[0] <= t < SHOWN[1]}
                    best = result.products[0] if result.products else None
                    top5 = [p.product_id for p in result.products]
                    first_top5.setdefault(n, top5)
                    rows.append({"dataset": dataset_name, name: value, "stream": stream, "product": product,
                                 "top1": best is not None and best.product_id == product, "abstain": result.abstain,
                                 "score": best.score if best else None, "frames": len(video.frames),
                                 "frames_showing": len(shown),
                                 "evidence_in_shown": bool(best and best.frames and set(best.frames) <= shown),
                                 "realtime_factor": video.duration_s / wall, "crops_embedded": result.crops.embedded,
                                 "crops_reused": result.crops.reused, "same_top5": top5 == first_top5[n]})
                    print(json.dumps(rows[-1]), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=1))
    print(f"| dataset | {name} | videos | right product first | abstained | evidence frames inside the 2 s | "
          "video s per wall s | crops embedded / reused per frame | top-5 as with the first value |")
    print("|---|---|---|---|---|---|---|---|---|")
    for key in sorted({(r["dataset"], r[name]) for r in rows}):
        group = [r for r in rows if (r["dataset"], r[name]) == key]
        share = {k: np.mean([r[k] for r in group]) for k in ("top1", "abstain", "evidence_in_shown", "same_top5")}
        frames = sum(r["frames"] for r in group)
        embedded, reused = (sum(r[k] for r in group) / frames for k in ("crops_embedded", "crops_reused"))
        crops = f"{embedded:.2f} / {reused:.2f}"
        print(f"| {key[0]} | {key[1]} | {len(group)} | {share['top1']:.2f} | {share['abstain']:.0%} | "
              f"{share['evidence_in_shown']:.0%} | {np.median([r['realtime_factor'] for r in group]):.2f} | {crops} | "
              f"{share['same_top5']:.0%} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
