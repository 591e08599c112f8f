"""A loopback HTTP/1.1 server that replays scripted bytes and records requests.

Pure stdlib (``socket`` + ``threading``), bound to ``127.0.0.1`` on a free port.
One thread accepts, one thread serves each connection; every wait is bounded
and :meth:`ScriptedServer.close` joins every thread and closes every socket.

Usage::

    with ScriptedServer() as srv:                 # or the ``scripted_server`` fixture
        srv.enqueue(json_reply(200, {"ok": True}))
        srv.route("POST", "/v1/chat/completions", sse_reply([{"x": 1}, "data: [DONE]\\n\\n"]))
        ...  # point the client at srv.url
        srv.requests[0].json()                    # what the client sent

Replies are consumed in order: first the queue routed to the request's
``(method, path)`` (path without query), then the default queue. With nothing
queued the server answers ``599`` and records the request in
:attr:`ScriptedServer.unexpected`.

Reply builders (each returns a :class:`Reply`):

- ``raw(data)``: exact bytes, nothing added (the connection stays open
  afterwards unless ``close=True``).
- ``json_reply(status, obj, headers=None, *, chunked=False, gzip=False)``
- ``text_reply(status, body, headers=None, *, content_type=..., chunked=False, gzip=False,
  close_delimited=False)``
- ``sse_reply(events, delay_between=0.0, chunk_split=None, *, status=200, headers=None,
  chunked=True)``: ``events`` items are raw SSE text (``str``/``bytes``, sent as is,
  e.g. ``"data: {...}\\n\\n"``) or JSON-able objects (sent as ``data: <json>\\n\\n``).
  ``chunk_split=n`` cuts the body into ``n``-byte writes; ``chunked=False``
  sends a close-delimited body.
- ``drop()``: read the request, then close without answering.
- ``reset()``: read the request, then abort with a TCP RST (``SO_LINGER`` 0).
- ``stall(seconds)``: read the request, send nothing for ``seconds``, then close.
- ``delay(seconds, reply)``: wait before the status line.
- ``slow_headers(reply, per_byte=0.01)``: send the head one byte at a time.

Faults applied to any reply (methods returning a new :class:`Reply`):
``reply.drop_after(n)`` (close after ``n`` bytes), ``reply.reset_after(n)``
(RST after ``n`` bytes), ``reply.stall_after(n, seconds)`` (send ``n`` bytes,
then silence, then close), ``reply.hold_after(n, gate)`` (send ``n`` bytes, then the
rest once the test sets the ``threading.Event`` ``gate``), ``reply.then_set(event)``
(set a ``threading.Event`` once the reply is written), ``reply.then_close()`` (close
after a complete reply).

Also: ``connections`` (accepted so far), ``pending_replies``,
``wait_for_requests(n, timeout)``, ``ScriptedServer(tls=True)`` (self-signed
certificate for ``localhost``, ``scripted.test`` and ``127.0.0.1``, made with
the ``openssl`` command; ``client_ssl_context()`` trusts it), and
:class:`ConnectProxy`, a loopback CONNECT proxy that tunnels to one upstream
(so a client can be pointed at ``https://scripted.test:PORT`` through it).

Hook the ``scripted_server`` fixture into pytest with
``pytest_plugins = ["scripted_server"]`` in ``tests/conftest.py`` (this works
because ``tests/`` has no ``__init__.py``, so pytest puts it on ``sys.path``;
test modules import this module the same way: ``from scripted_server import ...``).
"""

from __future__ import annotations

import contextlib
import gzip as _gzip
import json as _json
import os
import shutil
import socket
import ssl
import struct
import subprocess
import tempfile
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "ConnectProxy",
    "RecordedRequest",
    "Reply",
    "ScriptedServer",
    "delay",
    "drop",
    "json_reply",
    "raw",
    "reset",
    "scripted_server",
    "slow_headers",
    "sse_reply",
    "stall",
    "text_reply",
]

_IO_TIMEOUT = 0.2  # granularity of stop checks in blocking reads
_MAX_HEAD = 1 << 20


# ---------------------------------------------------------------- replies


@dataclass(frozen=True)
class Reply:
    """A script: a sequence of steps ``("write", bytes)``, ``("sleep", s)``,
    ``("wait", event, timeout)``, ``("set", event)``, ``("close",)``, ``("reset",)``.
    After the last step the connection stays open for the next request unless a
    close/reset step ran."""

    steps: tuple[tuple[Any, ...], ...]

    def _cut(self, n: int, final: tuple[tuple[Any, ...], ...]) -> Reply:
        out: list[tuple[Any, ...]] = []
        left = n
        for step in self.steps:
            if step[0] == "write":
                if left <= 0:
                    break
                data = step[1][:left]
                left -= len(data)
                out.append(("write", data))
            elif step[0] == "sleep":
                out.append(step)
            else:
                break
        return Reply((*out, *final))

    def drop_after(self, n: int) -> Reply:
        """Close the connection after ``n`` bytes of this reply."""
        return self._cut(n, (("close",),))

    def reset_after(self, n: int) -> Reply:
        """Abort the connection (RST) after ``n`` bytes of this reply."""
        return self._cut(n, (("reset",),))

    def stall_after(self, n: int, seconds: float) -> Reply:
        """Send ``n`` bytes, stay silent for ``seconds``, then close."""
        return self._cut(n, (("sleep", seconds), ("close",)))

    def hold_after(self, n: int, gate: threading.Event, timeout: float = 30.0) -> Reply:
        """Send ``n`` bytes, wait until ``gate`` is set (at most ``timeout`` seconds, or
        until the server closes), then send the rest: the client provably has the first
        ``n`` bytes and nothing more for as long as the test holds the gate."""
        head, tail, left = [], [], n
        for step in self.steps:
            if left > 0 and step[0] == "write":
                data = step[1]
                head.append(("write", data[:left]))
                if len(data) > left:
                    tail.append(("write", data[left:]))
                left -= len(data)
            elif left > 0:
                head.append(step)
            else:
                tail.append(step)
        return Reply((*head, ("wait", gate, timeout), *tail))

    def then_set(self, event: threading.Event) -> Reply:
        """Set ``event`` once the reply is written: the test waits for the bytes to be
        sent instead of sleeping and hoping they were."""
        return Reply((*self.steps, ("set", event)))

    def then_close(self) -> Reply:
        """Close the connection once the reply is written."""
        return Reply((*self.steps, ("close",)))


def raw(data: bytes | str, *, close: bool = False) -> Reply:
    """Exact bytes, nothing added."""
    if isinstance(data, str):
        data = data.encode()
    steps: tuple[tuple[Any, ...], ...] = (("write", data),)
    return Reply((*steps, ("close",)) if close else steps)


_REASONS = {
    200: "OK",
    201: "Created",
    204: "No Content",
    304: "Not Modified",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    408: "Request Timeout",
    409: "Conflict",
    422: "Unprocessable Entity",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
    529: "Overloaded",
    599: "No Scripted Reply",
}


def _head(status: int, headers: Iterable[tuple[str, str]]) -> bytes:
    lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}\r\n"]
    lines += [f"{k}: {v}\r\n" for k, v in headers]
    lines.append("\r\n")
    return "".join(lines).encode("latin-1")


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def _as_pairs(headers: dict[str, str] | Iterable[tuple[str, str]] | None) -> list[tuple[str, str]]:
    if headers is None:
        return []
    if isinstance(headers, dict):
        return list(headers.items())
    return list(headers)


def text_reply(
    status: int,
    body: bytes | str = b"",
    headers: dict[str, str] | Iterable[tuple[str, str]] | None = None,
    *,
    content_type: str = "text/plain; charset=utf-8",
    chunked: bool = False,
    gzip: bool = False,
    close_delimited: bool = False,
) -> Reply:
    """A complete response: Content-Length framed unless ``chunked``/``close_delimited``."""
    if isinstance(body, str):
        body = body.encode()
    hdrs = _as_pairs(headers)
    if not any(k.lower() == "content-type" for k, _ in hdrs):
        hdrs.insert(0, ("Content-Type", content_type))
    if gzip:
        body = _gzip.compress(body)
        hdrs.append(("Content-Encoding", "gzip"))
    if chunked:
        hdrs.append(("Transfer-Encoding", "chunked"))
        half = len(body) // 2
        payload = b"".join(_chunk(p) for p in (body[:half], body[half:]) if p) + b"0\r\n\r\n"
        return Reply((("write", _head(status, hdrs) + payload),))
    if close_delimited:
        hdrs.append(("Connection", "close"))
        return Reply((("write", _head(status, hdrs) + body), ("close",)))
    hdrs.append(("Content-Length", str(len(body))))
    return Reply((("write", _head(status, hdrs) + body),))


def json_reply(
    status: int,
    obj: Any,
    headers: dict[str, str] | Iterable[tuple[str, str]] | None = None,
    *,
    chunked: bool = False,
    gzip: bool = False,
) -> Reply:
    """``obj`` as a JSON body."""
    body = _json.dumps(obj).encode()
    return text_reply(
        status, body, headers, content_type="application/json", chunked=chunked, gzip=gzip
    )


def sse_reply(
    events: Iterable[bytes | str | Any],
    delay_between: float = 0.0,
    chunk_split: int | None = None,
    *,
    status: int = 200,
    headers: dict[str, str] | Iterable[tuple[str, str]] | None = None,
    chunked: bool = True,
) -> Reply:
    """A ``text/event-stream`` response; see the module docstring for ``events``."""
    pieces: list[bytes] = []
    for ev in events:
        if isinstance(ev, bytes):
            pieces.append(ev)
        elif isinstance(ev, str):
            pieces.append(ev.encode())
        else:
            pieces.append(b"data: " + _json.dumps(ev).encode() + b"\n\n")
    if chunk_split:
        body = b"".join(pieces)
        pieces = [body[i : i + chunk_split] for i in range(0, len(body), chunk_split)]
    hdrs = [("Content-Type", "text/event-stream"), ("Cache-Control", "no-cache")]
    hdrs += _as_pairs(headers)
    hdrs.append(("Transfer-Encoding", "chunked") if chunked else ("Connection", "close"))
    steps: list[tuple[Any, ...]] = [("write", _head(status, hdrs))]
    for i, piece in enumerate(pieces):
        if i and delay_between:
            steps.append(("sleep", delay_between))
        steps.append(("write", _chunk(piece) if chunked else piece))
    if chunked:
        steps.append(("write", b"0\r\n\r\n"))
    else:
        steps.append(("close",))
    return Reply(tuple(steps))


def drop() -> Reply:
    """Read the request, then close the connection without a byte."""
    return Reply((("close",),))


def reset() -> Reply:
    """Read the request, then abort the connection with a TCP RST."""
    return Reply((("reset",),))


def stall(seconds: float) -> Reply:
    """Read the request, send nothing for ``seconds``, then close."""
    return Reply((("sleep", seconds), ("close",)))


def delay(seconds: float, reply: Reply) -> Reply:
    """Wait ``seconds`` before the status line of ``reply``."""
    return Reply((("sleep", seconds), *reply.steps))


def slow_headers(reply: Reply, per_byte: float = 0.01) -> Reply:
    """Send the response head one byte at a time, ``per_byte`` seconds apart."""
    steps: list[tuple[Any, ...]] = []
    in_head = True
    for step in reply.steps:
        if in_head and step[0] == "write":
            data = step[1]
            end = data.find(b"\r\n\r\n")
            head, rest = (data, b"") if end < 0 else (data[: end + 4], data[end + 4 :])
            for i in range(len(head)):
                steps += [("write", head[i : i + 1]), ("sleep", per_byte)]
            if end >= 0:
                in_head = False
                if rest:
                    steps.append(("write", rest))
        else:
            steps.append(step)
    return Reply(tuple(steps))


# ---------------------------------------------------------------- recorded requests


@dataclass
class RecordedRequest:
    """One request as received: ``headers`` has lower-case names."""

    method: str
    target: str  # path plus query, as sent
    headers: dict[str, str]
    body: bytes
    connection: int  # 1-based index of the connection it came on
    raw_head: bytes = field(repr=False, default=b"")

    @property
    def path(self) -> str:
        return self.target.partition("?")[0]

    @property
    def query(self) -> str:
        return self.target.partition("?")[2]

    def json(self) -> Any:
        return _json.loads(self.body)


# ---------------------------------------------------------------- the server


class _StoppedError(Exception):
    pass


class ScriptedServer:
    """See the module docstring."""

    def __init__(self, *, tls: bool = False, host: str = "127.0.0.1",
                 server_context: ssl.SSLContext | None = None) -> None:
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._default: deque[Reply] = deque()
        self._routes: dict[tuple[str, str], deque[Reply]] = {}
        self._requests: list[RecordedRequest] = []
        self._unexpected: list[RecordedRequest] = []
        self._threads: list[threading.Thread] = []
        self._socks: set[socket.socket] = set()
        self._conn_count = 0
        self._got_request = threading.Condition(self._lock)
        self._tls_dir: str | None = None
        self._server_ctx: ssl.SSLContext | None = None
        if server_context is not None:  # TLS with the caller's certificates (e.g. trustme)
            tls, self._server_ctx = True, server_context
        elif tls:
            self._tls_dir, self._server_ctx = _make_tls()
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind((host, 0))
        self._listener.listen(128)
        self._listener.settimeout(_IO_TIMEOUT)
        self.host = host
        self.port = self._listener.getsockname()[1]
        scheme = "https" if tls else "http"
        self.url = f"{scheme}://{host}:{self.port}"
        accept = threading.Thread(target=self._accept_loop, name="scripted-accept", daemon=True)
        self._threads.append(accept)
        accept.start()

    # ------------------------------------------------------------ scripting

    def enqueue(self, *replies: Reply) -> ScriptedServer:
        """Queue replies for any request not matched by :meth:`route`."""
        with self._lock:
            self._default.extend(replies)
        return self

    def route(self, method: str, path: str, *replies: Reply) -> ScriptedServer:
        """Queue replies for ``method`` requests to ``path`` (query ignored)."""
        with self._lock:
            self._routes.setdefault((method.upper(), path), deque()).extend(replies)
        return self

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    @property
    def unexpected(self) -> list[RecordedRequest]:
        """Requests that found no queued reply (answered 599)."""
        with self._lock:
            return list(self._unexpected)

    @property
    def connections(self) -> int:
        with self._lock:
            return self._conn_count

    @property
    def pending_replies(self) -> int:
        with self._lock:
            return len(self._default) + sum(len(q) for q in self._routes.values())

    def wait_for_requests(self, n: int, timeout: float = 5.0) -> list[RecordedRequest]:
        """Block until ``n`` requests were received (``TimeoutError`` after ``timeout``)."""
        deadline = time.monotonic() + timeout
        with self._got_request:
            while len(self._requests) < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"got {len(self._requests)} requests, wanted {n}")
                self._got_request.wait(left)
            return list(self._requests)

    def client_ssl_context(self) -> ssl.SSLContext:
        """A client context that trusts this server's self-signed certificate."""
        if self._tls_dir is None:
            raise RuntimeError("server was not started with tls=True")
        ctx = ssl.create_default_context(cafile=os.path.join(self._tls_dir, "cert.pem"))
        return ctx

    # ------------------------------------------------------------ lifecycle

    def close(self, timeout: float = 5.0) -> None:
        """Stop: close every socket and join every thread."""
        self._stop.set()
        # shutdown() wakes threads blocked in accept()/recv() at once.
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        with self._lock:
            socks = list(self._socks)
        for s in socks:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
        deadline = time.monotonic() + timeout
        for t in list(self._threads):
            t.join(max(0.0, deadline - time.monotonic()))
        self._listener.close()
        with self._lock:
            socks = list(self._socks)
            self._socks.clear()
        for s in socks:
            s.close()
        if self._tls_dir is not None:
            shutil.rmtree(self._tls_dir, ignore_errors=True)
            self._tls_dir = None
        alive = [t.name for t in self._threads if t.is_alive()]
        if alive:
            raise RuntimeError(f"scripted server threads did not stop: {alive}")

    def __enter__(self) -> ScriptedServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ------------------------------------------------------------ internals

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                sock, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                if self._stop.is_set():
                    sock.close()
                    return
                self._conn_count += 1
                index = self._conn_count
                self._socks.add(sock)
                t = threading.Thread(
                    target=self._serve,
                    args=(sock, index),
                    name=f"scripted-conn-{index}",
                    daemon=True,
                )
                self._threads.append(t)
            t.start()

    def _serve(self, sock: socket.socket, index: int) -> None:
        conn = sock
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self._server_ctx is not None:
                sock.settimeout(2.0)
                try:
                    conn = self._server_ctx.wrap_socket(sock, server_side=True)
                except ssl.SSLError:
                    _linger(sock)
                    raise
                with self._lock:
                    self._socks.add(conn)
            conn.settimeout(_IO_TIMEOUT)
            buf = b""
            while not self._stop.is_set():
                req, buf = self._read_request(conn, buf, index)
                if req is None:
                    return
                reply = self._next_reply(req)
                if not self._play(conn, reply):
                    return
        except (_StoppedError, OSError, ssl.SSLError):
            return
        finally:
            self._close_sock(conn, sock)

    def _close_sock(self, conn: socket.socket, sock: socket.socket) -> None:
        with self._lock:
            self._socks.discard(conn)
            self._socks.discard(sock)
        for s in {conn, sock}:
            with contextlib.suppress(OSError):
                s.close()

    def _recv(self, conn: socket.socket) -> bytes:
        while True:
            if self._stop.is_set():
                raise _StoppedError
            try:
                return conn.recv(65536)
            except TimeoutError:
                continue

    def _read_request(
        self, conn: socket.socket, buf: bytes, index: int
    ) -> tuple[RecordedRequest | None, bytes]:
        while b"\r\n\r\n" not in buf:
            if len(buf) > _MAX_HEAD:
                return None, b""
            data = self._recv(conn)
            if not data:
                return None, b""
            buf += data
        end = buf.index(b"\r\n\r\n")
        head, buf = buf[:end], buf[end + 4 :]
        lines = head.decode("latin-1").split("\r\n")
        method, target, _version = lines[0].split(" ", 2)
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if "chunked" in headers.get("transfer-encoding", "").lower():
            body = b""
            while True:
                while b"\r\n" not in buf:
                    data = self._recv(conn)
                    if not data:
                        return None, b""
                    buf += data
                size_line, _, buf = buf.partition(b"\r\n")
                size = int(size_line.split(b";")[0], 16)
                while len(buf) < size + 2:
                    data = self._recv(conn)
                    if not data:
                        return None, b""
                    buf += data
                body += buf[:size]
                buf = buf[size + 2 :]
                if size == 0:
                    break
        else:
            length = int(headers.get("content-length", "0"))
            while len(buf) < length:
                data = self._recv(conn)
                if not data:
                    return None, b""
                buf += data
            body, buf = buf[:length], buf[length:]
        req = RecordedRequest(method, target, headers, body, index, head)
        return req, buf

    def _next_reply(self, req: RecordedRequest) -> Reply:
        with self._got_request:
            self._requests.append(req)
            self._got_request.notify_all()
            queue = self._routes.get((req.method.upper(), req.path))
            if queue:
                return queue.popleft()
            if self._default:
                return self._default.popleft()
            self._unexpected.append(req)
        msg = f"scripted server: no reply queued for {req.method} {req.path}"
        return text_reply(599, msg)

    def _play(self, conn: socket.socket, reply: Reply) -> bool:
        """Run a reply's steps; ``False`` when the connection was closed."""
        for step in reply.steps:
            kind = step[0]
            if kind == "write":
                conn.sendall(step[1])
            elif kind == "sleep":
                if self._stop.wait(step[1]):
                    raise _StoppedError
            elif kind == "set":
                step[1].set()
            elif kind == "wait":
                gate, deadline = step[1], time.monotonic() + step[2]
                while not gate.wait(_IO_TIMEOUT) and time.monotonic() < deadline:
                    if self._stop.is_set():
                        raise _StoppedError
            elif kind == "close":
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_WR)
                return False
            elif kind == "reset":
                # Linger on with a zero timeout: close() sends RST, not FIN.
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                return False
        return True


def _linger(sock: socket.socket) -> None:
    """After a failed TLS handshake: let the alert reach the client before closing
    (closing with its request unread would send a RST that can overtake the alert)."""
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_WR)
        sock.settimeout(_IO_TIMEOUT)
        for _ in range(8):  # bounded: at most ~1.6 s
            if not sock.recv(65536):
                return


# ---------------------------------------------------------------- a CONNECT proxy


class ConnectProxy:
    """A loopback HTTP proxy that tunnels every ``CONNECT`` to one upstream address.

    The host named in ``CONNECT`` is recorded (``targets``) but not resolved, so
    tests can use names like ``scripted.test`` with a server on 127.0.0.1.
    ``auth`` records the ``Proxy-Authorization`` values; ``refuse=407`` answers
    every CONNECT with that status instead. With ``server_context`` the proxy
    itself speaks TLS (an ``https://`` proxy; ``url`` says so).
    """

    def __init__(self, upstream: tuple[str, int], *, refuse: int | None = None,
                 server_context: ssl.SSLContext | None = None) -> None:
        self.upstream = upstream
        self.refuse = refuse
        self._server_ctx = server_context
        self.targets: list[str] = []
        self.auth: list[str | None] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._socks: set[socket.socket] = set()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(_IO_TIMEOUT)
        self.port = self._listener.getsockname()[1]
        scheme = "https" if server_context is not None else "http"
        self.url = f"{scheme}://127.0.0.1:{self.port}"
        t = threading.Thread(target=self._accept_loop, name="proxy-accept", daemon=True)
        self._threads.append(t)
        t.start()

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                sock, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self._socks.add(sock)
                t = threading.Thread(target=self._serve, args=(sock,), daemon=True)
                self._threads.append(t)
            t.start()

    def _serve(self, client: socket.socket) -> None:
        upstream = None
        try:
            if self._server_ctx is not None:
                client.settimeout(2.0)
                client = self._server_ctx.wrap_socket(client, server_side=True)
                with self._lock:
                    self._socks.add(client)
            client.settimeout(_IO_TIMEOUT)
            buf = b""
            while b"\r\n\r\n" not in buf:
                data = self._recv(client)
                if not data:
                    return
                buf += data
            head = buf.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
            method, target, _ = head[0].split(" ", 2)
            auth = None
            for line in head[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "proxy-authorization":
                    auth = value.strip()
            with self._lock:
                self.targets.append(target)
                self.auth.append(auth)
            if method != "CONNECT" or self.refuse:
                status = self.refuse or 405
                client.sendall(f"HTTP/1.1 {status} No\r\nContent-Length: 0\r\n\r\n".encode())
                return
            upstream = socket.create_connection(self.upstream, timeout=2)
            upstream.settimeout(_IO_TIMEOUT)
            with self._lock:
                self._socks.add(upstream)
            client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            self._pipe(client, upstream)
        except (_StoppedError, OSError):  # ssl.SSLError is an OSError
            return
        finally:
            for s in (client, upstream):
                if s is not None:
                    with self._lock:
                        self._socks.discard(s)
                    s.close()

    def _recv(self, sock: socket.socket) -> bytes:
        while True:
            if self._stop.is_set():
                raise _StoppedError
            try:
                return sock.recv(65536)
            except TimeoutError:
                continue

    def _pipe(self, a: socket.socket, b: socket.socket) -> None:
        import selectors

        with selectors.DefaultSelector() as sel:
            sel.register(a, selectors.EVENT_READ, b)
            sel.register(b, selectors.EVENT_READ, a)
            while not self._stop.is_set():
                for key, _ in sel.select(_IO_TIMEOUT):
                    sock = key.fileobj
                    try:
                        data = sock.recv(65536)  # type: ignore[union-attr]
                    except TimeoutError:  # a TLS record not complete yet
                        continue
                    if not data:
                        return
                    # A TLS socket may hold decrypted bytes select() cannot see.
                    while getattr(sock, "pending", lambda: 0)():
                        data += sock.recv(65536)  # type: ignore[union-attr]
                    key.data.sendall(data)

    def close(self) -> None:
        self._stop.set()
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        with self._lock:
            socks = list(self._socks)
        for s in socks:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
        for t in list(self._threads):
            t.join(5)

    def __enter__(self) -> ConnectProxy:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


# ---------------------------------------------------------------- TLS material


def _make_tls() -> tuple[str, ssl.SSLContext]:
    if shutil.which("openssl") is None:
        raise RuntimeError("tls=True needs the openssl command")
    tmp = tempfile.mkdtemp(prefix="scripted-tls-")
    cert, key = os.path.join(tmp, "cert.pem"), os.path.join(tmp, "key.pem")
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            key,
            "-out",
            cert,
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost,DNS:scripted.test,IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
        timeout=30,
    )
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    return tmp, ctx


# ---------------------------------------------------------------- pytest


try:
    import pytest
except ImportError:  # pragma: no cover - usable without pytest
    pytest = None  # type: ignore[assignment]

if pytest is not None:

    @pytest.fixture
    def scripted_server() -> Iterator[ScriptedServer]:
        """A fresh :class:`ScriptedServer`, closed (threads joined) after the test."""
        with ScriptedServer() as srv:
            yield srv
