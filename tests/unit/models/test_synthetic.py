"""Synthetic live views: seeded, frame-sized, the product cut out of a plain packshot background."""

from __future__ import annotations

import numpy as np

from models.synthetic import LiveViewConfig, live_view, product_mask


def packshot() -> np.ndarray:
    """A red square product on a white packshot background."""
    image = np.full((200, 160, 3), 255, np.uint8)
    image[50:150, 30:130] = (200, 20, 20)
    return image


def scene() -> np.ndarray:
    rng = np.random.default_rng(1)
    return rng.integers(0, 80, (120, 90, 3), dtype=np.uint8)  # dark: no red, no white


def test_the_mask_finds_a_packshot_product_and_keeps_a_photo_whole() -> None:
    mask = product_mask(packshot())
    assert mask[100, 80] > 0.9 and mask[10, 10] < 0.1
    assert 0.25 < mask.mean() < 0.4  # the 100×100 square of 200×160
    photo = np.random.default_rng(2).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    assert (product_mask(photo) == 1).all()


def test_a_view_is_seeded_and_shows_the_product_on_the_scene() -> None:
    config = LiveViewConfig(width=320, height=240, occlude=0.0, blur=0.0)
    first = live_view(packshot(), None, scene(), np.random.default_rng(5), config)
    again = live_view(packshot(), None, scene(), np.random.default_rng(5), config)
    other = live_view(packshot(), None, scene(), np.random.default_rng(6), config)
    assert first.shape == (240, 320, 3) and first.dtype == np.uint8
    assert np.array_equal(first, again) and not np.array_equal(first, other)
    red = (first[..., 0] > 120) & (first[..., 1] < 90) & (first[..., 2] < 90)
    white = first.min(axis=2) > 200
    assert red.mean() > 0.03  # the product is there, at least 35% of the short side…
    assert white.mean() < 0.01  # …without its white packshot background


def test_a_box_selects_the_product_of_a_larger_image() -> None:
    image = np.zeros((300, 300, 3), np.uint8)
    image[100:200, 100:200] = (20, 20, 220)  # the product: blue, inside the box
    image[:, :50] = (220, 20, 20)  # something else: red, outside it
    config = LiveViewConfig(width=200, height=200, occlude=0.0, blur=0.0)
    view = live_view(image, (100.0, 100.0, 200.0, 200.0), scene(), np.random.default_rng(0), config)
    blue = (view[..., 2] > 140) & (view[..., 0] < 90)
    red = (view[..., 0] > 140) & (view[..., 2] < 90)
    assert blue.mean() > 0.05 and red.mean() < 0.001
