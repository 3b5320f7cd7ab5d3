"""Bytes → RGB frames, safely: strict base64, format allow-list, pixel limit read from the header.

`decode_image` is CPU work; callers run it in a worker thread.
"""

from __future__ import annotations

import binascii
import re
from collections.abc import Sequence
from io import BytesIO

import numpy as np
from PIL import Image, ImageOps

from service.errors import ApiError, ImageTooLarge, InvalidBase64, InvalidImage, UnsupportedImageFormat
from service.values import DecodedFrame, DecodedImages, EncodedFrame

#: Pillow format names we decode.
ALLOWED_FORMATS: tuple[str, ...] = ("JPEG", "PNG", "WEBP")

_DATA_URL = re.compile(r"^data:image/[A-Za-z0-9.+-]+;base64,", re.IGNORECASE)
_WHITESPACE = re.compile(rb"[ \t\r\n]+")

#: Signatures of image formats we recognise but refuse (415 rather than "not an image").
_OTHER_FORMATS: tuple[tuple[bytes, int, str], ...] = (
    (b"GIF87a", 0, "GIF"),
    (b"GIF89a", 0, "GIF"),
    (b"BM", 0, "BMP"),
    (b"II*\x00", 0, "TIFF"),
    (b"MM\x00*", 0, "TIFF"),
    (b"\x00\x00\x01\x00", 0, "ICO"),
    (b"8BPS", 0, "PSD"),
    (b"\x00\x00\x00\x0cjP  ", 0, "JPEG 2000"),
    (b"\xff\x4f\xff\x51", 0, "JPEG 2000"),
    (b"ftypheic", 4, "HEIC"),
    (b"ftypheix", 4, "HEIC"),
    (b"ftypmif1", 4, "HEIF"),
    (b"ftypavif", 4, "AVIF"),
    (b"\xff\x0a", 0, "JPEG XL"),
    (b"\x00\x00\x00\x0cJXL ", 0, "JPEG XL"),
)


def decode_base64(text: str) -> bytes:
    """Strict standard base64 (optional `data:image/...;base64,` prefix; line breaks tolerated)."""
    match = _DATA_URL.match(text)
    if match:
        text = text[match.end():]
    elif text.startswith("data:"):
        raise InvalidBase64("data URLs must look like data:image/<type>;base64,<data>")
    try:
        raw = _WHITESPACE.sub(b"", text.encode("ascii"))
    except UnicodeEncodeError:
        raise InvalidBase64("base64 text contains non-ASCII characters") from None
    if not raw:
        raise InvalidBase64("base64 text is empty")
    try:
        return binascii.a2b_base64(raw, strict_mode=True)
    except binascii.Error as exc:
        raise InvalidBase64(f"invalid base64: {exc}") from None


def sniff_format(data: bytes) -> str | None:
    """The allowed Pillow format name the bytes start with, or None."""
    if data.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    return None


def _other_format(data: bytes) -> str | None:
    for magic, offset, name in _OTHER_FORMATS:
        if data[offset:offset + len(magic)] == magic:
            return name
    return None


def decode_image(data: bytes, max_pixels: int) -> np.ndarray:
    """Encoded JPEG/PNG/WebP → H×W×3 uint8 RGB, EXIF orientation applied.

    The pixel count is checked from the header before any pixel is decoded (decompression bombs).
    """
    if not data:
        raise InvalidImage("image is empty")
    image_format = sniff_format(data)
    if image_format is None:
        other = _other_format(data)
        if other is not None:
            raise UnsupportedImageFormat(f"{other} images are not accepted; send JPEG, PNG or WebP")
        raise InvalidImage("not a JPEG, PNG or WebP image")
    try:
        with Image.open(BytesIO(data), formats=[image_format]) as image:
            width, height = image.size
            if width <= 0 or height <= 0:
                raise InvalidImage("image has no pixels")
            if width * height > max_pixels:
                raise ImageTooLarge(f"image is {width}x{height} pixels; at most {max_pixels} are accepted")
            upright = ImageOps.exif_transpose(image)
            rgb = upright.convert("RGB")
            pixels = np.asarray(rgb, dtype=np.uint8)
    except ApiError:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageTooLarge(f"image has too many pixels; at most {max_pixels} are accepted ({exc})") from None
    except Exception as exc:  # noqa: BLE001 -- Pillow raises OSError, SyntaxError, ValueError, EOFError... for bad data
        raise InvalidImage(f"corrupt {image_format} image: {exc}") from None
    if pixels.ndim != 3 or pixels.shape[2] != 3:
        raise InvalidImage("image did not decode to RGB")
    return np.ascontiguousarray(pixels)


def decode_images(frames: Sequence[EncodedFrame], max_pixels: int) -> DecodedImages:
    """Every frame of a request decoded (the first bad one raises its 4xx error)."""
    return DecodedImages(tuple(DecodedFrame(f.frame_index, decode_image(f.data, max_pixels)) for f in frames))
