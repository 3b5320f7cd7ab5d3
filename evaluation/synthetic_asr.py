"""Write a copy of a streams-layout dataset whose clips carry simulated host speech (asr_text).

No clip in ../shared/data has ASR text, so text fusion cannot be tuned on real speech here. This
makes a clearly-labelled stand-in: for each clip the "host" says the product's name without its
brand (the first sentence of its title minus the first word, e.g. "Medium Fat Milk"), and with
probability --wrong the name of another product of the stream (speech about something else).
Images are symlinked, not copied. Evaluate the copy with `watchbuy eval OUT`.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path


def spoken_name(title: str) -> str:
    words = title.split(".")[0].split()
    return " ".join(words[1:]) if len(words) > 1 else " ".join(words)


def write_stream(source: Path, target: Path, wrong: float, rng: random.Random) -> int:
    target.mkdir(parents=True, exist_ok=True)
    products = [json.loads(line) for line in (source / "catalogue.jsonl").read_text().splitlines() if line.strip()]
    names = {p["product_id"]: spoken_name(p["title"]) for p in products if p["title"].strip()}
    (target / "catalogue.jsonl").write_text((source / "catalogue.jsonl").read_text())
    for folder in ("images", "frames"):
        if (source / folder).exists() and not (target / folder).exists():
            (target / folder).symlink_to((source / folder).resolve())
    lines = []
    for line in (source / "queries.jsonl").read_text().splitlines():
        clip = json.loads(line)
        truth = clip["product_id"]
        said = truth if rng.random() >= wrong else rng.choice(sorted(names))
        clip["asr_text"] = names.get(said) or None
        lines.append(json.dumps(clip, ensure_ascii=False))
    (target / "queries.jsonl").write_text("\n".join(lines) + "\n")
    return len(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("dataset", type=Path, help="a dataset folder with streams/<stream>/")
    parser.add_argument("out", type=Path, help="where the copy goes")
    parser.add_argument("--wrong", type=float, default=0.2, help="share of clips whose speech names another product")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    for stream in sorted((args.dataset / "streams").iterdir()):
        n = write_stream(stream, args.out / "streams" / stream.name, args.wrong, rng)
        print(f"{stream.name}: {n} clips")
    return 0

