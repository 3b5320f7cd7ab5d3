"""Does a watcher keep up with a live stream? A live HLS stream of the shared studio clips, followed in real time.

The clips of ../shared/data/clips (624×832, 24 fps) are looped for `--seconds` and encoded once into HLS
segments (H.264, `--segment` s each) ahead of time, so that encoding costs nothing during the run. A
publisher thread then releases them at real time into a folder served on loopback: each segment appears
when its last frame would have been filmed, the playlist grows, and ends with its end tag. A watcher
(`service.watch.watcher.Watcher` on a started service, batchers included) follows the playlist at
`--fps` frames a second. Reported: frames analysed against the frames due, the lag (wall time since the
first frame − source time since the first frame) at the median, 95th percentile and maximum, and how long
after the last segment appeared the watch ended.

    python scripts/watch_live.py --stream viton-dev-00 --seconds 120
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import threading
import time
from fractions import Fraction
from pathlib import Path

import av
from anyio.from_thread import start_blocking_portal
from av.video.stream import VideoStream

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from support.streams import FolderServer  # noqa: E402

from service.metrics import Metrics  # noqa: E402
from service.state import serving  # noqa: E402
from service.watch.events import WatchEvent, WatchStatus  # noqa: E402
from service.watch.watcher import WatchConfig, Watcher  # noqa: E402
from watchbuy.settings import get_settings  # noqa: E402


def encode_hls(clips: Path, seconds: float, segment_s: float, out: Path) -> list[tuple[str, float]]:
    """The looped clips as HLS segments in `out`; (file, duration) of each segment."""
    out.mkdir(parents=True, exist_ok=True)
    options = {"hls_time": str(segment_s), "hls_list_size": "0", "hls_segment_type": "mpegts"}
    paths = sorted(clips.glob("*.mp4"))
    with av.open(str(out / "full.m3u8"), mode="w", format="hls", options=options) as output:
        stream: VideoStream | None = None
        position, fps = 0, 24
        while position < seconds * fps:
            for path in paths:
                with av.open(str(path)) as source:
                    for frame in source.decode(video=0):
                        if stream is None:
                            stream = output.add_stream("libx264", rate=Fraction(fps))
                            stream.width, stream.height, stream.pix_fmt = frame.width, frame.height, "yuv420p"
                            stream.codec_context.gop_size = fps
                        image = av.VideoFrame.from_ndarray(frame.to_ndarray(format="rgb24"), format="rgb24")
                        image.pts, image.time_base = position, Fraction(1, fps)
                        output.mux(stream.encode(image))
                        position += 1
                        if position >= seconds * fps:
                            break
                if position >= seconds * fps:
                    break
        if stream is not None:
            output.mux(stream.encode(None))
    lines = (out / "full.m3u8").read_text().splitlines()
    durations = [float(line.split(":")[1].rstrip(",")) for line in lines if line.startswith("#EXTINF")]
    names = [line for line in lines if line and not line.startswith("#")]
    return list(zip(names, durations, strict=True))


def publish(segments: list[tuple[str, float]], source: Path, live: Path, started: threading.Event,
            last: list[float]) -> None:
    """Release each segment when its time has come, growing live.m3u8; the end tag after the last."""
    target = max(round(d + 0.5) for _, d in segments)
    clock, released = time.monotonic(), 0.0
    for n, (name, duration) in enumerate(segments):
        released += duration
        time.sleep(max(0.0, clock + released - time.monotonic()))
        shutil.copyfile(source / name, live / name)
        entries = "".join(f"#EXTINF:{d:.6f},\n{s}\n" for s, d in segments[: n + 1])
        end = "#EXT-X-ENDLIST\n" if n == len(segments) - 1 else ""
        text = f"#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:{target}\n#EXT-X-MEDIA-SEQUENCE:0\n{entries}{end}"
        (live / "live.tmp").write_text(text)
        (live / "live.tmp").replace(live / "live.m3u8")
        started.set()
    last.append(time.monotonic())


class Lags:
    def __init__(self) -> None:
        self.lags: list[float] = []
        self.frames = 0
        self.events: list[str] = []

    async def emit(self, event: WatchEvent) -> None:
        self.events.append(event.kind)

    async def status(self, status: WatchStatus) -> None:
        if status.state == "running":
            self.lags.append(status.lag_s)
            self.frames = status.frames


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--stream", default="viton-dev-00", help="the index that answers (any built stream)")
    parser.add_argument("--seconds", type=float, default=120.0)
    parser.add_argument("--fps", type=float, default=4.0)
    parser.add_argument("--segment", type=float, default=2.0)
    parser.add_argument("--clips", type=Path, default=Path("../shared/data/clips"))
    parser.add_argument("--out", type=Path, default=None, help="also write the result here (JSON)")
    args = parser.parse_args()
    settings = get_settings()
    with tempfile.TemporaryDirectory() as tmp:
        source, live = Path(tmp) / "encoded", Path(tmp) / "live"
        live.mkdir()
        segments = encode_hls(args.clips, args.seconds, args.segment, source)
        started, last = threading.Event(), list[float]()
        with FolderServer(live) as origin, start_blocking_portal() as portal, portal.wrap_async_context_manager(
            serving(settings, Metrics())
        ) as state:
            publisher = threading.Thread(target=publish, args=(segments, source, live, started, last), daemon=True)
            publisher.start()
            started.wait()
            sink = Lags()
            config = WatchConfig.from_settings(settings, args.fps)
            watcher = Watcher(state, args.stream, f"{origin.base}/live.m3u8", config, sink)
            final = portal.call(watcher.run)
            publisher.join()
            tail_s = time.monotonic() - last[0]
    lags = sorted(sink.lags) or [0.0]
    result = {
        "stream": args.stream, "seconds": round(sum(d for _, d in segments), 2), "fps": args.fps,
        "final": final, "frames_analysed": sink.frames, "frames_due": round(sum(d for _, d in segments) * args.fps),
        "lag_p50_s": round(statistics.median(lags), 2), "lag_p95_s": round(lags[int(0.95 * (len(lags) - 1))], 2),
        "lag_max_s": round(lags[-1], 2), "reconnects": watcher.status.reconnects,
        "segments": sink.events.count("segment_ended"),
        "ended_after_last_segment_s": round(tail_s, 2),
    }
    print(json.dumps(result))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1) + "\n")
    return 0 if final == "ended" else 1


if __name__ == "__main__":
    sys.exit(main())
