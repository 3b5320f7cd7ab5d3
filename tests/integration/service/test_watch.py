"""The stream watcher on real parts: the real models and slice index, PyAV sources, a loopback HTTP server.

- `watchbuy watch` (what `make watch` runs) on a finished file: one JSON line per segment, exactly the
  documented keys, each product named for its span, exit 0;
- a source that stalls halfway (HTTP, then silence): reconnects with backoff, then a clear failure event;
- a damaged file: the damaged packets are skipped and counted, the watch still ends normally;
- a file that is not a video: exit 1 with the reason, nothing printed on stdout;
- a watcher that crashes is reported and restarted by its runner, then given up.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import anyio
import numpy as np
import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal
from support.data import MODEL_DIR, PROJECT_DIR, SLICE_STREAM
from support.streams import FolderServer, Shown, product_photos, stream_frames, write_ts

from indexer.video import encode_video
from service.metrics import Metrics
from service.state import ServiceState, serving
from service.watch.events import WatchEvent, WatchStatus
from service.watch.runner import WatchRequest, WatchRunner
from service.watch.source import Checkpoint, FrameReader, SourceConfig
from service.watch.watcher import WatchConfig, Watcher
from watchbuy.settings import Settings

SECONDS_EACH = 5.0
#: A boundary may be off by up to this: the window must see a product lead before it starts a segment.
BOUNDARY_S = 1.5


class Collected:
    """An event sink that keeps everything."""

    def __init__(self) -> None:
        self.events: list[WatchEvent] = []
        self.statuses: list[WatchStatus] = []

    async def emit(self, event: WatchEvent) -> None:
        self.events.append(event)

    async def status(self, status: WatchStatus) -> None:
        self.statuses.append(status)

    def kinds(self) -> list[str]:
        return [e.kind for e in self.events]


@pytest.fixture(scope="module")
def slice_stream(slice_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Shown]]:
    """A folder with the slice's 3 first products back to back after a grey lead-in, as MP4 and MPEG-TS."""
    frames, truth = stream_frames(product_photos(slice_dir, 3), SECONDS_EACH)
    folder = tmp_path_factory.mktemp("watch-videos")
    (folder / "stream.mp4").write_bytes(encode_video(frames, 12))
    write_ts(frames, folder / "stream.ts")
    return folder, truth


@pytest.fixture(scope="module")
def watch_settings(slice_index_root: Path, model_dir: Path) -> Settings:
    return Settings(model_dir=model_dir, index_root=slice_index_root, watch_read_timeout_seconds=2.0,
                    watch_open_timeout_seconds=5.0, watch_reconnects=2, watch_backoff_seconds=0.2)


@pytest.fixture(scope="module")
def served(watch_settings: Settings) -> Iterator[tuple[BlockingPortal, ServiceState]]:
    """A started service (models, batchers) on the event loop of a blocking portal."""
    with start_blocking_portal() as portal, portal.wrap_async_context_manager(
        serving(watch_settings, Metrics())
    ) as state:
        yield portal, state


def watch(served: tuple[BlockingPortal, ServiceState], source: str) -> tuple[str, Collected, Watcher]:
    """One watcher run to its end on the served state's event loop."""
    portal, state = served
    sink = Collected()
    watcher = Watcher(state, SLICE_STREAM, source, WatchConfig.from_settings(state.settings), sink)
    final = portal.call(watcher.run)
    return final, sink, watcher


def check_segments(segments: list[dict[str, object]], truth: list[Shown]) -> None:
    shown = [s for s in truth if s.product_id is not None]
    assert [s["product_id"] for s in segments] == [s.product_id for s in shown], segments
    for segment, span in zip(segments, shown, strict=True):
        assert abs(float(segment["start_s"]) - span.start_s) <= BOUNDARY_S, (segment, span)  # type: ignore[arg-type]
        assert abs(float(segment["end_s"]) - span.end_s) <= BOUNDARY_S, (segment, span)  # type: ignore[arg-type]


def test_make_watch_prints_one_line_per_segment_and_exits_0(
    slice_stream: tuple[Path, list[Shown]], slice_index_root: Path, tmp_path: Path
) -> None:
    folder, truth = slice_stream
    env = {**os.environ, "WATCHBUY_INDEX_ROOT": str(slice_index_root), "WATCHBUY_MODEL_DIR": str(MODEL_DIR)}
    run = subprocess.run(
        [sys.executable, "-m", "watchbuy", "watch", SLICE_STREAM, str(folder / "stream.mp4"),
         "--observations", str(tmp_path / "obs.jsonl")],
        cwd=PROJECT_DIR, env=env, capture_output=True, text=True, timeout=600,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    lines = [json.loads(line) for line in run.stdout.splitlines()]
    assert all(list(line) == ["stream_id", "product_id", "start_s", "end_s", "score"] for line in lines), lines
    assert all(line["stream_id"] == SLICE_STREAM and 0 < line["score"] <= 1 for line in lines)
    check_segments(lines, truth)
    assert "watch_ended" in run.stderr  # logs go to stderr
    assert len((tmp_path / "obs.jsonl").read_text().splitlines()) == round(truth[-1].end_s * 4)


def test_a_stalled_source_is_reopened_with_backoff_then_given_up(
    served: tuple[BlockingPortal, ServiceState], slice_stream: tuple[Path, list[Shown]]
) -> None:
    folder, _ = slice_stream
    with FolderServer(folder, stall=["stream.ts"]) as server:
        final, sink, watcher = watch(served, f"{server.base}/stream.ts")
    assert final == "failed"
    assert sink.kinds().count("reconnecting") == 2, sink.kinds()
    assert sink.kinds()[-1] == "watch_failed" and "reconnects" in (sink.events[-1].message or "")
    assert watcher.status.state == "failed" and watcher.status.reconnects == 2
    assert watcher.status.frames > 0  # the half that came was analysed


def test_damaged_packets_are_skipped_and_counted_and_the_watch_ends(
    served: tuple[BlockingPortal, ServiceState], slice_stream: tuple[Path, list[Shown]], tmp_path: Path
) -> None:
    folder, truth = slice_stream
    data = bytearray((folder / "stream.ts").read_bytes())
    middle = len(data) // 2
    data[middle : middle + 20_000] = np.random.default_rng(0).integers(0, 256, 20_000, dtype=np.uint8).tobytes()
    (tmp_path / "damaged.ts").write_bytes(bytes(data))
    final, sink, watcher = watch(served, str(tmp_path / "damaged.ts"))
    assert final == "ended" and sink.kinds()[-1] == "watch_ended"
    assert watcher.status.corrupt_packets > 0
    ended = [e for e in sink.events if e.kind == "segment_ended"]
    assert {e.product_id for e in ended} >= {s.product_id for s in truth if s.product_id is not None}
    assert served[1].metrics.watch_corrupt._value.get() > 0  # noqa: SLF001 -- the counter's value


def test_a_reader_given_a_checkpoint_goes_on_from_it_on_the_same_timeline(
    slice_stream: tuple[Path, list[Shown]],
) -> None:
    source = str(slice_stream[0] / "stream.ts")  # MPEG-TS: its first timestamp is not 0
    whole = FrameReader(source, SourceConfig(sample_fps=4.0))
    times = [frame.time_s for frame in whole.frames()]
    assert whole.origin is not None and whole.origin > 0
    middle = times[len(times) // 2]
    resumed = FrameReader(source, SourceConfig(sample_fps=4.0), resume=Checkpoint(whole.origin, middle))
    assert [frame.time_s for frame in resumed.frames()] == [t for t in times if t >= middle]


def test_a_source_whose_clock_goes_back_is_followed_on_one_timeline(tmp_path: Path) -> None:
    """Two MPEG-TS recordings back to back: the second's timestamps start again (what an HLS discontinuity
    or a restarted encoder sends). Every due frame is still sampled, on a timeline that keeps going."""
    def recording(seconds: float, path: Path) -> bytes:
        write_ts([np.full((64, 64, 3), n % 250, dtype=np.uint8) for n in range(round(seconds * 12))], path)
        return path.read_bytes()

    joined = tmp_path / "restarted.ts"
    joined.write_bytes(recording(36.0, tmp_path / "first.ts") + recording(4.0, tmp_path / "second.ts"))
    reader = FrameReader(str(joined), SourceConfig(sample_fps=4.0))
    times = [frame.time_s for frame in reader.frames()]
    assert reader.counters.rewinds == 1
    assert all(b > a for a, b in zip(times, times[1:], strict=False))  # one timeline, always forward
    assert len(times) >= 4 * 40 - 4 and times[-1] > 39.0  # the second recording was watched too


def test_a_file_that_is_not_a_video_exits_1_with_the_reason(slice_index_root: Path, tmp_path: Path) -> None:
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(bytes((i * 7919) % 256 for i in range(50_000)))
    env = {**os.environ, "WATCHBUY_INDEX_ROOT": str(slice_index_root), "WATCHBUY_MODEL_DIR": str(MODEL_DIR)}
    run = subprocess.run([sys.executable, "-m", "watchbuy", "watch", SLICE_STREAM, str(junk)],
                         cwd=PROJECT_DIR, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 1 and run.stdout == ""
    assert "cannot open the source" in run.stderr or "no decodable video frame" in run.stderr


def test_a_crashed_watcher_is_reported_and_restarted_then_given_up(
    served: tuple[BlockingPortal, ServiceState], slice_stream: tuple[Path, list[Shown]]
) -> None:
    """A watcher whose stream has no index crashes at its first frame: each crash is reported, the runner
    starts it again (with backoff) `restarts` times, then gives up; the process is unharmed."""
    portal, state = served
    folder, _ = slice_stream
    sink, done = Collected(), []

    async def on_done(stream_id: str, final: str) -> None:
        done.append((stream_id, final))

    async def run() -> None:
        runner = WatchRunner(state, sink, restarts=2, backoff_s=0.05)
        runner.start(WatchRequest("no-such-stream", str(folder / "stream.mp4"), 4.0), on_done=on_done)
        while not done:
            await anyio.sleep(0.05)
        await runner.aclose()

    before = state.metrics.watch_errors.labels("crashed")._value.get()  # noqa: SLF001 -- the counter's value
    portal.call(run)
    assert done == [("no-such-stream", "failed")]
    assert sink.kinds() == ["watch_started", "watch_failed"] * 3, sink.kinds()
    assert all("watcher crashed (StreamNotFoundError" in (e.message or "") for e in sink.events[1::2])
    assert state.metrics.watch_errors.labels("crashed")._value.get() - before == 3  # noqa: SLF001
    final, _, _ = watch(served, str(folder / "stream.mp4"))  # the service still watches
    assert final == "ended"
