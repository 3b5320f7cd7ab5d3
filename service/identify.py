"""The request side of identify, written once for both routes and the in-process evaluator.

load the stream's index (404/503 before any decoding) → admit the request to the model queues (429 before
decoding) → decode in a worker thread (timed as `decode`) → the pipeline, ranked over the viewer
session's window → metrics. The routes only parse their bodies before and shape the answer after.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol, TypeVar

import anyio

from service.pipeline import StageTimer
from service.state import ServiceState
from service.values import DecodedFrame, Identification, IdentifyQuery


class Decoded(Protocol):
    """What a decode step yields: the frames (an image request's, or a sampled video's with its times)."""

    @property
    def frames(self) -> Sequence[DecodedFrame]: ...


D = TypeVar("D", bound=Decoded)


async def identify(
    state: ServiceState, query: IdentifyQuery, decode: Callable[[], D], n_frames: int
) -> tuple[Identification, D]:
    """Answer `query` about the frames `decode` yields (about `n_frames` of them, known before decoding)."""
    index = await anyio.to_thread.run_sync(state.load_index, query.stream_id, limiter=state.limiter)
    calls = state.calls
    calls.admit(n_frames)
    timer = StageTimer()

    def timed_decode() -> D:
        with timer.stage("decode"):
            return decode()

    decoded = await anyio.to_thread.run_sync(timed_decode, limiter=state.limiter)
    result = await state.pipeline.identify(
        decoded.frames, index, calls, top_k=query.top_k, asr_text=query.asr_text,
        window=state.window(query.stream_id, query.session_id), timer=timer,
    )
    state.metrics.observe_stages(result.timings_ms)
    state.metrics.observe_counts(len(result.frames), result.n_boxes, result.crops)
    return result, decoded
