"""The batcher's refusal: `Overloaded` carries Retry-After."""

from __future__ import annotations

from service.errors import Overloaded


def test_overloaded_error_carries_retry_after() -> None:
    error = Overloaded("queue full", retry_after=0)
    assert (error.status, error.code, error.headers) == (429, "overloaded", {"Retry-After": "1"})
    assert Overloaded("queue full", retry_after=3).headers == {"Retry-After": "3"}
