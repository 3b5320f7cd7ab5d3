"""All configuration, read once from `WATCHBUY_*` environment variables.

Every field is documented in the README's settings table; keep the two in step.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

#: COCO classes the detector keeps by default: people (garments are worn) and product-like objects.
DEFAULT_DETECTOR_CLASSES: tuple[str, ...] = (
    "person", "backpack", "umbrella", "handbag", "tie", "suitcase", "bottle", "wine glass", "cup",
    "bowl", "cell phone", "book", "clock", "vase", "teddy bear", "hair drier", "toothbrush",
    "laptop", "mouse", "remote", "keyboard", "sports ball", "scissors",
)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="WATCHBUY_", env_file=None, extra="ignore")

    # --- model files -------------------------------------------------------------------------
    model_dir: Path = Field(Path("var/models"), description="Where `make models` puts model files.")
    model_mirror: Path | None = Field(
        None, description="Folder holding third-party model files (the detector) to copy instead of downloading."
    )
    embedder_weights: str = Field(
        "watchbuy-lite0-v1",
        description="Weights `make models` exports: `imagenet`, or a trained entry of models/weights/manifest.json.",
    )
    intra_op_threads: int = Field(0, ge=0, description="ONNX Runtime intra-op threads per session (0 = runtime default).")
    execution_providers: list[str] | None = Field(
        None, description="Override the provider preference order, e.g. [\"CPUExecutionProvider\"]."
    )

    # --- detector and proposals ----------------------------------------------------------------
    detector_score_threshold: float = Field(0.3, ge=0.0, le=1.0)
    detector_nms_iou: float = Field(0.45, ge=0.0, le=1.0)
    detector_classes: list[str] = Field(default_factory=lambda: list(DEFAULT_DETECTOR_CLASSES))
    propose_full_frame: bool = Field(
        True, description="Also embed the whole frame, not only detections (a product held close to the camera)."
    )
    max_detections: int = Field(10, ge=1, le=100, description="Detections kept per frame, best first.")

    # --- indexes -------------------------------------------------------------------------------
    index_root: Path = Field(Path("var/indexes"), description="Versioned per-stream index store.")
    catalogue_root: Path | None = Field(None, description="Folder of stream catalogues, one sub-folder per stream.")
    index_factory: str = Field("Flat", description="FAISS index factory string (inner product).")
    index_keep_versions: int = Field(3, ge=1, description="Published versions kept per stream.")
    max_loaded_streams: int = Field(8, ge=1, description="Stream indexes held in memory at once (LRU).")
    reload_check_seconds: float = Field(1.0, ge=0.0, description="How often a loaded stream checks CURRENT.")

    # --- retrieval -----------------------------------------------------------------------------
    neighbours_per_box: int = Field(20, ge=1, le=200, description="FAISS neighbours fetched per box.")
    matches_per_box: int = Field(3, ge=1, le=20, description="Box-level matches returned per box.")
    abstain_threshold: float = Field(
        0.67, description="Abstain when the best product score is below this (calibrated on viton-train-11)."
    )
    proposal_weights: dict[str, float] = Field(
        default_factory=lambda: {"person": 0.9, "lower_body": 0.94},
        description="Similarity multiplier per proposal label when ranking products (others 1.0).",
    )

    # --- HTTP edge -----------------------------------------------------------------------------
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    max_frames: int = Field(32, ge=1, description="Frames accepted per request.")
    max_top_k: int = Field(50, ge=1)
    max_image_pixels: int = Field(16_777_216, ge=1, description="Largest decoded frame (width × height).")
    max_body_bytes: int = Field(32 * 1024 * 1024, ge=1024, description="Largest request body.")
    inference_threads: int = Field(2, ge=1, description="Worker threads running CPU work off the event loop.")


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings (tests build their own `Settings(...)` instead)."""
    return Settings()
