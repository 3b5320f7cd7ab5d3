"""Real video clips for tests, encoded with PyAV from still images (H.264 MP4 or VP8 WebM)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from indexer.video import encode_video


def encode_clip(
    stills: Sequence[np.ndarray], fps: int = 24, frames_per_still: int = 12, container: str = "mp4"
) -> bytes:
    """Each still (H×W×3 uint8 RGB, all the same even size) shown for `frames_per_still` frames."""
    return encode_video((still for still in stills for _ in range(frames_per_still)), fps, container)


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
