"""Versioned, atomic, checksummed per-stream index store.

Layout: `<root>/<stream_id>/<version>/{index.faiss, metadata.json, manifest.json[, text.npy][, hubness.npy]}`
and `<root>/<stream_id>/CURRENT` naming the published version. JSON and plain .npy only, never pickle.
`text.npy` (optional) holds the sentence embeddings of the product titles, rows in `metadata.json`'s
`text.products` order; `hubness.npy` (optional) one float per index row (models/cohort.py).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import secrets
import shutil
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeGuard

import faiss
import numpy as np

from models.types import Box

log = logging.getLogger(__name__)

STREAM_ID_PATTERN = r"^[A-Za-z0-9._-]{1,128}$"
#: UTC time to the microsecond plus a random suffix: names sort by creation time and never collide.
VERSION_PATTERN = r"^\d{8}T\d{6}\.\d{6}Z-[0-9a-f]{6}$"
INDEX_FILE, METADATA_FILE, MANIFEST_FILE, TEXT_FILE = "index.faiss", "metadata.json", "manifest.json", "text.npy"
HUBNESS_FILE = "hubness.npy"
CURRENT_FILE, TMP_PREFIX, STALE_TMP_SECONDS = "CURRENT", ".tmp-", 3600.0
CHECKED_FILES = (INDEX_FILE, METADATA_FILE)
RESERVED_MANIFEST_KEYS = frozenset(
    {"stream_id", "version", "created_at", "n_vectors", "n_products", "dim", "index_type", "files"}
)


@dataclass(frozen=True, slots=True)
class VectorEntry:
    """What one index row is: a box of one catalogue image of one product."""

    product_id: str
    image_id: str
    box: Box


@dataclass(frozen=True, slots=True, eq=False)
class TitleVectors:
    """Sentence embeddings of product titles (L2-normalised rows; products without a title have none)."""

    product_ids: tuple[str, ...]
    vectors: np.ndarray
    encoder: str


@dataclass(frozen=True, slots=True, eq=False)
class StreamIndex:
    """One loaded, verified index version; row i of `index` is `entries[i]` (with hubness `hubness[i]`)."""

    stream_id: str
    version: str
    index: faiss.Index
    entries: tuple[VectorEntry, ...]
    titles: dict[str, str]
    manifest: dict[str, Any]
    text: TitleVectors | None = None
    hubness: np.ndarray | None = None  # float32 [n_vectors]; None when built without a cohort

    @property
    def n_vectors(self) -> int:
        return len(self.entries)

    @property
    def n_products(self) -> int:
        return len(self.titles)

    @property
    def built_at(self) -> str:
        return str(self.manifest.get("created_at", ""))


class StoreError(Exception):
    """Base of the store's errors."""


class StreamNotFound(StoreError):
    """No published index for this stream (or no such version)."""


class IndexCorrupt(StoreError):
    """A stored version (or CURRENT) fails verification."""


def is_stream_id(name: object) -> TypeGuard[str]:
    """True for a safe stream folder name (STREAM_ID_PATTERN, and not "." or "..")."""
    return isinstance(name, str) and re.match(STREAM_ID_PATTERN, name) is not None and name not in {".", ".."}


def is_version(name: object) -> TypeGuard[str]:
    return isinstance(name, str) and re.match(VERSION_PATTERN, name) is not None


def new_version_name() -> str:
    now = datetime.now(UTC)
    return f"{now:%Y%m%dT%H%M%S}.{now.microsecond:06d}Z-{secrets.token_hex(3)}"


class IndexStore:
    """Publishes and loads per-stream index versions under `root`."""

    def __init__(self, root: Path, keep_versions: int = 3) -> None:
        if keep_versions < 1:
            raise ValueError("keep_versions must be at least 1")
        self.root = Path(root)
        self.keep_versions = keep_versions

    def streams(self) -> list[str]:
        """Streams that have a published version, sorted."""
        if not self.root.is_dir():
            return []
        names = (d.name for d in self.root.iterdir() if (d / CURRENT_FILE).is_file())
        return sorted(name for name in names if is_stream_id(name))

    def versions(self, stream_id: str) -> list[str]:
        """Published versions of a stream, oldest first."""
        stream_dir = self._stream_dir(stream_id)
        if not stream_dir.is_dir():
            return []
        return sorted(d.name for d in stream_dir.iterdir() if d.is_dir() and is_version(d.name))

    def current_version(self, stream_id: str) -> str | None:
        """The version CURRENT names; None when there is no CURRENT; IndexCorrupt when it is garbled."""
        path = self._stream_dir(stream_id) / CURRENT_FILE
        try:
            text = path.read_text(encoding="ascii").strip()
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as exc:
            raise IndexCorrupt(f"{path}: unreadable: {exc}") from exc
        if not is_version(text):
            raise IndexCorrupt(f"{path}: does not name a version ({text[:80]!r})")
        return text

    def load(self, stream_id: str, version: str | None = None) -> StreamIndex:
        """Load and verify a version (None = the one CURRENT names)."""
        stream_dir = self._stream_dir(stream_id)
        version = version if version is not None else self.current_version(stream_id)
        if version is None:
            raise StreamNotFound(f"no published index for stream {stream_id!r}")
        if not is_version(version):
            raise ValueError(f"invalid index version {version!r}")
        version_dir = stream_dir / version
        if not version_dir.is_dir():
            raise StreamNotFound(f"stream {stream_id!r} has no version {version!r}")
        manifest = _read_json(version_dir / MANIFEST_FILE)
        if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), dict):
            raise IndexCorrupt(f"{version_dir / MANIFEST_FILE}: not a manifest (no files table)")
        if (manifest.get("stream_id"), manifest.get("version")) != (stream_id, version):
            raise IndexCorrupt(f"{version_dir / MANIFEST_FILE}: names another stream or version")
        for name in CHECKED_FILES:
            _verify_file(version_dir / name, manifest["files"].get(name))
        for name in (TEXT_FILE, HUBNESS_FILE):
            if name in manifest["files"]:
                _verify_file(version_dir / name, manifest["files"][name])
        try:
            index = faiss.read_index(str(version_dir / INDEX_FILE))
        except RuntimeError as exc:
            raise IndexCorrupt(f"{version_dir / INDEX_FILE}: faiss cannot read it: {exc}") from exc
        titles, entries, text_info = _read_metadata(version_dir / METADATA_FILE)
        if not index.ntotal == len(entries) == manifest.get("n_vectors"):
            raise IndexCorrupt(f"{version_dir}: counts disagree (index {index.ntotal}, "
                               f"metadata {len(entries)}, manifest {manifest.get('n_vectors')})")
        if manifest.get("dim") != index.d:
            raise IndexCorrupt(f"{version_dir}: index dim {index.d} != manifest dim {manifest.get('dim')}")
        text = _read_text_vectors(version_dir, text_info) if TEXT_FILE in manifest["files"] else None
        hubness = _read_hubness(version_dir / HUBNESS_FILE, len(entries)) if HUBNESS_FILE in manifest["files"] else None
        return StreamIndex(stream_id, version, index, entries, titles, manifest, text, hubness)

    def publish(
        self, stream_id: str, index: faiss.Index, entries: Sequence[VectorEntry],
        titles: Mapping[str, str], extra: Mapping[str, Any], text: TitleVectors | None = None,
        hubness: np.ndarray | None = None,
    ) -> str:
        """Write a new version, switch CURRENT to it atomically, prune old versions; returns the version."""
        stream_dir = self._stream_dir(stream_id)
        _check_publish_inputs(index, entries, titles, extra)
        if hubness is not None and hubness.shape != (index.ntotal,):
            raise ValueError(f"hubness of shape {hubness.shape} for an index of {index.ntotal} vectors")
        version = new_version_name()
        tmp_dir, final_dir = stream_dir / f"{TMP_PREFIX}{version}", stream_dir / version
        stream_dir.mkdir(parents=True, exist_ok=True)
        try:
            tmp_dir.mkdir()
            faiss.write_index(index, str(tmp_dir / INDEX_FILE))
            _fsync(tmp_dir / INDEX_FILE)
            rows = [{"product_id": e.product_id, "image_id": e.image_id, "box": list(map(float, e.box))}
                    for e in entries]
            metadata: dict[str, Any] = {"titles": dict(titles), "entries": rows}
            if text is not None:
                _write_npy(tmp_dir / TEXT_FILE, text.vectors)
                metadata["text"] = {"products": list(text.product_ids), "encoder": text.encoder}
            if hubness is not None:
                _write_npy(tmp_dir / HUBNESS_FILE, hubness)
            _write_json(tmp_dir / METADATA_FILE, metadata)
            manifest = {
                "stream_id": stream_id, "version": version,
                "created_at": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
                "n_vectors": int(index.ntotal), "n_products": len(titles), "dim": int(index.d),
                "index_type": type(index).__name__,
                "files": {name: _file_digest(tmp_dir / name) for name in _published_files(text, hubness)},
                **extra,
            }
            _write_json(tmp_dir / MANIFEST_FILE, manifest)
            _fsync(tmp_dir)
            os.rename(tmp_dir, final_dir)
            _fsync(stream_dir)
            self._write_current(stream_dir, version)
        except BaseException:
            shutil.rmtree(tmp_dir, ignore_errors=True)
            if self._current_or_none(stream_id) != version:
                shutil.rmtree(final_dir, ignore_errors=True)
            raise
        self._prune(stream_id)
        return version

    def _stream_dir(self, stream_id: str) -> Path:
        """The stream's folder; every public method validates the id through here."""
        if not is_stream_id(stream_id):
            raise ValueError(f"invalid stream id {stream_id!r}")
        return self.root / stream_id

    def _current_or_none(self, stream_id: str) -> str | None:
        try:
            return self.current_version(stream_id)
        except StoreError:
            return None

    @staticmethod
    def _write_current(stream_dir: Path, version: str) -> None:
        tmp = stream_dir / f"{CURRENT_FILE}{TMP_PREFIX}{secrets.token_hex(4)}"
        try:
            _write_text(tmp, version + "\n")
            os.replace(tmp, stream_dir / CURRENT_FILE)
        finally:
            tmp.unlink(missing_ok=True)
        _fsync(stream_dir)

    def _prune(self, stream_id: str) -> None:
        """Keep the newest `keep_versions` and the CURRENT one; drop temp leftovers older than an hour."""
        stream_dir = self._stream_dir(stream_id)
        current = self._current_or_none(stream_id)
        versions = self.versions(stream_id)
        for version in set(versions[: -self.keep_versions]) - {current}:
            shutil.rmtree(stream_dir / version, ignore_errors=True)
            log.info("pruned index version %s/%s", stream_id, version)
        cutoff = time.time() - STALE_TMP_SECONDS
        for path in stream_dir.iterdir():
            try:
                if TMP_PREFIX in path.name and path.stat().st_mtime < cutoff:
                    shutil.rmtree(path) if path.is_dir() else path.unlink()
            except OSError as exc:
                log.warning("could not remove stale %s: %s", path, exc)


def _published_files(text: TitleVectors | None, hubness: np.ndarray | None) -> tuple[str, ...]:
    return CHECKED_FILES + ((TEXT_FILE,) if text is not None else ()) + ((HUBNESS_FILE,) if hubness is not None else ())


def _check_publish_inputs(
    index: faiss.Index, entries: Sequence[VectorEntry], titles: Mapping[str, str], extra: Mapping[str, Any]
) -> None:
    if len(entries) != index.ntotal:
        raise ValueError(f"{len(entries)} entries for an index of {index.ntotal} vectors")
    missing = sorted({e.product_id for e in entries} - set(titles))
    if missing:
        raise ValueError(f"entries name products without a title entry: {missing[:5]}")
    clash = sorted(RESERVED_MANIFEST_KEYS & set(extra))
    if clash:
        raise ValueError(f"extra may not set reserved manifest keys {clash}")


def _file_digest(path: Path) -> dict[str, Any]:
    with open(path, "rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        return {"sha256": hashlib.file_digest(handle, "sha256").hexdigest(), "bytes": size}


def _write_npy(path: Path, array: np.ndarray) -> None:
    with path.open("wb") as handle:
        np.save(handle, np.ascontiguousarray(array, dtype=np.float32), allow_pickle=False)
        handle.flush()
        os.fsync(handle.fileno())


def _load_npy(path: Path) -> np.ndarray:
    """A published .npy array (never pickle); IndexCorrupt when it cannot be read."""
    try:
        array: np.ndarray = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise IndexCorrupt(f"{path}: unreadable: {exc}") from exc
    return array


def _read_text_vectors(version_dir: Path, info: Any) -> TitleVectors:
    path = version_dir / TEXT_FILE
    if not isinstance(info, dict) or not isinstance(info.get("products"), list):
        raise IndexCorrupt(f"{version_dir / METADATA_FILE}: text.npy present but no text.products list")
    vectors = _load_npy(path)
    products = tuple(str(p) for p in info["products"])
    if vectors.ndim != 2 or len(vectors) != len(products):
        raise IndexCorrupt(f"{path}: shape {vectors.shape} does not match {len(products)} titled products")
    return TitleVectors(products, vectors.astype(np.float32, copy=False), str(info.get("encoder", "")))


def _read_hubness(path: Path, rows: int) -> np.ndarray:
    hubness = _load_npy(path)
    if hubness.shape != (rows,) or not np.all(np.isfinite(hubness)):
        raise IndexCorrupt(f"{path}: expected {rows} finite values, got shape {hubness.shape}")
    return hubness.astype(np.float32, copy=False)


def _write_json(path: Path, document: Mapping[str, Any]) -> None:
    _write_text(path, json.dumps(document, ensure_ascii=False, allow_nan=False))


def _write_text(path: Path, text: str) -> None:
    with open(path, "w", encoding="utf-8") as handle:  # written, flushed and fsynced
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())


def _fsync(path: Path) -> None:
    """Flush a file or a directory (its entries) to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise IndexCorrupt(f"{path}: missing or unreadable JSON: {exc}") from exc


def _verify_file(path: Path, expected: Any) -> None:
    if not isinstance(expected, dict):
        raise IndexCorrupt(f"{path}: not listed in the manifest")
    try:
        actual = _file_digest(path)
    except OSError as exc:
        raise IndexCorrupt(f"{path}: unreadable: {exc}") from exc
    if actual["bytes"] != expected.get("bytes"):
        raise IndexCorrupt(f"{path}: {actual['bytes']} bytes, manifest says {expected.get('bytes')}")
    if actual["sha256"] != expected.get("sha256"):
        raise IndexCorrupt(f"{path}: sha256 mismatch")


def _read_metadata(path: Path) -> tuple[dict[str, str], tuple[VectorEntry, ...], Any]:
    metadata = _read_json(path)
    titles = metadata.get("titles") if isinstance(metadata, dict) else None
    rows = metadata.get("entries") if isinstance(metadata, dict) else None
    if not isinstance(titles, dict) or not all(isinstance(v, str) for v in titles.values()):
        raise IndexCorrupt(f"{path}: titles must map product ids to strings")
    if not isinstance(rows, list):
        raise IndexCorrupt(f"{path}: entries must be a list")
    entries = []
    for i, row in enumerate(rows):
        try:
            box = tuple(float(v) for v in row["box"])
            entry = VectorEntry(row["product_id"], row["image_id"], box)  # type: ignore[arg-type]
        except (TypeError, KeyError, ValueError) as exc:
            raise IndexCorrupt(f"{path}: entry {i} is malformed: {exc!r}") from exc
        if entry.product_id not in titles or not isinstance(entry.image_id, str) or len(box) != 4:
            raise IndexCorrupt(f"{path}: entry {i} is malformed")
        entries.append(entry)
    return titles, tuple(entries), metadata.get("text")
