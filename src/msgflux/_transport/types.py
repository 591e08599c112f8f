"""Wire-level values passed between dialects (pure) and the transport (I/O).

Pure data, no I/O: dialects build :class:`HttpRequest` and read
:class:`HttpResponse` / :class:`SSEEvent` without importing anything that
touches a socket.
"""

import msgspec
from msgspec import UNSET, UnsetType


def header(headers: list[tuple[str, str]], name: str) -> str | None:
    """The first value of header ``name`` (lower-case) in ``headers``, or ``None``."""
    for key, value in headers:
        if key == name:
            return value
    return None


class HttpRequest(msgspec.Struct, frozen=True):
    """One HTTP request as a dialect describes it."""

    method: str
    url: str
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes | None = None
    stream: bool = False

    def __repr__(self) -> str:  # headers hold API keys: never print them
        return f"HttpRequest({self.method} {self.url})"


class Timings(msgspec.Struct, frozen=True, gc=False):
    """When the phases of one attempt ended, in seconds from the attempt's start.

    ``connect``: the connection was ready (TCP, a proxy tunnel, TLS); ``None`` when a
    pooled connection was reused. ``first_byte``: the response head arrived;
    ``None`` when the transport does not track it. The whole attempt's time is
    the caller's to measure (a stream ends long after the transport returns).
    """

    connect: float | None = None
    first_byte: float | None = None


class HttpResponse(msgspec.Struct):
    """A complete (non-streamed) HTTP response; header names are lower-case.

    ``timings``: the attempt's phases when the transport measured them (a
    transport of your own may leave it ``None``).
    """

    status: int
    headers: list[tuple[str, str]]
    body: bytes
    timings: Timings | None = None

    def header(self, name: str) -> str | None:
        """The first value of header ``name`` (lower-case), or ``None``."""
        return header(self.headers, name)


class SSEEvent(msgspec.Struct, frozen=True, gc=False):
    """One server-sent event: ``event`` name (``None`` when absent) and raw ``data`` bytes."""

    data: bytes
    event: str | None = None


# Seconds a non-streamed attempt may take in all when the caller sets no ``total``: a
# non-streamed answer of a reasoning model arrives whole after minutes of thought (the
# openai and anthropic SDKs wait 600 s by default). Streams get no default total: a
# healthy stream of a reasoning model can run for many minutes, and the idle limit
# already ends one that stalls.
NON_STREAM_TOTAL = 600.0


class Timeouts(msgspec.Struct, frozen=True):
    """Time limits in seconds; ``None`` disables one.

    ``connect``: TCP connect plus TLS handshake. ``first_byte``: from the request
    being written to the first byte of the response. ``idle``: the longest
    silence allowed between two reads once the response has started.
    ``total``: the whole call, first byte to last, retries and their waits
    included. Left unset it is ``NON_STREAM_TOTAL`` for a non-streamed call;
    a stream then gets ``NON_STREAM_TOTAL`` to start (all its attempts
    together) and no limit once it runs. Set it to bound streams too.
    """

    connect: float | None = 10.0
    first_byte: float | None = 600.0
    idle: float | None = 300.0
    total: float | UnsetType | None = UNSET

    def budget(self) -> "float | None":
        """Seconds a whole call may take, retries included (``None``: no limit)."""
        total = self.total
        return NON_STREAM_TOTAL if total is UNSET else total  # type: ignore[return-value]

    def within(self, left: float, stream: bool) -> "Timeouts":
        """These limits for a retry that has ``left`` seconds of the call's budget."""
        if self.total is UNSET and stream:  # the default budget bounds a stream's start only
            return msgspec.structs.replace(self, connect=_at_most(self.connect, left),
                                           first_byte=_at_most(self.first_byte, left))
        return msgspec.structs.replace(self, total=left)

    @classmethod
    def each(cls, seconds: float) -> "Timeouts":
        """``timeout=<seconds>``: that limit on each wait (connect, first byte, every
        gap between chunks), as in httpx and the openai/anthropic SDKs. The total is
        left to the call's kind."""
        return cls(connect=seconds, first_byte=seconds, idle=seconds)


def _at_most(limit: "float | None", left: float) -> float:
    return left if limit is None or limit > left else limit


# Public names report where users find them. (No ``from __future__ import
# annotations`` in this module: msgspec resolves string annotations through
# ``__module__``, which no longer names this file.)
Timeouts.__module__ = "msgflux"  # public as mf.Timeouts
for _wire in (HttpRequest, HttpResponse, SSEEvent, Timings):
    _wire.__module__ = "msgflux.transport"  # where transport authors import them from
