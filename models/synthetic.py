"""Synthetic live frames made from one catalogue image: what a camera in a livestream might see of it.

The product (its box of the catalogue image, cut out of a plain packshot background when it has one) is
placed at a random size and position on a blurred background, turned and seen in perspective, relit,
partly covered by a hand-coloured shape, blurred and JPEG-compressed. The index build uses these frames
to learn how this catalogue's products score when they are, and when they are not, on screen
(service/calibration.py); training can use them as extra live views of a catalogue image.

Everything is drawn from the `numpy.random.Generator` passed in, so a seed gives the same frames.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from models.embedder import crop
from models.types import Box

#: Skin tones (RGB) of the shape that covers part of the product, as a hand holding it would.
HAND_COLOURS = np.array([[224, 172, 140], [198, 134, 96], [141, 85, 60], [241, 194, 166]], dtype=np.float32)


@dataclass(frozen=True, slots=True)
class LiveViewConfig:
    width: int = 480
    height: int = 640
    scale: tuple[float, float] = (0.35, 0.85)  # the product's longer side, as a share of the frame's shorter side
    rotate_degrees: float = 15.0
    perspective: float = 0.08  # corner jitter, as a share of the product's size
    occlude: float = 0.5  # probability of a hand-coloured shape over the product
    blur: float = 0.5  # probability of a motion or defocus blur
    jpeg_quality: tuple[int, int] = (35, 85)


def product_mask(patch: np.ndarray) -> np.ndarray:
    """Where the product is in a catalogue crop ([h, w] float32 in 0..1).

    A packshot's background is one plain colour reaching the crop's border: pixels far from the border's
    median colour are the product. When that finds almost nothing or almost everything (a photo, not a
    packshot) the whole crop is the product.
    """
    h, w = patch.shape[:2]
    border = np.concatenate([patch[0], patch[-1], patch[:, 0], patch[:, -1]]).astype(np.float32)
    distance = np.abs(patch.astype(np.float32) - np.median(border, axis=0)).max(axis=2)
    mask = (distance > 24).astype(np.uint8)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))
    mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, kernel, iterations=2)
    share = float(mask.mean())
    if not 0.1 <= share <= 0.97 or min(h, w) < 16:
        return np.ones((h, w), np.float32)
    blurred: np.ndarray = cv2.GaussianBlur(mask.astype(np.float32), (5, 5), 0)
    return blurred


def background(source: np.ndarray, config: LiveViewConfig, rng: np.random.Generator) -> np.ndarray:
    """A defocused, recoloured piece of `source` filling the frame: a scene without this product."""
    h, w = source.shape[:2]
    side = max(8, int(min(h, w) * rng.uniform(0.3, 1.0)))
    y, x = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
    piece = cv2.resize(np.ascontiguousarray(source[y : y + side, x : x + side]), (config.width, config.height))
    sigma = max(config.width, config.height) * rng.uniform(0.01, 0.04)
    piece = cv2.GaussianBlur(piece, (0, 0), sigma).astype(np.float32)
    piece = piece * rng.uniform(0.6, 1.1, 3) + rng.normal(0.0, 6.0, piece.shape)
    out: np.ndarray = np.clip(piece, 0, 255).astype(np.uint8)
    return out


def _placement(patch_shape: tuple[int, ...], config: LiveViewConfig, rng: np.random.Generator) -> np.ndarray:
    """Where the patch's four corners land in the frame: scaled, turned, seen at a slant, moved."""
    ph, pw = patch_shape[:2]
    longer = min(config.width, config.height) * rng.uniform(*config.scale)
    s = longer / max(ph, pw)
    half = np.array([[-pw, -ph], [pw, -ph], [pw, ph], [-pw, ph]], np.float32) * s / 2
    angle = np.deg2rad(rng.uniform(-config.rotate_degrees, config.rotate_degrees))
    turn = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]], np.float32)
    corners = half @ turn.T + rng.uniform(-config.perspective, config.perspective, (4, 2)) * longer
    span = corners.max(axis=0) - corners.min(axis=0)
    room = np.maximum(np.array([config.width, config.height], np.float32) - span, 0.0)
    centre = span / 2 + rng.uniform(0, 1, 2) * room
    placed: np.ndarray = (corners - (corners.max(axis=0) + corners.min(axis=0)) / 2 + centre).astype(np.float32)
    return placed


def _hand(alpha: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A hand-coloured ellipse over an edge of the product: its mask and colour."""
    ys, xs = np.nonzero(alpha > 0.5)
    cover = np.zeros(alpha.shape, np.float32)
    if len(xs) == 0:
        return cover, HAND_COLOURS[0]
    x1, x2, y1, y2 = xs.min(), xs.max(), ys.min(), ys.max()
    w, h = x2 - x1 + 1, y2 - y1 + 1
    cx = int(rng.choice([x1, x2]) if rng.random() < 0.5 else rng.integers(x1, x2 + 1))
    cy = int(rng.integers(y1, y2 + 1))
    axes = (max(2, int(w * rng.uniform(0.12, 0.3))), max(2, int(h * rng.uniform(0.08, 0.2))))
    cv2.ellipse(cover, (cx, cy), axes, float(rng.uniform(0, 180)), 0, 360, 1.0, -1)
    return cover, HAND_COLOURS[int(rng.integers(len(HAND_COLOURS)))]


def blur(image: np.ndarray, rng: np.random.Generator, lengths: tuple[int, int] = (5, 15)) -> np.ndarray:
    """A defocus blur (3–7 px), or with even odds a motion blur of a length drawn from `lengths` (low
    inclusive, high exclusive) along a random direction."""
    if rng.random() < 0.5:
        k = int(rng.choice([3, 5, 7]))
        return cv2.GaussianBlur(image, (k, k), 0)
    length = int(rng.integers(*lengths))
    line = np.zeros((length, length), np.float32)
    line[length // 2, :] = 1.0 / length
    turn = cv2.getRotationMatrix2D((length / 2 - 0.5, length / 2 - 0.5), float(rng.uniform(0, 180)), 1.0)
    kernel = cv2.warpAffine(line, turn, (length, length))
    return cv2.filter2D(image, -1, (kernel / max(float(kernel.sum()), 1e-6)).astype(np.float32))


def live_view(
    image: np.ndarray,
    box: Box | None,
    scene: np.ndarray,
    rng: np.random.Generator,
    config: LiveViewConfig = LiveViewConfig(),
) -> np.ndarray:
    """One synthetic live frame ([height, width, 3] uint8 RGB) of the product in `box` of `image` (None: the
    whole image), on a background made from `scene` (an image that does not show this product)."""
    return live_view_and_box(image, box, scene, rng, config)[0]


def live_view_and_box(
    image: np.ndarray,
    box: Box | None,
    scene: np.ndarray,
    rng: np.random.Generator,
    config: LiveViewConfig = LiveViewConfig(),
) -> tuple[np.ndarray, Box]:
    """`live_view`, and the box around the product in the frame (what a perfect detector would find)."""
    h, w = image.shape[:2]
    patch = np.ascontiguousarray(crop(image, box if box is not None else (0.0, 0.0, float(w), float(h))))
    mask = product_mask(patch)
    ph, pw = patch.shape[:2]
    source = np.array([[0, 0], [pw, 0], [pw, ph], [0, ph]], np.float32)
    corners = _placement(patch.shape, config, rng)
    matrix = cv2.getPerspectiveTransform(source, corners)
    low = np.clip(corners.min(axis=0), 0, [config.width - 2, config.height - 2])
    high = np.clip(corners.max(axis=0), low + 2, [config.width, config.height])
    placed: Box = (float(low[0]), float(low[1]), float(high[0]), float(high[1]))
    size = (config.width, config.height)
    warped = cv2.warpPerspective(patch, matrix, size, flags=cv2.INTER_LINEAR).astype(np.float32)
    alpha = cv2.warpPerspective(mask, matrix, size, flags=cv2.INTER_LINEAR)[..., None]
    frame = background(scene, config, rng).astype(np.float32) * (1 - alpha) + warped * alpha
    if rng.random() < config.occlude:
        cover, colour = _hand(alpha[..., 0], rng)
        cover = cv2.GaussianBlur(cover, (7, 7), 0)[..., None]
        frame = frame * (1 - cover) + colour * cover
    frame = frame * rng.uniform(0.65, 1.2) * rng.uniform(0.9, 1.1, 3)  # light level and colour cast
    out = np.clip(frame, 0, 255).astype(np.uint8)
    if rng.random() < config.blur:
        out = blur(out, rng)
    quality = int(rng.integers(config.jpeg_quality[0], config.jpeg_quality[1] + 1))
    ok, encoded = cv2.imencode(".jpg", out[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
    decoded = cv2.imdecode(encoded, cv2.IMREAD_COLOR) if ok else None
    return (out if decoded is None else np.ascontiguousarray(decoded[..., ::-1])), placed
