"""The two ways the evaluator asks the service: in process (the route's own request path) or over HTTP.

Both return the `/identify` response as JSON-like dicts, shaped by the same `service.respond` code, so
the evaluator sees the same values (same rounding) either way.
"""

from __future__ import annotations

import base64
import functools
import time
from collections.abc import Sequence
from typing import Any, Protocol

import httpx
from anyio.from_thread import BlockingPortal

from indexer.queries import ClipFrame
from service.decode import decode_images
from service.identify import identify
from service.respond import identify_response
from service.schemas import MAX_ASR_CHARS
from service.state import ServiceState
from service.values import EncodedFrame, IdentifyQuery


class IdentifyFailed(RuntimeError):
    """The service refused or failed a request the evaluator sent."""


class Identifier(Protocol):
    def identify(
        self, stream_id: str, frames: Sequence[ClipFrame], asr_text: str | None, top_k: int
    ) -> tuple[dict[str, Any], float]:
        """The /identify response body and the wall time of the call in ms."""
        ...

    def current_version(self, stream_id: str) -> str | None:
        """The index version the service would answer this stream with now (None: no index)."""
        ...


class InProcessIdentifier:
    """What the app's `/identify` route runs once the body is parsed (`service.identify.identify`: the index,
    admission, decoding, the pipeline with the service's batchers, the session window), run on `portal`'s
    event loop where `state` was started (`service.state.serving`), and the same response shaping."""

    def __init__(self, state: ServiceState, portal: BlockingPortal) -> None:
        self.state = state
        self.portal = portal

    def identify(
        self, stream_id: str, frames: Sequence[ClipFrame], asr_text: str | None, top_k: int
    ) -> tuple[dict[str, Any], float]:
        encoded = [EncodedFrame(frame_index=f.frame_index, data=f.image_bytes()) for f in frames]
        query = IdentifyQuery(stream_id, top_k, asr_text[:MAX_ASR_CHARS] if asr_text else None)
        decode = functools.partial(decode_images, encoded, self.state.settings.max_image_pixels)
        started = time.perf_counter()
        result, _ = self.portal.call(identify, self.state, query, decode, len(encoded))
        body = identify_response(result).model_dump(mode="json")
        return body, (time.perf_counter() - started) * 1000

    def current_version(self, stream_id: str) -> str | None:
        try:
            return self.state.load_index(stream_id).version
        except Exception:  # noqa: BLE001 - any refusal means "not servable yet"
            return None


class HttpIdentifier:
    """POST /identify (JSON, base64 frames) to a service through an `httpx.AsyncClient`.

    The client runs in `portal`'s event loop, so the same code drives a real server (base_url) or an
    app in this process (`httpx.ASGITransport`).
    """

    def __init__(self, portal: BlockingPortal, client: httpx.AsyncClient, timeout: float = 120.0) -> None:
        self.portal = portal
        self.client = client
        self.timeout = timeout

    def _call(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        request = functools.partial(self.client.request, method, url, timeout=self.timeout, **kwargs)
        return self.portal.call(request)

    def identify(
        self, stream_id: str, frames: Sequence[ClipFrame], asr_text: str | None, top_k: int
    ) -> tuple[dict[str, Any], float]:
        payload: dict[str, Any] = {
            "stream_id": stream_id,
            "top_k": top_k,
            "frames": [
                {"image": base64.b64encode(f.image_bytes()).decode("ascii"), "frame_index": f.frame_index}
                for f in frames
            ],
        }
        if asr_text:
            payload["asr_text"] = asr_text[:MAX_ASR_CHARS]
        started = time.perf_counter()
        response = self._call("POST", "/identify", json=payload)
        elapsed = (time.perf_counter() - started) * 1000
        if response.status_code != 200:
            raise IdentifyFailed(f"POST /identify for {stream_id}: HTTP {response.status_code}: {response.text[:300]}")
        return response.json(), elapsed

    def current_version(self, stream_id: str) -> str | None:
        response = self._call("GET", f"/streams/{stream_id}")
        if response.status_code != 200:
            return None
        return str(response.json().get("index_version"))


def wait_for_version(identifier: Identifier, stream_id: str, version: str, timeout: float = 30.0) -> None:
    """Block until the service answers `stream_id` with `version` (it re-reads CURRENT periodically)."""
    deadline = time.monotonic() + timeout
    seen: str | None = None
    while time.monotonic() < deadline:
        seen = identifier.current_version(stream_id)
        if seen == version:
            return
        time.sleep(0.2)
    raise IdentifyFailed(
        f"the service still answers stream {stream_id!r} with index version {seen!r}, not {version!r}; "
        "does it read the same index root (WATCHBUY_INDEX_ROOT / --index-root)?"
    )
