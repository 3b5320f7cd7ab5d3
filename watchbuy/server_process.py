"""The real service (`uvicorn --factory service.app:create_app`) as a child process on a free port.

Used by the demo (scripts/demo.py), the HTTP benchmark and load test, and the multi-process tests: start
it with its output in a log file, wait until GET /readyz answers 200, stop it (terminate, then kill).
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

import httpx

APP = "service.app:create_app"
LOOPBACK = "127.0.0.1"
POLL_INTERVAL_S = 0.2


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port nothing listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class ServerNotReady(RuntimeError):
    """The server exited, or did not answer GET /readyz with 200 in time; the message ends with its log's tail."""

    def __init__(self, reason: str, log_path: Path, tail: str) -> None:
        super().__init__(f"{reason}; server log tail ({log_path}):\n{tail}")
        self.reason = reason


class ServerProcess:
    """One uvicorn child process; `with ServerProcess(...) as server:` starts it and always stops it.

    env: the child's whole environment (None: this process's); cwd: its working directory (None: this
    one's); uvicorn_args: appended to the command line (e.g. `--log-config FILE`, `--log-level warning`).
    Output is appended to log_path.
    """

    def __init__(self, log_path: Path, *, env: Mapping[str, str] | None = None, cwd: Path | None = None,
                 uvicorn_args: Sequence[str] = (), host: str = LOOPBACK, port: int | None = None,
                 stop_timeout_s: float = 30.0) -> None:
        self.log_path = log_path
        self.env = dict(env) if env is not None else None
        self.cwd = cwd
        self.uvicorn_args = list(uvicorn_args)
        self.host = host
        self.port = port or free_port(host)
        self.base_url = f"http://{host}:{self.port}"
        self.stop_timeout_s = stop_timeout_s
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise RuntimeError("the server is not started")
        return self.proc.pid

    def start(self) -> None:
        cmd = [sys.executable, "-m", "uvicorn", "--factory", APP, "--host", self.host, "--port", str(self.port),
               *self.uvicorn_args]
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(cmd, cwd=self.cwd, env=self.env, stdout=log, stderr=subprocess.STDOUT)

    def wait_ready(self, timeout_s: float) -> None:
        """Poll GET /readyz until it answers 200; ServerNotReady when the process exits or time runs out."""
        if self.proc is None:
            raise RuntimeError("the server is not started")
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                reason = f"the server exited with code {self.proc.returncode} before it was ready"
                raise ServerNotReady(reason, self.log_path, self.log_tail())
            try:
                if httpx.get(f"{self.base_url}/readyz", timeout=2.0).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(POLL_INTERVAL_S)
        reason = f"the server was not ready after {timeout_s:.0f} s"
        raise ServerNotReady(reason, self.log_path, self.log_tail())

    def log_tail(self, lines: int = 30) -> str:
        """The last `lines` lines of the server's log."""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        """Terminate the process, kill it after stop_timeout_s; nothing when it is not running."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=self.stop_timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
