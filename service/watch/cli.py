"""`watchbuy watch STREAM SOURCE` (`make watch`): one watcher in the foreground, on the local index store.

One JSON line per finished segment on stdout, exactly
`{"stream_id", "product_id", "start_s", "end_s", "score"}`; logs and progress on stderr. A local file is read
as fast as the pipeline allows (`--realtime` paces it at its own speed); exit 0 at the end of the source,
1 when the source failed (cannot be opened, stalled for good), 2 for a usage error or an unknown stream.
`--observations FILE` also writes every frame's answer as JSON lines (the segment tuning replays them).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import asdict
from pathlib import Path
from typing import TextIO

import anyio

from service.errors import ApiError
from service.metrics import Metrics
from service.state import serving
from service.watch.events import WatchEvent, WatchStatus
from service.watch.segments import Observation
from service.watch.watcher import WatchConfig, Watcher
from watchbuy.settings import get_settings

log = logging.getLogger("watchbuy.watch")


class SegmentLines:
    """Finished segments as JSON lines on `out`; every event logged on stderr."""

    def __init__(self, out: TextIO) -> None:
        self.out = out

    async def emit(self, event: WatchEvent) -> None:
        if event.kind == "segment_ended":
            self.out.write(json.dumps(event.segment_line()) + "\n")
            self.out.flush()
        log.info("%s", json.dumps(event.as_dict()))

    async def status(self, status: WatchStatus) -> None:
        if status.frames and status.frames % 40 == 0:
            log.info("%d frames, at %.1f s, lag %.1f s, now %s", status.frames, status.time_s or 0.0,
                     status.lag_s, status.product_id)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="watchbuy watch", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("stream", help="the stream whose index answers (built with `make build-index`)")
    p.add_argument("source", help="a video file, an HLS playlist URL, or an RTMP/RTSP URL")
    p.add_argument("--fps", type=float, default=None, help="frames analysed per second (WATCHBUY_WATCH_SAMPLE_FPS)")
    p.add_argument("--realtime", action="store_true", help="pace a file at its own speed")
    p.add_argument("--observations", type=Path, default=None, help="write each frame's answer here (JSON lines)")
    return p


async def watch(stream: str, source: str, fps: float | None, realtime: bool, observations: Path | None) -> int:
    settings = get_settings()
    async with serving(settings, Metrics()) as state:
        try:
            await anyio.to_thread.run_sync(state.load_index, stream)
        except ApiError as exc:
            print(f"watchbuy watch: {exc.message}", file=sys.stderr)
            return 2
        records = observations.open("w") if observations else None

        def record(obs: Observation) -> None:
            if records is not None:
                records.write(json.dumps(asdict(obs)) + "\n")

        config = WatchConfig.from_settings(settings, fps, realtime)
        watcher = Watcher(state, stream, source, config, SegmentLines(sys.stdout), on_observation=record)
        try:
            final = await watcher.run()
        finally:
            if records is not None:
                records.close()
        if final == "failed":
            print(f"watchbuy watch: {watcher.status.message}", file=sys.stderr)
            return 1
        return 0


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return anyio.run(watch, args.stream, args.source, args.fps, args.realtime, args.observations)
