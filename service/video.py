"""An uploaded video clip (MP4 or WebM bytes) → frames sampled at a steady rate, with every limit checked.

Limits: container sniffed from the first bytes (MP4/MOV or Matroska/WebM, nothing else reaches a
demuxer), duration (declared and, while decoding, from the frame timestamps), frame size and the number of
frames kept. Frames keep their position in the video as `frame_index`. CPU work: callers run
`sample_video` in a worker thread.
"""

from __future__ import annotations

from dataclasses import dataclass
from io import BytesIO

import av
import numpy as np

from service.decode import sniff_format
from service.errors import ApiError, ImageTooLarge, InvalidVideo, UnsupportedVideoFormat, VideoTooLong
from service.values import DecodedFrame

#: Demuxer (FFmpeg short name) per container the first bytes identify.
_DEMUXERS = {"mp4": "mp4", "webm": "webm"}
#: Frames decoded per second of allowed duration before a clip counts as too long (broken timestamps).
_MAX_DECODED_FPS = 240
_EPSILON_S = 1e-3


@dataclass(frozen=True, slots=True)
class VideoLimits:
    max_seconds: float
    sample_fps: float
    max_frames: int
    max_pixels: int


@dataclass(frozen=True, slots=True)
class SampledVideo:
    """The kept frames (RGB, `frame_index` = position in the video), their times and what the clip is."""

    frames: tuple[DecodedFrame, ...]
    times_s: tuple[float, ...]
    duration_s: float
    fps: float | None
    decoded: int


def sniff_container(data: bytes) -> str | None:
    """ "mp4" (ISO base media / QuickTime `ftyp`), "webm" (EBML: WebM or Matroska) or None."""
    if len(data) >= 12 and data[4:8] == b"ftyp":
        return "mp4"
    if data.startswith(b"\x1a\x45\xdf\xa3"):
        return "webm"
    return None


def sample_interval(duration_s: float | None, limits: VideoLimits) -> float:
    """Seconds between kept frames: 1 / sample_fps, stretched so a long clip yields at most max_frames."""
    interval = 1.0 / limits.sample_fps
    if duration_s:
        interval = max(interval, duration_s / limits.max_frames)
    return interval


def sample_video(data: bytes, limits: VideoLimits) -> SampledVideo:
    """Decode the clip once, keeping one frame every `sample_interval` seconds (at most max_frames)."""
    container_name = _container(data)
    try:
        with av.open(BytesIO(data), mode="r", format=_DEMUXERS[container_name]) as container:
            if not container.streams.video:
                raise InvalidVideo("the file has no video track")
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            duration = _declared_duration(container, stream)
            if duration is not None and duration > limits.max_seconds + _EPSILON_S:
                raise VideoTooLong(_too_long(duration, limits))
            _check_pixels(stream.codec_context.width, stream.codec_context.height, limits)
            fps = float(stream.average_rate) if stream.average_rate else None
            return _decode(container, stream, duration, fps, limits)
    except ApiError:
        raise
    except Exception as exc:  # noqa: BLE001 -- PyAV raises FFmpegError subclasses, ValueError, OSError... for broken data
        raise InvalidVideo(
            f"corrupt {container_name} video: {getattr(exc, 'strerror', None) or exc}"
        ) from None


def _container(data: bytes) -> str:
    if not data:
        raise InvalidVideo("the video is empty")
    container = sniff_container(data)
    if container is not None:
        return container
    image = sniff_format(data)
    if image is not None:
        raise UnsupportedVideoFormat(f"this is a {image} image, not a video; send images to POST /identify")
    raise UnsupportedVideoFormat("not an MP4 or WebM video")


def _declared_duration(container: av.container.InputContainer, stream: av.VideoStream) -> float | None:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / av.time_base
    return None


def _check_pixels(width: int, height: int, limits: VideoLimits) -> None:
    if width * height > limits.max_pixels:
        raise ImageTooLarge(
            f"video frames are {width}x{height} pixels; at most {limits.max_pixels} are accepted"
        )


def _too_long(seconds: float, limits: VideoLimits) -> str:
    return f"the video lasts {seconds:.1f} s; at most {limits.max_seconds:g} s are accepted"


def _decode(
    container: av.container.InputContainer,
    stream: av.VideoStream,
    duration: float | None,
    fps: float | None,
    limits: VideoLimits,
) -> SampledVideo:
    """Every frame is decoded (exact positions, no keyframe seeking); only the sampled ones are converted."""
    interval = sample_interval(duration, limits)
    max_decoded = int(limits.max_seconds * _MAX_DECODED_FPS) + 1
    frames: list[DecodedFrame] = []
    times: list[float] = []
    start: float | None = None
    next_time, last_time, position = 0.0, 0.0, -1
    for position, frame in enumerate(container.decode(stream)):
        if position >= max_decoded:
            raise VideoTooLong(f"the video has more than {max_decoded} frames")
        stamp = frame.time if frame.time is not None else position / (fps or limits.sample_fps)
        start = stamp if start is None else start
        last_time = stamp - start
        if last_time > limits.max_seconds + _EPSILON_S:
            raise VideoTooLong(_too_long(last_time, limits))
        if len(frames) < limits.max_frames and last_time + _EPSILON_S >= next_time:
            _check_pixels(frame.width, frame.height, limits)
            frames.append(DecodedFrame(position, _upright_rgb(frame)))
            times.append(round(last_time, 3))
            while next_time <= last_time + _EPSILON_S:
                next_time += interval
    if not frames:
        raise InvalidVideo("the video has no decodable frame")
    seconds = duration if duration is not None else last_time + (1.0 / fps if fps else 0.0)
    return SampledVideo(tuple(frames), tuple(times), round(seconds, 3), fps, position + 1)


def _upright_rgb(frame: av.VideoFrame) -> np.ndarray:
    """H×W×3 uint8 RGB, turned upright when the clip carries a display rotation (phone videos)."""
    pixels = frame.to_ndarray(format="rgb24")
    turns = (round(getattr(frame, "rotation", 0) or 0) // 90) % 4
    return np.ascontiguousarray(np.rot90(pixels, k=turns)) if turns else pixels
