"""Augmentations that imitate livestream frames: box jitter, flips, colour shifts, blur, occlusion."""

from __future__ import annotations

import cv2
import numpy as np

from models import synthetic
from models.embedder import crop, pad_to_square
from models.types import Box


def jitter_box(box: Box, width: int, height: int, rng: np.random.Generator, amount: float) -> Box:
    """Shift and scale a box by up to `amount` of its size (detector boxes are never exact)."""
    x1, y1, x2, y2 = box
    w, h = x2 - x1, y2 - y1
    dx1, dy1, dx2, dy2 = rng.uniform(-amount, amount, 4)
    return (
        float(np.clip(x1 + dx1 * w, 0, width - 2)),
        float(np.clip(y1 + dy1 * h, 0, height - 2)),
        float(np.clip(x2 + dx2 * w, x1 + 2, width)),
        float(np.clip(y2 + dy2 * h, y1 + 2, height)),
    )


def colour_shift(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    hsv = cv2.cvtColor(image, cv2.COLOR_RGB2HSV).astype(np.float32)
    hsv[..., 0] = (hsv[..., 0] + rng.uniform(-6, 6)) % 180
    hsv[..., 1] *= rng.uniform(0.7, 1.3)
    hsv[..., 2] *= rng.uniform(0.7, 1.3)
    out = cv2.cvtColor(np.clip(hsv, 0, 255).astype(np.uint8), cv2.COLOR_HSV2RGB).astype(np.float32)
    contrast = rng.uniform(0.8, 1.2)
    out = (out - out.mean()) * contrast + out.mean()
    adjusted: np.ndarray = np.clip(out, 0, 255).astype(np.uint8)
    return adjusted


def blur(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Defocus, or motion blur 3–9 px long (the synthetic live views' blur, shorter)."""
    return synthetic.blur(image, rng, lengths=(3, 10))


def occlude(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    h, w = image.shape[:2]
    eh, ew = int(h * rng.uniform(0.1, 0.35)), int(w * rng.uniform(0.1, 0.35))
    y, x = int(rng.integers(0, max(1, h - eh))), int(rng.integers(0, max(1, w - ew)))
    out = image.copy()
    out[y : y + eh, x : x + ew] = rng.integers(0, 255, 3, dtype=np.uint8)
    return out


def rotate(image: np.ndarray, rng: np.random.Generator, max_degrees: float) -> np.ndarray:
    """Turn by up to ±max_degrees (a product held at an angle), edges filled by reflection."""
    h, w = image.shape[:2]
    matrix = cv2.getRotationMatrix2D((w / 2, h / 2), float(rng.uniform(-max_degrees, max_degrees)), 1.0)
    return cv2.warpAffine(image, matrix, (w, h), borderMode=cv2.BORDER_REFLECT_101)


def view(
    image: np.ndarray,
    box: Box | None,
    size: int,
    rng: np.random.Generator,
    strong: bool,
    rotate_degrees: float = 0.0,
) -> np.ndarray:
    """One augmented crop, padded to a square and resized like the embedder does (uint8 RGB).

    `rotate_degrees` > 0 turns a strong view with probability 0.5 (0 keeps the v1 recipe bit for bit).
    """
    h, w = image.shape[:2]
    box = box if box is not None else (0.0, 0.0, float(w), float(h))
    patch = crop(image, jitter_box(box, w, h, rng, 0.15 if strong else 0.05))
    if strong and rotate_degrees > 0 and rng.random() < 0.5:
        patch = rotate(np.ascontiguousarray(patch), rng, rotate_degrees)
    if rng.random() < 0.5:
        patch = patch[:, ::-1]
    if rng.random() < 0.8:
        patch = colour_shift(np.ascontiguousarray(patch), rng)
    if strong and rng.random() < 0.4:
        patch = blur(np.ascontiguousarray(patch), rng)
    if strong and rng.random() < 0.3:
        patch = occlude(np.ascontiguousarray(patch), rng)
    return cv2.resize(pad_to_square(np.ascontiguousarray(patch)), (size, size), interpolation=cv2.INTER_AREA)
