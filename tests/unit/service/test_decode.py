"""service.decode: base64, formats, EXIF orientation, corrupt data, decompression bombs."""

from __future__ import annotations

import base64
import struct
import zlib
from io import BytesIO

import numpy as np
import pytest
from PIL import Image, ImageFile

from service.decode import decode_base64, decode_image
from service.errors import ImageTooLarge, InvalidBase64, InvalidImage, UnsupportedImageFormat
from service.values import DecodedFrame

LIMIT = 16_777_216


def encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def gradient(width: int = 64, height: int = 48) -> Image.Image:
    x = np.linspace(0, 255, width, dtype=np.uint8)[None, :].repeat(height, 0)
    y = np.linspace(0, 255, height, dtype=np.uint8)[:, None].repeat(width, 1)
    return Image.fromarray(np.stack([x, y, np.full_like(x, 128)], axis=-1), "RGB")


@pytest.mark.parametrize(("fmt", "options", "tolerance"), [
    ("PNG", {}, 0),
    ("WEBP", {"lossless": True}, 0),
    ("JPEG", {"quality": 95}, 12),
    ("WEBP", {"quality": 90}, 20),
])
def test_round_trip(fmt: str, options: dict, tolerance: int) -> None:
    source = gradient()
    pixels = decode_image(encode(source, fmt, **options), LIMIT)
    assert pixels.shape == (48, 64, 3) and pixels.dtype == np.uint8
    diff = np.abs(pixels.astype(int) - np.asarray(source).astype(int))
    assert diff.mean() <= tolerance


def test_rgba_and_grayscale_become_rgb() -> None:
    rgba = Image.new("RGBA", (5, 4), (10, 20, 30, 0))
    gray = Image.new("L", (5, 4), 77)
    assert decode_image(encode(rgba, "PNG"), LIMIT).shape == (4, 5, 3)
    assert (decode_image(encode(gray, "PNG"), LIMIT) == 77).all()


def test_exif_orientation_is_applied() -> None:
    source = gradient(40, 20)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    pixels = decode_image(encode(source, "JPEG", quality=95, exif=exif.tobytes()), LIMIT)
    assert pixels.shape == (40, 20, 3)


def test_gif_and_bmp_are_unsupported() -> None:
    with pytest.raises(UnsupportedImageFormat) as caught:
        decode_image(encode(gradient(), "GIF"), LIMIT)
    assert caught.value.status == 415 and caught.value.code == "unsupported_image_format"
    with pytest.raises(UnsupportedImageFormat):
        decode_image(encode(gradient(), "BMP"), LIMIT)


@pytest.mark.parametrize("data", [b"", b"hello, not an image", b"\x00" * 100])
def test_garbage_is_invalid_image(data: bytes) -> None:
    with pytest.raises(InvalidImage) as caught:
        decode_image(data, LIMIT)
    assert caught.value.status == 400 and caught.value.code == "invalid_image"


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_truncated_image_is_invalid(fmt: str) -> None:
    data = encode(gradient(256, 256), fmt)
    with pytest.raises(InvalidImage):
        decode_image(data[: len(data) // 2], LIMIT)


def test_corrupt_header_with_valid_magic_is_invalid() -> None:
    with pytest.raises(InvalidImage):
        decode_image(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, LIMIT)


def png_declaring(width: int, height: int) -> bytes:
    """A tiny real PNG whose IHDR is patched to declare width×height (CRC recomputed)."""
    data = bytearray(encode(Image.new("RGB", (1, 1)), "PNG"))
    ihdr = 8  # after the signature: length(4) type(4) data(13) crc(4)
    struct.pack_into(">II", data, ihdr + 8, width, height)
    crc = zlib.crc32(bytes(data[ihdr + 4: ihdr + 8 + 13])) & 0xFFFFFFFF
    struct.pack_into(">I", data, ihdr + 8 + 13, crc)
    return bytes(data)


def test_huge_declared_size_is_refused_before_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_load(self: Image.Image) -> None:
        raise AssertionError("pixels must not be decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_load)
    data = png_declaring(20_000, 4_000)  # under Pillow's own bomb limit: our header check refuses it
    assert len(data) < 200
    with pytest.raises(ImageTooLarge) as caught:
        decode_image(data, LIMIT)
    assert caught.value.status == 413 and caught.value.code == "image_too_large"
    assert "20000x4000" in caught.value.message
    with pytest.raises(ImageTooLarge):  # over Pillow's limit: its DecompressionBombError is mapped
        decode_image(png_declaring(20_000, 20_000), LIMIT)


def test_pixel_limit_is_the_given_one() -> None:
    data = encode(gradient(64, 48), "PNG")
    with pytest.raises(ImageTooLarge):
        decode_image(data, 64 * 48 - 1)
    assert decode_image(data, 64 * 48).shape == (48, 64, 3)


def test_pillow_decompression_bomb_error_maps_to_image_too_large(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    with pytest.raises(ImageTooLarge):
        decode_image(encode(gradient(64, 48), "PNG"), 10**12)


def test_decode_base64_plain_and_data_url() -> None:
    payload = b"\x89PNG\x00\xffbytes"
    text = base64.b64encode(payload).decode()
    assert decode_base64(text) == payload
    assert decode_base64(f"data:image/png;base64,{text}") == payload
    assert decode_base64(f"DATA:image/jpeg;base64,{text}") == payload
    wrapped = "\n".join(text[i: i + 4] for i in range(0, len(text), 4))
    assert decode_base64(wrapped) == payload


@pytest.mark.parametrize("text", [
    "", "   ", "not base64!", "abc", "YWJj$ZGVm", "data:text/plain;base64,YWJj", "data:image/png,YWJj",
    "YWJ", "ü" * 8,
])
def test_decode_base64_rejects(text: str) -> None:
    with pytest.raises(InvalidBase64) as caught:
        decode_base64(text)
    assert caught.value.status == 400 and caught.value.code == "invalid_base64"


def test_decoded_frame_dimensions() -> None:
    frame = DecodedFrame(frame_index=3, image=np.zeros((48, 64, 3), dtype=np.uint8))
    assert (frame.width, frame.height, frame.frame_index) == (64, 48, 3)
