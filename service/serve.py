"""`watchbuy serve`: the API under uvicorn, on WATCHBUY_HOST:WATCHBUY_PORT unless told otherwise."""

from __future__ import annotations

import argparse

import uvicorn

from watchbuy.settings import get_settings


def main(argv: list[str] | None = None) -> int:
    settings = get_settings()
    parser = argparse.ArgumentParser(prog="watchbuy serve", description="run the API with uvicorn")
    parser.add_argument("--host", default=settings.host, help=f"default WATCHBUY_HOST ({settings.host})")
    parser.add_argument("--port", type=int, default=settings.port, help=f"default WATCHBUY_PORT ({settings.port})")
    parser.add_argument("--graceful-seconds", type=int, default=20,
                        help="how long in-flight requests may finish after SIGTERM (after the drain)")
    args = parser.parse_args(argv)
    uvicorn.run("service.app:create_app", factory=True, host=args.host, port=args.port,
                timeout_graceful_shutdown=args.graceful_seconds)
    return 0
