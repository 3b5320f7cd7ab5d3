"""Video clips → the frames at given indices, as JPEG bytes the service accepts; frames → a clip (PyAV)."""

from __future__ import annotations

from collections.abc import Iterable
from fractions import Fraction
from io import BytesIO
from pathlib import Path
from typing import cast

import av
import numpy as np
from av.video.stream import VideoStream
from PIL import Image

JPEG_QUALITY = 95
#: container → (PyAV format name, codec)
CODECS = {"mp4": ("mp4", "libx264"), "webm": ("webm", "libvpx")}


class VideoError(Exception):
    """The video cannot be opened or decoded, or lacks a wanted frame."""


def read_frames(path: Path, indices: Iterable[int]) -> dict[int, np.ndarray]:
    """The frames at `indices` (0-based, in presentation order) as H×W×3 uint8 RGB arrays.

    Decodes from the start and stops after the last wanted index: exact frame numbers, no reliance on
    keyframe seeking (short live clips, annotated every 40 frames, make that cheap enough).
    """
    wanted = sorted({int(i) for i in indices})
    if not wanted:
        return {}
    if wanted[0] < 0:
        raise VideoError(f"{path}: negative frame index {wanted[0]}")
    found: dict[int, np.ndarray] = {}
    remaining = set(wanted)
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise VideoError(f"{path}: no video stream")
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            for position, frame in enumerate(container.decode(stream)):
                if position in remaining:
                    found[position] = frame.to_ndarray(format="rgb24")
                    remaining.discard(position)
                    if not remaining:
                        break
    except (av.FFmpegError, OSError) as exc:
        raise VideoError(f"{path}: cannot decode: {exc}") from exc
    if remaining:
        raise VideoError(f"{path}: no frame at indices {sorted(remaining)} (the video is shorter)")
    return found


def encode_jpeg(pixels: np.ndarray, quality: int = JPEG_QUALITY) -> bytes:
    """H×W×3 uint8 RGB → JPEG bytes."""
    buffer = BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels, dtype=np.uint8)).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def encode_video(frames: Iterable[np.ndarray], fps: int, container: str = "mp4") -> bytes:
    """H×W×3 uint8 RGB frames, all the same even size, as one clip at `fps` (H.264 MP4 or VP8 WebM)."""
    fmt, codec = CODECS[container]
    buffer = BytesIO()
    with av.open(buffer, mode="w", format=fmt) as output:
        stream: VideoStream | None = None
        for position, pixels in enumerate(frames):
            if stream is None:
                stream = cast(VideoStream, output.add_stream(codec, rate=Fraction(fps)))
                stream.width, stream.height, stream.pix_fmt = pixels.shape[1], pixels.shape[0], "yuv420p"
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(pixels, dtype=np.uint8), format="rgb24")
            frame.pts, frame.time_base = position, Fraction(1, fps)
            output.mux(stream.encode(frame))
        if stream is not None:
            output.mux(stream.encode(None))
    return buffer.getvalue()


def read_jpeg_frames(path: Path, indices: Iterable[int]) -> dict[int, bytes]:
    """`read_frames`, each frame encoded as JPEG bytes."""
    return {index: encode_jpeg(pixels) for index, pixels in read_frames(path, indices).items()}
