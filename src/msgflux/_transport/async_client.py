"""asyncio HTTP/1.1 client on ``asyncio.Protocol``, feeding the sans-I/O parser.

Same contract as :mod:`msgflux._transport.sync_client`: one call is one
attempt, any status is returned, a dead pooled connection is replaced once.

Performance notes (the target is most of raw aiohttp's throughput):

- the protocol wakes the waiting coroutine once per need (head, whole
  response, or "some body"), not once per ``data_received``;
- timeouts use one ``loop.call_at`` handle per exchange that re-arms itself
  lazily from the time of the last read, instead of a timer per read;
- several SSE events from one read are handed out without suspending.

Pools are per event loop: a transport may serve several ``asyncio.run()``
calls in turn. Each loop's pool registers an async generator with the loop,
so ``loop.shutdown_asyncgens()`` (which ``asyncio.run`` calls before closing
the loop) closes that loop's connections; pools of loops closed some other
way are found closed on the next use and their sockets are closed directly.
"""

from __future__ import annotations

import asyncio
import socket
from collections import deque
from collections.abc import AsyncIterator
from contextlib import suppress
from typing import TYPE_CHECKING, Any

from msgflux._transport.attempt import INF, Attempt
from msgflux._transport.errors import connect_failed
from msgflux._transport.http11 import IncompleteResponseError, ProtocolError, ResponseParser
from msgflux._transport.proxy import Route, TunnelHandshake
from msgflux._transport.routing import Prepared
from msgflux._transport.settings import ClientBase
from msgflux._transport.sse import SSEDecoder
from msgflux._transport.types import HttpRequest, HttpResponse, SSEEvent, Timeouts, header
from msgflux.exceptions import APIConnectionError, ConfigurationError, MsgfluxError

if TYPE_CHECKING:
    pass

try:
    from select import POLLIN, poll
except ImportError:  # pragma: no cover - Windows
    poll = None  # type: ignore[assignment]

__all__ = ["AsyncStreamResponse", "AsyncHTTPTransport"]

# Pools a forked child took over from its parent: kept referenced so that no
# destructor closes their sockets through the parent's event loop (its epoll
# instance is shared with the parent) in the child.
_left_by_parent: list[Any] = []

_DEFAULT_TIMEOUTS = Timeouts()
_HIGH_WATER = 1 << 20  # pause reading a stream when this much body is unread

# What a waiting coroutine needs before it is woken.
_WANT_HEAD = 1
_WANT_COMPLETE = 2
_WANT_BODY = 3


class _StaleConnectionError(Exception):
    """A reused connection died before any response byte: retry on a fresh one."""


class _Conn(asyncio.Protocol):
    """One connection: protocol callbacks plus the state of the current exchange."""

    def __init__(self, pool: _LoopPool, route: Route, sock: socket.socket) -> None:
        self.loop = pool.loop
        self.pool = pool
        self.route = route
        self.sock = sock  # kept to close the fd if the loop dies under us
        self.generation = pool.generation
        self.transport: asyncio.Transport | None = None
        self.parser = ResponseParser()
        self.waiter: asyncio.Future[None] | None = None
        self.want = 0
        self.streaming = False
        self.lost = False
        self.lost_exc: BaseException | None = None
        self.error: ProtocolError | None = None
        self.timed_out: str | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.timer_when = 0.0
        self.idle_limit = INF
        self.attempt: Attempt | None = None
        self.sent_at = 0.0
        self.last_read = 0.0
        self.wait_start = 0.0
        self.paused = False
        self.idle_since = 0.0
        self.tunnel_buf: bytearray | None = None
        self._poll: Any = None  # made on first reuse, then kept

    # ------------------------------------------------------------ protocol callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self.tunnel_buf is not None:
            self.tunnel_buf += data
            self._wake()
            return
        if self.attempt is None:
            # Bytes on an idle pooled connection (e.g. a 408 before the server
            # closes it) would be mistaken for the next response: drop it.
            self.transport.abort()  # type: ignore[union-attr]
            return
        self.last_read = self.loop.time()
        p = self.parser
        try:
            p.feed(data)
        except ProtocolError as exc:
            # llhttp cannot resume after an error: this connection is done.
            self.error = exc
            self._wake()
            self.transport.abort()  # type: ignore[union-attr]
            return
        if self.waiter is not None:
            want = self.want
            if (
                (want == _WANT_COMPLETE and p.complete)
                or (want == _WANT_HEAD and p.headers_done)
                or (want == _WANT_BODY and (p.buffered or p.complete))
            ):
                self._wake()
                return
            if self.timer is not None and self.timer_when > self.last_read + self.idle_limit:
                # The first byte came while the timer still waits for the (longer)
                # first-byte limit: from now on the idle limit applies.
                self._arm()
        if self.streaming and p.buffered > _HIGH_WATER and not self.paused:
            self.paused = True
            self.transport.pause_reading()  # type: ignore[union-attr]

    def eof_received(self) -> bool:
        self._end_of_input()
        return False  # let the transport close itself

    def connection_lost(self, exc: BaseException | None) -> None:
        if exc is not None and self.lost_exc is None:
            self.lost_exc = exc
        if exc is None:
            # TLS transports may report a clean close without eof_received.
            self._end_of_input()
        self.lost = True
        self.pool.active.discard(self)
        timer = self.timer
        if timer is not None:
            self.timer = None
            timer.cancel()
        self._wake()

    def _end_of_input(self) -> None:
        self.lost = True
        if self.tunnel_buf is None and self.error is None:
            try:
                self.parser.feed_eof()
            except ProtocolError as exc:
                self.error = exc
        self._wake()

    def _wake(self) -> None:
        waiter = self.waiter
        if waiter is not None:
            self.waiter = None
            if not waiter.done():
                waiter.set_result(None)

    # ------------------------------------------------------------ waiting with timeouts

    def _ready(self, want: int) -> bool:
        p = self.parser
        if want == _WANT_COMPLETE:
            return p.complete
        if want == _WANT_HEAD:
            return p.headers_done
        return bool(p.buffered) or p.complete

    async def wait(self, want: int) -> None:
        """Wait until ``want`` holds; raise the mapped error on failure or timeout."""
        while not self._ready(want):
            self._raise_if_failed()
            loop = self.loop
            self.want = want
            now = self.wait_start = loop.time()
            waiter = self.waiter = loop.create_future()
            # A pending timer that fires no later than an idle deadline from
            # now is good enough (it re-arms itself); otherwise re-arm.
            if self.timer is None or self.timer_when > now + self.idle_limit:
                self._arm()
            if self.paused:
                self.paused = False
                self.transport.resume_reading()  # type: ignore[union-attr]
            try:
                await waiter
            finally:
                self.waiter = None

    def _raise_if_failed(self) -> None:
        attempt = self.attempt
        assert attempt is not None
        if self.timed_out is not None:
            raise attempt.timeout(self.timed_out)
        if self.error is not None:
            raise attempt.broken(self.error, self.parser.received)
        if self.lost:
            raise attempt.broken(self.lost_exc, self.parser.received)

    def _deadline(self) -> tuple[str, float]:
        attempt = self.attempt
        assert attempt is not None
        t = attempt.timeouts
        if not self.parser.received:
            kind, limit, base = "first_byte", t.first_byte, self.sent_at
        else:
            kind, limit, base = "idle", t.idle, max(self.last_read, self.wait_start)
        deadline = base + limit if limit is not None else INF
        if attempt.deadline <= deadline:
            return "total", attempt.deadline
        return kind, deadline

    def _arm(self) -> None:
        """Make sure a timer fires no later than the current deadline."""
        _, deadline = self._deadline()
        timer = self.timer
        if timer is not None:
            if self.timer_when <= deadline:
                return  # fires early, then re-arms itself
            timer.cancel()
            self.timer = None
        if deadline != INF:
            self.timer_when = deadline
            self.timer = self.loop.call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        # Lazy re-arming: reads only stamp last_read; the timer checks it when
        # it fires and moves itself forward if there was activity.
        self.timer = None
        if self.waiter is None:
            return  # nobody waiting: the next wait() re-arms
        kind, deadline = self._deadline()
        if self.loop.time() >= deadline:
            self.timed_out = kind
            self._wake()
        elif deadline != INF:
            self.timer_when = deadline
            self.timer = self.loop.call_at(deadline, self._on_timer)

    # ------------------------------------------------------------ lifecycle

    def begin(self, attempt: Attempt, head_only: bool, streaming: bool,
              max_body: int | None) -> None:
        self.attempt = attempt
        idle = attempt.timeouts.idle
        self.idle_limit = idle if idle is not None else INF
        self.parser.start(head_only=head_only, max_body=max_body, identity=attempt.stream)
        self.streaming = streaming
        self.timed_out = None
        self.error = None

    def end_exchange(self) -> None:
        # The timer stays armed: firing with nobody waiting, it does nothing; until
        # then, the next exchange on this connection reuses it (it fires early, then
        # re-arms itself for that exchange's deadline). A timer per exchange would
        # cost a push and a cancelled entry in the loop's heap (Python comparisons).
        self.attempt = None
        self.streaming = False
        if self.paused:
            self.paused = False
            with suppress(Exception):
                self.transport.resume_reading()  # type: ignore[union-attr]

    def has_unread_bytes(self) -> bool:
        """An idle socket that is readable holds bytes (or a FIN) the loop has not
        seen yet, e.g. a stray response sent while the loop was blocked: they would
        be read as the next answer. One ``poll()``, about a microsecond."""
        if poll is None:  # pragma: no cover - Windows
            return False
        p = self._poll
        if p is None:
            p = self._poll = poll()
            p.register(self.sock, POLLIN)
        return bool(p.poll(0))

    def reusable(self) -> bool:
        p = self.parser
        return p.complete and p.keep_alive and not self.lost and self.error is None

    def abort(self) -> None:
        """Close now (no TLS close_notify: nothing useful is pending)."""
        self.end_exchange()
        self.pool.active.discard(self)
        self.lost = True
        transport = self.transport
        loop = self.loop
        if transport is None or loop.is_closed():
            with suppress(OSError):
                self.sock.close()
            return
        transport.abort()
        if not loop.is_running():
            # connection_lost would only run on the next loop iteration,
            # which may never come: free the descriptor now.
            with suppress(OSError):
                self.sock.close()


class _LoopPool:
    """Connections of one event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop, generation: int) -> None:
        self.loop = loop
        self.generation = generation
        self.idle: dict[tuple, list[_Conn]] = {}
        self.active: set[_Conn] = set()
        self.closed = False
        self._agen = self._watch()
        # Run the generator to its first yield inside the running loop: that
        # registers it with the loop's asyncgen hooks, so shutdown_asyncgens()
        # will close it, and with it this pool.
        with suppress(StopIteration):
            self._agen.asend(None).send(None)

    async def _watch(self) -> AsyncIterator[None]:
        try:
            yield
        finally:
            self.close()

    def close(self) -> None:
        self.closed = True
        conns = list(self.active)
        self.active.clear()
        self.idle.clear()
        for conn in conns:
            conn.abort()

    def discard(self) -> None:
        """Close the pool without its loop's help (loop closed or elsewhere)."""
        self.close()
        # Finish the watcher so its finalizer never runs on a dead loop.
        with suppress(BaseException):
            self._agen.aclose().send(None)


class AsyncHTTPTransport(ClientBase):
    """asyncio HTTP/1.1 transport with one keep-alive pool per event loop.

    Options: see :class:`~msgflux._transport.settings.ClientBase` (128 idle
    connections per route by default). ``await aclose()`` (or ``async with``)
    closes the current loop's connections; the transport stays usable.
    """

    default_max_idle = 128

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._pools: dict[asyncio.AbstractEventLoop, _LoopPool] = {}

    # ------------------------------------------------------------ public API

    async def send(self, req: HttpRequest, timeouts: Timeouts | None = None) -> HttpResponse:
        """One attempt; returns any status (4xx/5xx included) with the whole body."""
        conn = await self._start(req, timeouts, _WANT_COMPLETE)
        p = conn.parser
        attempt = conn.attempt
        # The head's arrival is not stamped here: it would cost a clock read per read.
        response = HttpResponse(p.status, p.headers, p.take_body(),
                                attempt.timings() if attempt is not None else None)
        self._release(conn)
        return response

    async def open_stream(
        self, req: HttpRequest, timeouts: Timeouts | None = None
    ) -> AsyncStreamResponse:
        """Send and return once the status line and headers have arrived."""
        conn = await self._start(req, timeouts, _WANT_HEAD)
        return AsyncStreamResponse(self, conn)

    async def aclose(self) -> None:
        """Close the current loop's connections and drop pools of closed loops."""
        loop = asyncio.get_running_loop()
        with self._lock:
            pool = self._pools.pop(loop, None)
            dead = self._prune_locked()
        if pool is not None:
            pool.discard()
        for p in dead:
            p.discard()

    def close(self) -> None:
        """Synchronous best effort: close every pool this transport holds."""
        with self._lock:
            pools = list(self._pools.values())
            self._pools.clear()
        for pool in pools:
            if pool.loop.is_running() and not _in_loop(pool.loop):
                pool.loop.call_soon_threadsafe(pool.discard)
            else:
                pool.discard()

    def _after_fork_in_child(self) -> None:
        # Never touch the parent's loops or sockets here (see _left_by_parent): just
        # stop using them, so the child dials its own connections.
        super()._after_fork_in_child()
        pools, self._pools = self._pools, {}
        _left_by_parent.append(pools)

    async def __aenter__(self) -> AsyncHTTPTransport:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"<AsyncHTTPTransport loops={len(self._pools)}>"

    # ------------------------------------------------------------ pools

    def _pool(self) -> _LoopPool:
        loop = asyncio.get_running_loop()
        pool = self._pools.get(loop)
        if pool is not None and not pool.closed:
            return pool
        with self._lock:
            dead = self._prune_locked()
            pool = self._pools.get(loop)
            if pool is None or pool.closed:
                pool = self._pools[loop] = _LoopPool(loop, self._generation)
        for p in dead:
            p.discard()
        return pool

    def _prune_locked(self) -> list[_LoopPool]:
        dead = [p for p in self._pools.values() if p.closed or p.loop.is_closed()]
        for p in dead:
            del self._pools[p.loop]
        return dead

    def _checkout(self, pool: _LoopPool, route: Route) -> _Conn | None:
        idle = pool.idle.get(route.key)
        if not idle:
            return None
        expiry = pool.loop.time() - self._idle_expiry
        while idle:
            conn = idle.pop()
            if not conn.lost and conn.idle_since >= expiry and not conn.has_unread_bytes():
                return conn
            conn.abort()
        return None

    def _release(self, conn: _Conn) -> None:
        conn.end_exchange()
        pool = conn.pool
        if conn.reusable() and not pool.closed and conn.generation == pool.generation:
            idle = pool.idle.get(conn.route.key)
            if idle is None:
                idle = pool.idle[conn.route.key] = []
            if len(idle) < self._max_idle:
                conn.idle_since = conn.loop.time()
                idle.append(conn)
                return
        conn.abort()

    # ------------------------------------------------------------ one attempt

    async def _start(self, req: HttpRequest, timeouts: Timeouts | None, want: int) -> _Conn:
        if timeouts is None:
            timeouts = _DEFAULT_TIMEOUTS
        prep = self._router.prepare(req)
        route = prep.route
        pool = self._pool()
        attempt = Attempt(timeouts, prep.target, route.where, pool.loop.time(), req.stream)
        head_only = req.method == "HEAD"
        conn = self._checkout(pool, route)
        if conn is not None:
            try:
                await self._exchange(conn, prep, attempt, head_only, want, reused=True)
                return conn
            except _StaleConnectionError:
                conn.abort()
        conn = await self._connect(pool, route, attempt)
        attempt.connected = pool.loop.time()
        await self._exchange(conn, prep, attempt, head_only, want, reused=False)
        return conn

    async def _exchange(
        self,
        conn: _Conn,
        prep: Prepared,
        attempt: Attempt,
        head_only: bool,
        want: int,
        *,
        reused: bool,
    ) -> None:
        conn.begin(attempt, head_only, want != _WANT_COMPLETE,
                   None if attempt.stream else self.max_response_bytes)
        transport = conn.transport
        assert transport is not None
        try:
            if prep.tail is None:
                transport.write(prep.data)
            else:
                transport.writelines((prep.data, prep.tail))
            conn.sent_at = conn.loop.time()
            await conn.wait(want)
            if want == _WANT_HEAD:
                attempt.head = conn.loop.time()
        except MsgfluxError as exc:
            if (
                reused
                and not conn.parser.received
                and conn.timed_out is None
                and isinstance(exc, APIConnectionError)
                and (conn.lost or isinstance(conn.error, IncompleteResponseError))
            ):
                raise _StaleConnectionError from None
            conn.abort()
            raise
        except BaseException:  # cancellation included: the connection is mid-exchange
            conn.abort()
            raise

    async def _connect(self, pool: _LoopPool, route: Route, attempt: Attempt) -> _Conn:
        loop = pool.loop
        wait, which = attempt.budget("connect", loop.time())
        try:
            if wait is None:
                return await self._open(pool, route, attempt)
            return await asyncio.wait_for(self._open(pool, route, attempt), wait)
        except asyncio.TimeoutError:
            # asyncio.TimeoutError is not the builtin before 3.11; our own
            # timeout errors never come out of _open.
            raise attempt.timeout(which) from None

    async def _open(self, pool: _LoopPool, route: Route, attempt: Attempt) -> _Conn:
        loop = pool.loop
        sock = await _connect_socket(loop, route, attempt)
        conn = _Conn(pool, route, sock)
        try:
            ctx = None
            if route.tls_host is not None or route.proxy_tls_host is not None:
                ctx = self._tls_context()
            if route.tunnel is None and route.proxy_tls_host is None:
                await loop.create_connection(
                    lambda: conn, sock=sock, ssl=ctx, server_hostname=route.tls_host
                )
            else:  # through a proxy: TLS to it when it is https://, then maybe a tunnel
                proxy_ctx = ctx if route.proxy_tls_host is not None else None
                await loop.create_connection(lambda: conn, sock=sock, ssl=proxy_ctx,
                                             server_hostname=route.proxy_tls_host)
                if route.tunnel is not None:
                    await self._open_tunnel(conn, route, attempt)
                if route.tls_host is not None:
                    assert ctx is not None
                    _check_tls_in_tls(route)
                    transport = await loop.start_tls(
                        conn.transport,  # type: ignore[arg-type]
                        conn,
                        ctx,
                        server_hostname=route.tls_host,
                    )
                    conn.transport = transport  # type: ignore[assignment]
        except MsgfluxError:
            conn.abort()
            raise
        except OSError as exc:
            conn.abort()
            raise connect_failed(route.where, exc, attempt.target.safe_url) from None
        except BaseException:
            conn.abort()
            raise
        pool.active.add(conn)
        return conn

    async def _open_tunnel(self, conn: _Conn, route: Route, attempt: Attempt) -> None:
        assert conn.transport is not None
        handshake = TunnelHandshake(route, attempt.target.safe_url)
        received = conn.tunnel_buf = bytearray()
        conn.transport.write(handshake.request)
        while True:
            data = bytes(received)
            received.clear()
            if data and handshake.feed(data):
                break
            if conn.lost:
                handshake.feed(b"")  # raises: the proxy closed before the tunnel was open
            waiter = conn.waiter = conn.loop.create_future()
            await waiter
        conn.tunnel_buf = None


async def _connect_socket(
    loop: asyncio.AbstractEventLoop, route: Route, attempt: Attempt
) -> socket.socket:
    """A connected non-blocking TCP socket that we own (see _Conn.abort)."""
    host, port = route.host, route.port
    try:
        if _is_ip(host):
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            infos: list[Any] = [(family, socket.SOCK_STREAM, 0, "", (host, port))]
        else:
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise connect_failed(route.where, exc, attempt.target.safe_url) from None
    last: OSError | None = None
    for family, type_, proto, _, addr in infos:
        sock = socket.socket(family, type_, proto)
        try:
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            await loop.sock_connect(sock, addr)
            return sock
        except OSError as exc:
            sock.close()
            last = exc
        except BaseException:
            sock.close()
            raise
    assert last is not None
    raise connect_failed(route.where, last, attempt.target.safe_url)


def _check_tls_in_tls(route: Route) -> None:
    import sys

    if route.proxy_tls_host is not None and sys.version_info < (3, 11):
        raise ConfigurationError(
            f"reaching {route.where}: TLS inside an https:// proxy's TLS needs Python 3.11+ "
            "for async calls (asyncio cannot nest TLS before); use an http:// proxy, or "
            "blocking calls"
        )


def _is_ip(host: str) -> bool:
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(family, host)
            return True
        except OSError:
            continue
    return False


def _in_loop(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False


class AsyncStreamResponse:
    """A response whose body is read on demand; ``async for ev in stream`` for SSE.

    Mirrors :class:`~msgflux._transport.sync_client.SyncStreamResponse`:
    ``status``, ``headers``, ``header()``, ``await read()``, ``iter_bytes()``,
    ``await aclose()`` (or ``async with``), ``sse_tail`` after iteration.
    """

    __slots__ = ("_conn", "_decoder", "_events", "_transport", "headers", "sse_tail", "status",
                 "timings")

    def __init__(self, transport: AsyncHTTPTransport, conn: _Conn) -> None:
        self._transport = transport
        self._conn: _Conn | None = conn
        self.status: int = conn.parser.status
        self.headers: list[tuple[str, str]] = conn.parser.headers
        attempt = conn.attempt
        self.timings = attempt.timings() if attempt is not None else None
        self._decoder: SSEDecoder | None = None
        self._events: deque[SSEEvent] = deque()
        self.sse_tail = b""

    def header(self, name: str) -> str | None:
        """The first value of header ``name`` (lower-case), or ``None``."""
        return header(self.headers, name)

    async def _next_chunk(self) -> bytes:
        """The next piece of body (decoded); ``b""`` at the end."""
        conn = self._conn
        if conn is None:
            return b""
        p = conn.parser
        data = p.take_body()
        if not data and not p.complete:
            try:
                await conn.wait(_WANT_BODY)
            except BaseException:
                self._drop(conn)
                raise
            data = p.take_body()
        if not data:
            self._finish()
        return data

    async def iter_bytes(self) -> AsyncIterator[bytes]:
        """Body pieces as they arrive (decoded), until the end of the body."""
        while True:
            data = await self._next_chunk()
            if not data:
                return
            yield data

    async def read(self) -> bytes:
        """The rest of the body (e.g. the error body of a non-2xx answer), at most
        ``max_response_bytes``."""
        if self._conn is not None:
            self._conn.parser.limit_body(self._transport.max_response_bytes)
        parts = []
        while True:
            data = await self._next_chunk()
            if not data:
                return b"".join(parts)
            parts.append(data)

    def __aiter__(self) -> AsyncStreamResponse:
        if self._decoder is None:
            self._decoder = SSEDecoder(self._transport.max_response_bytes)
        return self

    async def __anext__(self) -> SSEEvent:
        events = self._events
        if events:
            return events.popleft()
        decoder = self._decoder
        if decoder is None:
            decoder = self._decoder = SSEDecoder(self._transport.max_response_bytes)
        # _next_chunk() inlined: one coroutine less per event on the hot path.
        conn = self._conn
        while conn is not None:
            p = conn.parser
            data = p.take_body()
            if data:
                batch = decoder.feed(data)
                if batch:
                    if len(batch) > 1:
                        events.extend(batch[1:])
                    return batch[0]
            elif p.complete:
                self._finish()
                break
            else:
                try:
                    await conn.wait(_WANT_BODY)
                except BaseException:
                    self._drop(conn)
                    raise
        decoder.close()
        self.sse_tail = decoder.pending
        raise StopAsyncIteration

    def _drop(self, conn: _Conn) -> None:
        """A failed read: the connection cannot be reused."""
        self._conn = None
        conn.abort()

    def _finish(self) -> None:
        conn = self._conn
        if conn is not None:
            self._conn = None
            self._transport._release(conn)

    async def aclose(self) -> None:
        """Release the connection (pooled only if the body was read to the end)."""
        self._finish()

    def close(self) -> None:
        """Synchronous :meth:`aclose` (never blocks)."""
        self._finish()

    async def __aenter__(self) -> AsyncStreamResponse:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._finish()

    def __del__(self) -> None:
        # Never pool here; just make sure the socket does not leak.
        conn = self._conn
        if conn is not None:
            self._conn = None
            loop = conn.loop
            with suppress(Exception):
                if loop.is_running() and not _in_loop(loop):
                    loop.call_soon_threadsafe(conn.abort)
                else:
                    conn.abort()

    def __repr__(self) -> str:
        return f"<AsyncStreamResponse {self.status}>"


AsyncHTTPTransport.__module__ = "msgflux.transport"  # public there
