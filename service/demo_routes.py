"""The demo page and the small JSON/image routes it reads.

`GET /demo` and `GET /demo/static/{name}` are public (the page holds no data); the data routes
(`/streams`, catalogue images, labelled clips) are API routes like any other, so an API key applies.
"""

from __future__ import annotations

import mimetypes
from pathlib import Path

import anyio
from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import FileResponse

from indexer.store import IndexStore
from service.demo_data import CatalogueFiles, list_streams
from service.schemas import ClipsResponse, StreamsResponse, error_responses
from service.state import running

STATIC_DIR = Path(__file__).resolve().parent / "static"
#: The page's files, by name: nothing else under /demo/static is served.
STATIC_FILES = {"demo.js": "text/javascript", "timeline.js": "text/javascript", "demo.css": "text/css"}
ERRORS = error_responses(404, 503)
NO_CACHE = {"Cache-Control": "no-cache"}


def _image_response(path: Path) -> FileResponse:
    media_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return FileResponse(path, media_type=media_type, headers={"Cache-Control": "private, max-age=3600"})


def demo_router(catalogue_root: Path | None) -> APIRouter:
    """The routes, serving catalogue files from under `catalogue_root`."""
    router = APIRouter()
    files = CatalogueFiles(catalogue_root)

    @router.get("/demo", include_in_schema=False)
    async def demo_page() -> FileResponse:
        return FileResponse(STATIC_DIR / "demo.html", media_type="text/html", headers=NO_CACHE)

    @router.get("/demo/static/{name}", include_in_schema=False)
    async def demo_static(name: str) -> FileResponse:
        if name not in STATIC_FILES:
            raise HTTPException(404, f"no static file {name!r}")
        return FileResponse(STATIC_DIR / name, media_type=STATIC_FILES[name], headers=NO_CACHE)

    @router.get("/streams", response_model=StreamsResponse)
    async def get_streams(request: Request) -> StreamsResponse:
        state = running(request)
        store = IndexStore(state.settings.index_root)
        thresholds = state.pipeline.config.abstain
        return StreamsResponse(streams=await anyio.to_thread.run_sync(list_streams, store, thresholds))

    @router.get("/streams/{stream_id}/images/{image_id}", response_class=FileResponse, responses=ERRORS)
    async def get_catalogue_image(request: Request, stream_id: str, image_id: str) -> FileResponse:
        state = running(request)

        def find() -> Path:
            return files.image(state.load_index(stream_id), image_id)

        return _image_response(await anyio.to_thread.run_sync(find))

    @router.get("/streams/{stream_id}/clips", response_model=ClipsResponse, responses=ERRORS)
    async def get_clips(request: Request, stream_id: str) -> ClipsResponse:
        state = running(request)

        def find() -> ClipsResponse:
            return ClipsResponse(stream_id=stream_id, clips=files.clips(state.load_index(stream_id)))

        return await anyio.to_thread.run_sync(find)

    @router.get(
        "/streams/{stream_id}/clips/{clip_id}/frames/{position}",
        response_class=FileResponse,
        responses=ERRORS,
    )
    async def get_clip_frame(request: Request, stream_id: str, clip_id: str, position: int) -> FileResponse:
        state = running(request)

        def find() -> Path:
            return files.clip_frame(state.load_index(stream_id), clip_id, position)

        return _image_response(await anyio.to_thread.run_sync(find))

    return router
