"""Wire-level values passed between dialects (pure) and the transport (I/O).

Pure data, no I/O: dialects build :class:`HttpRequest` and read
:class:`HttpResponse` / :class:`SSEEvent` without importing anything that
touches a socket.
"""

from __future__ import annotations

import msgspec


class HttpRequest(msgspec.Struct, frozen=True):
    """One HTTP request as a dialect describes it."""

    method: str
    url: str
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes | None = None
    stream: bool = False

    def __repr__(self) -> str:  # headers hold API keys: never print them
        return f"HttpRequest({self.method} {self.url})"


class HttpResponse(msgspec.Struct):
    """A complete (non-streamed) HTTP response; header names are lower-case."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        """The first value of header ``name`` (lower-case), or ``None``."""
        for key, value in self.headers:
            if key == name:
                return value
        return None


class SSEEvent(msgspec.Struct, frozen=True, gc=False):
    """One server-sent event: ``event`` name (``None`` when absent) and raw ``data`` bytes."""

    data: bytes
    event: str | None = None


class Timeouts(msgspec.Struct, frozen=True):
    """Per-attempt time limits in seconds; ``None`` disables one.

    ``connect``: TCP connect plus TLS handshake. ``first_byte``: from the request
    being written to the first byte of the response. ``idle``: the longest
    silence allowed between two reads once the response has started.
    ``total``: the whole attempt, first byte to last.
    """

    connect: float | None = 10.0
    first_byte: float | None = 300.0
    idle: float | None = 120.0
    total: float | None = 900.0
