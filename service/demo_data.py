"""What the demo page browses besides /identify: the indexed streams, and the files of a stream's catalogue
folder that may be served — the catalogue images its current index lists, the frames of its labelled clips.

The folder is the one the index manifest records (`catalogue.root`), else `catalogue_root/<stream_id>`.
Only files named by the catalogue or by `queries.jsonl` are served, each resolved (symlinks followed)
and required to stay inside that folder: a request names ids, never paths.
"""

from __future__ import annotations

import json
import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from indexer.catalogue import CatalogueError, read_catalogue
from indexer.queries import StreamSource, read_clips
from indexer.store import MANIFEST_FILE, IndexStore, StoreError, StreamIndex
from service.aggregate import AbstainThresholds
from service.errors import FileNotFoundInCatalogue
from service.schemas import ClipOut, StreamInfo

log = logging.getLogger(__name__)

MAX_CLIPS = 1000  # labelled clips listed per stream


@dataclass(frozen=True, slots=True)
class LabelledClip:
    clip_id: str
    product_id: str | None
    frames: tuple[Path, ...]


@dataclass(frozen=True, slots=True)
class StreamFiles:
    """The servable files of one index version's catalogue folder."""

    folder: Path
    images: dict[str, Path]
    clips: dict[str, LabelledClip]


def list_streams(store: IndexStore, thresholds: AbstainThresholds) -> list[StreamInfo]:
    """Every stream with a readable current version, from the manifests only (no index is loaded), with
    the abstain threshold its answers use."""
    streams = []
    for stream_id in store.streams():
        try:
            version = store.current_version(stream_id)
            if version is None:
                continue
            manifest = json.loads(
                (store.root / stream_id / version / MANIFEST_FILE).read_text(encoding="utf-8")
            )
            threshold = thresholds.for_stream(stream_id, manifest)
            streams.append(
                StreamInfo(
                    stream_id=stream_id,
                    index_version=version,
                    products=int(manifest["n_products"]),
                    vectors=int(manifest["n_vectors"]),
                    built_at=str(manifest.get("created_at", "")),
                    abstain_threshold=threshold.value,
                    abstain_threshold_source=threshold.source,
                )
            )
        except (StoreError, OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("stream %s left out of the list: %s", stream_id, exc)
    return streams


def catalogue_folder(index: StreamIndex, catalogue_root: Path | None) -> Path | None:
    """The folder the index was built from, else `catalogue_root/<stream_id>`, or None."""
    recorded = index.manifest.get("catalogue")
    if (
        isinstance(recorded, dict)
        and isinstance(recorded.get("root"), str)
        and Path(recorded["root"]).is_dir()
    ):
        return Path(recorded["root"]).resolve()
    if catalogue_root is not None and (catalogue_root / index.stream_id).is_dir():
        return (catalogue_root / index.stream_id).resolve()
    return None


def _inside(path: Path, folder: Path) -> Path | None:
    resolved = path.resolve()
    return resolved if resolved.is_relative_to(folder) and resolved.is_file() else None


def _read_images(index: StreamIndex, folder: Path) -> dict[str, Path]:
    indexed = {entry.image_id for entry in index.entries}
    try:
        catalogue = read_catalogue(folder, index.stream_id)
    except CatalogueError as exc:
        log.warning("catalogue of %s unreadable: %s", index.stream_id, exc)
        return {}
    images = {}
    for product in catalogue.products:
        for image in product.images:
            path = _inside(image.path, folder) if image.image_id in indexed else None
            if path is not None:
                images[image.image_id] = path
    return images


def _read_clips(stream_id: str, folder: Path) -> dict[str, LabelledClip]:
    if not (folder / "queries.jsonl").is_file():
        return {}
    clips: dict[str, LabelledClip] = {}
    for clip in read_clips(StreamSource(stream_id, folder, "jsonl"), limit=MAX_CLIPS, issues=[]):
        frames = [_inside(f.image, folder) if isinstance(f.image, Path) else None for f in clip.frames]
        if frames and all(frames):
            clips[clip.clip_id] = LabelledClip(clip.clip_id, clip.product_id, tuple(f for f in frames if f))
    return clips


class CatalogueFiles:
    """Per index version, the servable files (read once, a few versions kept, thread-safe)."""

    def __init__(self, catalogue_root: Path | None, max_versions: int = 8) -> None:
        self._catalogue_root = catalogue_root
        self._max_versions = max_versions
        self._cache: OrderedDict[tuple[str, str], StreamFiles] = OrderedDict()
        self._lock = threading.Lock()

    def files(self, index: StreamIndex) -> StreamFiles:
        key = (index.stream_id, index.version)
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        folder = catalogue_folder(index, self._catalogue_root)
        if folder is None:
            raise FileNotFoundInCatalogue(
                f"the catalogue folder of stream {index.stream_id!r} is not available here"
            )
        found = StreamFiles(folder, _read_images(index, folder), _read_clips(index.stream_id, folder))
        with self._lock:
            self._cache[key] = found
            while len(self._cache) > self._max_versions:
                self._cache.popitem(last=False)
        return found

    def image(self, index: StreamIndex, image_id: str) -> Path:
        path = self.files(index).images.get(image_id)
        if path is None:
            raise FileNotFoundInCatalogue(f"stream {index.stream_id!r} has no indexed image {image_id!r}")
        return path

    def clips(self, index: StreamIndex) -> list[ClipOut]:
        """The labelled clips; none when the stream has no queries.jsonl or its folder is not here."""
        try:
            found = self.files(index).clips.values()
        except FileNotFoundInCatalogue:
            return []
        return [ClipOut(clip_id=c.clip_id, product_id=c.product_id, frames=len(c.frames)) for c in found]

    def clip_frame(self, index: StreamIndex, clip_id: str, position: int) -> Path:
        clip = self.files(index).clips.get(clip_id)
        if clip is None or not 0 <= position < len(clip.frames):
            raise FileNotFoundInCatalogue(
                f"stream {index.stream_id!r} has no clip {clip_id!r} with frame {position}"
            )
        return clip.frames[position]
