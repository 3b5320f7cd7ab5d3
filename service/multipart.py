"""Multipart form pieces shared by /identify and /identify/video: the parser's errors mapped to API errors,
scalar fields gathered for pydantic, and their validation."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.formparsers import MultiPartException

from service.errors import InvalidMultipart, InvalidRequest, describe_validation_errors

FIELD_BYTES = 64 * 1024  # largest non-file multipart field (asr_text is at most 4000 characters)

Fields = TypeVar("Fields", bound=BaseModel)


@contextmanager
def form_errors(too_many_files: str) -> Iterator[None]:
    """Starlette's multipart failures as API errors: too many parts → 422 (`too_many_files` is the message
    for too many file parts), anything else → 400 invalid_multipart."""
    try:
        yield
    except (StarletteHTTPException, MultiPartException) as exc:
        detail = exc.detail if isinstance(exc, StarletteHTTPException) else exc.message
        if "Too many files" in detail:
            raise InvalidRequest(too_many_files) from None
        if "Too many fields" in detail:
            raise InvalidRequest("too many form fields") from None
        raise InvalidMultipart(f"malformed multipart body: {detail}") from None


def scalar_fields(form: FormData, file_fields: set[str]) -> dict[str, Any]:
    """The text fields besides `file_fields`, each given once; empty optional fields count as absent (HTML
    forms send them); `stream_id` is kept even when empty so its validation error names it."""
    fields: dict[str, Any] = {}
    for key in {key for key, _ in form.multi_items()} - file_fields:
        values = form.getlist(key)
        if len(values) > 1:
            raise InvalidRequest(f"{key}: given {len(values)} times; send it once")
        if not isinstance(values[0], str):
            raise InvalidRequest(f"{key}: must be a text field, not a file")
        if key != "stream_id" and values[0] == "":
            continue
        fields[key] = values[0]
    return fields


def validate_fields(model: type[Fields], fields: dict[str, Any]) -> Fields:
    """The form fields as `model` (strings coerced), or a 422 naming every bad field."""
    try:
        return model.model_validate(fields, strict=False)
    except ValidationError as exc:
        raise InvalidRequest(describe_validation_errors(exc.errors(include_input=False))) from None
