"""`watchbuy build-index --stream ID [--catalogue DIR] [--factory F] [--search-params P] [--strict]`: the indexer job.

It lives beside the service because a build calibrates the new index with the service's own pipeline
(service/calibration.py) before the version is published; the build itself is `indexer.build`.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from rich.console import Console
from rich.table import Table

from indexer.announce import AnnounceError, announce_version
from indexer.build import BuildError, IndexRecipe, build_stream
from indexer.catalogue import CatalogueError, read_catalogue
from indexer.store import IndexStore
from models.artifacts import ModelArtifactError
from models.loader import load_configured_models
from service.calibration import CatalogueCalibrator
from watchbuy.settings import Settings, get_settings

console = Console(stderr=True)


def _catalogue_dir(args: argparse.Namespace, settings: Settings) -> Path:
    if args.catalogue:
        return Path(str(args.catalogue))
    if settings.catalogue_root is None:
        raise CatalogueError("no --catalogue given and WATCHBUY_CATALOGUE_ROOT is not set")
    return settings.catalogue_root / str(args.stream)


def build(args: argparse.Namespace) -> int:
    settings = get_settings()
    store = IndexStore(settings.index_root, keep_versions=settings.index_keep_versions)
    try:
        catalogue = read_catalogue(_catalogue_dir(args, settings), args.stream, strict=args.strict)
        models = load_configured_models(settings)
        recipe = IndexRecipe.from_settings(settings, factory=args.factory, search_params=args.search_params)
        calibrate = CatalogueCalibrator.from_settings(models, settings)
        summary, issues = build_stream(catalogue, models, store, recipe, strict=args.strict, calibrate=calibrate)
    except (CatalogueError, BuildError, ModelArtifactError, ValueError) as exc:
        console.print(f"[red]build failed:[/red] {exc}")
        return 1
    for issue in issues:
        console.print(f"[yellow]skipped[/yellow] {issue.source}: {issue.message}")
    table = Table(title=f"index {summary.stream_id} {summary.version}", show_header=False)
    for name, value in (
        ("products", summary.products),
        ("images", summary.images),
        ("vectors", summary.vectors),
        ("skipped entries", summary.skipped),
        ("seconds", f"{summary.seconds:.1f}"),
        ("images/s", f"{summary.images_per_second:.1f}"),
        ("abstain threshold", "not calibrated" if summary.threshold is None else f"{summary.threshold:.3f}"),
        ("published to", str(store.root / summary.stream_id / summary.version)),
    ):
        table.add_row(name, str(value))
    console.print(table)
    if settings.redis_url:
        try:
            receivers = announce_version(
                settings.redis_url, settings.registry_channel, summary.stream_id, summary.version
            )
            console.print(f"announced on {settings.registry_channel} ({receivers} replica(s) listening)")
        except AnnounceError as exc:  # published all the same: replicas still poll CURRENT
            console.print(f"[yellow]warning:[/yellow] published but not announced in Redis ({exc}); "
                          "replicas pick it up from CURRENT (WATCHBUY_RELOAD_CHECK_SECONDS)")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="watchbuy build-index",
                                     description="embed a stream's catalogue and publish a new index version")
    parser.add_argument("--stream", required=True, help="stream id ([A-Za-z0-9._-]{1,128})")
    parser.add_argument("--catalogue", help="catalogue folder (default: $WATCHBUY_CATALOGUE_ROOT/<stream>)")
    parser.add_argument("--factory", help="FAISS index factory string (default: WATCHBUY_INDEX_FACTORY)")
    parser.add_argument("--search-params", help="FAISS search parameters saved in the index, e.g. nprobe=16 "
                        "(default: WATCHBUY_INDEX_SEARCH_PARAMS)")
    parser.add_argument("--strict", action="store_true", help="fail on the first broken catalogue entry")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    return build(args)
