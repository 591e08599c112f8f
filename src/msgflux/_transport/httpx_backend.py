"""The httpx backend: msgflux's transport contract over the caller's httpx client.

``http_client=httpx.Client(...)`` (and/or ``httpx.AsyncClient(...)``) hands a model
everything httpx brings: HTTP/2, SOCKS and HTTPS proxies, mTLS, custom CA
bundles, event hooks, instrumentation. msgflux keeps its guarantees on top:

- redirects are never followed (``follow_redirects=False`` on every request);
- the per-phase :class:`Timeouts`: ``connect`` (also the wait for a pooled
  connection), ``first_byte`` as httpx's read timeout up to the response head,
  then ``idle`` for each later read (httpcore reads the request's timeout
  extension when the body starts), all clipped to the total deadline, which is
  also checked between reads;
- the size limits and SSE framing of the default clients: the raw body goes
  through the same :mod:`~msgflux._transport.decompress` (bounded inflation;
  only ``gzip``/``deflate`` are offered, ``identity`` for streams) and
  :class:`~msgflux._transport.sse.SSEDecoder` (bounded events);
- typed errors: every httpx exception comes out as a :mod:`msgflux.exceptions`
  error, with the messages of the default clients;
- header names and values checked as the default clients check them.

httpx is imported only here, and this module only when a model gets an
``http_client`` (extra ``msgflux[httpx]``; ``httpx[http2]`` for HTTP/2).
The clients stay the caller's: closing a model does not close them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from time import monotonic
from typing import Any

import httpx

from msgflux._transport.attempt import Attempt
from msgflux._transport.decompress import DecompressionError, new_decompressor
from msgflux._transport.errors import (
    connect_failed,
    connection_broken,
    limit_exceeded,
    protocol_error,
    too_large,
)
from msgflux._transport.http11 import DEFAULT_MAX_RESPONSE_BYTES, check_headers
from msgflux._transport.sse import SSEDecoder
from msgflux._transport.types import HttpRequest, HttpResponse, SSEEvent, Timeouts, header
from msgflux._transport.urls import split_url
from msgflux.exceptions import InvalidParameterError, MsgfluxError

__all__ = ["AsyncHTTPXTransport", "HTTPXTransport", "split_clients", "transports_for"]

_DEFAULT_TIMEOUTS = Timeouts()
_NO_REDIRECTS = {"follow_redirects": False}


def split_clients(value: Any) -> tuple[httpx.Client | None, httpx.AsyncClient | None]:
    """``http_client=``: an ``httpx.Client``, an ``httpx.AsyncClient``, or one of each."""
    items = value if isinstance(value, (tuple, list)) else (value,)
    sync = asyn = None
    for item in items:
        if isinstance(item, httpx.Client) and sync is None:
            sync = item
        elif isinstance(item, httpx.AsyncClient) and asyn is None:
            asyn = item
        else:
            raise InvalidParameterError(
                "http_client must be an httpx.Client, an httpx.AsyncClient, or a tuple of "
                f"one of each, got {type(item).__name__}"
            )
    return sync, asyn


def transports_for(value: Any, options: dict[str, Any]
                   ) -> tuple[HTTPXTransport | None, AsyncHTTPXTransport | None]:
    """The transports carrying a model's calls through its ``http_client``."""
    sync, asyn = split_clients(value)
    limit = options.get("max_response_bytes", DEFAULT_MAX_RESPONSE_BYTES)
    return (HTTPXTransport(sync, max_response_bytes=limit) if sync is not None else None,
            AsyncHTTPXTransport(asyn, max_response_bytes=limit) if asyn is not None else None)


# ---------------------------------------------------------------- shared, no I/O


class _Exchange:
    """One attempt's bookkeeping, whichever kind of client carries it."""

    __slots__ = ("attempt", "decoder", "extensions", "limit", "received", "request", "room")

    def __init__(self, client: httpx.Client | httpx.AsyncClient, req: HttpRequest,
                 timeouts: Timeouts | None, limit: int) -> None:
        check_headers(req.headers)
        target = split_url(req.url)
        attempt = self.attempt = Attempt(timeouts or _DEFAULT_TIMEOUTS, target,
                                         target.origin.where, monotonic(), req.stream)
        self.limit = limit
        self.room = None if req.stream else limit
        self.decoder: Any = None
        self.received = False
        t = attempt.timeouts
        connect = _clip(t.connect, attempt)
        # Built by the client: its default headers, cookies and auth apply.
        self.request = client.build_request(
            req.method, req.url, content=req.body,
            headers=[*req.headers,
                     ("accept-encoding", "identity" if req.stream else "gzip, deflate")],
            timeout=httpx.Timeout(connect=connect, pool=connect, write=_clip(t.idle, attempt),
                                  read=_clip(t.first_byte, attempt)),
        )
        self.extensions = self.request.extensions["timeout"]

    def head(self, response: httpx.Response) -> tuple[int, list[tuple[str, str]]]:
        """Check the head; from now on each read waits at most the idle limit."""
        self.received = True
        headers = [(k.decode("latin-1").lower(), v.decode("latin-1"))
                   for k, v in response.headers.raw]
        encoding = header(headers, "content-encoding")
        try:
            self.decoder = new_decompressor(encoding, self.room) if encoding else None
        except DecompressionError as exc:
            raise protocol_error(self.attempt.where, str(exc), self.attempt.target.safe_url
                                 ) from None
        if self.decoder is not None and self.attempt.stream:
            raise protocol_error(
                self.attempt.where,
                f"the server compressed the response ({encoding}) although the request "
                "asked for identity", self.attempt.target.safe_url)
        length = header(headers, "content-length")
        if (self.room is not None and self.decoder is None and length is not None
                and length.isdigit() and int(length) > self.room):
            raise self.too_large()
        self.extensions["read"] = _clip(self.attempt.timeouts.idle, self.attempt)
        return response.status_code, headers

    def body(self, raw: bytes) -> bytes:
        """Raw body bytes as read: decoded, counted, and the deadline checked."""
        attempt = self.attempt
        if monotonic() >= attempt.deadline:
            raise attempt.timeout("total")
        decoder = self.decoder
        if decoder is not None:
            try:
                raw = decoder.decompress(raw)
            except DecompressionError as exc:
                raise self._refused(exc) from None
        room = self.room
        if room is not None:
            room -= len(raw)
            if room < 0:
                raise self.too_large()
            self.room = room
        return raw

    def end(self) -> bytes:
        """What a compressed body still held at its end."""
        decoder = self.decoder
        if decoder is None:
            return b""
        try:
            return decoder.flush()
        except DecompressionError as exc:
            raise self._refused(exc) from None

    def limit_body(self) -> None:
        self.room = self.limit

    def too_large(self) -> MsgfluxError:
        a = self.attempt
        return limit_exceeded(a.where, too_large("response body", self.limit), a.target.safe_url)

    def _refused(self, exc: DecompressionError) -> MsgfluxError:
        a = self.attempt
        return protocol_error(a.where, str(exc), a.target.safe_url)

    def error(self, exc: httpx.HTTPError) -> MsgfluxError:
        """The msgflux error for an httpx failure."""
        a = self.attempt
        url = a.target.safe_url
        if isinstance(exc, httpx.TimeoutException):
            if isinstance(exc, (httpx.ConnectTimeout, httpx.PoolTimeout)):
                kind = "connect"
            elif isinstance(exc, httpx.WriteTimeout):
                kind = "idle"
            else:
                kind = "idle" if self.received else "first_byte"
            if monotonic() >= a.deadline - 0.01:  # the wait was clipped to the deadline
                kind = "total"
            return a.timeout(kind)
        cause = _root(exc)
        if isinstance(exc, httpx.ConnectError):
            return connect_failed(a.where, cause or exc, url)
        if isinstance(exc, httpx.ProxyError):
            err = connection_broken(a.where, f"proxy error: {exc}", received=False, url=url)
            err.retryable = False
            return err
        if isinstance(exc, httpx.RemoteProtocolError):
            text = str(exc)
            if "closed" in text or "disconnected" in text:
                return connection_broken(a.where, text, received=self.received, url=url)
            return protocol_error(a.where, text, url)
        if isinstance(exc, (httpx.NetworkError, httpx.ReadError, httpx.WriteError)):
            return connection_broken(a.where, cause or exc, received=self.received, url=url)
        if isinstance(exc, httpx.UnsupportedProtocol):
            return InvalidParameterError(f"unsupported URL {url!r}: {exc}")
        return protocol_error(a.where, f"{type(exc).__name__}: {exc}", url)


def _clip(limit: float | None, attempt: Attempt) -> float | None:
    """A per-phase limit, never past the attempt's deadline (raises once it passed)."""
    left = attempt.deadline - monotonic()
    if left <= 0:
        raise attempt.timeout("total")
    if limit is None:
        return left if left != float("inf") else None
    return min(limit, left)


def _root(exc: BaseException) -> BaseException | None:
    """The deepest OSError (ssl errors included) under an httpx/httpcore exception:
    anyio wraps the real cause ("connection refused") in a bare OSError."""
    found = None
    link: BaseException | None = exc
    for _ in range(8):
        if link is None:
            break
        if isinstance(link, OSError):
            found = link
        link = link.__cause__ or link.__context__
    return found


# ---------------------------------------------------------------- blocking


class HTTPXTransport:
    """A :class:`~msgflux.transport.Transport` over an ``httpx.Client``.

    ``client`` is the caller's and stays open; or ``make_client`` makes one on
    first use, which :meth:`close` closes (the next call makes another).
    """

    def __init__(self, client: httpx.Client | None = None, *,
                 max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
                 make_client: Callable[[], httpx.Client] | None = None) -> None:
        self.client = client
        self.max_response_bytes = max_response_bytes
        self._make = make_client

    def send(self, request: HttpRequest, timeouts: Timeouts | None = None) -> HttpResponse:
        stream = self.open_stream(request, timeouts)
        try:
            return HttpResponse(stream.status, stream.headers, stream.read())
        finally:
            stream.close()

    def open_stream(self, request: HttpRequest, timeouts: Timeouts | None = None
                    ) -> HTTPXStream:
        client = self.client
        if client is None:
            client = self.client = self._make()  # type: ignore[misc]
        ex = _Exchange(client, request, timeouts, self.max_response_bytes)
        try:
            response = client.send(ex.request, stream=True, **_NO_REDIRECTS)
        except httpx.HTTPError as exc:
            raise ex.error(exc) from None
        try:
            status, headers = ex.head(response)
        except BaseException:
            response.close()
            raise
        return HTTPXStream(ex, response, status, headers)

    def close(self) -> None:
        """Close the client only when this transport made it (the caller's stays open)."""
        client = self.client
        if self._make is not None and client is not None:
            self.client = None
            client.close()

    def __repr__(self) -> str:
        return f"<HTTPXTransport {type(self.client).__name__}>"


class HTTPXStream:
    """A :class:`~msgflux.transport.ResponseStream` over an httpx response."""

    __slots__ = ("_ex", "_response", "headers", "sse_tail", "status")

    def __init__(self, ex: _Exchange, response: httpx.Response, status: int,
                 headers: list[tuple[str, str]]) -> None:
        self._ex = ex
        self._response = response
        self.status = status
        self.headers = headers
        self.sse_tail = b""

    def _chunks(self) -> Iterator[bytes]:
        ex = self._ex
        body = ex.body
        try:
            for raw in self._response.iter_raw():
                data = body(raw)
                if data:
                    yield data
            tail = ex.end()
        except httpx.HTTPError as exc:
            self.close()
            raise ex.error(exc) from None
        except BaseException:
            self.close()
            raise
        if tail:
            yield tail

    def read(self) -> bytes:
        self._ex.limit_body()
        return b"".join(self._chunks())

    def __iter__(self) -> Iterator[SSEEvent]:
        decoder = SSEDecoder(self._ex.limit)
        feed = decoder.feed
        for data in self._chunks():
            events = feed(data)
            if events:
                yield from events
        decoder.close()
        self.sse_tail = decoder.pending

    def close(self) -> None:
        self._response.close()

    def __enter__(self) -> HTTPXStream:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


# ---------------------------------------------------------------- asyncio


class AsyncHTTPXTransport:
    """An :class:`~msgflux.transport.AsyncTransport` over an ``httpx.AsyncClient``
    (``client`` or ``make_client``, as :class:`HTTPXTransport`)."""

    def __init__(self, client: httpx.AsyncClient | None = None, *,
                 max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
                 make_client: Callable[[], httpx.AsyncClient] | None = None) -> None:
        self.client = client
        self.max_response_bytes = max_response_bytes
        self._make = make_client

    async def send(self, request: HttpRequest, timeouts: Timeouts | None = None
                   ) -> HttpResponse:
        stream = await self.open_stream(request, timeouts)
        try:
            return HttpResponse(stream.status, stream.headers, await stream.read())
        finally:
            await stream.aclose()

    async def open_stream(self, request: HttpRequest, timeouts: Timeouts | None = None
                          ) -> AsyncHTTPXStream:
        client = self.client
        if client is None:
            client = self.client = self._make()  # type: ignore[misc]
        ex = _Exchange(client, request, timeouts, self.max_response_bytes)
        try:
            response = await client.send(ex.request, stream=True, **_NO_REDIRECTS)
        except httpx.HTTPError as exc:
            raise ex.error(exc) from None
        try:
            status, headers = ex.head(response)
        except BaseException:
            await response.aclose()
            raise
        return AsyncHTTPXStream(ex, response, status, headers)

    async def aclose(self) -> None:
        client = self.client
        if self._make is not None and client is not None:
            self.client = None
            await client.aclose()

    def close(self) -> None:
        """Nothing to do synchronously: an httpx.AsyncClient closes on its loop (aclose)."""

    def __repr__(self) -> str:
        return f"<AsyncHTTPXTransport {type(self.client).__name__}>"


class AsyncHTTPXStream:
    """An :class:`~msgflux.transport.AsyncResponseStream` over an httpx response."""

    __slots__ = ("_ex", "_response", "headers", "sse_tail", "status")

    def __init__(self, ex: _Exchange, response: httpx.Response, status: int,
                 headers: list[tuple[str, str]]) -> None:
        self._ex = ex
        self._response = response
        self.status = status
        self.headers = headers
        self.sse_tail = b""

    async def _chunks(self) -> AsyncIterator[bytes]:
        ex = self._ex
        body = ex.body
        try:
            async for raw in self._response.aiter_raw():
                data = body(raw)
                if data:
                    yield data
            tail = ex.end()
        except httpx.HTTPError as exc:
            await self.aclose()
            raise ex.error(exc) from None
        except BaseException:
            await self.aclose()
            raise
        if tail:
            yield tail

    async def read(self) -> bytes:
        self._ex.limit_body()
        return b"".join([data async for data in self._chunks()])

    async def __aiter__(self) -> AsyncIterator[SSEEvent]:
        decoder = SSEDecoder(self._ex.limit)
        feed = decoder.feed
        async for data in self._chunks():
            for event in feed(data):
                yield event
        decoder.close()
        self.sse_tail = decoder.pending

    async def aclose(self) -> None:
        await self._response.aclose()

    async def __aenter__(self) -> AsyncHTTPXStream:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


for _public in (HTTPXTransport, AsyncHTTPXTransport):
    _public.__module__ = "msgflux.transport"  # public there
