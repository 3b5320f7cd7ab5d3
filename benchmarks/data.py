"""What the benchmarks run on: real frames and a real catalogue from ../shared/data, the real models,
and one temporary index of that catalogue built with the indexer (shared by the benchmarks of one run).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from anyio.from_thread import BlockingPortal, start_blocking_portal

from indexer.build import BuildSummary, build_stream
from indexer.catalogue import Catalogue, read_catalogue
from indexer.store import IndexStore, StreamIndex
from models.loader import Models
from service.decode import decode_images
from service.identify import identify
from service.metrics import Metrics
from service.state import ServiceState, serving
from service.values import EncodedFrame, Identification, IdentifyQuery
from watchbuy.settings import Settings

PROJECT_DIR = Path(__file__).resolve().parents[1]
DEFAULT_STREAM_DIR = PROJECT_DIR.parent / "shared" / "data" / "viton-dev" / "streams" / "viton-dev-00"
BENCH_STREAM = "bench-stream"


class BenchDataError(RuntimeError):
    """The shared data or the model files are missing; the message names the fix."""


def labelled_frames(stream_dir: Path, limit: int | None = None) -> list[tuple[Path, str | None]]:
    """The clip frames of a stream's queries.jsonl (real livestream-like frames) and their clip's product,
    in file order."""
    queries = stream_dir / "queries.jsonl"
    if not queries.is_file():
        raise BenchDataError(f"no {queries}: the benchmarks need ../shared/data (see its README)")
    found: list[tuple[Path, str | None]] = []
    for line in queries.read_text(encoding="utf-8").splitlines():
        if line.strip():
            clip = json.loads(line)
            found += [(stream_dir / frame["path"], clip["product_id"]) for frame in clip["frames"]]
        if limit is not None and len(found) >= limit:
            break
    return found[:limit] if limit is not None else found


@dataclass(slots=True)
class Workspace:
    """Inputs shared by the benchmarks of one run; the models and the index are made on first use."""

    stream_dir: Path
    products: int | None
    frames: list[bytes]
    labels: list[str | None]  # the product each frame shows (None: none of the catalogue's)
    settings: Settings
    root: Path
    _state: ServiceState | None = None
    _portal: BlockingPortal | None = None
    _stack: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)
    _index: StreamIndex | None = None
    build_summary: BuildSummary | None = None
    notes: list[str] = field(default_factory=list)

    @classmethod
    def create(cls, stream_dir: Path = DEFAULT_STREAM_DIR, products: int | None = None,
               n_frames: int = 64, root: Path | None = None) -> Workspace:
        found = labelled_frames(stream_dir, n_frames)
        if not found:
            raise BenchDataError(f"no frames listed in {stream_dir / 'queries.jsonl'}")
        root = root or Path(tempfile.mkdtemp(prefix="watchbuy-bench-"))
        # batching off: the request path calls the models directly (the ceiling the service is held to)
        settings = Settings(index_root=root / "indexes", batching=False)
        if not (settings.model_dir / "manifest.json").is_file():
            raise BenchDataError(f"no model files in {settings.model_dir}; run `make models`")
        return cls(stream_dir, products, [p.read_bytes() for p, _ in found], [label for _, label in found], settings,
                   root)

    @property
    def state(self) -> ServiceState:
        """The service's own start-up (`service.state.serving`) on an event loop of its own, without HTTP."""
        if self._state is None:
            self._portal = self._stack.enter_context(start_blocking_portal())
            self._state = self._stack.enter_context(
                self._portal.wrap_async_context_manager(serving(self.settings, Metrics()))
            )
        return self._state

    @property
    def portal(self) -> BlockingPortal:
        """The event loop the service state runs on."""
        self.state  # noqa: B018 - started on first use
        assert self._portal is not None
        return self._portal

    def close(self) -> None:
        """Stop the service state and its event loop (when they were started)."""
        self._stack.close()

    @property
    def models(self) -> Models:
        return self.state.models

    @property
    def store(self) -> IndexStore:
        return IndexStore(self.settings.index_root)

    def catalogue(self) -> Catalogue:
        catalogue = read_catalogue(self.stream_dir, BENCH_STREAM)
        if self.products is not None:
            catalogue = dataclasses.replace(catalogue, products=catalogue.products[: self.products])
        return catalogue

    def build_index(self) -> BuildSummary:
        """Build (again) and publish the benchmark stream's index; the timed step of the build benchmark."""
        summary, _ = build_stream(self.catalogue(), self.models, self.store, show_progress=False)
        self.build_summary = summary
        self._index = None
        return summary

    @property
    def index(self) -> StreamIndex:
        if self._index is None:
            if self.store.current_version(BENCH_STREAM) is None:
                self.build_index()
            self._index = self.store.load(BENCH_STREAM)
        return self._index

    def request_frames(self, start: int, count: int) -> list[EncodedFrame]:
        """`count` consecutive frames (wrapping around) starting at `start`, as the service receives them."""
        return [EncodedFrame(i, self.frames[(start + i) % len(self.frames)]) for i in range(count)]

    async def identify(self, start: int, count: int) -> Identification:
        """The route's request path (`service.identify.identify`) for `request_frames(start, count)`, no HTTP;
        awaited on `portal`'s event loop."""
        frames = self.request_frames(start, count)
        decode = functools.partial(decode_images, frames, self.settings.max_image_pixels)
        result, _ = await identify(self.state, IdentifyQuery(BENCH_STREAM, top_k=5), decode, len(frames))
        return result
