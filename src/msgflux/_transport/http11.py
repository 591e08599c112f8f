"""HTTP/1.1 client side, sans-I/O: request bytes out, response events in.

:func:`encode_request` serialises a request head. :class:`ResponseParser`
wraps ``httptools.HttpResponseParser`` (llhttp) and exposes status, headers
(lower-case names, latin-1 values), body bytes (``Content-Encoding`` already
undone) and end of message. It knows Content-Length, chunked and
read-until-close bodies, and tells a body that ended early from one that
ended properly: :meth:`ResponseParser.feed_eof` raises :class:`IncompleteResponseError`
unless the body was close-delimited. Neither function touches a socket.

One parser serves one connection for its whole life (llhttp resets itself
between keep-alive messages); call :meth:`ResponseParser.start` before each request.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import httptools

from msgflux._transport.decompress import (
    DecompressedTooLargeError,
    DecompressionError,
    Decompressor,
    new_decompressor,
)
from msgflux._transport.errors import too_large
from msgflux._transport.types import header
from msgflux.exceptions import InvalidParameterError

__all__ = [
    "DEFAULT_MAX_RESPONSE_BYTES",
    "IncompleteResponseError",
    "LimitExceededError",
    "ProtocolError",
    "ResponseParser",
    "encode_head_prefix",
    "encode_request",
    "check_headers",
    "finish_head",
]

USER_AGENT = "msgflux-python"
_MAX_HEADER_BYTES = 256 * 1024
#: The default cap on a whole (non-streamed) body after decompression, and on one
#: server-sent event of a stream: far above any chat answer, far below a memory bomb.
DEFAULT_MAX_RESPONSE_BYTES = 64 * 1024 * 1024
# RFC 9110 section 5.6.2: a field name is a token. Anything else (a tab, a space, a
# colon) may be read differently by a lenient proxy: a request-smuggling risk.
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# Headers the transport owns: a caller's value would break framing or pooling.
_OWNED = frozenset({"content-length", "transfer-encoding", "connection", "keep-alive", "upgrade"})
_DEFAULTED = frozenset({"host", "user-agent", "accept", "accept-encoding"})


class ProtocolError(Exception):
    """The server's bytes are not valid HTTP/1.1 (or use something we never asked for)."""


class LimitExceededError(ProtocolError):
    """The response is larger than a limit of ours (the server may be hostile)."""


class IncompleteResponseError(ProtocolError):
    """The connection ended before the response did; ``received`` says if any byte came."""

    def __init__(self, message: str, *, received: bool) -> None:
        super().__init__(message)
        self.received = received


def encode_request(
    method: str,
    target: str,
    host: str,
    headers: Iterable[tuple[str, str]],
    body: bytes | None,
    *,
    accept_encoding: str = "identity",
    extra: tuple[tuple[str, str], ...] = (),
) -> bytes:
    """Serialise a request head (the body is sent after it, unchanged).

    The caller's headers come first, in order. The transport sets
    ``Content-Length`` (when there is a body or the method implies one) and
    ``Connection: keep-alive``, and supplies ``Host``, ``User-Agent``,
    ``Accept`` and ``Accept-Encoding`` unless the caller gave them. A header
    name that is not an RFC 9110 token, or a value holding CR, LF or NUL, is
    refused (either could smuggle a header past a lenient proxy).
    """
    prefix = encode_head_prefix(
        method, target, host, headers, accept_encoding=accept_encoding, extra=extra
    )
    return finish_head(prefix, method, body)


def encode_head_prefix(
    method: str,
    target: str,
    host: str,
    headers: Iterable[tuple[str, str]],
    *,
    accept_encoding: str = "identity",
    extra: tuple[tuple[str, str], ...] = (),
) -> bytes:
    """The part of a request head that does not depend on the body (cacheable)."""
    lines = [f"{method} {target} HTTP/1.1\r\n"]
    given: set[str] = set()
    for name, value in (*headers, *extra):
        low = name.lower()
        if low in _OWNED:
            continue
        if not _TOKEN.fullmatch(name):
            # Heads are cached per request shape: this runs once per distinct header set.
            raise _bad_name(name)
        given.add(low)
        lines.append(f"{name}: {value}\r\n")
    if "host" not in given:
        lines.append(f"Host: {host}\r\n")
    if "user-agent" not in given:
        lines.append(f"User-Agent: {USER_AGENT}\r\n")
    if "accept" not in given:
        lines.append("Accept: */*\r\n")
    if "accept-encoding" not in given:
        lines.append(f"Accept-Encoding: {accept_encoding}\r\n")
    head = "".join(lines)
    # One C-level count instead of a per-header check: every line ends in
    # exactly one CRLF, so any other CR or LF came from a name or value.
    n = len(lines)
    if head.count("\n") != n or head.count("\r") != n or "\0" in head:
        raise InvalidParameterError(_bad_header(lines, "contains a line break or NUL"))
    try:
        return head.encode("latin-1")
    except UnicodeEncodeError:
        pass
    # Raised outside the except block: the UnicodeEncodeError holds the whole head,
    # API key included, and would ride along as __context__ (even when suppressed).
    raise InvalidParameterError(_bad_header(lines, "holds non-latin-1 characters"))


def check_headers(headers: Iterable[tuple[str, str]]) -> None:
    """What :func:`encode_head_prefix` refuses, for transports that encode heads
    themselves (the httpx backend): names that are not tokens, values with CR, LF
    or NUL or beyond latin-1."""
    for name, value in headers:
        if not _TOKEN.fullmatch(name):
            raise _bad_name(name)
        if "\r" in value or "\n" in value or "\0" in value:
            raise InvalidParameterError(
                f"HTTP header {name!r} contains a line break or NUL; header values must be "
                "single-line latin-1 text")
        if not value.isascii():
            try:
                value.encode("latin-1")
            except UnicodeEncodeError:
                pass
            else:
                continue
            raise InvalidParameterError(
                f"HTTP header {name!r} holds non-latin-1 characters; header values must be "
                "single-line latin-1 text")


_TRAILER = b"Connection: keep-alive\r\n\r\n"


def finish_head(prefix: bytes, method: str, body: bytes | None) -> bytes:
    """Complete a head from :func:`encode_head_prefix` with the framing headers."""
    if body is not None:
        return b"%sContent-Length: %d\r\n%s" % (prefix, len(body), _TRAILER)
    if method in ("POST", "PUT", "PATCH"):
        return prefix + b"Content-Length: 0\r\n" + _TRAILER
    return prefix + _TRAILER


def _bad_name(name: str) -> InvalidParameterError:
    return InvalidParameterError(
        f"invalid HTTP header name {name[:60]!r}: a name is letters, digits and "
        "!#$%&'*+-.^_`|~ only (no spaces, tabs or colons)"
    )


def _bad_header(lines: list[str], problem: str) -> str:
    for line in lines[1:]:
        body = line[:-2]
        broken = "\r" in body or "\n" in body or "\0" in body
        if broken or not body.isascii():
            try:
                body.encode("latin-1")
            except UnicodeEncodeError:
                pass
            else:
                if not broken:
                    continue
            name = body.partition(":")[0].strip()[:60]
            # Name only: the value may be an API key.
            return f"HTTP header {name!r} {problem}; header values must be single-line latin-1 text"
    return f"the request line or a header {problem}"


class ResponseParser:
    """Incremental response parser for one connection (see module docstring).

    Typical use: ``start()``; ``feed(data)`` for every read, checking
    ``headers_done``; ``take_body()`` for body bytes; ``complete`` for the
    end; ``feed_eof()`` when the peer closes. ``keep_alive`` is valid once
    ``complete``.
    """

    __slots__ = (
        "_body",
        "_decoder",
        "_done_at",
        "_encoding",
        "_eof_delimited",
        "_head_only",
        "_header_bytes",
        "_identity",
        "_length",
        "_max_body",
        "_parser",
        "_room",
        "_stalled",
        "_transfer",
        "body_bytes",
        "buffered",
        "complete",
        "headers",
        "headers_done",
        "keep_alive",
        "on_body",
        "received",
        "status",
    )

    def __init__(self) -> None:
        # llhttp hands each piece of body to ``on_body``: the list's own append, so a
        # piece (one per chunk of a stream) costs no Python frame. What the pieces
        # need (counting, decompressing, bounding) runs once per feed (_took_body).
        self._body: list[bytes] = []
        self.on_body = self._body.append
        self._parser = httptools.HttpResponseParser(self)
        # Bare LF line endings come from toy servers: accept them. Content-Length
        # beside Transfer-Encoding stays an error (llhttp's default): it is how
        # responses are smuggled or split, and RFC 9112 section 6.3 has the
        # connection closed after such a message in any case.
        self._parser.set_dangerous_leniencies(lenient_optional_cr_before_lf=True)
        # The framing headers, noted by on_header as they pass (the last of a name
        # counts) and taken by on_headers_complete: cheaper than a dict of every
        # header made to look them up.
        self._length: str | None = None
        self._transfer = ""
        self._encoding: str | None = None
        self.start()

    def start(self, *, head_only: bool = False, max_body: int | None = None,
              identity: bool = False) -> None:
        """Prepare for the next response.

        ``head_only``: it answers a HEAD request. ``max_body``: the most body bytes
        (after decompression) to accept, for a response read whole; ``None`` for a
        stream, which is bounded per event instead. ``identity``: the request
        offered no compression, so a compressed answer is refused.
        """
        self._head_only = head_only
        self._max_body = max_body
        self._room = max_body
        self._identity = identity
        self._body.clear()
        self._done_at = -1  # pieces of this message in _body once it completed
        self._decoder: Decompressor | None = None
        self._eof_delimited = False
        self._header_bytes = 0
        self._stalled = 0
        self.body_bytes = 0  # wire bytes of the body so far
        self.buffered = 0  # decoded body bytes waiting in take_body()
        self.status = 0
        self.headers: list[tuple[str, str]] = []
        self.headers_done = False
        self.complete = False
        self.keep_alive = False
        self.received = False

    # ------------------------------------------------------------ input

    def feed(self, data: bytes) -> None:
        """Parse bytes from the connection; raise :class:`ProtocolError` on garbage."""
        if not data:
            return
        self.received = True
        if not self.headers_done:
            # llhttp has no limit of its own: bound the head we buffer.
            self._header_bytes += len(data)
            if self._header_bytes > _MAX_HEADER_BYTES:
                raise ProtocolError("response head larger than 256 KiB")
        if self.complete:
            self.keep_alive = False  # unsolicited bytes: never reuse
            return
        in_body = self.headers_done
        had = len(self._body)
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            raise ProtocolError("unexpected protocol upgrade") from None
        except httptools.HttpParserError as exc:
            cause = exc.__context__
            if cause is not None and not isinstance(cause, Exception):
                # Ctrl-C (or an exit) landed in one of our callbacks: httptools wrapped
                # it, and it belongs to the caller, not to the protocol.
                raise cause from None
            if self._done_at >= 0:  # garbage after a full response: keep the response
                if len(self._body) != had:
                    self._took_body(had)
                self._finish()
                self.keep_alive = False
                return
            if isinstance(cause, ProtocolError):
                raise cause from None
            if isinstance(cause, DecompressedTooLargeError):
                raise LimitExceededError(str(cause)) from None
            if isinstance(cause, DecompressionError):
                raise ProtocolError(str(cause)) from None
            raise ProtocolError(str(exc) or type(exc).__name__) from None
        got = len(self._body) != had
        if got:
            self._took_body(had)
        if self._done_at >= 0:
            self._finish()
        elif in_body and not self.complete:
            # Bytes that carried no body: chunk-size lines, and the trailers after
            # the last chunk. llhttp buffers a trailer whole (growing it by
            # concatenation): bound them like the head.
            if got:
                self._stalled = 0
            else:
                self._stalled += len(data)
                if self._stalled > _MAX_HEADER_BYTES:
                    raise ProtocolError("response trailers (or chunk framing) larger than 256 KiB")

    def _took_body(self, had: int) -> None:
        """Count, decompress and bound the body pieces llhttp appended from ``had`` on
        (pieces of a second response after this one ended are dropped)."""
        body = self._body
        done = self._done_at
        if done >= 0:
            del body[done:]  # a second response nobody asked for (keep_alive is off)
            if len(body) <= had:
                return
        if len(body) - had == 1:
            piece = body[had]
            n = len(piece)
        else:
            piece = b"".join(body[had:]) if self._decoder is not None else b""
            n = sum(map(len, body[had:]))
        self.body_bytes += n
        decoder = self._decoder
        if decoder is not None:
            del body[had:]
            try:
                piece = decoder.decompress(piece)
            except DecompressedTooLargeError as exc:
                raise LimitExceededError(str(exc)) from None
            except DecompressionError as exc:
                raise ProtocolError(str(exc)) from None
            n = len(piece)
            if n:
                body.append(piece)
        room = self._room
        if room is not None:
            room -= n
            if room < 0:
                raise LimitExceededError(_too_large(self._max_body))
            self._room = room
        self.buffered += n

    def feed_eof(self) -> None:
        """The peer closed; end a close-delimited body or raise :class:`IncompleteResponseError`."""
        if self.complete:
            return
        if self.headers_done and self._eof_delimited:
            try:
                self._finish()
            except DecompressionError as exc:
                # A close-delimited body whose compression is cut short: the
                # connection ended early, not a malformed response.
                raise IncompleteResponseError(str(exc), received=True) from None
            self.keep_alive = False
            return
        if not self.headers_done:
            raise IncompleteResponseError(
                "the server closed the connection before sending the full response head",
                received=self.received,
            )
        raise IncompleteResponseError(
            f"the server closed the connection mid-body after {self.body_bytes} bytes",
            received=True,
        )

    def take_body(self) -> bytes:
        """Body bytes received since the last call (decoded), possibly empty."""
        body = self._body
        if not body:
            return b""
        data = body[0] if len(body) == 1 else b"".join(body)
        body.clear()
        self.buffered = 0
        return data

    def limit_body(self, max_body: int) -> None:
        """From now on accept at most ``max_body`` more body bytes (a stream's
        error body, read whole)."""
        self._max_body = max_body
        self._room = max_body - self.buffered

    def header(self, name: str) -> str | None:
        """The first value of header ``name`` (lower-case), or ``None``."""
        return header(self.headers, name)

    # ------------------------------------------------------------ llhttp callbacks

    def on_message_begin(self) -> None:
        if self.complete or self._done_at >= 0:
            self.keep_alive = False  # a second response nobody asked for

    def on_header(self, name: bytes, value: bytes) -> None:
        if not self.headers_done:  # trailers are dropped (nothing we read is in them)
            key = name.decode("latin-1").lower()
            text = value.decode("latin-1")
            self.headers.append((key, text))
            if key == "content-length":
                self._length = text
            elif key == "transfer-encoding":
                self._transfer = text
            elif key == "content-encoding":
                self._encoding = text

    def on_headers_complete(self) -> None:
        length, transfer, encoding = self._length, self._transfer, self._encoding
        self._length = self._encoding = None  # taken: the next head notes its own
        self._transfer = ""
        if self.complete or self._done_at >= 0:
            return
        status = self._parser.get_status_code()
        if 100 <= status < 200:
            if status == 101:
                raise ProtocolError("unexpected 101 Switching Protocols")
            self.headers = []  # interim response (100 Continue, 103 Early Hints): skip
            return
        self.status = status
        self.headers_done = True
        if self._head_only:
            # llhttp cannot know this answers HEAD and would wait for the
            # Content-Length bytes; end here and never reuse the connection.
            self._finish()
            self.keep_alive = False
            return
        if status == 204 or status == 304:
            return  # no body
        self._eof_delimited = length is None and "chunked" not in transfer.lower()
        if encoding is not None:
            decoder = new_decompressor(encoding, self._max_body)
            if decoder is not None and self._identity:
                raise ProtocolError(
                    f"the server compressed the response ({encoding}) although the request "
                    "asked for identity"
                )
            self._decoder = decoder
        room = self._room
        if (room is not None and self._decoder is None and length is not None
                and length.isdigit() and int(length) > room):
            raise LimitExceededError(_too_large(self._max_body))

    def on_message_complete(self) -> None:
        if not self.headers_done:
            return  # end of an interim 1xx response
        if self.complete or self._done_at >= 0:
            return
        # The body's last pieces are counted after feed_data returns (feed); then
        # the message is complete.
        self._done_at = len(self._body)
        self.keep_alive = self._parser.should_keep_alive()

    def _finish(self) -> None:
        self._done_at = -1
        decoder = self._decoder
        if decoder is not None:
            tail = decoder.flush()
            if tail:
                self.buffered += len(tail)
                self._body.append(tail)
        self.complete = True



def _too_large(limit: int | None) -> str:
    return too_large("response body", limit or 0)
