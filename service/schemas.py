"""Request and response models of the HTTP API (pydantic lives here, at the edge only).

Limits that depend on `Settings` (frame count, top_k upper bound) are checked in
`service.request_parsing`, not here.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from service.aggregate import ThresholdSource

#: stream_id and session_id: safe to use in paths, Redis keys and metric labels.
ID_PATTERN = r"^[A-Za-z0-9._-]{1,128}$"
MAX_ASR_CHARS = 4000

StreamId = Annotated[str, Field(pattern=ID_PATTERN, description="Stream whose catalogue is searched.")]
SessionId = Annotated[str, Field(pattern=ID_PATTERN, description="Viewer session, for temporal smoothing.")]
BoxList = Annotated[list[float], Field(min_length=4, max_length=4, description="[x1, y1, x2, y2] in pixels.")]


class _Strict(BaseModel):
    """JSON requests: no type coercion ("5" is not an int), no unknown fields."""

    model_config = ConfigDict(strict=True, extra="forbid")


class FrameIn(_Strict):
    image: str = Field(min_length=1, description="Base64 JPEG/PNG/WebP, or a `data:image/...;base64,` URL.")
    frame_index: int | None = Field(None, ge=0, description="Defaults to the frame's position (0, 1, ...).")


class IdentifyFields(_Strict):
    """The non-frame fields shared by the JSON and the multipart form of /identify."""

    stream_id: StreamId
    asr_text: str | None = Field(None, max_length=MAX_ASR_CHARS, description="Speech transcript nearby.")
    top_k: int = Field(5, ge=1, description="Products returned (at most `max_top_k`).")
    session_id: SessionId | None = None


class IdentifyRequest(IdentifyFields):
    frames: list[FrameIn] = Field(min_length=1, description="Frames of the stream (at most `max_frames`).")


class IdentifyVideoFields(IdentifyFields):
    """The form fields of POST /identify/video besides the `video` file."""

    return_frames: bool = Field(False, description="Also return each sampled frame as a JPEG data URL.")


# --- responses ---------------------------------------------------------------------------------


class BoxMatchOut(BaseModel):
    product_id: str
    image_id: str
    image_box: BoxList | None = Field(None, description="Box in the catalogue image, when known.")
    similarity: float


class BoxOut(BaseModel):
    box: BoxList
    label: str
    detector_score: float
    matches: list[BoxMatchOut]


class FrameOut(BaseModel):
    frame_index: int
    width: int
    height: int
    boxes: list[BoxOut]


class ProductOut(BaseModel):
    product_id: str
    score: float
    title: str = ""
    evidence_frames: list[int] = Field(
        default_factory=list,
        description="The frames (frame_index) whose boxes matched this product and made its score, best first: "
        "for a video, where in the clip the product is seen.",
    )


class TimingsOut(BaseModel):
    decode: float
    detect: float
    embed: float
    search: float
    aggregate: float
    total: float


class SmoothingOut(BaseModel):
    applied: bool = Field(description="True when `products` are averaged over the session's recent requests.")
    window: int = Field(description="Requests the ranking is based on (this one included).")
    reason: str | None = Field(
        None, description="Why not applied: `no_session`, `disabled` (no Redis configured), `redis_unavailable`."
    )


class CropsOut(BaseModel):
    embedded: int = Field(description="Crops of this request run through the embedder.")
    reused: int = Field(description="Crops that repeated another crop of the request and took its embedding.")


class IdentifyResponse(BaseModel):
    stream_id: str
    index_version: str
    abstain: bool
    products: list[ProductOut]
    frames: list[FrameOut]
    timings_ms: TimingsOut
    crops: CropsOut
    smoothing: SmoothingOut = Field(description="Session smoothing (temporal) of `products`.")


class VideoFrameOut(BaseModel):
    frame_index: int = Field(description="Position of the frame in the video (0-based, presentation order).")
    time_s: float = Field(description="Seconds from the first frame.")
    image: str | None = Field(None, description="The frame as a JPEG data URL, when `return_frames` was true.")


class VideoOut(BaseModel):
    duration_s: float
    fps: float | None
    frames_decoded: int
    sampled: list[VideoFrameOut]


class IdentifyVideoResponse(IdentifyResponse):
    video: VideoOut


class ClipOut(BaseModel):
    clip_id: str
    product_id: str | None = Field(description="The labelled product; null = nothing from the catalogue.")
    frames: int


class ClipsResponse(BaseModel):
    stream_id: str
    clips: list[ClipOut]


class StreamInfo(BaseModel):
    stream_id: str
    index_version: str
    products: int
    vectors: int
    built_at: str = Field(description="ISO-8601 time the index was built.")
    abstain_threshold: float = Field(
        description="Answers for this stream abstain when the best product scores below this."
    )
    abstain_threshold_source: ThresholdSource = Field(
        description="Where the threshold comes from: a WATCHBUY_ABSTAIN_THRESHOLD_OVERRIDES pattern (override), "
        "the calibration of this catalogue at index build (catalogue; WATCHBUY_CALIBRATION_VIEWS), or "
        "WATCHBUY_ABSTAIN_THRESHOLD (default)."
    )


class StreamsResponse(BaseModel):
    streams: list[StreamInfo]


class ModelInfo(BaseModel):
    role: str
    name: str
    sha256: str
    precision: str = Field("fp32", description="`int8`: ONNX Runtime's quantized copy of the fp32 file `identity`.")
    identity: str = Field("", description="sha256 of the fp32 file this one computes (indexes pin it).")
    provider: str = Field(description="Execution provider the session actually runs on.")
    providers: list[str] = Field(description="Providers the session was given, in preference order.")
    backend: str = Field("onnxruntime", description="`tensorrt` (native engines) or `onnxruntime`.")
    backend_reason: str = Field("", description="Why this backend and provider were chosen on this machine.")


class CohortInfo(BaseModel):
    name: str
    sha256: str
    vectors: int
    dim: int
    embedder_sha256: str = Field(description="The embedder (its fp32 file's sha256) this cohort belongs to.")


class ModelsResponse(BaseModel):
    models: list[ModelInfo]
    cohort: CohortInfo | None = Field(
        None,
        description="The embedder's cohort: indexes must store hubness computed from it (else 503 rebuild). "
        "None when the embedder has no cohort and products are ranked by plain cosine.",
    )


class ErrorBody(BaseModel):
    code: str
    message: str


class ErrorResponse(BaseModel):
    error: ErrorBody


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """A route's OpenAPI `responses`: the error body documented for each of these statuses."""
    return {status: {"model": ErrorResponse} for status in statuses}


# --- stream watchers (service/watch_routes.py) ---------------------------------------------------


class WatchIn(_Strict):
    source: str = Field(min_length=1, max_length=2048, description="An HLS playlist, RTMP/RTSP URL or allowed file.")
    sample_fps: float | None = Field(None, gt=0, le=30, description="Frames analysed per second (default: setting).")
    realtime: bool = Field(False, description="Pace a file at its own speed, as if live (a live source paces itself).")


class WatchAccepted(BaseModel):
    stream_id: str
    source: str
    sample_fps: float
    runs_on: str = Field(description="`api` (this process) or `workers` (the watch-worker consumer group).")


class WatchNow(BaseModel):
    """What the stream's watcher sees now (service/watch/events.py `WatchStatus`)."""

    stream_id: str
    source: str
    state: str = Field(description="starting | running | ended | stopped | failed")
    product_id: str | None = None
    since_s: float | None = Field(None, description="When the product's segment started, on the source's timeline.")
    score: float | None = None
    time_s: float | None = Field(None, description="The last frame analysed, on the source's timeline.")
    frames: int = 0
    lag_s: float = Field(0.0, description="How far the answers are behind the source.")
    corrupt_packets: int = 0
    reconnects: int = 0
    message: str | None = None
    updated: float = Field(description="Unix time of this status.")


class SegmentOut(BaseModel):
    product_id: str
    title: str
    start_s: float
    end_s: float
    score: float
    best: dict[str, Any] | None = Field(
        None, description="The best frame: `time_s`, `score`, `width`, `height`, `image_id`, `boxes` that matched "
        "(in the frame's pixels), `jpeg` (the frame at most 320 pixels a side, base64)."
    )


class TimelineResponse(BaseModel):
    stream_id: str
    index_version: str
    duration_s: float = Field(description="Up to the last frame analysed.")
    frames: int = Field(description="Frames analysed (WATCHBUY_WATCH_SAMPLE_FPS a second).")
    segments: list[SegmentOut]
