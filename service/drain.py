"""Graceful drain on SIGTERM: readiness fails first, the listener closes after a grace period.

uvicorn answers SIGTERM by closing its listener at once and then waiting for open requests. A load
balancer that has not noticed yet would route new requests into refused connections. `Drain.install()`
runs in the app's lifespan (uvicorn's own signal handler is in place by then) and wraps that handler:
the first SIGTERM only marks the service as draining (`/readyz` answers 503 `draining`, everything
else keeps being served) and hands the signal on to uvicorn `WATCHBUY_DRAIN_SECONDS` later; uvicorn
then stops accepting, finishes in-flight requests (bounded by `--timeout-graceful-shutdown`) and exits.
A second SIGTERM, SIGINT (Ctrl+C) and a grace of 0 go straight to uvicorn.

Outside the main thread (e.g. Starlette's TestClient) signals cannot be handled and install is a no-op.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from types import FrameType
from typing import Any

log = logging.getLogger(__name__)


class Drain:
    """The draining flag and the SIGTERM wrapper that sets it (one per app)."""

    def __init__(self, grace_seconds: float) -> None:
        self.grace_seconds = grace_seconds
        self.draining = False
        self._previous: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._installed = False

    def install(self) -> None:
        """Wrap the current SIGTERM handler; call from the event loop in the main thread."""
        if threading.current_thread() is not threading.main_thread():
            log.debug("not in the main thread: SIGTERM drain not installed")
            return
        self._loop = asyncio.get_running_loop()
        self._previous = signal.getsignal(signal.SIGTERM)
        signal.signal(signal.SIGTERM, self._on_sigterm)
        self._installed = True

    def uninstall(self) -> None:
        """Put the wrapped handler back (before uvicorn restores its own originals)."""
        if self._installed and signal.getsignal(signal.SIGTERM) == self._on_sigterm:
            signal.signal(signal.SIGTERM, self._previous)
        self._installed = False

    def _on_sigterm(self, signum: int, frame: FrameType | None) -> None:
        if self.draining or self.grace_seconds <= 0 or self._loop is None or self._loop.is_closed():
            self.draining = True
            self._pass_on(signum, frame)
            return
        self.draining = True
        log.warning("SIGTERM: draining, /readyz fails; closing the listener in %.1f s", self.grace_seconds)
        self._loop.call_soon_threadsafe(self._loop.call_later, self.grace_seconds, self._pass_on, signum, frame)

    def _pass_on(self, signum: int, frame: FrameType | None) -> None:
        """Deliver the signal to whoever handled it before us (uvicorn), or to the default action."""
        previous = self._previous
        if callable(previous):
            previous(signum, frame)
        elif previous == signal.SIG_IGN:
            return
        else:  # SIG_DFL or unknown (installed from C): restore and re-raise
            signal.signal(signum, signal.SIG_DFL)
            signal.raise_signal(signum)
