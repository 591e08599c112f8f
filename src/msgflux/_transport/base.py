"""The transport seam: what carries a dialect's bytes, declared as protocols.

A transport does one attempt per call (the retry driver above it decides about
more) and honours one contract whatever its implementation: the per-phase
:class:`Timeouts` and the attempt's total deadline, no redirects followed,
failures raised as typed :mod:`msgflux.exceptions` errors, any HTTP status
returned (4xx/5xx included) for the dialect to read, and the response body of a
stream handed out as :class:`SSEEvent` values. The default implementations are
:class:`~msgflux._transport.sync_client.HTTPTransport` and
:class:`~msgflux._transport.async_client.AsyncHTTPTransport`; a model takes any
other through ``transport=`` / ``async_transport=``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Protocol, runtime_checkable

from msgflux._transport.types import HttpRequest, HttpResponse, SSEEvent, Timeouts

__all__ = ["AsyncResponseStream", "AsyncTransport", "ResponseStream", "Transport"]


class ResponseStream(Protocol):
    """A response whose head has arrived and whose body is read on demand.

    Iterating yields the body's server-sent events; ``read()`` returns the rest
    of the body (an error body, say); ``close()`` gives the connection back, or
    drops it when the body was not read to its end. A stream may also carry
    ``timings`` (:class:`Timings`, the attempt's connect and first-byte times),
    which msgflux reports when present; it is optional, so it is not declared here.
    """

    status: int
    headers: list[tuple[str, str]]  # names lower-case

    def __iter__(self) -> Iterator[SSEEvent]: ...

    def read(self) -> bytes: ...

    def close(self) -> None: ...


class AsyncResponseStream(Protocol):
    """The asyncio twin of :class:`ResponseStream` (``async for`` yields events)."""

    status: int
    headers: list[tuple[str, str]]

    def __aiter__(self) -> AsyncIterator[SSEEvent]: ...

    async def read(self) -> bytes: ...

    async def aclose(self) -> None: ...


@runtime_checkable
class Transport(Protocol):
    """Blocking transport: thread-safe, one attempt per call."""

    def send(self, request: HttpRequest, timeouts: Timeouts | None = None) -> HttpResponse:
        """The whole response of one attempt (with its ``timings`` when measured)."""
        ...

    def open_stream(self, request: HttpRequest, timeouts: Timeouts | None = None
                    ) -> ResponseStream:
        """Send, and return once the status line and headers have arrived."""
        ...

    def close(self) -> None:
        """Close pooled connections; the transport stays usable."""
        ...


@runtime_checkable
class AsyncTransport(Protocol):
    """asyncio transport: one attempt per call, usable from any event loop."""

    async def send(self, request: HttpRequest, timeouts: Timeouts | None = None
                   ) -> HttpResponse: ...

    async def open_stream(self, request: HttpRequest, timeouts: Timeouts | None = None
                          ) -> AsyncResponseStream: ...

    async def aclose(self) -> None:
        """Close the current loop's pooled connections; the transport stays usable."""
        ...

    def close(self) -> None:
        """Best-effort synchronous close, for ``model.close()`` outside a loop."""
        ...


for _public in (Transport, AsyncTransport, ResponseStream, AsyncResponseStream):
    _public.__module__ = "msgflux.transport"  # where users import them from
