"""Which video sources a watcher may open: a source URL is untrusted input.

Only the schemes a setting allows; hosts only from an allow-list when one is set; no loopback, private,
link-local or reserved addresses unless allowed (a watcher must not become a way into the internal
network); local files only under a configured folder. `watchbuy watch` (an operator's command, not the
API) may read any local file.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from service.errors import InvalidSource, SourceNotAllowed
from watchbuy.settings import Settings


@dataclass(frozen=True, slots=True)
class SourcePolicy:
    schemes: frozenset[str]
    hosts: frozenset[str]  # empty: any host that passes the address check
    allow_private: bool
    local_root: Path | None

    @classmethod
    def from_settings(cls, settings: Settings) -> SourcePolicy:
        return cls(
            schemes=frozenset(s.lower() for s in settings.watch_schemes),
            hosts=frozenset(h.lower() for h in settings.watch_hosts),
            allow_private=settings.watch_allow_private,
            local_root=settings.watch_local_root.resolve() if settings.watch_local_root else None,
        )

    def check(self, source: str) -> str:
        """The source to open (a URL, or a resolved local path), or the API error saying why not."""
        if not source or len(source) > 2048 or any(c.isspace() or ord(c) < 32 for c in source):
            raise InvalidSource("the source must be a URL of at most 2048 characters, without spaces")
        parts = urlsplit(source)
        scheme = parts.scheme.lower()
        if scheme in ("", "file"):
            return self._local(parts.path if scheme == "file" else source)
        if scheme not in self.schemes:
            raise SourceNotAllowed(f"scheme {scheme!r} is not allowed; allowed: {sorted(self.schemes)}")
        host = (parts.hostname or "").lower()
        if not host:
            raise InvalidSource("the source URL has no host")
        if self.hosts and host not in self.hosts:
            raise SourceNotAllowed(f"host {host!r} is not in WATCHBUY_WATCH_HOSTS")
        if not self.allow_private:
            for address in _addresses(host, parts.port):
                if not address.is_global:
                    raise SourceNotAllowed(f"host {host!r} is a non-public address ({address})")
        return source

    def _local(self, path: str) -> str:
        if self.local_root is None:
            raise SourceNotAllowed("local files are not allowed (WATCHBUY_WATCH_LOCAL_ROOT is not set)")
        resolved = Path(path).resolve()
        if not resolved.is_relative_to(self.local_root):
            raise SourceNotAllowed(f"local sources must be under {self.local_root}")
        if not resolved.is_file():
            raise InvalidSource(f"no such file: {path}")
        return str(resolved)


def _addresses(host: str, port: int | None) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    """Every address the host resolves to (an IP literal is itself); a name that does not resolve is a 422."""
    try:
        return [ipaddress.ip_address(host.strip("[]"))]
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, port or 80, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError) as exc:
        raise InvalidSource(f"host {host!r} does not resolve: {exc}") from None
    return [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]
