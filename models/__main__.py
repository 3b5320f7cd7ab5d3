"""`python -m models fetch [--force]`: fill WATCHBUY_MODEL_DIR (what `make models` runs).

`python -m models ensemble NAME MEMBER=WEIGHT ...`: record an ensemble of trained weights in
models/weights/manifest.json (models/trained.py), to be exported by `fetch` like any trained entry.
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys

from models.artifacts import ModelArtifactError
from models.fetch import fetch_models
from watchbuy.settings import get_settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m models")
    sub = parser.add_subparsers(dest="command", required=True)
    fetch = sub.add_parser("fetch", help="copy/download the detector and export the embedder")
    fetch.add_argument("--force", action="store_true", help="fetch again even if the files are fine")
    ensemble = sub.add_parser("ensemble", help="record an ensemble of trained weights in the weights manifest")
    ensemble.add_argument("name")
    ensemble.add_argument("members", nargs="+", metavar="MEMBER=WEIGHT", type=_member)
    ensemble.add_argument("--note", default="", help="why this ensemble (kept in the manifest)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.command == "ensemble":
        return _ensemble(args.name, args.members, args.note, argv)

    settings = get_settings()
    try:
        records = fetch_models(
            settings.model_dir, settings.model_mirror, force=args.force, embedder_weights=settings.embedder_weights
        )
    except (ModelArtifactError, OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for record in records.values():
        print(f"{record.role:9s} {record.name:28s} {record.bytes:>10,d} B  sha256 {record.sha256[:16]}…  {record.file}")
    print(f"models ready in {settings.model_dir}")
    return 0


def _member(text: str) -> tuple[str, float]:
    name, sep, weight = text.rpartition("=")
    try:
        value = float(weight)
    except ValueError:
        value = -1.0
    if not sep or not name or not value > 0:
        raise argparse.ArgumentTypeError(f"expected MEMBER=WEIGHT with a positive weight, got {text!r}")
    return name, value


def _ensemble(name: str, members: list[tuple[str, float]], note: str, argv: list[str] | None) -> int:
    from models.trained import save_ensemble

    command = "python -m models " + shlex.join(argv if argv is not None else sys.argv[1:])
    try:
        entry = save_ensemble(name, members, {"command": command, "note": note} if note else {"command": command})
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"{name}: {len(entry['members'])} members, {entry['config']['dim']}-d vectors")
    return 0


if __name__ == "__main__":
    sys.exit(main())
