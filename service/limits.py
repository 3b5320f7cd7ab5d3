"""Request body size limit as a pure ASGI middleware (works for Content-Length and chunked bodies).

Streaming is preserved: the body is never buffered here, only counted as the app reads it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.errors import ApiError, BodyTooLarge, error_response

RejectCallback = Callable[[str], None]


@dataclass(slots=True)
class _BodyState:
    received: int = 0
    exceeded: bool = False
    response_started: bool = False


class BodySizeLimitMiddleware:
    """Answer 413 `body_too_large` for bodies over `max_bytes`.

    A declared Content-Length over the limit is refused before reading anything. Otherwise the
    bytes are counted as the app reads them; once over, the app's read raises `BodyTooLarge`,
    whatever the app answers is dropped and the 413 is sent instead (if the app had already
    started a response, nothing more is sent and the connection ends incomplete).
    """

    def __init__(self, app: ASGIApp, max_bytes: int, on_reject: RejectCallback | None = None) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.on_reject = on_reject

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            message = f"request body of {declared} bytes is over the limit of {self.max_bytes} bytes"
            await self._reject(scope, receive, send, message)
            return
        if declared is not None and declared < 0:
            await self._send_error(scope, receive, send, ApiError("invalid Content-Length header"))
            return

        state = _BodyState()

        async def counted_receive() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                state.received += len(message.get("body", b""))
                if state.received > self.max_bytes:
                    state.exceeded = True
                    raise BodyTooLarge(self._message())
            return message

        async def guarded_send(message: Message) -> None:
            if state.exceeded:
                return  # the app's answer to a body we cut off is replaced by ours (or dropped)
            if message["type"] == "http.response.start":
                state.response_started = True
            await send(message)

        try:
            await self.app(scope, counted_receive, guarded_send)
        except Exception:
            if not state.exceeded:
                raise
            app_reported = False
        else:
            app_reported = True  # the app caught BodyTooLarge; its error handler counted it
        if state.exceeded and not state.response_started:
            if app_reported:
                await self._send_error(scope, receive, send, BodyTooLarge(self._message()))
            else:
                await self._reject(scope, receive, send, self._message())

    def _message(self) -> str:
        return f"request body is over the limit of {self.max_bytes} bytes"

    async def _reject(self, scope: Scope, receive: Receive, send: Send, message: str) -> None:
        if self.on_reject is not None:
            self.on_reject(BodyTooLarge.code)
        await self._send_error(scope, receive, send, BodyTooLarge(message))

    @staticmethod
    async def _send_error(scope: Scope, receive: Receive, send: Send, error: ApiError) -> None:
        response = error_response(error, headers={"Connection": "close"})
        await response(scope, receive, send)


def _content_length(scope: Scope) -> int | None:
    """The declared Content-Length; -1 when present but not a number (None when absent)."""
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return -1
    return None
