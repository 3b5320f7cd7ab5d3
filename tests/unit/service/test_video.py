"""Video sampling with PyAV (service/video.py): rate, spread, duration and pixel limits, bad input."""

from __future__ import annotations

from io import BytesIO

import numpy as np
import pytest
from PIL import Image
from support.video_clips import encode_clip, flat_stills

from service.errors import ImageTooLarge, InvalidVideo, UnsupportedVideoFormat, VideoTooLong
from service.video import VideoLimits, sample_interval, sample_video, sniff_container

LIMITS = VideoLimits(max_seconds=10.0, sample_fps=2.0, max_frames=32, max_pixels=1_000_000)


def jpeg(pixels: np.ndarray) -> bytes:
    buffer = BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG")
    return buffer.getvalue()


@pytest.mark.parametrize("container", ["mp4", "webm"])
def test_frames_are_sampled_at_the_configured_rate(container: str) -> None:
    data = encode_clip(flat_stills(4), fps=24, frames_per_still=12, container=container)
    assert sniff_container(data) == container
    video = sample_video(data, LIMITS)
    assert [f.frame_index for f in video.frames] == [0, 12, 24, 36]
    assert video.times_s == (0.0, 0.5, 1.0, 1.5)
    assert video.duration_s == pytest.approx(2.0) and video.fps == 24 and video.decoded == 48
    # each sampled frame is the still shown at that time (flat grey levels 40, 80, 120, 160)
    assert [round(float(f.image.mean()) / 40) for f in video.frames] == [1, 2, 3, 4]
    assert all(f.image.shape == (48, 64, 3) and f.image.dtype == np.uint8 for f in video.frames)


def test_a_long_clip_is_spread_over_at_most_max_frames() -> None:
    data = encode_clip(flat_stills(4), fps=24, frames_per_still=24)  # 4 s: 16 frames at 4 fps
    limits = VideoLimits(max_seconds=10.0, sample_fps=4.0, max_frames=5, max_pixels=1_000_000)
    assert sample_interval(4.0, limits) == pytest.approx(0.8)
    video = sample_video(data, limits)
    assert len(video.frames) == 5
    assert video.times_s == pytest.approx(
        [0.0, 0.8, 1.6, 2.4, 3.2], abs=1 / 24
    )  # the first frame at or after each step


def test_a_clip_over_the_duration_limit_is_refused() -> None:
    data = encode_clip(flat_stills(3), fps=24, frames_per_still=24)  # 3 s
    limits = VideoLimits(max_seconds=2.0, sample_fps=2.0, max_frames=32, max_pixels=1_000_000)
    with pytest.raises(VideoTooLong, match="3.0 s"):
        sample_video(data, limits)


def test_frames_over_the_pixel_limit_are_refused() -> None:
    data = encode_clip(flat_stills(1, width=640, height=480), frames_per_still=2)
    limits = VideoLimits(max_seconds=10.0, sample_fps=2.0, max_frames=32, max_pixels=640 * 480 - 1)
    with pytest.raises(ImageTooLarge, match="640x480"):
        sample_video(data, limits)


def test_not_a_video_is_refused_by_its_first_bytes() -> None:
    with pytest.raises(UnsupportedVideoFormat, match="JPEG image"):
        sample_video(jpeg(flat_stills(1)[0]), LIMITS)
    with pytest.raises(UnsupportedVideoFormat, match="not an MP4 or WebM"):
        sample_video(b"RIFF\x00\x00\x00\x00AVI LIST" + bytes(200), LIMITS)
    with pytest.raises(InvalidVideo, match="empty"):
        sample_video(b"", LIMITS)


@pytest.mark.parametrize("damage", ["truncated", "garbage_after_header"])
def test_a_corrupt_video_is_an_invalid_video(damage: str) -> None:
    data = encode_clip(flat_stills(2), frames_per_still=6)
    broken = data[: len(data) // 2] if damage == "truncated" else data[:32] + bytes(range(256)) * 8
    with pytest.raises(InvalidVideo):
        sample_video(broken, LIMITS)
