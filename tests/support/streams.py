"""Video sources for the watcher tests, all real: a video of the slice's products back to back, a live HLS
stream written segment by segment (PyAV's HLS muxer, paced at real time) and a loopback HTTP server that
serves a folder, and can stall (send part of a file, then nothing) or refuse."""

from __future__ import annotations

import functools
import json
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, cast

import av
import numpy as np
from av.video.stream import VideoStream

from support.video_clips import read_still

FPS = 12
SIZE = (192, 256)  # width, height of the slice's clip photos
BLANK_S = 3.0  # grey lead-in: no product on screen


@dataclass(frozen=True, slots=True)
class Shown:
    product_id: str | None
    start_s: float
    end_s: float


def product_photos(slice_dir: Path, count: int) -> list[tuple[str, Path]]:
    """(product, clip photo) of the slice's first `count` labelled clips."""
    found = []
    for line in (slice_dir / "queries.jsonl").read_text().splitlines():
        clip = json.loads(line)
        if clip["product_id"] is not None:
            found.append((clip["product_id"], slice_dir / clip["frames"][0]["path"]))
    return found[:count]


def stream_frames(photos: Sequence[tuple[str, Path]], seconds: float) -> tuple[list[np.ndarray], list[Shown]]:
    """A grey lead-in, then each photo for `seconds` (zooming in slowly, like a camera), and the truth."""
    frames = [np.full((SIZE[1], SIZE[0], 3), 90, dtype=np.uint8)] * round(BLANK_S * FPS)
    truth = [Shown(None, 0.0, BLANK_S)]
    for product, path in photos:
        still = read_still(path, SIZE)
        start = len(frames) / FPS
        for n in range(round(seconds * FPS)):
            margin = n % 8  # a small wobble, so consecutive frames differ
            frames.append(np.ascontiguousarray(np.pad(still[margin:, margin:], ((0, margin), (0, margin), (0, 0)))))
        truth.append(Shown(product, start, len(frames) / FPS))
    return frames, truth


def mux_h264(output: av.container.OutputContainer, frames: Sequence[np.ndarray]) -> Iterator[int]:
    """Encode the frames as H.264 at FPS (a keyframe each second: HLS segments can cut there) into
    `output`, yielding each frame's position once it is muxed; the encoder is flushed at the end."""
    stream = cast(VideoStream, output.add_stream("libx264", rate=Fraction(FPS)))
    stream.width, stream.height, stream.pix_fmt = SIZE[0], SIZE[1], "yuv420p"
    stream.codec_context.gop_size = FPS
    for position, pixels in enumerate(frames):
        frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
        frame.pts, frame.time_base = position, Fraction(1, FPS)
        output.mux(stream.encode(frame))
        yield position
    output.mux(stream.encode(None))


def write_hls(frames: Sequence[np.ndarray], folder: Path, realtime: bool, segment_s: float = 1.0) -> None:
    """`folder/live.m3u8` and its MPEG-TS segments, written as the frames come (paced when `realtime`); the
    playlist gets its end tag when the last frame is written."""
    folder.mkdir(parents=True, exist_ok=True)
    options = {"hls_time": str(segment_s), "hls_list_size": "0", "hls_segment_type": "mpegts"}
    started = time.monotonic()
    with av.open(str(folder / "live.m3u8"), mode="w", format="hls", options=options) as output:
        for position, _ in enumerate(mux_h264(output, frames)):
            if realtime:
                time.sleep(max(0.0, (position + 1) / FPS - (time.monotonic() - started)))


def write_ts(frames: Sequence[np.ndarray], path: Path) -> None:
    """One MPEG-TS file (streamable: a reader can decode any prefix of it)."""
    with av.open(str(path), mode="w", format="mpegts") as output:
        for _ in mux_h264(output, frames):
            pass


class _Handler(SimpleHTTPRequestHandler):
    stall_paths: frozenset[str] = frozenset()

    def do_GET(self) -> None:  # noqa: N802 -- http.server's name
        if self.path.lstrip("/") in self.stall_paths:
            self._stall()
        else:
            super().do_GET()

    def _stall(self) -> None:
        """Headers and the first half of the file, then silence until the client gives up."""
        data = (Path(self.directory) / self.path.lstrip("/")).read_bytes()
        self.send_response(200)
        self.send_header("Content-Type", "video/mp2t")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data[: len(data) // 2])
        self.wfile.flush()
        time.sleep(30)

    def log_message(self, format: str, *args: Any) -> None:
        return None


class FolderServer:
    """A threaded HTTP server on 127.0.0.1 serving `folder`; `stall` names files that hang halfway."""

    def __init__(self, folder: Path, stall: Sequence[str] = ()) -> None:
        handler = type("Handler", (_Handler,), {"stall_paths": frozenset(stall)})
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(handler, directory=str(folder)))
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> FolderServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def sse_events(lines: Iterator[str]) -> Iterator[dict[str, Any]]:
    """Server-sent events from a response's lines: {"id", "event", "data" (decoded JSON)}."""
    event: dict[str, Any] = {}
    for line in lines:
        if not line:
            if "data" in event:
                yield event
            event = {}
        elif line.startswith(":"):
            continue
        else:
            field, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            event[field] = json.loads(value) if field == "data" else value
