"""POST /identify bodies (JSON or multipart) → one `IdentifyInput`, with every client mistake mapped.

No image decoding here: the pipeline runs `service.decode.decode_image` in a worker thread.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from starlette.datastructures import UploadFile
from starlette.requests import Request

from service.decode import decode_base64
from service.errors import (
    InvalidBase64,
    InvalidJson,
    InvalidRequest,
    UnsupportedMediaType,
    describe_validation_errors,
    is_json_syntax_error,
)
from service.multipart import FIELD_BYTES, form_errors, scalar_fields, validate_fields
from service.schemas import ID_PATTERN, MAX_ASR_CHARS, IdentifyFields, IdentifyRequest
from service.values import EncodedFrame, IdentifyQuery
from watchbuy.settings import Settings

_SCALAR_FIELDS = ("stream_id", "asr_text", "top_k", "session_id")


@dataclass(frozen=True, slots=True)
class IdentifyInput:
    """A validated /identify request, independent of how it was sent."""

    stream_id: str
    frames: tuple[EncodedFrame, ...]
    asr_text: str | None
    top_k: int
    session_id: str | None

    @property
    def query(self) -> IdentifyQuery:
        return IdentifyQuery(self.stream_id, self.top_k, self.asr_text, self.session_id)


async def parse_identify(request: Request, settings: Settings) -> IdentifyInput:
    """Read and validate the request body according to its Content-Type."""
    media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media_type == "application/json":
        return await _parse_json(request, settings)
    if media_type == "multipart/form-data":
        return await _parse_multipart(request, settings)
    shown = media_type or "none"
    raise UnsupportedMediaType(
        f"content type {shown!r} is not accepted; send application/json or multipart/form-data"
    )


async def _parse_json(request: Request, settings: Settings) -> IdentifyInput:
    body = await request.body()
    try:
        parsed = IdentifyRequest.model_validate_json(body)
    except ValidationError as exc:
        errors = exc.errors(include_input=False)
        if is_json_syntax_error(errors):
            raise InvalidJson("request body is not valid JSON") from None
        raise InvalidRequest(describe_validation_errors(errors)) from None
    _check_limits(len(parsed.frames), parsed.top_k, settings)
    indices = _frame_indices([frame.frame_index for frame in parsed.frames])
    frames: list[EncodedFrame] = []
    for position, (frame, index) in enumerate(zip(parsed.frames, indices, strict=True)):
        try:
            data = decode_base64(frame.image)
        except InvalidBase64 as exc:
            raise InvalidBase64(f"frames[{position}].image: {exc.message}") from None
        frames.append(EncodedFrame(frame_index=index, data=data))
    return _to_input(parsed, frames)


async def _parse_multipart(request: Request, settings: Settings) -> IdentifyInput:
    with form_errors(too_many_files=f"at most {settings.max_frames} frames are accepted per request"):
        async with request.form(
            max_files=settings.max_frames + 1,
            max_fields=settings.max_frames + 1 + len(_SCALAR_FIELDS),
            max_part_size=FIELD_BYTES,
        ) as form:
            uploads = form.getlist("frames")
            _check_limits(len(uploads), 1, settings)
            fields = scalar_fields(form, file_fields={"frames", "frame_index"})
            raw_indices = form.getlist("frame_index")
            contents = [await _read_upload(position, upload) for position, upload in enumerate(uploads)]
    parsed = validate_fields(IdentifyFields, fields)
    _check_limits(len(contents), parsed.top_k, settings)
    indices = _frame_indices(_form_indices(raw_indices, len(contents)))
    frames = [EncodedFrame(frame_index=index, data=data) for index, data in zip(indices, contents, strict=True)]
    return _to_input(parsed, frames)


async def _read_upload(position: int, upload: str | UploadFile) -> bytes:
    if not isinstance(upload, UploadFile):
        raise InvalidRequest(f"frames[{position}]: must be a file part (Content-Disposition with a filename)")
    return await upload.read()


def _form_indices(raw: Sequence[str | UploadFile], count: int) -> list[int | None]:
    if not raw:
        return [None] * count
    if len(raw) != count:
        raise InvalidRequest(f"frame_index: {len(raw)} values for {count} frames; send one per frame or none")
    indices: list[int | None] = []
    for position, value in enumerate(raw):
        text = value.strip() if isinstance(value, str) else ""
        if not text.isascii() or not text.isdigit():
            raise InvalidRequest(f"frame_index[{position}]: must be a non-negative integer")
        indices.append(int(text))
    return indices


def _frame_indices(given: Sequence[int | None]) -> list[int]:
    """Missing indices default to the frame's position; duplicates are refused."""
    indices = [position if index is None else index for position, index in enumerate(given)]
    if len(set(indices)) != len(indices):
        raise InvalidRequest("frame_index: values must be unique within a request")
    return indices


def _check_limits(frame_count: int, top_k: int, settings: Settings) -> None:
    if frame_count < 1:
        raise InvalidRequest("frames: at least one frame is required")
    if frame_count > settings.max_frames:
        raise InvalidRequest(f"frames: at most {settings.max_frames} frames are accepted, got {frame_count}")
    if not 1 <= top_k <= settings.max_top_k:
        raise InvalidRequest(f"top_k: must be between 1 and {settings.max_top_k}, got {top_k}")


def _to_input(fields: IdentifyFields, frames: list[EncodedFrame]) -> IdentifyInput:
    return IdentifyInput(
        stream_id=fields.stream_id,
        frames=tuple(frames),
        asr_text=fields.asr_text,
        top_k=fields.top_k,
        session_id=fields.session_id,
    )


def _identify_json_schema() -> dict[str, Any]:
    """IdentifyRequest's JSON schema with `$defs` inlined (OpenAPI has no place for them here)."""
    schema = IdentifyRequest.model_json_schema()
    defs = schema.pop("$defs", {})

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return inline(defs[ref.removeprefix("#/$defs/")])
            return {key: inline(value) for key, value in node.items()}
        if isinstance(node, list):
            return [inline(value) for value in node]
        return node

    inlined: dict[str, Any] = inline(schema)
    return inlined


def _identify_multipart_schema() -> dict[str, Any]:
    text_id = {"type": "string", "pattern": ID_PATTERN}
    return {
        "type": "object",
        "required": ["stream_id", "frames"],
        "properties": {
            "stream_id": text_id,
            "frames": {
                "type": "array",
                "items": {"type": "string", "format": "binary"},
                "minItems": 1,
                "description": "Raw JPEG/PNG/WebP bytes, one file part per frame (at most `max_frames`).",
            },
            "frame_index": {
                "type": "array",
                "items": {"type": "integer", "minimum": 0},
                "description": "Optional, one per frame in the same order; defaults to 0, 1, 2, ...",
            },
            "asr_text": {"type": "string", "maxLength": MAX_ASR_CHARS},
            "top_k": {"type": "integer", "minimum": 1, "default": 5},
            "session_id": text_id,
        },
    }


#: `openapi_extra` for the /identify route: documents both accepted content types.
IDENTIFY_OPENAPI: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": _identify_json_schema()},
            "multipart/form-data": {
                "schema": _identify_multipart_schema(),
                "encoding": {"frames": {"contentType": "image/jpeg, image/png, image/webp"}},
            },
        },
    }
}
