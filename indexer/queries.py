"""Labelled evaluation clips of a dataset, in the streams layout or the original Watch and Buy (WAB) layout.

Streams layout: `<dataset>/streams/<stream>/{catalogue.jsonl, queries.jsonl, frames/...}` (or one such
stream folder). WAB layout: `image/`, `image_annotation/`, `image_text/` (the catalogue, read by
`indexer.catalogue`), `video/<id>.mp4` read at the frame indices of `video_annotation/<id>.json`, and
`video_text/<id>.txt` as the ASR text. In WAB a clip's product is the item with the clip's video id, and a
frame box shows that product when its non-zero `instance_id` is one of the item's image instance ids.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from indexer.catalogue import _stem_order
from indexer.video import VideoError, read_jpeg_frames
from models.types import Box

VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".webm", ".avi")


@dataclass(frozen=True, slots=True)
class GroundTruthBox:
    """A labelled box in a clip frame; `product_id` None = a product that is not in the catalogue."""

    box: Box
    product_id: str | None


@dataclass(frozen=True, slots=True)
class ClipFrame:
    """One frame of a clip: its index, the encoded image (bytes, or a file to read), its labelled boxes."""

    frame_index: int
    image: bytes | Path
    boxes: tuple[GroundTruthBox, ...]

    def image_bytes(self) -> bytes:
        return self.image if isinstance(self.image, bytes) else Path(self.image).read_bytes()


@dataclass(frozen=True, slots=True)
class Clip:
    """A labelled clip; `product_id` None = it shows nothing from the stream's catalogue."""

    clip_id: str
    product_id: str | None
    asr_text: str | None
    frames: tuple[ClipFrame, ...]


@dataclass(frozen=True, slots=True)
class StreamSource:
    """One stream of a dataset: its id, its folder (catalogue and clips) and the clip layout."""

    stream_id: str
    root: Path
    layout: str  # "jsonl" | "wab"


class DatasetError(Exception):
    """No stream with a catalogue and labelled clips was found."""


def stream_id_for(name: str) -> str:
    """A folder name turned into a valid stream id ([A-Za-z0-9._-]{1,128})."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip(".-") or "stream"
    return cleaned[:128]


def _source(folder: Path) -> StreamSource | None:
    has_catalogue = (folder / "catalogue.jsonl").is_file() or (folder / "image").is_dir()
    if not has_catalogue:
        return None
    if (folder / "queries.jsonl").is_file():
        return StreamSource(stream_id_for(folder.name), folder, "jsonl")
    if (folder / "video").is_dir():
        return StreamSource(stream_id_for(folder.name), folder, "wab")
    return None


def find_streams(dataset: Path, only: set[str] | None = None) -> list[StreamSource]:
    """The dataset's streams (`<dataset>/streams/*`, or the dataset folder itself), sorted by id."""
    dataset = Path(dataset).resolve()
    if not dataset.is_dir():
        raise DatasetError(f"no dataset folder {dataset}")
    streams_dir = dataset / "streams"
    if streams_dir.is_dir():
        found = [s for d in sorted(streams_dir.iterdir()) if d.is_dir() and (s := _source(d))]
    else:
        found = [s for s in (_source(dataset),) if s]
    if not found:
        raise DatasetError(
            f"no stream in {dataset}: expected streams/<stream>/{{catalogue.jsonl,queries.jsonl}}, a stream "
            "folder, or a Watch and Buy folder (image/, video/)"
        )
    if only is not None:
        unknown = sorted(only - {s.stream_id for s in found})
        if unknown:
            raise DatasetError(f"streams not in {dataset}: {', '.join(unknown)}")
        found = [s for s in found if s.stream_id in only]
    return sorted(found, key=lambda s: s.stream_id)


def read_clips(source: StreamSource, limit: int | None = None, issues: list[str] | None = None) -> Iterator[Clip]:
    """The stream's first `limit` clips (all when None); broken entries are skipped and noted in `issues`."""
    noted = issues if issues is not None else []
    reader = _jsonl_clips if source.layout == "jsonl" else _wab_clips
    for count, clip in enumerate(reader(source.root, noted)):
        if limit is not None and count >= limit:
            return
        yield clip


def count_clips(source: StreamSource) -> int:
    """How many clips the stream lists (before any is checked)."""
    if source.layout == "jsonl":
        with (source.root / "queries.jsonl").open(encoding="utf-8", errors="replace") as lines:
            return sum(1 for line in lines if line.strip())
    return len(_video_files(source.root))



def _safe_path(root: Path, rel: Any) -> Path:
    if not isinstance(rel, str) or not rel or os.path.isabs(rel):
        raise ValueError(f"frame path {rel!r} must be relative to the stream folder")
    normal = os.path.normpath(rel)
    if normal == ".." or normal.startswith(".." + os.sep):
        raise ValueError(f"frame path {rel!r} escapes the stream folder")
    return root / normal


def _box(raw: Any) -> Box:
    if not isinstance(raw, (list, tuple)) or len(raw) != 4:
        raise ValueError(f"malformed box {raw!r}")
    x1, y1, x2, y2 = (float(v) for v in raw)
    if not (x2 > x1 and y2 > y1):
        raise ValueError(f"empty box {list(raw)}")
    return (x1, y1, x2, y2)


def _jsonl_clips(root: Path, issues: list[str]) -> Iterator[Clip]:
    path = root / "queries.jsonl"
    with path.open(encoding="utf-8", errors="replace") as lines:
        for line_no, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            source = f"{path}:{line_no}"
            try:
                clip = _jsonl_clip(json.loads(line), root)
            except (json.JSONDecodeError, ValueError, TypeError, KeyError) as exc:
                issues.append(f"{source}: {exc}")
                continue
            if not clip.frames:
                issues.append(f"{source}: clip {clip.clip_id!r} has no readable frame")
                continue
            yield clip


def _jsonl_clip(record: Any, root: Path) -> Clip:
    if not isinstance(record, dict):
        raise ValueError("line is not a JSON object")  # noqa: TRY004 (bad data)
    clip_id, product_id, asr_text = record["clip_id"], record.get("product_id"), record.get("asr_text")
    if not isinstance(clip_id, str) or not clip_id:
        raise ValueError("missing clip_id")
    if product_id is not None and not isinstance(product_id, str):
        raise ValueError(f"clip {clip_id!r}: product_id must be a string or null")
    frames = []
    for position, entry in enumerate(record["frames"]):
        frame_path = _safe_path(root, entry["path"])
        if not frame_path.is_file():
            raise ValueError(f"clip {clip_id!r}: missing frame file {entry['path']}")
        boxes = tuple(GroundTruthBox(_box(b["box"]), b.get("product_id")) for b in entry.get("boxes", []))
        frames.append(ClipFrame(int(entry.get("frame_index", position)), frame_path, boxes))
    return Clip(clip_id, product_id, asr_text if isinstance(asr_text, str) and asr_text.strip() else None,
                tuple(frames))



def _video_files(root: Path) -> list[Path]:
    video_dir = root / "video"
    files = [f for f in video_dir.iterdir() if f.is_file() and f.suffix.lower() in VIDEO_SUFFIXES]
    return sorted(files, key=_stem_order)


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def _item_instance_ids(root: Path, item_id: str) -> set[int]:
    """Non-zero instance ids of an item's image annotations (empty when there are none)."""
    folder = root / "image_annotation" / item_id
    ids: set[int] = set()
    if not folder.is_dir():
        return ids
    for path in folder.glob("*.json"):
        try:
            annotations = _read_json(path).get("annotations", [])
            ids.update(int(a["instance_id"]) for a in annotations if int(a.get("instance_id", 0)) != 0)
        except (OSError, ValueError, TypeError, KeyError, AttributeError):
            continue
    return ids


def _wab_clips(root: Path, issues: list[str]) -> Iterator[Clip]:
    for video in _video_files(root):
        video_id = video.stem
        annotation_path = root / "video_annotation" / f"{video_id}.json"
        try:
            clip = _wab_clip(root, video, annotation_path)
        except (OSError, ValueError, TypeError, KeyError, AttributeError, VideoError) as exc:
            issues.append(f"{annotation_path if not isinstance(exc, VideoError) else video}: {exc}")
            continue
        yield clip


def _wab_clip(root: Path, video: Path, annotation_path: Path) -> Clip:
    video_id = video.stem
    document = _read_json(annotation_path)
    annotated = document["frames"]
    if not isinstance(annotated, list) or not annotated:
        raise ValueError("no annotated frames")
    in_catalogue = (root / "image" / video_id).is_dir()
    product_id = video_id if in_catalogue else None
    item_ids = _item_instance_ids(root, video_id) if in_catalogue else set()

    def owner(annotation: dict[str, Any]) -> str | None:
        instance = int(annotation.get("instance_id", 0))
        if product_id is None or instance == 0 or (item_ids and instance not in item_ids):
            return None
        return product_id

    labelled = {
        int(entry["frame_index"]): tuple(
            GroundTruthBox(_box(a["box"]), owner(a)) for a in entry.get("annotations", [])
        )
        for entry in annotated
    }
    images = read_jpeg_frames(video, labelled)
    frames = tuple(ClipFrame(index, images[index], labelled[index]) for index in sorted(labelled))
    text_path = root / "video_text" / f"{video_id}.txt"
    asr = text_path.read_text(encoding="utf-8", errors="replace").strip() if text_path.is_file() else ""
    return Clip(video_id, product_id, asr or None, frames)


def clip_products(source: StreamSource, limit: int | None = None) -> list[str]:
    """The true products of the stream's first `limit` listed clips, cheaply (no frame is decoded);
    used to choose held-out products before the clips are read."""
    products: list[str] = []
    if source.layout == "jsonl":
        with (source.root / "queries.jsonl").open(encoding="utf-8", errors="replace") as lines:
            listed = 0
            for line in lines:
                if not line.strip():
                    continue
                if limit is not None and listed >= limit:
                    break
                listed += 1
                try:
                    product = json.loads(line).get("product_id")
                except (json.JSONDecodeError, AttributeError):
                    continue
                if isinstance(product, str):
                    products.append(product)
        return products
    videos = _video_files(source.root)[:limit] if limit is not None else _video_files(source.root)
    return [v.stem for v in videos if (source.root / "image" / v.stem).is_dir()]
