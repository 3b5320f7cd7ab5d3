"""A video source read with PyAV: a local file, an HLS playlist (live or finished), RTMP/RTSP where this
FFmpeg supports them. Frames are sampled at a steady rate on the source's own timeline.

Blocking (PyAV): `FrameReader.frames` runs in a worker thread. Every read has a timeout; a source that
stalls or drops is reopened with backoff (frames already passed are skipped on the timeline), and given up
after `reconnects` tries (`SourceStalled`). A packet that does not decode is skipped and counted.
`stop()` ends the reading at the next packet or timeout. Damage is counted (`ReadCounters.corrupt`): packets
the demuxer flags corrupt or the decoder refuses, and gaps in the frame timestamps where damaged data was
dropped (FFmpeg conceals most damage instead of failing). A clock that goes back more than `_REWIND_S`
(an HLS discontinuity, a restarted encoder) does not stop the timeline: it goes on from where it was.
A reader given a `Checkpoint` goes on where an earlier reading of the same source got to: the same
timeline, frames before the checkpoint skipped (a file is sought there first).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import av
import numpy as np

log = logging.getLogger(__name__)

_EPSILON_S = 1e-3
#: A source clock that goes back this far is a new clock (an HLS discontinuity, an encoder restarted), not
#: frames seen again: the timeline goes on from where it was. Larger than the window a live playlist
#: replays when it is reopened (three segments of 6 s, commonly).
_REWIND_S = 30.0
#: A resumed file is sought this far before its checkpoint (a key frame at or before it, in most containers).
_SEEK_MARGIN_S = 2.0
#: Consecutive packets that fail to demux before the source counts as broken rather than damaged.
_MAX_BAD_IN_A_ROW = 50


class SourceError(Exception):
    """The source cannot be read (cannot be opened, or is not a video)."""


class SourceStalled(SourceError):
    """The source stopped sending and did not come back after every reconnect."""


class SourceTooLong(SourceError):
    """The source runs past `SourceConfig.max_seconds` (an uploaded clip watched within one request)."""


@dataclass(frozen=True, slots=True)
class SourceConfig:
    sample_fps: float = 4.0
    open_timeout_s: float = 10.0
    read_timeout_s: float = 10.0
    reconnects: int = 5
    backoff_s: float = 1.0  # doubled on each try, at most 30 s
    realtime: bool = False  # pace a file at its own speed (a live source paces itself)
    max_pixels: int = 16_777_216
    max_seconds: float | None = None  # None: a stream may last for ever


@dataclass(frozen=True, slots=True)
class SourceFrame:
    time_s: float  # seconds on the source's timeline (its first frame's timestamp is 0)
    image: np.ndarray  # H×W×3 uint8 RGB


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """Where a reading of a source got to: the timestamp (s) that is 0 on its timeline, and the time on
    that timeline from which frames are still to be analysed."""

    origin: float
    time_s: float


@dataclass(slots=True)
class ReadCounters:
    """What the reading met so far (read by the watcher for its metrics and status)."""

    decoded: int = 0
    corrupt: int = 0
    reconnects: int = 0
    rewinds: int = 0  # times the source's clock went back and the timeline went on


class FrameReader:
    def __init__(
        self, url: str, config: SourceConfig, on_reconnect: Callable[[str], None] | None = None,
        resume: Checkpoint | None = None,
    ) -> None:
        self.url = url
        self.config = config
        self.counters = ReadCounters()
        self._stop = threading.Event()
        self._on_reconnect = on_reconnect or (lambda reason: None)
        self._origin: float | None = None  # the first frame's timestamp: time 0 of the timeline
        self._next_s = 0.0
        self._last_s = -1.0
        self._resume = resume
        self._caught_up = True  # this opening has reached frames after the last one sampled
        self._live_reopen = False  # this opening is a live source read again (its clock may have restarted)
        if resume is not None:
            self._origin, self._next_s, self._last_s = resume.origin, resume.time_s, resume.time_s - 2 * _EPSILON_S

    @property
    def origin(self) -> float | None:
        """The source timestamp (s) that is 0 on the timeline, once the first frame was read."""
        return self._origin

    def stop(self) -> None:
        self._stop.set()

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def probe(self) -> None:
        """Open the source and decode one frame: SourceError when that fails (the API's 4xx)."""
        with self._open() as container:
            stream = _video_stream(container)
            for _ in self._decoded(container, stream):
                return
        raise SourceError("the source has no decodable video frame")

    def frames(self) -> Iterator[SourceFrame]:
        """Sampled frames until the source ends or `stop()`; reopens a stalled source with backoff."""
        failures = 0
        started = time.monotonic()
        paced_from = self._resume.time_s if self._resume is not None else 0.0
        while not self.stopped:
            try:
                with self._open() as container:
                    stream = _video_stream(container)
                    self._caught_up = self._last_s < 0
                    self._live_reopen = self._last_s >= 0 and not container.duration
                    frames = self._decoded(container, stream)
                    if self._resume is not None and container.duration:  # a file; a live source goes on live
                        frames = _sought(container, frames, self._resume)
                    self._resume = None  # once: a reopened source is skipped forward frame by frame
                    for frame in frames:
                        sampled = self._sample(frame)
                        if sampled is not None:  # progress on the timeline: the source is back
                            failures = 0
                            self._pace(started, sampled.time_s - paced_from)
                            yield sampled
                if self.counters.decoded == 0 and not self.stopped:
                    raise SourceError("the source has no decodable video frame")
                return  # the end of the source
            except _Overshot:
                log.info("source %s: the seek went past the checkpoint; reading it from its start", self.url)
            except SourceTooLong:
                raise
            except SourceError as exc:
                if self.counters.decoded == 0 and failures == 0 and not isinstance(exc, SourceStalled):
                    raise  # never readable at all: a bad source, not a stall
                failures += 1
                if failures > self.config.reconnects:
                    raise SourceStalled(f"no frames after {self.config.reconnects} reconnects: {exc}") from None
                self.counters.reconnects += 1
                self._on_reconnect(str(exc))
                wait = min(30.0, self.config.backoff_s * 2 ** (failures - 1))
                log.warning("source %s: %s; reconnecting in %.1f s", self.url, exc, wait)
                if self._stop.wait(wait):
                    return

    def _open(self) -> av.container.InputContainer:
        timeouts = (self.config.open_timeout_s, self.config.read_timeout_s)
        options = {"rw_timeout": _micros(timeouts[1]), "protocol_whitelist": protocols(self.url)}
        try:
            return av.open(self.url, mode="r", timeout=timeouts, options=options)
        except (av.error.ExitError, TimeoutError) as exc:
            raise SourceStalled(f"opening timed out: {exc}") from None
        except (av.error.FFmpegError, OSError, ValueError) as exc:
            raise SourceError(f"cannot open the source: {getattr(exc, 'strerror', None) or exc}") from None

    def _decoded(self, container: av.container.InputContainer, stream: av.VideoStream) -> Iterator[av.VideoFrame]:
        """Decoded frames; packets that fail to decode are skipped and counted; a read timeout is a stall."""
        bad_in_a_row = 0
        step = 1.0 / float(stream.average_rate) if stream.average_rate else None
        last: float | None = None
        while not self.stopped:
            try:
                for packet in container.demux(stream):
                    if self._stop.is_set():
                        return
                    if packet.is_corrupt:  # the demuxer saw damage (e.g. MPEG-TS continuity errors)
                        self.counters.corrupt += 1
                        continue
                    try:
                        frames = packet.decode()
                    except av.error.InvalidDataError:
                        self.counters.corrupt += 1
                        continue
                    bad_in_a_row = 0
                    for frame in frames:
                        self.counters.decoded += 1
                        if step and last is not None and frame.time is not None and frame.time - last > 2.5 * step:
                            self.counters.corrupt += 1  # frames missing: the demuxer dropped damaged data
                        last = frame.time if frame.time is not None else last
                        yield frame
                return
            except (av.error.ExitError, TimeoutError) as exc:
                raise SourceStalled(f"no data for {self.config.read_timeout_s:g} s ({exc})") from None
            except (av.error.InvalidDataError, av.error.EOFError) as exc:
                self.counters.corrupt += 1
                bad_in_a_row += 1
                if bad_in_a_row > _MAX_BAD_IN_A_ROW:
                    raise SourceError(f"the source keeps failing to demux: {exc}") from None
            except (av.error.FFmpegError, OSError) as exc:
                raise SourceStalled(f"reading failed: {getattr(exc, 'strerror', None) or exc}") from None

    def _sample(self, frame: av.VideoFrame) -> SourceFrame | None:
        """The frame as RGB when it is due on the timeline (one every 1/sample_fps s), else None."""
        if frame.pts is None:
            return None
        if self._origin is None:
            self._origin = float(frame.time)
        time_s = float(frame.time) - self._origin
        if time_s < self._last_s - _REWIND_S and (self._caught_up or self._live_reopen):
            self._origin, time_s = float(frame.time) - self._next_s, self._next_s  # a new clock: go on
            self.counters.rewinds += 1
            log.info("source %s: its clock went back; the timeline goes on at %.2f s", self.url, time_s)
        self._live_reopen = False
        if time_s > self._last_s:
            self._caught_up = True
        if time_s <= self._last_s + _EPSILON_S or time_s + _EPSILON_S < self._next_s:
            return None  # already passed (a reopened source starts again) or between samples
        if self.config.max_seconds is not None and time_s > self.config.max_seconds:
            raise SourceTooLong(f"the video lasts more than {self.config.max_seconds:g} s")
        if frame.width * frame.height > self.config.max_pixels:
            raise SourceError(f"frames are {frame.width}x{frame.height}; at most {self.config.max_pixels} pixels")
        self._last_s = time_s
        interval = 1.0 / self.config.sample_fps
        while self._next_s <= time_s + _EPSILON_S:
            self._next_s += interval
        return SourceFrame(round(time_s, 3), frame.to_ndarray(format="rgb24"))

    def _pace(self, started: float, time_s: float) -> None:
        if self.config.realtime:
            self._stop.wait(max(0.0, time_s - (time.monotonic() - started)))


#: What FFmpeg may open for a source, by the source's scheme: an HLS playlist's segments and keys come over
#: the playlist's own kind of protocol only (a remote playlist never reaches a local file).
_PROTOCOLS = {
    "http": "http,https,tcp,tls,crypto", "https": "http,https,tcp,tls,crypto",
    "rtmp": "rtmp,rtmps,tcp,tls", "rtmps": "rtmp,rtmps,tcp,tls", "rtsp": "rtsp,rtp,srtp,udp,tcp,tls",
}
_LOCAL_PROTOCOLS = "file,crypto"


def protocols(url: str) -> str:
    """FFmpeg's protocol_whitelist for a source URL (a path without a scheme is a local file)."""
    scheme = url.split("://", 1)[0].lower() if "://" in url else "file"
    return _PROTOCOLS.get(scheme, _LOCAL_PROTOCOLS)


def _video_stream(container: av.container.InputContainer) -> av.VideoStream:
    if not container.streams.video:
        container.close()
        raise SourceError("the source has no video track")
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    return stream


class _Overshot(Exception):
    """A seek landed after the checkpoint (some containers seek by estimate): read the source from its start."""


def _sought(
    container: av.container.InputContainer, frames: Iterator[av.VideoFrame], checkpoint: Checkpoint
) -> Iterator[av.VideoFrame]:
    """`frames` from a key frame shortly before the checkpoint; `_Overshot` when the first is past it. A
    file that cannot seek is read on from its start."""
    target = checkpoint.origin + max(0.0, checkpoint.time_s - _SEEK_MARGIN_S)
    try:
        container.seek(int(target * av.time_base), backward=True)
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        log.info("cannot seek to %.2f s (%s): reading on", checkpoint.time_s, exc)
        yield from frames
        return
    for n, frame in enumerate(frames):
        if n == 0 and frame.time is not None and frame.time - checkpoint.origin > checkpoint.time_s + _EPSILON_S:
            raise _Overshot
        yield frame


def _micros(seconds: float) -> str:
    return str(int(seconds * 1_000_000))
