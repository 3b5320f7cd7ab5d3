"""A real uvicorn process serving the app (real models, a given index root), for multi-process tests."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from support.data import PROJECT_DIR
from watchbuy.server_process import ServerNotReady, ServerProcess

STARTUP_DEADLINE_S = 120.0  # a bound on waiting, not an assertion on speed
#: Everything at INFO with timestamps into the server's log file (uvicorn's default shows only its own).
LOG_CONFIG = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"out": {"class": "logging.StreamHandler", "formatter": "plain", "stream": "ext://sys.stdout"}},
    "root": {"level": "INFO", "handlers": ["out"]},
}


class LiveServer(ServerProcess):
    """The inherited environment without its `WATCHBUY_*` variables, plus `env`; failures are AssertionErrors."""

    def __init__(self, log_path: Path, env: dict[str, str]) -> None:
        self.log_config = log_path.with_suffix(".logging.json")
        super().__init__(
            log_path,
            env={**{k: v for k, v in os.environ.items() if not k.startswith("WATCHBUY_")}, **env},
            cwd=PROJECT_DIR,
            uvicorn_args=["--log-config", str(self.log_config)],
        )
        self.base = self.base_url

    def start(self) -> None:
        self.log_config.write_text(json.dumps(LOG_CONFIG))
        super().start()

    def wait_ready(self, timeout_s: float = STARTUP_DEADLINE_S) -> None:
        try:
            super().wait_ready(timeout_s)
        except ServerNotReady as exc:
            raise AssertionError(f"{exc.reason}:\n{self.log()}") from None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-6000:]


@contextmanager
def running_server(log_path: Path, env: dict[str, str]) -> Iterator[LiveServer]:
    """A `LiveServer` started and ready, stopped on exit (what a fixture yields)."""
    server = LiveServer(log_path, env)
    server.start()
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()
