"""Execution providers chosen from what is installed, an empty model folder refused, crops clipped."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from models.artifacts import (
    FIX_COMMAND,
    ModelArtifactError,
)
from models.embedder import crop
from models.loader import load_configured_models
from models.sessions.ort import select_providers
from watchbuy.settings import Settings

CPU, CUDA, TRT = "CPUExecutionProvider", "CUDAExecutionProvider", "TensorrtExecutionProvider"


def test_select_providers_cpu_only() -> None:
    assert select_providers([CPU]) == [CPU]


def test_select_providers_orders_by_preference() -> None:
    assert select_providers([CUDA, CPU, TRT]) == [TRT, CUDA, CPU]
    assert select_providers([CPU, CUDA]) == [CUDA, CPU]


def test_select_providers_drops_unknown_and_always_keeps_cpu() -> None:
    assert select_providers(["AzureExecutionProvider", CPU, "FooExecutionProvider"]) == [CPU]
    assert select_providers([]) == [CPU]
    assert select_providers(["CoreMLExecutionProvider", CUDA]) == [CUDA, CPU]


def test_select_providers_with_a_custom_preference() -> None:
    assert select_providers([CUDA, CPU, TRT], preferred=[CUDA, CPU]) == [CUDA, CPU]
    assert select_providers([CUDA, CPU, TRT], preferred=[CPU]) == [CPU]


def load(model_dir: Path):
    return load_configured_models(Settings(model_dir=model_dir))


def test_empty_model_dir_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ModelArtifactError, match=FIX_COMMAND):
        load(tmp_path)


def test_crop_is_clipped_and_never_empty() -> None:
    image = np.arange(10 * 20 * 3, dtype=np.uint8).reshape(10, 20, 3)
    assert crop(image, (2.5, 1.2, 7.1, 4.0)).shape == (3, 6, 3)  # floor/ceil: x 2..8, y 1..4
    assert crop(image, (-5, -5, 50, 50)).shape == (10, 20, 3)
    assert crop(image, (30, 30, 40, 40)).shape == (1, 1, 3)
    assert crop(image, (5, 5, 5, 5)).shape == (1, 1, 3)
