"""All configuration, read once from `WATCHBUY_*` environment variables.

Every field is documented in the README's settings table; keep the two in step.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator
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
        "watchbuy-lite-e3",
        description="Weights `make models` exports: `imagenet`, or an entry of models/weights/manifest.json (trained "
        "weights, or an ensemble of them such as the default: v6 (Lite1) + v4 (Lite0)).",
    )
    # 1: measured on the 2-core box, two single-threaded calls at once beat one call on 2 spinning threads
    intra_op_threads: int = Field(
        1, ge=0, description="ONNX Runtime intra-op threads per session (0 = runtime default)."
    )
    execution_providers: list[str] | None = Field(
        None, description="Override the provider preference order, e.g. [\"CPUExecutionProvider\"]."
    )
    int8_models: list[Literal["detector", "embedder"]] = Field(
        default_factory=list,
        description="Models run from their int8 copy on ONNX Runtime's CPU provider ([] = fp32). TensorRT and "
        "CUDA always run the fp32 file (TensorRT builds FP16 engines from it). Off by default: on this AVX2 CPU "
        "without VNNI the int8 embedder is 1.8x faster but costs 0.018 R@1 on viton-dev (docs/EVALUATION.md).",
    )
    quantization_data: list[Path] = Field(
        default_factory=list,
        description="*-train datasets `make models` calibrates the int8 copies on (none: no int8 copies made).",
    )
    inference_backend: Literal["auto", "tensorrt", "onnxruntime"] = Field(
        "auto",
        description="auto: native TensorRT when it can run here, else ONNX Runtime (models/sessions/backend.py).",
    )

    # --- detector and proposals ----------------------------------------------------------------
    detector_score_threshold: float = Field(0.3, ge=0.0, le=1.0)
    detector_nms_iou: float = Field(0.45, ge=0.0, le=1.0)
    detector_classes: list[str] = Field(default_factory=lambda: list(DEFAULT_DETECTOR_CLASSES))
    propose_person: bool = Field(True, description="Embed each detected person's box.")
    propose_parts: bool = Field(True, description="Embed each person's upper- and lower-body boxes.")
    propose_full_frame: bool = Field(
        True, description="Also embed the whole frame, not only detections (a product held close to the camera)."
    )
    propose_center_crops: list[Annotated[float, Field(gt=0.0, le=1.0)]] = Field(
        default_factory=lambda: [0.45, 0.7],
        description="Side fractions of centred boxes also embedded in every frame (a product held up to the camera).",
    )
    max_detections: int = Field(10, ge=1, le=100, description="Detections kept per frame, best first.")
    reuse_crops: bool = Field(
        True, description="A crop that repeats an earlier one of the request reuses its embedding (models/reuse.py)."
    )
    reuse_iou: float = Field(0.9, gt=0.0, le=1.0, description="Box overlap at which a crop may repeat another.")
    reuse_max_diff: float = Field(
        4.0, ge=0.0, le=255.0, description="Mean grey-level difference of 16×16 thumbnails at which it does."
    )

    # --- indexes -------------------------------------------------------------------------------
    index_root: Path = Field(Path("var/indexes"), description="Versioned per-stream index store.")
    catalogue_root: Path | None = Field(None, description="Folder of stream catalogues, one sub-folder per stream.")
    index_factory: str = Field("Flat", description="FAISS index factory string (inner product).")
    index_search_params: str = Field(
        "",
        description="FAISS search parameters stored in each built index, e.g. 'nprobe=16' for an IVF factory or "
        "'efSearch=64' for HNSW. Empty keeps faiss's defaults (IVF: nprobe=1, which misses most neighbours).",
    )
    catalogue_unboxed_images: Literal["whole", "detect"] = Field(
        "whole",
        description="A catalogue image without boxes: embed the whole image (the product fills it), or also "
        "the detector's proposals in it (scene photos). indexer/build.py has the measurement.",
    )
    index_keep_versions: int = Field(3, ge=1, description="Published versions kept per stream.")
    max_loaded_streams: int = Field(8, ge=1, description="Stream indexes held in memory at once (LRU).")
    reload_check_seconds: float = Field(1.0, ge=0.0, description="How often a loaded stream checks CURRENT.")

    # --- retrieval -----------------------------------------------------------------------------
    neighbours_per_box: int = Field(20, ge=1, le=200, description="FAISS neighbours fetched per box.")
    matches_per_box: int = Field(3, ge=1, le=20, description="Box-level matches returned per box.")
    abstain_threshold: float = Field(
        0.43,
        description="Abstain when the best product score is below this, for every stream whose index carries no "
        "calibration of its own. Calibrated for watchbuy-lite-e3 on viton-train-11 (held out from training): the "
        "highest threshold whose rate of abstaining on normal clips, plus one standard error, stays at or under "
        "10%; it holds out of that domain too (docs/EVALUATION.md, 'Per-catalogue abstain threshold').",
    )
    abstain_threshold_overrides: dict[str, float] = Field(
        default_factory=dict,
        description="Per-stream abstain thresholds: glob pattern on the stream id → threshold; the first "
        'matching pattern wins over everything else. E.g. {"shop-42-*": 0.6}.',
    )
    calibration_views: int = Field(
        0, ge=0, le=1024,
        description="Synthetic live views of catalogue images scored at index build to calibrate each stream's "
        "own abstain threshold (service/calibration.py), which its answers then use. 0 (the default): no "
        "calibration; measured, it does not transfer to other kinds of product yet (docs/EVALUATION.md).",
    )
    frame_pool: int = Field(
        3, ge=0, le=64,
        description="A product scores the mean of its best this-many frames of a request (0: of every frame), so "
        "a score means the same for 1 frame and for a 32-frame video in which the product is seen in a few.",
    )
    text_weight: float = Field(
        0.5, ge=0.0, le=5.0,
        description="How far the host's speech (asr_text) moves a product's score: weight × (its title's "
        "cosine to the speech − the catalogue mean). 0 turns text fusion off; no asr_text changes nothing.",
    )
    hubness_weight: float = Field(
        0.25, ge=0.0, le=2.0,
        description="Products are ranked by cosine − this × the catalogue image's hubness (its mean cosine to its "
        "5 nearest training-stream crops, stored at index build when the embedder has a cohort; models/cohort.py). "
        "0 = plain cosine. The abstain thresholds are calibrated for 0.25.",
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
    drain_seconds: float = Field(
        0.0, ge=0.0, description="On SIGTERM, /readyz fails this long before the listener closes (service/drain.py)."
    )

    # --- batching and threads (service/batching.py; defaults measured on the 2-core box, see README) ---
    batching: bool = Field(True, description="Batch detector and embedder calls across concurrent requests.")
    # small on a CPU: the CPU time per item grows with the batch (detector 8.3 ms at 1-2, 10.0 at 8; embedder
    # 7.2 ms at 1, 8.1 at 4, 9.0 at 8); HTTP at concurrency 16: embedder 4 > 8 > 32. Raise both on a GPU.
    detector_max_batch: int = Field(2, ge=1, le=64, description="Most frames in one detector call.")
    embedder_max_batch: int = Field(4, ge=1, le=256, description="Most crops in one embedder call.")
    # 0 (Triton's default): on a CPU a fuller batch costs as much per item, so waiting only adds latency
    batch_max_wait_ms: float = Field(
        0.0, ge=0.0, le=100.0,
        description="Upper bound on waiting for a fuller batch (the wait is min(this, half the measured call)).",
    )
    # about 2-3 s of work each here: an answer queued longer than a player's polling interval is stale
    detector_queue_size: int = Field(32, ge=1, description="Frames waiting for the detector before 429 overloaded.")
    embedder_queue_size: int = Field(256, ge=1, description="Crops waiting for the embedder before 429 overloaded.")
    # one single-threaded model call per core
    model_calls: int = Field(2, ge=1, description="Batched model calls running at once, over both models.")
    # 1: concurrent requests already fill the cores; per-search OpenMP threads only contend with the models
    faiss_threads: int = Field(1, ge=0, description="FAISS OpenMP threads (0 = FAISS default: all cores).")

    # --- Redis, sessions and access ----------------------------------------------------------------
    redis_url: str | None = Field(
        None, description="redis://host:port/db; unset = one machine: file-based reload, no sessions, no rate limit."
    )
    redis_timeout_seconds: float = Field(
        0.25, gt=0.0, le=10.0, description="Connect and command timeout: a dead Redis never stalls a request longer."
    )
    registry_channel: str = Field(
        "watchbuy:indexes", min_length=1,
        description="Pub/sub channel the indexer announces new versions on "
        "(the hash `<channel>:current` records them).",
    )
    session_window: int = Field(5, ge=1, le=100, description="Recent /identify requests a session's ranking averages.")
    session_ttl_seconds: int = Field(300, ge=1, description="A session is forgotten this long after its last request.")
    api_keys: list[str] = Field(
        default_factory=list, description="Accepted API keys (JSON list); empty = no authentication."
    )
    rate_limit_per_minute: int = Field(
        0, ge=0, description="Requests per API key per minute (fixed window in Redis); 0 = off."
    )

    # --- stream watchers (service/watch; docs/WATCHING.md) -------------------------------------------
    watch_sample_fps: float = Field(4.0, gt=0.0, le=30.0, description="Frames a watcher analyses per second of source.")
    watch_batch_frames: int = Field(
        4, ge=1, le=32, description="Waiting frames a watcher answers at once (concurrent requests to the batchers)."
    )
    watch_window_seconds: float = Field(
        3.0, gt=0.0, le=30.0, description="Seconds of answers a watcher's vote looks at (docs/WATCHING.md)."
    )
    watch_min_share: float = Field(
        0.34, gt=0.0, le=1.0, description="Share of the window's frames a product must lead to start a segment."
    )
    watch_gap_seconds: float = Field(
        3.0, ge=0.0, le=60.0, description="A segment ends when its product has not led for this long."
    )
    watch_pooled: bool = Field(
        True, description="Vote on each frame's top-5 scores pooled over the window (cleared against the stream's "
        "abstain threshold) instead of on single-frame winners (docs/WATCHING.md)."
    )
    watch_tie: float = Field(
        0.05, ge=0.0, le=1.0, description="Pooled vote: a frame also supports the products scoring within this much "
        "of its top product, so look-alikes that trade first place do not split a segment (docs/WATCHING.md)."
    )
    watch_open_timeout_seconds: float = Field(10.0, gt=0.0, description="Opening a source times out after this.")
    watch_read_timeout_seconds: float = Field(10.0, gt=0.0, description="A source silent this long has stalled.")
    watch_reconnects: int = Field(5, ge=0, le=100, description="Reopening tries before a stalled source is given up.")
    watch_backoff_seconds: float = Field(1.0, ge=0.0, description="First wait before reopening (doubled each try).")
    watch_schemes: list[str] = Field(
        default_factory=lambda: ["http", "https", "rtmp", "rtmps", "rtsp"],
        description="URL schemes the API accepts as a watch source.",
    )
    watch_hosts: list[str] = Field(
        default_factory=list, description="Hosts a watch source may come from (empty: any public host)."
    )
    watch_allow_private: bool = Field(
        False, description="Allow sources on loopback, private and link-local addresses (off: no way inside)."
    )
    watch_local_root: Path | None = Field(
        None, description="Folder whose files the API may watch (unset: no local files through the API)."
    )
    watch_workers: bool = Field(
        False,
        description="POST /streams/{id}/watch queues the watch for `watchbuy watch-worker` processes (needs "
        "Redis) instead of running it in the API process.",
    )
    watch_max_per_worker: int = Field(2, ge=1, le=64, description="Watches one watch-worker runs at once.")
    watch_claim_idle_seconds: float = Field(
        30.0, gt=0.0, description="A watch whose worker has not renewed it this long is taken over by another."
    )
    worker_metrics_port: int = Field(
        9101, ge=0, le=65535, description="Port of a watch worker's /metrics for Prometheus (0: none)."
    )
    watch_restarts: int = Field(3, ge=0, le=100, description="Restarts of a watcher that crashed, before it is failed.")
    watch_events_maxlen: int = Field(10_000, ge=10, description="Events kept per stream in Redis (XADD MAXLEN ~).")
    watch_webhook_url: str | None = Field(None, description="Every watch event is POSTed here as JSON, when set.")
    watch_webhook_secret: str | None = Field(
        None, description="HMAC-SHA256 key of the webhook's `X-Watchbuy-Signature` header (sha256=<hex>)."
    )
    watch_webhook_retries: int = Field(5, ge=0, le=20, description="Retries of a failed webhook call (backoff).")

    @field_validator("api_keys")
    @classmethod
    def _keys_not_blank(cls, keys: list[str]) -> list[str]:
        if any(not key.strip() or key != key.strip() for key in keys):
            raise ValueError("API keys must be non-empty and have no surrounding whitespace")
        return keys

    @model_validator(mode="after")
    def _rate_limit_needs_keys_and_redis(self) -> Settings:
        if self.rate_limit_per_minute and not (self.api_keys and self.redis_url):
            raise ValueError("WATCHBUY_RATE_LIMIT_PER_MINUTE needs WATCHBUY_API_KEYS and WATCHBUY_REDIS_URL")
        return self

    # --- video and demo page -------------------------------------------------------------------
    max_video_bytes: int = Field(
        20 * 1024 * 1024, ge=1024, description="Largest clip POST /identify/video accepts (max_body_bytes applies too)."
    )
    max_video_seconds: float = Field(60.0, gt=0, description="Longest clip POST /identify/video accepts.")
    video_sample_fps: float = Field(
        4.0, gt=0, le=60, description="Frames sampled per second of video; long clips get fewer (max_frames in all)."
    )


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings (tests build their own `Settings(...)` instead)."""
    return Settings()
