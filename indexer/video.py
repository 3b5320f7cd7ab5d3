"""Video clips → the frames at given indices, as JPEG bytes the service accepts (PyAV)."""

from __future__ import annotations

from collections.abc import Iterable
from io import BytesIO
from pathlib import Path

import av
import numpy as np
from PIL import Image

JPEG_QUALITY = 95


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


def read_jpeg_frames(path: Path, indices: Iterable[int]) -> dict[int, bytes]:
    """`read_frames`, each frame encoded as JPEG bytes."""
    return {index: encode_jpeg(pixels) for index, pixels in read_frames(path, indices).items()}
