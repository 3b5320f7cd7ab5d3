"""A made-up live stream: real product clips of one stream back to back, with the host between them.

Each product of the stream (chosen with `--seed`) is on screen for `--seconds`: its clip photos in turn (a
grocery product has several), letterboxed into a 720×960 portrait frame, slowly zooming and panning like
a hand-held camera. Between products, and before the first, `--between` seconds of the real studio clips
of ../shared/data/clips (people in outfits that are in no catalogue): time when no product of the
catalogue is on screen. Writes VIDEO.mp4 and VIDEO.truth.json: `[{"product_id": str | null, "start_s",
"end_s"}]`, which `scripts/watch_tuning.py` scores a watcher's segments against.

    python scripts/stream_videos.py ../shared/data/viton-train/streams/viton-train-00 var/watch/viton-train-00.mp4
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from indexer.video import encode_video  # noqa: E402

SIZE = (720, 960)  # width, height: a portrait live stream
FPS = 12


def fit(image: Image.Image, zoom: float = 1.0, shift: tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
    """The image letterboxed into SIZE on dark grey, zoomed in by `zoom` around a shifted centre."""
    canvas = Image.new("RGB", SIZE, (24, 24, 24))
    scaled = image.convert("RGB")
    scaled.thumbnail(SIZE)
    canvas.paste(scaled, ((SIZE[0] - scaled.width) // 2, (SIZE[1] - scaled.height) // 2))
    if zoom > 1.0:
        w, h = SIZE[0] / zoom, SIZE[1] / zoom
        cx = SIZE[0] / 2 + shift[0] * (SIZE[0] - w) / 2
        cy = SIZE[1] / 2 + shift[1] * (SIZE[1] - h) / 2
        canvas = canvas.resize(SIZE, box=(cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2))
    return np.asarray(canvas)


def studio_frames(clips_dir: Path) -> list[np.ndarray]:
    frames = []
    for path in sorted(clips_dir.glob("*.mp4")):
        with av.open(str(path)) as container:
            for n, frame in enumerate(container.decode(video=0)):
                if n % 2 == 0:
                    frames.append(fit(frame.to_image()))
    return frames


def product_photos(stream: Path) -> dict[str, list[Path]]:
    photos: dict[str, list[Path]] = {}
    for line in (stream / "queries.jsonl").read_text().splitlines():
        clip = json.loads(line)
        if clip["product_id"] is not None:
            photos.setdefault(clip["product_id"], []).append(stream / clip["frames"][0]["path"])
    return photos


def shown(photos: list[Path], seconds: float, rng: random.Random) -> Iterator[np.ndarray]:
    """`seconds` of the product: each photo for an equal share, zooming and panning slowly."""
    frames = round(seconds * FPS)
    per_photo = max(1, frames // len(photos))
    for n in range(frames):
        if n % per_photo == 0:
            with Image.open(photos[min(n // per_photo, len(photos) - 1)]) as image:
                photo = image.convert("RGB")
            target = (rng.uniform(-1, 1), rng.uniform(-1, 1))
        progress = (n % per_photo) / per_photo
        yield fit(photo, 1.0 + 0.25 * progress, (target[0] * progress, target[1] * progress))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("stream", type=Path, help="a stream folder with queries.jsonl (its labelled clips)")
    parser.add_argument("out", type=Path, help="the video to write (.mp4); the truth goes beside it")
    parser.add_argument("--products", type=int, default=6)
    parser.add_argument("--seconds", type=float, default=12.0, help="seconds each product is on screen")
    parser.add_argument("--between", type=float, default=5.0, help="seconds of studio clips between products")
    parser.add_argument("--photos", type=int, default=3, help="photos of a product shown, at most")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--clips-dir", type=Path, default=Path("../shared/data/clips"))
    args = parser.parse_args()
    rng = random.Random(args.seed)
    photos = product_photos(args.stream)
    chosen = rng.sample(sorted(photos), args.products)
    studio = studio_frames(args.clips_dir)
    truth: list[dict[str, object]] = []
    frames: list[np.ndarray] = []

    def add(product: str | None, new: list[np.ndarray]) -> None:
        start = len(frames) / FPS
        frames.extend(new)
        truth.append({"product_id": product, "start_s": round(start, 3), "end_s": round(len(frames) / FPS, 3)})

    offset = 0
    for product in chosen:
        count = round(args.between * FPS)
        add(None, [studio[(offset + i) % len(studio)] for i in range(count)])
        offset += count
        mine = rng.sample(photos[product], min(args.photos, len(photos[product])))
        add(product, list(shown(mine, args.seconds, rng)))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(encode_video(frames, FPS))
    args.out.with_suffix(".truth.json").write_text(json.dumps(truth, indent=1) + "\n")
    print(f"{args.out}: {len(frames) / FPS:.1f} s, {len(chosen)} products", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
