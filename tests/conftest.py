"""Shared pytest fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

#: The shared development folder sits next to the project: `<project>/../shared`.
SHARED_DIR = Path(__file__).resolve().parents[1].parent / "shared"


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """`../shared`; tests using it skip when it is absent, except in CI (CI=true) where they fail."""
    if not (SHARED_DIR / "data").is_dir():
        message = f"shared data folder not found at {SHARED_DIR}"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return SHARED_DIR
