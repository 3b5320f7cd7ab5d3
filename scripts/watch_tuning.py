"""Score a watcher's segments against a made-up stream's truth, and choose the segmenter's settings.

`score`: the segments `make watch` printed (JSON lines) against VIDEO.truth.json (scripts/stream_videos.py):
seconds wrong (time whose product, or no product, differs from the truth), seconds given to a product not
on screen, products found, boundary errors.

`tune`: replays the per-frame answers that `watchbuy watch --observations` recorded through the segmenter
for every setting of a grid, and picks by the rule fixed before the runs (docs/WATCHING.md): the fewest
seconds wrong over all tuning videos; within 1 s of the fewest, the largest window, then the largest gap
(steadier segments), then the smallest tie. Both votes are scored (single-frame winners, and pooled top-5
scores, which needs observations recorded with `ranked`; the tie applies to the pooled vote only).

`replay`: the recorded per-frame answers through one setting (the defaults unless given), scored as `score`
scores: what a `make watch` under that setting prints, without decoding the video again.

    python scripts/watch_tuning.py tune var/watch/tune/*-?.obs.jsonl
    python scripts/watch_tuning.py score var/watch/heldout/viton-dev-00.segments.jsonl
    python scripts/watch_tuning.py replay --window 4 --share 0.5 --tie 0 var/watch/heldout3/*.obs.jsonl
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from service.watch.segments import Observation, Segment, SegmentConfig, Segmenter  # noqa: E402

STEP = 0.05
WINDOWS = (1.0, 1.5, 2.0, 3.0, 4.0)
SHARES = (0.34, 0.5, 0.67)
GAPS = (1.0, 2.0, 3.0, 5.0)
POOLED = (False, True)
TIES = (0.0, 0.01, 0.02, 0.03, 0.05)  # pooled vote only
FPS = 4.0


def label_at(spans: list[dict[str, Any]], t: float) -> str | None:
    for span in spans:
        if span["start_s"] <= t < span["end_s"]:
            return str(span["product_id"]) if span["product_id"] is not None else None
    return None


def score(segments: list[dict[str, Any]], truth: list[dict[str, Any]]) -> dict[str, Any]:
    duration = max(span["end_s"] for span in truth)
    wrong = false = 0.0
    for n in range(round(duration / STEP)):
        t = (n + 0.5) * STEP
        said, shown = label_at(segments, t), label_at(truth, t)
        wrong += STEP if said != shown else 0.0
        false += STEP if said is not None and said != shown else 0.0
    shown_products = [s for s in truth if s["product_id"] is not None]
    found, starts, ends = 0, [], []
    for span in shown_products:
        mine = [s for s in segments if s["product_id"] == span["product_id"]
                and s["start_s"] < span["end_s"] and s["end_s"] > span["start_s"]]
        if mine:
            found += 1
            starts.append(abs(min(s["start_s"] for s in mine) - span["start_s"]))
            ends.append(abs(max(s["end_s"] for s in mine) - span["end_s"]))
    return {
        "seconds": round(duration, 2), "wrong_s": round(wrong, 2), "false_s": round(false, 2),
        "found": f"{found}/{len(shown_products)}", "segments": len(segments),
        "start_err_s": round(max(starts), 2) if starts else None, "end_err_s": round(max(ends), 2) if ends else None,
    }


def replay(observations: list[Observation], config: SegmentConfig) -> list[dict[str, Any]]:
    segmenter = Segmenter(config, 1.0 / FPS)
    done: list[Segment] = []
    for obs in observations:
        ended = segmenter.feed(obs).ended
        if ended is not None:
            done.append(ended)
    last = segmenter.finish()
    if last is not None:
        done.append(last)
    return [{"product_id": s.product_id, "start_s": s.start_s, "end_s": s.end_s} for s in done]


def observation(fields: dict[str, Any]) -> Observation:
    ranked = tuple((str(p), float(s)) for p, s in fields.pop("ranked", []))
    return Observation(**fields, ranked=ranked)


def read_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def truth_of(path: Path) -> list[dict[str, Any]]:
    video = path.name.split(".")[0]
    loaded: list[dict[str, Any]] = json.loads((path.parent / f"{video}.truth.json").read_text())
    return loaded


def tune(paths: list[Path]) -> int:
    videos = [([observation(o) for o in read_lines(p)], truth_of(p)) for p in paths]
    rows = []
    grid = [(pooled, *rest) for pooled in POOLED for rest in itertools.product(
        WINDOWS, SHARES, GAPS, TIES if pooled else (0.0,))]
    for pooled, window, share, gap, tie in grid:
        config = SegmentConfig(window, share, gap, pooled, tie)
        scores = [score(replay(obs, config), truth) for obs, truth in videos]
        rows.append({
            "pooled": pooled, "window_s": window, "min_share": share, "gap_s": gap, "tie": tie,
            "wrong_s": round(sum(s["wrong_s"] for s in scores), 2),
            "false_s": round(sum(s["false_s"] for s in scores), 2),
            "per_video": [s["wrong_s"] for s in scores],
        })
    for pooled in POOLED:
        mine = [r for r in rows if r["pooled"] == pooled]
        best = min(r["wrong_s"] for r in mine)
        near = [r for r in mine if r["wrong_s"] <= best + 1.0]
        chosen = max(near, key=lambda r: (r["window_s"], r["gap_s"], -r["tie"]))
        for row in sorted(mine, key=lambda r: r["wrong_s"])[:8]:
            print(json.dumps(row))
        print("chosen:", json.dumps(chosen))
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("mode", choices=["tune", "score", "replay"])
    parser.add_argument("files", nargs="+", type=Path, help="tune, replay: *.obs.jsonl; score: *.segments.jsonl")
    defaults = SegmentConfig()
    parser.add_argument("--window", type=float, default=defaults.window_s)
    parser.add_argument("--share", type=float, default=defaults.min_share)
    parser.add_argument("--gap", type=float, default=defaults.gap_s)
    parser.add_argument("--tie", type=float, default=defaults.tie)
    parser.add_argument("--single", action="store_true", help="the single-frame vote instead of the pooled one")
    args = parser.parse_args()
    if args.mode == "tune":
        return tune(args.files)
    if args.mode == "replay":
        config = SegmentConfig(args.window, args.share, args.gap, not args.single, args.tie)
        for path in args.files:
            observations = [observation(o) for o in read_lines(path)]
            print(path.name, json.dumps(score(replay(observations, config), truth_of(path))))
        return 0
    for path in args.files:
        print(path.name, json.dumps(score(read_lines(path), truth_of(path))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
