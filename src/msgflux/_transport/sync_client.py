"""Blocking HTTP/1.1 client: a thread-safe keep-alive pool over ``socket`` + ``ssl``.

One call is one attempt (retries live in :mod:`msgflux._transport.retry`),
except that a pooled connection found dead before any response byte is
replaced by a fresh one once, transparently: servers close idle keep-alive
connections at will, and the request never reached them.

Timeouts (:class:`Timeouts`) are enforced per read with the socket timeout,
clipped to the attempt's ``total`` deadline, so neither a silent server nor a
stalled stream can hang the caller.
"""

from __future__ import annotations

import socket
import struct
import sys
from collections.abc import Callable, Iterator
from contextlib import suppress
from itertools import chain
from time import monotonic
from typing import TYPE_CHECKING, Any

from msgflux._transport.attempt import INF, Attempt
from msgflux._transport.errors import connect_failed
from msgflux._transport.http11 import IncompleteResponseError, ProtocolError, ResponseParser
from msgflux._transport.proxy import Route, TunnelHandshake
from msgflux._transport.routing import Prepared
from msgflux._transport.settings import ClientBase
from msgflux._transport.sse import SSEDecoder
from msgflux._transport.types import HttpRequest, HttpResponse, SSEEvent, Timeouts, header
from msgflux.exceptions import MsgfluxError

if TYPE_CHECKING:
    import ssl

if TYPE_CHECKING:
    pass


__all__ = ["SyncStreamResponse", "HTTPTransport"]

_READ_SIZE = 65536
_DEFAULT_TIMEOUTS = Timeouts()
# Kernel-bounded waits on plain sockets (see _Conn): Linux's timeval is two longs.
_KERNEL_TIMEOUTS = sys.platform == "linux" and struct.calcsize("l") == 8


def _timeval(seconds: float | None) -> bytes:
    """``SO_RCVTIMEO`` / ``SO_SNDTIMEO`` for a wait of ``seconds`` (``None``: forever;
    a zero timeval also means forever, so a positive wait is at least 1 us)."""
    if seconds is None:
        return _FOREVER
    whole = int(seconds)
    return struct.pack("ll", whole, max(int((seconds - whole) * 1e6), 0 if whole else 1))


_FOREVER = struct.pack("ll", 0, 0)

try:
    from select import POLLIN, poll
except ImportError:  # pragma: no cover - Windows
    poll = None  # type: ignore[assignment]


class _StaleConnectionError(Exception):
    """A reused connection died before any response byte: retry on a fresh one."""


class _Conn:
    """One socket with its parser; used by one thread at a time.

    ``kernel_timeouts``: a plain TCP socket on Linux is kept blocking, its waits
    bounded by the kernel (``SO_RCVTIMEO`` / ``SO_SNDTIMEO``): each read or write is
    then one system call. A socket in Python's timeout mode polls before every read
    and write, which doubles the system calls of a call on loopback. TLS sockets keep
    Python's timeout mode (``ssl`` reads need it to tell "wait" from "closed").
    """

    __slots__ = ("_rcv", "_snd", "generation", "idle_since", "kernel_timeouts", "parser",
                 "readable", "route", "sock")

    def __init__(self, sock: socket.socket, route: Route, generation: int) -> None:
        self.sock = sock
        self.route = route
        self.generation = generation
        self.parser = ResponseParser()
        self.idle_since = 0.0
        self.kernel_timeouts = _KERNEL_TIMEOUTS and type(sock) is socket.socket
        if self.kernel_timeouts:
            sock.settimeout(None)  # blocking; the kernel bounds each wait
        self._rcv: float | None = -1.0  # the read and write limits now set
        self._snd: float | None = -1.0
        # ``readable(0)``: what a pooled socket is probed with before reuse (see _checkout).
        self.readable: Callable[[int], list[Any]] = _never
        if poll is not None:
            probe = poll()
            probe.register(sock, POLLIN)
            self.readable = probe.poll

    def settimeout_exactly(self, value: float | None) -> None:
        """For sends: a timeout firing early would be wrong (and unretryable)."""
        if value != self._snd:  # each change is a system call: skip it when unchanged
            if self.kernel_timeouts:
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, _timeval(value))
            else:
                self.sock.settimeout(value)
                self._rcv = value
            self._snd = value

    def settimeout_at_most(self, value: float | None) -> None:
        """For reads: keep the current timeout when it is not longer than
        needed (nor far shorter); a read that times out early is retried."""
        current = self._rcv
        if value is None:
            if current is not None and current > 0:
                return
        elif current is not None and 0.25 * value <= current <= value:
            return
        if self.kernel_timeouts:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, _timeval(value))
        else:
            self.sock.settimeout(value)
            self._snd = value
        self._rcv = value

    def recv_nowait(self) -> bytes:
        """What already arrived (``BlockingIOError`` / ``TimeoutError``: nothing yet)."""
        if self.kernel_timeouts:
            return self.sock.recv(_READ_SIZE, socket.MSG_DONTWAIT)
        self.settimeout_exactly(0.0)
        return self.sock.recv(_READ_SIZE)

    def close(self) -> None:
        with suppress(OSError):
            self.sock.close()


def _never(timeout: int) -> list[Any]:  # (no poll, as on Windows: no probe)
    return []


def _recv(conn: _Conn, attempt: Attempt, kind: str) -> bytes:
    """One read, bounded by timeout ``kind`` (from now) and the total deadline."""
    now = monotonic()
    limit = getattr(attempt.timeouts, kind)
    deadline, which = (now + limit, kind) if limit is not None else (INF, kind)
    if attempt.deadline <= deadline:
        deadline, which = attempt.deadline, "total"
    sock = conn.sock
    while True:
        if deadline == INF:
            conn.settimeout_at_most(None)
        else:
            wait = deadline - now
            if wait <= 0:
                raise attempt.timeout(which)
            conn.settimeout_at_most(wait)
        try:
            return sock.recv(_READ_SIZE)
        except (TimeoutError, BlockingIOError):  # (the kernel's limit: EAGAIN)
            now = monotonic()  # maybe early (a longer-lived socket timeout): re-check


def _pump(conn: _Conn, attempt: Attempt, kind: str) -> None:
    """One read into the parser (end of input at EOF), bounded by timeout ``kind``.

    Any failure closes the connection and comes out typed.
    """
    try:
        data = _recv(conn, attempt, kind)
        if data:
            conn.parser.feed(data)
        else:
            conn.parser.feed_eof()
    except MsgfluxError:
        conn.close()
        raise
    except (OSError, ProtocolError) as exc:
        conn.close()
        raise attempt.broken(exc, conn.parser.received) from None
    except BaseException:
        conn.close()
        raise


class HTTPTransport(ClientBase):
    """Blocking HTTP/1.1 transport with a keep-alive pool keyed by route.

    Options: see :class:`~msgflux._transport.settings.ClientBase` (32 idle
    connections per route by default). Thread-safe; usable as a context
    manager; :meth:`close` closes idle sockets, and in-flight ones when they
    are released, and the transport stays usable.
    """

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._idle: dict[tuple, list[_Conn]] = {}

    # ------------------------------------------------------------ public API

    def send(self, req: HttpRequest, timeouts: Timeouts | None = None) -> HttpResponse:
        """One attempt; returns any status (4xx/5xx included) with the whole body."""
        conn, attempt = self._start(req, timeouts)
        p = conn.parser
        while not p.complete:
            _pump(conn, attempt, "idle")
        response = HttpResponse(p.status, p.headers, p.take_body(), attempt.timings())
        self._release(conn)
        return response

    def open_stream(self, req: HttpRequest, timeouts: Timeouts | None = None) -> SyncStreamResponse:
        """Send and return once the status line and headers have arrived."""
        conn, attempt = self._start(req, timeouts)
        return SyncStreamResponse(self, conn, attempt)

    def close(self) -> None:
        """Close idle connections; busy ones are closed when released."""
        with self._lock:
            self._generation += 1
            pools = list(self._idle.values())
            self._idle.clear()
        for pool in pools:
            for conn in pool:
                conn.close()

    def _after_fork_in_child(self) -> None:
        # The child's copies of the parent's sockets: close them (no TLS close_notify
        # is sent, so the parent's sessions go on) and start with an empty pool.
        super()._after_fork_in_child()
        pools, self._idle = self._idle, {}
        for pool in pools.values():
            for conn in pool:
                conn.close()

    def __enter__(self) -> HTTPTransport:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        idle = sum(len(v) for v in self._idle.values())
        return f"<HTTPTransport idle_connections={idle}>"

    # ------------------------------------------------------------ one attempt

    def _start(self, req: HttpRequest, timeouts: Timeouts | None) -> tuple[_Conn, Attempt]:
        if timeouts is None:
            timeouts = _DEFAULT_TIMEOUTS
        prep = self._router.prepare(req)
        route = prep.route
        stream = req.stream
        attempt = Attempt(timeouts, prep.target, route.where, monotonic(), stream)
        head_only = req.method == "HEAD"
        conn = self._checkout(route)
        if conn is not None:
            try:
                self._exchange(conn, prep, attempt, head_only, stream, reused=True)
                return conn, attempt
            except _StaleConnectionError:
                conn.close()
        conn = self._connect(route, attempt)
        attempt.connected = monotonic()
        self._exchange(conn, prep, attempt, head_only, stream, reused=False)
        return conn, attempt

    def _exchange(
        self, conn: _Conn, prep: Prepared, attempt: Attempt, head_only: bool, stream: bool, *,
        reused: bool
    ) -> None:
        """Write the request and read up to the end of the response head."""
        p = conn.parser
        # A stream is bounded per event (SSEDecoder), a whole answer in all; streams
        # offer no compression (see Router).
        p.start(head_only=head_only, max_body=None if stream else self.max_response_bytes,
                identity=stream)
        sock = conn.sock
        try:
            wait, which = attempt.budget("idle", monotonic())
            conn.settimeout_exactly(wait)
            try:
                sock.sendall(prep.data)
                if prep.tail is not None:
                    sock.sendall(prep.tail)
            except (TimeoutError, BlockingIOError):
                raise attempt.timeout(which) from None
            kind = "first_byte"
            while not p.headers_done:
                data = _recv(conn, attempt, kind)
                kind = "idle"
                if data:
                    p.feed(data)
                else:
                    p.feed_eof()
            attempt.head = monotonic()
        except MsgfluxError:
            conn.close()
            raise
        except (OSError, ProtocolError) as exc:
            if reused and not p.received and isinstance(exc, (OSError, IncompleteResponseError)):
                raise _StaleConnectionError from None
            conn.close()
            raise attempt.broken(exc, conn.parser.received) from None
        except BaseException:
            conn.close()
            raise

    def _connect(self, route: Route, attempt: Attempt) -> _Conn:
        wait, which = attempt.budget("connect", monotonic())
        deadline = monotonic() + wait if wait is not None else None
        try:
            sock = socket.create_connection((route.host, route.port), timeout=wait)
        except TimeoutError:
            raise attempt.timeout(which) from None
        except OSError as exc:
            raise connect_failed(route.where, exc, attempt.target.safe_url) from None
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if route.proxy_tls_host is not None:  # an https:// proxy
                sock.settimeout(_left(deadline, attempt, which))
                sock = self._tls_context().wrap_socket(
                    sock, server_hostname=route.proxy_tls_host)
            if route.tunnel is not None:
                self._open_tunnel(sock, route, attempt, deadline, which)
            if route.tls_host is not None:
                ctx = self._tls_context()
                sock.settimeout(_left(deadline, attempt, which))
                if route.proxy_tls_host is None:
                    sock = ctx.wrap_socket(sock, server_hostname=route.tls_host)
                else:
                    sock = _TLSInTLS(sock, ctx, route.tls_host)  # type: ignore[arg-type]
        except MsgfluxError:
            sock.close()
            raise
        except TimeoutError:
            sock.close()
            raise attempt.timeout(which) from None
        except OSError as exc:
            sock.close()
            raise connect_failed(route.where, exc, attempt.target.safe_url) from None
        return _Conn(sock, route, self._generation)

    def _open_tunnel(
        self,
        sock: socket.socket,
        route: Route,
        attempt: Attempt,
        deadline: float | None,
        which: str,
    ) -> None:
        handshake = TunnelHandshake(route, attempt.target.safe_url)
        sock.settimeout(_left(deadline, attempt, which))
        sock.sendall(handshake.request)
        while True:
            sock.settimeout(_left(deadline, attempt, which))
            if handshake.feed(sock.recv(4096)):
                return

    # ------------------------------------------------------------ pool

    def _checkout(self, route: Route) -> _Conn | None:
        key = route.key
        while True:
            with self._lock:
                pool = self._idle.get(key)
                if not pool:
                    return None
                conn = pool.pop()
            # An idle keep-alive socket that is readable was closed, or spoke out of
            # turn (a 408 sent before an idle close): one poll, about 1 us, on every
            # reuse keeps such bytes from being read as the next response.
            if monotonic() - conn.idle_since > self._idle_expiry or conn.readable(0):
                conn.close()
                continue
            return conn

    def _release(self, conn: _Conn) -> None:
        p = conn.parser
        if not (p.complete and p.keep_alive):
            conn.close()
            return
        conn.idle_since = monotonic()
        with self._lock:
            if conn.generation == self._generation:
                pool = self._idle.get(conn.route.key)
                if pool is None:
                    pool = self._idle[conn.route.key] = []
                if len(pool) < self._max_idle:
                    pool.append(conn)
                    return
        conn.close()


class _TLSInTLS:
    """The origin's TLS inside an https:// proxy's TLS. ``ssl`` wraps a socket only
    once, so the inner session runs on memory BIOs over the outer socket; this
    offers the few socket methods the client uses."""

    def __init__(self, outer: ssl.SSLSocket, ctx: ssl.SSLContext, server_hostname: str) -> None:
        import ssl  # (loaded only for https, where the context already loaded it)

        self._want_read = ssl.SSLWantReadError
        self._closed = ssl.SSLZeroReturnError
        self._outer = outer
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._tls = ctx.wrap_bio(self._incoming, self._outgoing,
                                 server_hostname=server_hostname)
        self._run(self._tls.do_handshake)

    def _run(self, step: Any, *args: Any) -> Any:
        while True:
            try:
                result = step(*args)
            except self._want_read:
                self._flush()
                data = self._outer.recv(_READ_SIZE)
                if data:
                    self._incoming.write(data)
                else:
                    self._incoming.write_eof()
                continue
            self._flush()
            return result

    def _flush(self) -> None:
        data = self._outgoing.read()
        if data:
            self._outer.sendall(data)

    def recv(self, n: int) -> bytes:
        try:
            return self._run(self._tls.read, n)
        except self._closed:
            return b""

    def sendall(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[self._run(self._tls.write, view):]

    def settimeout(self, value: float | None) -> None:
        self._outer.settimeout(value)

    def fileno(self) -> int:
        return self._outer.fileno()

    def close(self) -> None:
        self._outer.close()


def _left(deadline: float | None, attempt: Attempt, which: str) -> float | None:
    if deadline is None:
        return None
    left = deadline - monotonic()
    if left <= 0:
        raise attempt.timeout(which)
    return left


class SyncStreamResponse:
    """A response whose body is read on demand.

    ``status`` and ``headers`` are available at once. Iterate for
    :class:`SSEEvent` values, or use :meth:`iter_bytes` / :meth:`read`. The
    idle and total timeouts keep applying while reading. :meth:`close` (or
    leaving a ``with`` block) returns the connection to the pool when the body
    was read to the end, and closes it otherwise. After SSE iteration,
    :attr:`sse_tail` holds the bytes of an event the server did not terminate
    (``b""`` normally): non-blank means the stream was cut short.
    """

    __slots__ = ("_attempt", "_conn", "_sse", "_transport", "headers", "sse_tail", "status",
                 "timings")

    def __init__(self, transport: HTTPTransport, conn: _Conn, attempt: Attempt) -> None:
        self._transport = transport
        self._conn: _Conn | None = conn
        self._attempt = attempt
        self.status: int = conn.parser.status
        self.headers: list[tuple[str, str]] = conn.parser.headers
        self.timings = attempt.timings()
        self.sse_tail = b""
        self._sse: SSEDecoder | None = None

    def header(self, name: str) -> str | None:
        """The first value of header ``name`` (lower-case), or ``None``."""
        return header(self.headers, name)

    def _next_chunk(self) -> bytes:
        """The next piece of body (decoded); ``b""`` at the end."""
        conn = self._conn
        if conn is None:
            return b""
        p = conn.parser
        data = p.take_body()
        while not data and not p.complete:
            try:
                _pump(conn, self._attempt, "idle")
            except BaseException:
                self._conn = None  # closed by _pump
                raise
            data = p.take_body()
        if not data:
            self.close()
            if self._sse is not None:  # the end of an SSE iteration
                self._sse.close()
                self.sse_tail = self._sse.pending
        return data

    def iter_bytes(self) -> Iterator[bytes]:
        """Body pieces as they arrive (decoded), until the end of the body."""
        while True:
            data = self._next_chunk()
            if not data:
                return
            yield data

    def read(self) -> bytes:
        """The rest of the body (e.g. the error body of a non-2xx answer), at most
        ``max_response_bytes``."""
        if self._conn is not None:
            self._conn.parser.limit_body(self._transport.max_response_bytes)
        return b"".join(self.iter_bytes())

    def __iter__(self) -> Iterator[SSEEvent]:
        decoder = self._sse = SSEDecoder(self._transport.max_response_bytes)
        # C-level steps: a Python frame per read (_next_chunk, feed), none per event.
        return chain.from_iterable(map(decoder.feed, iter(self._next_chunk, b"")))

    def close(self) -> None:
        """Release the connection (pooled only if the body was read to the end)."""
        conn = self._conn
        if conn is None:
            return
        self._conn = None
        p = conn.parser
        if not p.complete:
            _drain_nowait(conn)
        self._transport._release(conn)

    def __enter__(self) -> SyncStreamResponse:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __del__(self) -> None:
        # Never touch the pool here (its lock may be held by this thread).
        conn = self._conn
        if conn is not None:
            self._conn = None
            conn.close()

    def __repr__(self) -> str:
        return f"<SyncStreamResponse {self.status} {self._attempt.where}>"


def _drain_nowait(conn: _Conn) -> None:
    """Read what already arrived: often just the chunked terminator after the
    last event, and then the connection can be reused."""
    p = conn.parser
    try:
        for _ in range(4):
            data = conn.recv_nowait()
            if not data:
                return
            p.feed(data)
            p.take_body()
            if p.complete:
                return
    except (OSError, ProtocolError):
        return


HTTPTransport.__module__ = "msgflux.transport"  # public there
