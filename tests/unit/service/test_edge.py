"""The HTTP edge: parse_identify (JSON + multipart), error bodies, body size limit, OpenAPI docs."""

from __future__ import annotations

import base64
import json
import struct
import zlib
from io import BytesIO
from typing import Any

import anyio
import pytest
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient
from PIL import Image

from service.decode import decode_image
from service.errors import StreamNotFoundError, install_error_handlers
from service.limits import BodySizeLimitMiddleware
from service.request_parsing import IDENTIFY_OPENAPI, IdentifyInput, parse_identify
from service.schemas import FrameIn
from service.values import EncodedFrame
from watchbuy.settings import Settings

SETTINGS = Settings(max_frames=4, max_top_k=10, max_body_bytes=64 * 1024, max_image_pixels=1_000_000)


def image_bytes(fmt: str = "PNG", size: tuple[int, int] = (8, 6)) -> bytes:
    buffer = BytesIO()
    Image.new("RGB", size, (200, 30, 60)).save(buffer, format=fmt)
    return buffer.getvalue()


PNG, JPEG = image_bytes("PNG"), image_bytes("JPEG")


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def png_declaring(width: int, height: int) -> bytes:
    """A tiny PNG whose IHDR declares width×height (a decompression bomb's header)."""
    data = bytearray(image_bytes("PNG", (1, 1)))
    struct.pack_into(">II", data, 16, width, height)
    struct.pack_into(">I", data, 29, zlib.crc32(bytes(data[12:29])) & 0xFFFFFFFF)
    return bytes(data)


def build_app(errors_seen: list[str] | None = None) -> FastAPI:
    app = FastAPI()
    install_error_handlers(app, on_error=errors_seen.append if errors_seen is not None else None)
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=SETTINGS.max_body_bytes)
    app.state.parsed = None

    @app.post("/identify", openapi_extra=IDENTIFY_OPENAPI)
    async def identify(request: Request) -> dict[str, Any]:
        parsed = await parse_identify(request, SETTINGS)
        app.state.parsed = parsed
        if parsed.stream_id == "missing":
            raise StreamNotFoundError("stream 'missing' has no published index")
        if parsed.stream_id == "boom":
            raise RuntimeError("a bug")
        shapes = [decode_image(frame.data, SETTINGS.max_image_pixels).shape for frame in parsed.frames]
        return {
            "stream_id": parsed.stream_id,
            "top_k": parsed.top_k,
            "frames": [[frame.frame_index, list(shape)] for frame, shape in zip(parsed.frames, shapes, strict=True)],
        }

    @app.post("/echo")
    async def echo(frame: FrameIn) -> dict[str, Any]:
        return frame.model_dump()

    return app


@pytest.fixture()
def errors_seen() -> list[str]:
    return []


@pytest.fixture()
def app(errors_seen: list[str]) -> FastAPI:
    return build_app(errors_seen)


@pytest.fixture()
def client(app: FastAPI) -> TestClient:
    return TestClient(app, raise_server_exceptions=False)


def assert_error(response: Any, status: int, code: str) -> dict[str, str]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}
    assert body["error"]["code"] == code, body
    assert body["error"]["message"]
    return body["error"]


def json_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"stream_id": "shop-1", "frames": [{"image": b64(PNG)}, {"image": b64(JPEG)}]}
    body.update(overrides)
    return body


def test_json_and_multipart_parse_to_the_same_input(client: TestClient, app: FastAPI) -> None:
    payload = json_body(asr_text="this red mug", top_k=3, session_id="viewer.42",
                        frames=[{"image": b64(PNG), "frame_index": 10},
                                {"image": b64(JPEG), "frame_index": 11}])
    response = client.post("/identify", json=payload)
    assert response.status_code == 200, response.text
    assert response.json()["frames"] == [[10, [6, 8, 3]], [11, [6, 8, 3]]]
    from_json = app.state.parsed

    response = client.post(
        "/identify",
        data={"stream_id": "shop-1", "asr_text": "this red mug", "top_k": "3", "session_id": "viewer.42",
              "frame_index": ["10", "11"]},
        files=[("frames", ("a.png", PNG, "image/png")), ("frames", ("b.jpg", JPEG, "image/jpeg"))],
    )
    assert response.status_code == 200, response.text
    assert app.state.parsed == from_json == IdentifyInput(
        stream_id="shop-1",
        frames=(EncodedFrame(10, PNG), EncodedFrame(11, JPEG)),
        asr_text="this red mug", top_k=3, session_id="viewer.42",
    )


def test_defaults_frame_index_by_position(client: TestClient, app: FastAPI) -> None:
    assert client.post("/identify", json=json_body()).status_code == 200
    parsed = app.state.parsed
    assert [f.frame_index for f in parsed.frames] == [0, 1]
    assert (parsed.top_k, parsed.asr_text, parsed.session_id) == (5, None, None)
    files = [("frames", ("a.png", PNG, "image/png"))] * 3
    response = client.post("/identify", data={"stream_id": "s", "asr_text": ""}, files=files)
    assert response.status_code == 200, response.text
    assert [f.frame_index for f in app.state.parsed.frames] == [0, 1, 2]
    assert app.state.parsed.asr_text is None


def test_data_url_frames_and_charset_parameter(client: TestClient) -> None:
    body = json.dumps(json_body(frames=[{"image": "data:image/png;base64," + b64(PNG)}]))
    headers = {"content-type": "application/json; charset=utf-8"}
    response = client.post("/identify", content=body, headers=headers)
    assert response.status_code == 200, response.text


@pytest.mark.parametrize(("payload", "fragment"), [
    (json_body(frames=[]), "frames"),
    (json_body(frames=[{"image": b64(PNG)}] * 5), "at most 4"),
    (json_body(stream_id="bad/id"), "stream_id"),
    (json_body(stream_id=""), "stream_id"),
    (json_body(stream_id="x" * 129), "stream_id"),
    ({"frames": [{"image": b64(PNG)}]}, "stream_id"),
    (json_body(session_id="no spaces"), "session_id"),
    (json_body(top_k=0), "top_k"),
    (json_body(top_k=11), "top_k"),
    (json_body(top_k="5"), "top_k"),
    (json_body(top_k=2.5), "top_k"),
    (json_body(stream_id=7), "stream_id"),
    (json_body(frames=[{"image": 12}]), "frames[0].image"),
    (json_body(frames=[{"image": b64(PNG), "frame_index": -1}]), "frame_index"),
    (json_body(frames=[{"image": b64(PNG), "frame_index": 1}] * 2), "unique"),
    (json_body(asr_text="a" * 4001), "asr_text"),
    (json_body(surprise=True), "surprise"),
    ([1, 2], "object"),
])
def test_invalid_json_requests_are_422(client: TestClient, payload: Any, fragment: str) -> None:
    error = assert_error(client.post("/identify", json=payload), 422, "invalid_request")
    assert fragment in error["message"]


@pytest.mark.parametrize("body", [b"{", b"", b"{'stream_id': 1}", b"\xff\xfe"])
def test_malformed_json_is_400(client: TestClient, body: bytes) -> None:
    response = client.post("/identify", content=body, headers={"content-type": "application/json"})
    assert_error(response, 400, "invalid_json")


def test_bad_base64_names_the_frame(client: TestClient) -> None:
    payload = json_body(frames=[{"image": b64(PNG)}, {"image": "###"}])
    error = assert_error(client.post("/identify", json=payload), 400, "invalid_base64")
    assert "frames[1].image" in error["message"]


@pytest.mark.parametrize(("data", "status", "code"), [
    (b"definitely not an image", 400, "invalid_image"),
    (JPEG[: len(JPEG) // 2], 400, "invalid_image"),
    (image_bytes("GIF"), 415, "unsupported_image_format"),
    (png_declaring(2_000, 2_000), 413, "image_too_large"),
])
def test_image_errors(client: TestClient, data: bytes, status: int, code: str) -> None:
    assert_error(client.post("/identify", json=json_body(frames=[{"image": b64(data)}])), status, code)
    files = [("frames", ("f", data, "application/octet-stream"))]
    assert_error(client.post("/identify", data={"stream_id": "s"}, files=files), status, code)


def test_unknown_stream_is_404(client: TestClient) -> None:
    response = client.post("/identify", json=json_body(stream_id="missing"))
    error = assert_error(response, 404, "stream_not_found")
    assert "missing" in error["message"]


@pytest.mark.parametrize(("data", "frame_count", "fragment"), [
    ({"stream_id": "s"}, 0, "frames"),
    ({"stream_id": "s"}, 5, "at most 4"),
    ({"stream_id": "s"}, 9, "at most 4"),  # over max_files: refused while parsing
    ({}, 1, "stream_id"),
    ({"stream_id": "a b"}, 1, "stream_id"),
    ({"stream_id": "s", "top_k": "0"}, 1, "top_k"),
    ({"stream_id": "s", "top_k": "99"}, 1, "top_k"),
    ({"stream_id": "s", "top_k": "three"}, 1, "top_k"),
    ({"stream_id": "s", "frame_index": ["0", "1"]}, 1, "frame_index"),
    ({"stream_id": "s", "frame_index": ["x"]}, 1, "frame_index"),
    ({"stream_id": "s", "frame_index": ["3", "3"]}, 2, "unique"),
    ({"stream_id": ["s", "t"]}, 1, "stream_id"),
    ({"stream_id": "s", "colour": "red"}, 1, "colour"),
])
def test_invalid_multipart_requests_are_422(
    client: TestClient, data: dict, frame_count: int, fragment: str
) -> None:
    files = [("frames", (f"{i}.png", PNG, "image/png")) for i in range(frame_count)]
    if not files:  # httpx sends urlencoded without files; force a multipart body with a dummy field
        files = [("other", ("x.txt", b"x", "text/plain"))]
    error = assert_error(client.post("/identify", data=data, files=files), 422, "invalid_request")
    assert fragment in error["message"]


def test_multipart_frames_must_be_files(client: TestClient) -> None:
    body = (b"--B\r\nContent-Disposition: form-data; name=\"stream_id\"\r\n\r\ns\r\n"
            b"--B\r\nContent-Disposition: form-data; name=\"frames\"\r\n\r\nabc\r\n--B--\r\n")
    headers = {"content-type": "multipart/form-data; boundary=B"}
    response = client.post("/identify", content=body, headers=headers)
    assert "file part" in assert_error(response, 422, "invalid_request")["message"]


def test_malformed_multipart_is_400(client: TestClient) -> None:
    response = client.post("/identify", content=b"--x\r\n", headers={"content-type": "multipart/form-data"})
    assert_error(response, 400, "invalid_multipart")


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
def test_wrong_content_type_is_415(client: TestClient, content_type: str | None) -> None:
    headers = {"content-type": content_type} if content_type else {}
    response = client.post("/identify", content=b"stream_id=s", headers=headers)
    assert_error(response, 415, "unsupported_media_type")


def test_body_over_limit_by_content_length(client: TestClient, errors_seen: list[str]) -> None:
    body = json.dumps(json_body(asr_text="x" * 70_000))
    assert_error(client.post("/identify", content=body, headers={"content-type": "application/json"}),
                 413, "body_too_large")


def test_chunked_body_over_limit(client: TestClient) -> None:
    def chunks():
        for _ in range(20):
            yield b"x" * 8192

    response = client.post("/identify", content=chunks(), headers={"content-type": "application/json"})
    assert "content-length" not in {k.lower() for k in response.request.headers}
    assert_error(response, 413, "body_too_large")
    files = [("frames", ("big.png", b"\x89PNG" + b"\x00" * 70_000, "image/png"))]
    assert_error(client.post("/identify", data={"stream_id": "s"}, files=files), 413, "body_too_large")


def test_unknown_route_and_wrong_method(client: TestClient) -> None:
    assert_error(client.get("/nowhere"), 404, "not_found")
    response = client.get("/identify")
    assert_error(response, 405, "method_not_allowed")
    assert "POST" in response.headers["allow"]


def test_bug_is_500_with_the_error_shape(client: TestClient, errors_seen: list[str]) -> None:
    error = assert_error(client.post("/identify", json=json_body(stream_id="boom")), 500, "internal_error")
    assert "a bug" not in error["message"]
    assert errors_seen == ["internal_error"]


def test_fastapi_validation_errors_use_the_error_shape(client: TestClient) -> None:
    error = assert_error(client.post("/echo", json={"frame_index": 1}), 422, "invalid_request")
    assert "image" in error["message"]
    response = client.post("/echo", content=b"{nope", headers={"content-type": "application/json"})
    assert_error(response, 400, "invalid_json")


def test_error_codes_are_reported(client: TestClient, errors_seen: list[str]) -> None:
    client.get("/nowhere")
    client.post("/identify", json=json_body(stream_id="missing"))
    client.post("/identify", content=b"x", headers={"content-type": "text/plain"})
    assert errors_seen == ["not_found", "stream_not_found", "unsupported_media_type"]


def test_openapi_documents_both_content_types(app: FastAPI) -> None:
    schema = app.openapi()
    content = schema["paths"]["/identify"]["post"]["requestBody"]["content"]
    assert set(content) == {"application/json", "multipart/form-data"}
    json_schema = content["application/json"]["schema"]
    assert {"stream_id", "frames", "top_k"} <= set(json_schema["properties"])
    assert "image" in json_schema["properties"]["frames"]["items"]["properties"]
    assert "$defs" not in json.dumps(json_schema)
    multipart = content["multipart/form-data"]["schema"]
    assert multipart["properties"]["frames"]["items"]["format"] == "binary"


def run_asgi(app: Any, chunks: list[bytes], scope_type: str = "http") -> list[dict[str, Any]]:
    """Drive an ASGI app with a chunked body (no Content-Length); return what it sent."""
    pending = [{"type": "http.request", "body": c, "more_body": True} for c in chunks]
    pending.append({"type": "http.request", "body": b"", "more_body": False})
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return pending.pop(0) if pending else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": scope_type, "method": "POST", "path": "/", "headers": []}
    anyio.run(app, scope, receive, send)
    return sent


async def read_all(receive: Any) -> bytes:
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            return body


async def counting_app(scope: Any, receive: Any, send: Any) -> None:
    body = await read_all(receive)
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": str(len(body)).encode()})


def statuses(sent: list[dict[str, Any]]) -> list[int]:
    return [m["status"] for m in sent if m["type"] == "http.response.start"]


def test_streamed_body_under_the_limit_passes() -> None:
    sent = run_asgi(BodySizeLimitMiddleware(counting_app, max_bytes=1000), [b"a" * 400, b"b" * 600])
    assert statuses(sent) == [200] and sent[-1]["body"] == b"1000"


def test_streamed_body_over_the_limit_is_413_even_if_the_app_swallows_the_error() -> None:
    async def swallowing_app(scope: Any, receive: Any, send: Any) -> None:
        try:
            await read_all(receive)
        except Exception:  # noqa: BLE001 -- any parse failure is the client's
            await send({"type": "http.response.start", "status": 400, "headers": []})
            await send({"type": "http.response.body", "body": b"parse error"})

    for app in (counting_app, swallowing_app):
        sent = run_asgi(BodySizeLimitMiddleware(app, max_bytes=1000), [b"a" * 600, b"b" * 600, b"c" * 600])
        assert statuses(sent) == [413]
        assert json.loads(sent[-1]["body"])["error"]["code"] == "body_too_large"


def test_over_the_limit_after_the_response_started_just_stops() -> None:
    async def echo_app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        while True:
            message = await receive()
            await send({"type": "http.response.body", "body": message["body"], "more_body": True})

    sent = run_asgi(BodySizeLimitMiddleware(echo_app, max_bytes=1000), [b"a" * 600] * 3)
    assert statuses(sent) == [200]
    assert sum(len(m.get("body", b"")) for m in sent) == 600


def test_non_http_scopes_pass_through() -> None:
    seen: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope["type"])

    run_asgi(BodySizeLimitMiddleware(app, max_bytes=1), [b"x" * 10], scope_type="websocket")
    assert seen == ["websocket"]
