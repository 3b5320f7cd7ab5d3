"""`python -m models fetch [--force]`: fill WATCHBUY_MODEL_DIR (what `make models` runs)."""

from __future__ import annotations

import argparse
import logging
import sys

from models.artifacts import ModelArtifactError
from models.fetch import fetch_models
from watchbuy.settings import get_settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m models")
    sub = parser.add_subparsers(dest="command", required=True)
    fetch = sub.add_parser("fetch", help="copy/download the detector and export the embedder")
    fetch.add_argument("--force", action="store_true", help="fetch again even if the files are fine")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

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


if __name__ == "__main__":
    sys.exit(main())
