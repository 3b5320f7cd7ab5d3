"""POST /identify/video: the multipart body → one `VideoInput` (client mistakes mapped), and the answer.

The answer is /identify's plus a `video` part: what the clip is and which frames were sampled.
No video decoding here: `service.video.sample_video` runs in a worker thread.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

from starlette.datastructures import FormData, UploadFile
from starlette.requests import Request

from indexer.video import encode_jpeg
from service.errors import (
    InvalidRequest,
    UnsupportedMediaType,
    VideoTooLarge,
)
from service.multipart import FIELD_BYTES, form_errors, scalar_fields, validate_fields
from service.respond import identify_response
from service.schemas import (
    ID_PATTERN,
    MAX_ASR_CHARS,
    IdentifyVideoFields,
    IdentifyVideoResponse,
    VideoFrameOut,
    VideoOut,
)
from service.values import Identification, IdentifyQuery
from service.video import SampledVideo
from watchbuy.settings import Settings

_FIELDS = ("stream_id", "asr_text", "top_k", "session_id", "return_frames")
FRAME_JPEG_QUALITY = 85


@dataclass(frozen=True, slots=True)
class VideoInput:
    stream_id: str
    video: bytes
    asr_text: str | None
    top_k: int
    session_id: str | None
    return_frames: bool

    @property
    def query(self) -> IdentifyQuery:
        return IdentifyQuery(self.stream_id, self.top_k, self.asr_text, self.session_id)


async def parse_video_request(request: Request, settings: Settings) -> VideoInput:
    """Read and validate the multipart body: one `video` file part plus the /identify form fields."""
    media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media_type != "multipart/form-data":
        shown = media_type or "none"
        raise UnsupportedMediaType(
            f"content type {shown!r} is not accepted; send multipart/form-data with a `video` file"
        )
    with form_errors(too_many_files="send exactly one file, the `video` part"):
        async with request.form(max_files=1, max_fields=len(_FIELDS), max_part_size=FIELD_BYTES) as form:
            fields = scalar_fields(form, file_fields={"video"})
            data = await _read_video(form, settings.max_video_bytes)
    parsed = validate_fields(IdentifyVideoFields, fields)
    if not 1 <= parsed.top_k <= settings.max_top_k:
        raise InvalidRequest(f"top_k: must be between 1 and {settings.max_top_k}, got {parsed.top_k}")
    return VideoInput(
        stream_id=parsed.stream_id,
        video=data,
        asr_text=parsed.asr_text,
        top_k=parsed.top_k,
        session_id=parsed.session_id,
        return_frames=parsed.return_frames,
    )


async def _read_video(form: FormData, max_bytes: int) -> bytes:
    upload = form.get("video")
    if upload is None:
        raise InvalidRequest("video: a file part named `video` is required")
    if not isinstance(upload, UploadFile):
        raise InvalidRequest("video: must be a file part (Content-Disposition with a filename)")
    if upload.size is not None and upload.size > max_bytes:
        raise VideoTooLarge(f"the video is {upload.size} bytes; at most {max_bytes} are accepted")
    return await upload.read()


def video_response(result: Identification, video: SampledVideo, with_images: bool) -> IdentifyVideoResponse:
    """/identify's answer for the sampled frames, plus the `video` part."""
    sampled = [
        VideoFrameOut(
            frame_index=frame.frame_index,
            time_s=time_s,
            image=_data_url(frame.image) if with_images else None,
        )
        for frame, time_s in zip(video.frames, video.times_s, strict=True)
    ]
    return IdentifyVideoResponse(
        **identify_response(result).model_dump(),
        video=VideoOut(
            duration_s=video.duration_s, fps=video.fps, frames_decoded=video.decoded, sampled=sampled
        ),
    )


def _data_url(pixels: Any) -> str:
    jpeg = encode_jpeg(pixels, quality=FRAME_JPEG_QUALITY)
    return "data:image/jpeg;base64," + base64.b64encode(jpeg).decode("ascii")


#: `openapi_extra` for POST /identify/video: the multipart body.
VIDEO_OPENAPI: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["stream_id", "video"],
                    "properties": {
                        "stream_id": {"type": "string", "pattern": ID_PATTERN},
                        "video": {
                            "type": "string",
                            "format": "binary",
                            "description": "An MP4 or WebM clip (`max_video_bytes`, `max_video_seconds`).",
                        },
                        "top_k": {"type": "integer", "minimum": 1, "default": 5},
                        "asr_text": {"type": "string", "maxLength": MAX_ASR_CHARS},
                        "session_id": {"type": "string", "pattern": ID_PATTERN},
                        "return_frames": {"type": "boolean", "default": False},
                    },
                },
                "encoding": {"video": {"contentType": "video/mp4, video/webm"}},
            }
        },
    }
}
