"""Real video clips for tests, encoded with PyAV from still images (H.264 MP4 or VP8 WebM)."""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction
from io import BytesIO
from pathlib import Path

import av
import numpy as np
from PIL import Image

#: container → (PyAV format name, codec)
CODECS = {"mp4": ("mp4", "libx264"), "webm": ("webm", "libvpx")}


def encode_clip(
    stills: Sequence[np.ndarray], fps: int = 24, frames_per_still: int = 12, container: str = "mp4"
) -> bytes:
    """Each still (H×W×3 uint8 RGB, all the same even size) shown for `frames_per_still` frames."""
    height, width = stills[0].shape[:2]
    fmt, codec = CODECS[container]
    buffer = BytesIO()
    with av.open(buffer, mode="w", format=fmt) as output:
        stream = output.add_stream(codec, rate=Fraction(fps))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        position = 0
        for still in stills:
            pixels = np.ascontiguousarray(still, dtype=np.uint8)
            for _ in range(frames_per_still):
                frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
                frame.pts, frame.time_base = position, Fraction(1, fps)
                output.mux(stream.encode(frame))
                position += 1
        output.mux(stream.encode(None))
    return buffer.getvalue()


def read_still(path: Path, size: tuple[int, int] | None = None) -> np.ndarray:
    """An image file as RGB pixels, optionally resized to `size` (width, height)."""
    with Image.open(path) as image:
        rgb = image.convert("RGB")
        if size is not None:
            rgb = rgb.resize(size)
        return np.asarray(rgb, dtype=np.uint8)


def flat_stills(count: int, width: int = 64, height: int = 48) -> list[np.ndarray]:
    """Plain coloured frames (no model needed to decode them)."""
    return [np.full((height, width, 3), 40 * (i + 1) % 256, dtype=np.uint8) for i in range(count)]
