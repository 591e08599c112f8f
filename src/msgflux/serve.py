"""``msgflux serve``: the embedded llama.cpp engine as an HTTP server other tools can use.

The engine already is an OpenAI- and Anthropic-compatible server (llama.cpp's own),
bound to 127.0.0.1 on a free port. This module puts a small front in front of it,
on the host and port the user chose, and forwards each request as is::

    client ──► front (host:port) ── API key? route allowed? ──► engine (127.0.0.1:free)
           ◄── response bytes, streamed unchanged, chunk by chunk ◄──┘

Why a front and not llama.cpp's server on the public port: llama.cpp leaves
``/health`` and ``/v1/models`` open even with an API key, and serves admin routes
(``/slots`` shows other clients' prompts, ``/lora-adapters`` changes the model,
``/metrics``). The front checks the key on every route, in constant time, and
forwards only the routes clients need (:data:`ROUTES`). Request heads are parsed
with ``httptools`` (llhttp) and bodies are bounded; responses are piped back
untouched, so streaming, tools, ``response_format`` and usage chunks are whatever
the engine does.

Shutdown (SIGINT or SIGTERM): the front stops accepting, requests in flight get
``grace`` seconds to finish, then the engine stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import ipaddress
import signal
from collections import deque
from collections.abc import Callable
from typing import Any

import httptools

from msgflux.exceptions import ConfigurationError
from msgflux.models.providers.llamacpp import Engine

__all__ = ["ROUTES", "Front", "is_loopback", "require_key", "serve"]

#: Paths forwarded to the engine (any method unless listed): the OpenAI and
#: Anthropic APIs, health, and llama.cpp's own completion and tokenizer routes.
#: Everything else (``/slots``, ``/metrics``, ``/lora-adapters``...) is a 404.
ROUTES: dict[str, frozenset[str] | None] = {
    path: None for path in (
        "/health", "/v1/health", "/v1/models", "/models",
        "/v1/chat/completions", "/chat/completions", "/v1/completions", "/completions",
        "/completion", "/v1/responses", "/v1/messages", "/v1/messages/count_tokens",
        "/v1/embeddings", "/embeddings", "/embedding", "/tokenize", "/detokenize",
        "/apply-template", "/infill",
    )
} | {"/props": frozenset({"GET"})}  # POST /props changes the server

_Conn = tuple[asyncio.StreamReader, asyncio.StreamWriter]
_MAX_HEAD = 64 * 1024
_MAX_BODY = 64 * 1024 * 1024
_HOP_BY_HOP = frozenset({b"connection", b"keep-alive", b"proxy-connection", b"te",
                         b"trailer", b"transfer-encoding", b"upgrade", b"content-length",
                         b"authorization", b"x-api-key", b"expect"})


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` keeps the server on this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def require_key(host: str, api_key: str | None) -> None:
    """Refuse to serve beyond this machine without an API key."""
    if not api_key and not is_loopback(host):
        raise ConfigurationError(
            f"serving on {host} makes the model reachable from other machines: "
            "set an API key (--api-key KEY or MSGFLUX_API_KEY), or bind 127.0.0.1"
        )


class _Request:
    """One request read from a client: head fields and the whole body."""

    __slots__ = ("body", "expects_continue", "headers", "keep_alive", "method", "url")

    def __init__(self) -> None:
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.body = bytearray()
        self.method = b""
        self.keep_alive = True
        self.expects_continue = False

    def header(self, name: bytes) -> bytes | None:
        for key, value in self.headers:
            if key == name:
                return value
        return None


class _HttpError(Exception):
    def __init__(self, status: int, message: str, kind: str = "invalid_request_error") -> None:
        super().__init__(message)
        self.status = status
        self.kind = kind


class _RequestReader:
    """httptools callbacks collecting complete requests, in order (pipelining works)."""

    def __init__(self) -> None:
        self.done: deque[_Request] = deque()
        self.current: _Request | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.head_bytes = 0

    def feed(self, data: bytes) -> _HttpError | None:
        """Parse ``data``; the error to answer with if the request is not acceptable."""
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            return _HttpError(400, "protocol upgrades are not supported")
        except httptools.HttpParserCallbackError as e:  # a limit below was hit
            if isinstance(e.__context__, _HttpError):
                return e.__context__
            raise
        except httptools.HttpParserError:
            return _HttpError(400, "malformed HTTP request")
        return None

    def on_message_begin(self) -> None:
        self.current = _Request()
        self.head_bytes = 0

    def on_url(self, url: bytes) -> None:
        assert self.current is not None
        self.current.url += url
        self._count(len(url))

    def on_header(self, name: bytes, value: bytes) -> None:
        assert self.current is not None
        self.current.headers.append((name.lower(), value))
        self._count(len(name) + len(value))

    def on_headers_complete(self) -> None:
        assert self.current is not None
        expect = self.current.header(b"expect")
        self.current.expects_continue = expect is not None and expect.lower() == b"100-continue"

    def on_body(self, body: bytes) -> None:
        assert self.current is not None
        if len(self.current.body) + len(body) > _MAX_BODY:
            raise _HttpError(413, f"request body over {_MAX_BODY} bytes")
        self.current.body += body

    def on_message_complete(self) -> None:
        request, self.current = self.current, None
        assert request is not None
        request.method = self.parser.get_method()
        request.keep_alive = self.parser.should_keep_alive()
        self.done.append(request)

    def _count(self, n: int) -> None:
        self.head_bytes += n
        if self.head_bytes > _MAX_HEAD:
            raise _HttpError(431, f"request head over {_MAX_HEAD} bytes")


class _ResponseEnd:
    """httptools callbacks that only tell where the engine's response ends."""

    def __init__(self) -> None:
        self.complete = False
        self.headers_done = False
        self.keep_alive = False
        self.parser = httptools.HttpResponseParser(self)

    def on_headers_complete(self) -> None:
        self.headers_done = True
        self.keep_alive = self.parser.should_keep_alive()  # llhttp forgets it after the end

    def on_message_complete(self) -> None:
        self.complete = True


class Front:
    """The front server: ``await start()``, then ``url``; ``await stop(grace)``."""

    def __init__(self, engine: Engine, host: str = "127.0.0.1", port: int = 8080,
                 api_key: str | None = None) -> None:
        require_key(host, api_key)
        self.engine = engine
        self.host = host
        self.port = port
        self._key = api_key.encode() if api_key else None
        self._server: asyncio.AbstractServer | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._busy: set[asyncio.Task[None]] = set()  # a request read, its answer not sent
        self._stopping = False
        self._upstream: tuple[str, int] | None = None

    def __repr__(self) -> str:  # never the key
        return f"Front({self.url if self._server else 'not started'}, key={self._key is not None})"

    @property
    def url(self) -> str:
        """``http://host:port``, with the port really bound (``port=0`` picks one)."""
        assert self._server is not None, "start() first"
        host, port = self._server.sockets[0].getsockname()[:2]
        return f"http://{f'[{host}]' if ':' in host else host}:{port}"

    async def start(self) -> None:
        root = await asyncio.to_thread(lambda: self.engine.root_url)  # loads the model
        host, _, port = root.removeprefix("http://").rpartition(":")
        self._upstream = (host, int(port))
        try:
            self._server = await asyncio.start_server(self._client, self.host, self.port)
        except OSError as e:
            raise ConfigurationError(
                f"cannot listen on {self.host}:{self.port} ({e.strerror or e}); "
                "choose another --port, or stop what uses it"
            ) from None

    async def stop(self, grace: float = 10.0) -> None:
        """Stop accepting, close idle connections, give requests in flight ``grace``
        seconds, then close the rest."""
        self._stopping = True
        if self._server is not None:
            self._server.close()
        for task in self._tasks - self._busy:
            task.cancel()  # waiting for a next request that will not be served
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=grace)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    # -------------------------------------------------------------- one client connection

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        incoming = _RequestReader()
        link = _Link()  # this client's connection to the engine
        try:
            while True:
                while not incoming.done:
                    data = await reader.read(65536)
                    if not data:
                        return
                    error = incoming.feed(data)
                    if error is not None:
                        await _reply_error(writer, error)
                        return
                    if incoming.current is not None and incoming.current.expects_continue:
                        # curl asks before sending a body over 1 KB; without an answer
                        # it waits a second. The engine never sees the Expect header.
                        incoming.current.expects_continue = False
                        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                request = incoming.done.popleft()
                keep_alive = request.keep_alive and not self._stopping
                problem = self._check(request)
                if problem is not None:
                    await _reply_error(writer, problem, keep_alive=keep_alive)
                else:
                    self._busy.add(task)
                    try:
                        if not await self._relay(request, link, writer):
                            return  # the engine closed the connection: so do we
                    finally:
                        self._busy.discard(task)
                if not keep_alive or self._stopping:
                    return
        except (ConnectionError, asyncio.IncompleteReadError):
            return  # the client (or the engine) went away: nothing to answer
        finally:
            self._tasks.discard(task)
            self._busy.discard(task)
            link.close()  # an abandoned stream stops generating
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _relay(self, request: _Request, link: _Link,
                     writer: asyncio.StreamWriter) -> bool:
        """Forward one request over ``link`` (opened if needed); False once the
        engine closed the connection.

        The engine drops connections idle for 5 s. A reused one that fails before
        any byte of the answer came back is replaced and the request sent again:
        the engine never read it.
        """
        assert self._upstream is not None
        reused = link.conn is not None
        while True:
            if link.conn is None:
                link.conn = await asyncio.open_connection(*self._upstream)
            try:
                keep = await _forward(request, link.conn, writer, self._upstream)
            except _UpstreamClosedError:
                link.close()
                if reused:
                    reused = False
                    continue
                await _reply_error(writer, _HttpError(502, "the engine closed the "
                                                      "connection", "api_error"))
                return False
            if not keep:
                link.close()
            return keep

    def _check(self, request: _Request) -> _HttpError | None:
        if self._key is not None:
            given = request.header(b"x-api-key")
            auth = request.header(b"authorization") or b""
            if given is None and auth[:7].lower() == b"bearer ":
                given = auth[7:].strip()
            if given is None or not hmac.compare_digest(given, self._key):
                return _HttpError(401, "Invalid or missing API key: send it as "
                                       "'Authorization: Bearer KEY' or 'x-api-key: KEY'",
                                  "authentication_error")
        path = request.url.split(b"?", 1)[0].decode("latin-1")
        if path not in ROUTES:
            return _HttpError(404, f"no route {path}; msgflux serve forwards: "
                                   + ", ".join(sorted(ROUTES)), "not_found_error")
        methods = ROUTES[path]
        if methods is not None and request.method.decode("latin-1") not in methods:
            return _HttpError(405, f"{request.method.decode('latin-1')} {path} is not "
                                   "forwarded", "invalid_request_error")
        return None


class _Link:
    """One client's connection to the engine, kept across its keep-alive requests."""

    __slots__ = ("conn",)

    def __init__(self) -> None:
        self.conn: _Conn | None = None

    def close(self) -> None:
        if self.conn is not None:
            self.conn[1].close()
            self.conn = None


class _UpstreamClosedError(Exception):
    """The engine's connection ended before any byte of the response."""


async def _forward(request: _Request, upstream: _Conn, writer: asyncio.StreamWriter,
                   address: tuple[str, int]) -> bool:
    """Send ``request`` to the engine and pipe its response back; False if the engine
    closes the connection afterwards."""
    up_reader, up_writer = upstream
    head = [request.method + b" " + request.url + b" HTTP/1.1",
            b"host: %s:%d" % (address[0].encode(), address[1])]
    head += [k + b": " + v for k, v in request.headers
             if k not in _HOP_BY_HOP and k != b"host"]
    head.append(b"content-length: %d" % len(request.body))
    end = _ResponseEnd()
    received = False
    try:
        up_writer.write(b"\r\n".join(head) + b"\r\n\r\n" + bytes(request.body))
        await up_writer.drain()
        data = await up_reader.read(65536)
    except ConnectionError:
        data = b""
    head_only = request.method == b"HEAD"
    while True:
        if not data:
            if not received:
                raise _UpstreamClosedError
            return False  # cut mid-answer: closing tells the client
        received = True
        end.parser.feed_data(data)
        writer.write(data)
        await writer.drain()  # raises once the client is gone: then the engine stops too
        if end.complete or (head_only and end.headers_done):
            return end.keep_alive
        data = await up_reader.read(65536)


async def _reply_error(writer: asyncio.StreamWriter, error: _HttpError, *,
                       keep_alive: bool = False) -> None:
    import json

    body = json.dumps({"error": {"message": str(error), "type": error.kind,
                                 "code": error.status}}).encode()
    reason = {400: "Bad Request", 401: "Unauthorized", 404: "Not Found",
              405: "Method Not Allowed", 413: "Content Too Large",
              431: "Request Header Fields Too Large", 502: "Bad Gateway"}[error.status]
    extra = b"www-authenticate: Bearer\r\n" if error.status == 401 else b""
    writer.write(b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
                 b"connection: %s\r\n%s\r\n%s" % (
                     error.status, reason.encode(), len(body),
                     b"keep-alive" if keep_alive else b"close", extra, body))
    await writer.drain()


def serve(engine: Engine, *, host: str = "127.0.0.1", port: int = 8080,
          api_key: str | None = None, grace: float = 10.0,
          ready: Callable[[Front], Any] | None = None) -> None:
    """Serve ``engine`` on ``host:port`` until SIGINT or SIGTERM, then stop cleanly.

    ``ready(front)`` runs once the model is loaded and the port is bound
    (``front.url`` is the address). The engine is closed on the way out.
    """
    front = Front(engine, host, port, api_key)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        try:
            await front.start()
            if ready is not None:
                ready(front)
            await stop.wait()
        finally:
            await front.stop(grace)
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)

    try:
        asyncio.run(main())
    finally:
        engine.close()
