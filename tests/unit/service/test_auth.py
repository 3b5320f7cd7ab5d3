"""API keys: header parsing, constant-time matching, the open paths, rate-limit settings."""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from starlette.datastructures import Headers

from service.auth import ApiKeys, is_open_path, key_id, presented_key
from watchbuy.settings import Settings

KEY, OTHER = "k-0123456789abcdef", "k-fedcba9876543210"


def test_presented_key_from_either_header() -> None:
    assert presented_key(Headers({"x-api-key": KEY})) == KEY
    assert presented_key(Headers({"authorization": f"Bearer {KEY}"})) == KEY
    assert presented_key(Headers({"authorization": f"bearer  {KEY} "})) == KEY
    assert presented_key(Headers({"authorization": f"Basic {KEY}"})) is None
    assert presented_key(Headers({"authorization": "Bearer "})) is None
    assert presented_key(Headers({})) is None


def test_key_matching() -> None:
    keys = ApiKeys([KEY, OTHER])
    assert keys.enabled and not ApiKeys([]).enabled
    assert keys.match(KEY) == KEY and keys.match(OTHER) == OTHER
    for wrong in (None, "", KEY[:-1], KEY + "x", KEY.upper(), "é" * 10):
        assert keys.match(wrong) is None
    assert key_id(KEY) != key_id(OTHER) and KEY not in key_id(KEY)


def test_open_paths() -> None:
    for path in ("/healthz", "/readyz", "/metrics", "/demo", "/demo/static/app.js"):
        assert is_open_path(path), path
    for path in ("/identify", "/streams/x", "/models", "/docs", "/openapi.json", "/demox", "/demo/api", "/metrics/x"):
        assert not is_open_path(path), path


def test_settings_refuse_a_rate_limit_that_cannot_work() -> None:
    with pytest.raises(ValidationError):
        Settings(rate_limit_per_minute=10)  # no keys, no Redis
    with pytest.raises(ValidationError):
        Settings(rate_limit_per_minute=10, api_keys=[KEY])  # no Redis
    with pytest.raises(ValidationError):
        Settings(api_keys=[" padded "])
    assert Settings(rate_limit_per_minute=10, api_keys=[KEY], redis_url="redis://x:1/0").rate_limit_per_minute == 10
