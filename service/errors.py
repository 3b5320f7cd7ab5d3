"""One exception per client mistake, mapped once to `{"error": {"code", "message"}}`.

`install_error_handlers(app)` makes every failure (ours, FastAPI's validation, Starlette's 404/405,
and unexpected bugs) answer with that JSON shape.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger(__name__)

ErrorCallback = Callable[[str], None]


class ApiError(Exception):
    """A client-facing error: HTTP status, stable machine code, human message."""

    status: int = 400
    code: str = "bad_request"

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        #: Extra response headers (e.g. Retry-After), sent with the error body.
        self.headers: dict[str, str] = dict(headers or {})
        if status is not None:
            self.status = status
        if code is not None:
            self.code = code


class InvalidBase64(ApiError):
    status, code = 400, "invalid_base64"


class InvalidJson(ApiError):
    status, code = 400, "invalid_json"


class InvalidMultipart(ApiError):
    status, code = 400, "invalid_multipart"


class InvalidImage(ApiError):
    status, code = 400, "invalid_image"


class UnsupportedImageFormat(ApiError):
    status, code = 415, "unsupported_image_format"


class UnsupportedMediaType(ApiError):
    status, code = 415, "unsupported_media_type"


class ImageTooLarge(ApiError):
    status, code = 413, "image_too_large"


class BodyTooLarge(ApiError):
    status, code = 413, "body_too_large"


class InvalidVideo(ApiError):
    status, code = 400, "invalid_video"


class UnsupportedVideoFormat(ApiError):
    status, code = 415, "unsupported_video_format"


class VideoTooLarge(ApiError):
    status, code = 413, "video_too_large"


class VideoTooLong(ApiError):
    status, code = 422, "video_too_long"


class FileNotFoundInCatalogue(ApiError):
    """A catalogue image or clip frame that the stream's index does not list (or that left its folder)."""

    status, code = 404, "file_not_found"


class InvalidRequest(ApiError):
    status, code = 422, "invalid_request"


class Conflict(ApiError):
    status, code = 409, "conflict"


class NotWatched(ApiError):
    status, code = 404, "not_watched"


class SourceNotAllowed(ApiError):
    status, code = 403, "source_not_allowed"


class InvalidSource(ApiError):
    status, code = 422, "invalid_source"


class SourceUnreadable(ApiError):
    status, code = 422, "source_unreadable"


class StreamNotFoundError(ApiError):
    status, code = 404, "stream_not_found"


class ServiceUnavailable(ApiError):
    """Not the client's fault and not a crash: still starting, or a stream's index cannot be loaded."""

    status, code = 503, "service_unavailable"


class Overloaded(ApiError):
    """A model's batch queue is full: retry after `retry_after` seconds (sent as Retry-After)."""

    status, code = 429, "overloaded"

    def __init__(self, message: str, *, retry_after: int = 1) -> None:
        self.retry_after = max(1, int(retry_after))
        super().__init__(message, headers={"Retry-After": str(self.retry_after)})


class Unauthorized(ApiError):
    """No API key, or one that is not configured (WATCHBUY_API_KEYS)."""

    status, code = 401, "unauthorized"


class RateLimited(ApiError):
    """The API key used up its requests for this minute (answered with Retry-After)."""

    status, code = 429, "rate_limited"


#: Codes for errors raised as plain HTTP exceptions (router 404/405, FastAPI's own raises).
_HTTP_CODES: dict[int, str] = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "body_too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    429: "rate_limited",
    500: "internal_error",
    503: "service_unavailable",
}


def error_content(code: str, message: str) -> dict[str, dict[str, str]]:
    """The JSON body every error answers with."""
    return {"error": {"code": code, "message": message}}


def error_response(error: ApiError, headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse(error_content(error.code, error.message), status_code=error.status, headers=headers)


def describe_validation_errors(errors: Iterable[Mapping[str, Any]], limit: int = 3) -> str:
    """Pydantic/FastAPI errors → one readable line naming the fields (`frames[0].image: Field required`)."""
    parts: list[str] = []
    items = list(errors)
    for item in items[:limit]:
        field = _format_loc(item.get("loc", ()))
        msg = str(item.get("msg", "invalid value"))
        parts.append(f"{field}: {msg}" if field else msg)
    if len(items) > limit:
        parts.append(f"(+{len(items) - limit} more)")
    return "; ".join(parts)[:500] or "invalid request"


def is_json_syntax_error(errors: Iterable[Mapping[str, Any]]) -> bool:
    """True when pydantic/FastAPI failed because the body is not JSON at all."""
    return any(item.get("type") == "json_invalid" for item in errors)


def _format_loc(loc: Iterable[Any]) -> str:
    parts = list(loc)
    if parts and parts[0] == "body":
        parts = parts[1:]
    text = ""
    for part in parts:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text


def install_error_handlers(app: FastAPI, *, on_error: ErrorCallback | None = None) -> None:
    """Map every failure to the error body; `on_error(code)` is called once per error (e.g. a metric)."""

    def _report(code: str) -> None:
        if on_error is not None:
            try:
                on_error(code)
            except Exception:  # a metrics hiccup must not change the answer
                log.exception("error callback failed")

    async def on_api_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ApiError)
        _report(exc.code)
        return error_response(exc, exc.headers or None)

    async def on_validation_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        errors = exc.errors()
        if is_json_syntax_error(errors):
            return await on_api_error(request, InvalidJson("request body is not valid JSON"))
        return await on_api_error(request, InvalidRequest(describe_validation_errors(errors)))

    async def on_http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        code = _HTTP_CODES.get(exc.status_code, f"http_{exc.status_code}")
        message = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        _report(code)
        return JSONResponse(error_content(code, message), status_code=exc.status_code, headers=exc.headers)

    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        if isinstance(exc, ApiError):  # raised outside the routes (e.g. in a middleware)
            return await on_api_error(request, exc)
        log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
        _report("internal_error")
        return JSONResponse(error_content("internal_error", "internal server error"), status_code=500)

    app.add_exception_handler(ApiError, on_api_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_exception_handler(Exception, on_unexpected)
