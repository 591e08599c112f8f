"""Sans-I/O pieces of the transport: request heads, response parsing, URLs, proxies."""

from __future__ import annotations

import gzip
import zlib

import pytest

from msgflux._transport.http11 import (
    IncompleteResponseError,
    ProtocolError,
    ResponseParser,
    encode_request,
)
from msgflux._transport.proxy import (
    Proxy,
    connect_request,
    parse_connect_response,
    proxy_from_env,
    proxy_from_url,
)
from msgflux._transport.urls import Origin, split_url
from msgflux.exceptions import InvalidParameterError

# ---------------------------------------------------------------- request heads


def head_lines(data: bytes) -> list[str]:
    assert data.endswith(b"\r\n\r\n")
    return data[:-4].decode("latin-1").split("\r\n")


def test_encode_request_defaults_and_order() -> None:
    data = encode_request(
        "POST", "/v1/chat?x=1", "api.example.com", [("Authorization", "Bearer k")], b"{}"
    )
    assert head_lines(data) == [
        "POST /v1/chat?x=1 HTTP/1.1",
        "Authorization: Bearer k",
        "Host: api.example.com",
        "User-Agent: msgflux-python",
        "Accept: */*",
        "Accept-Encoding: identity",
        "Content-Length: 2",
        "Connection: keep-alive",
    ]


def test_encode_request_caller_headers_win_except_framing() -> None:
    data = encode_request(
        "POST",
        "/",
        "h",
        [
            ("host", "other"),
            ("Accept", "text/event-stream"),
            ("Accept-Encoding", "gzip"),
            ("Content-Length", "999"),
            ("Transfer-Encoding", "chunked"),
            ("Connection", "close"),
        ],
        b"abc",
        accept_encoding="identity",
    )
    lines = head_lines(data)
    assert "host: other" in lines and "Host: h" not in lines
    assert "Accept: text/event-stream" in lines and "Accept: */*" not in lines
    assert "Accept-Encoding: gzip" in lines
    assert "Content-Length: 3" in lines and "Content-Length: 999" not in lines
    assert not any(
        line.lower().startswith(("transfer-encoding", "connection: close")) for line in lines
    )


def test_encode_request_content_length_zero_for_empty_post() -> None:
    assert "Content-Length: 0" in head_lines(encode_request("POST", "/", "h", [], None))
    assert not any(
        "Content-Length" in x for x in head_lines(encode_request("GET", "/", "h", [], None))
    )


@pytest.mark.parametrize("bad", ["a\r\nX-Injected: 1", "a\nb", "a\rb"])
def test_encode_request_refuses_header_injection_without_echoing_value(bad: str) -> None:
    with pytest.raises(InvalidParameterError) as info:
        encode_request("GET", "/", "h", [("Authorization", bad)], None)
    assert "Authorization" in str(info.value)
    assert bad not in str(info.value) and "X-Injected" not in str(info.value)


def test_encode_request_refuses_non_latin1() -> None:
    with pytest.raises(InvalidParameterError, match="X-Key"):
        encode_request("GET", "/", "h", [("X-Key", "sk-\u2603")], None)


# ---------------------------------------------------------------- response parsing


def parse(*pieces: bytes, eof: bool = False, head_only: bool = False) -> ResponseParser:
    p = ResponseParser()
    p.start(head_only=head_only)
    for piece in pieces:
        p.feed(piece)
    if eof:
        p.feed_eof()
    return p


def body_of(p: ResponseParser) -> bytes:
    return p.take_body()


RESP = b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{"a": true}'


def test_content_length_response_any_split() -> None:
    for cut in range(len(RESP) + 1):
        p = parse(RESP[:cut], RESP[cut:])
        assert p.complete and p.keep_alive and p.status == 200
        assert p.headers == [("content-type", "application/json"), ("content-length", "11")]
        assert body_of(p) == b'{"a": true}'
        assert p.header("content-type") == "application/json"


def test_chunked_response_byte_by_byte() -> None:
    raw = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
    )
    p = ResponseParser()
    got = b""
    for i in range(len(raw)):
        p.feed(raw[i : i + 1])
        got += p.take_body()
    assert p.complete and p.keep_alive and got == b"hello world"


def test_close_delimited_body_ends_at_eof() -> None:
    p = parse(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\npart one ", b"part two")
    assert not p.complete
    p.feed_eof()
    assert p.complete and not p.keep_alive and body_of(p) == b"part one part two"


def test_truncated_bodies_are_errors_not_short_bodies() -> None:
    p = parse(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
    with pytest.raises(IncompleteResponseError, match="mid-body after 3 bytes") as info:
        p.feed_eof()
    assert info.value.received
    p = parse(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n")
    with pytest.raises(IncompleteResponseError):
        p.feed_eof()
    p = parse(b"HTTP/1.1 200 OK\r\nContent-")
    with pytest.raises(IncompleteResponseError, match="response head"):
        p.feed_eof()
    p = ResponseParser()
    with pytest.raises(IncompleteResponseError) as info:
        p.feed_eof()
    assert not info.value.received


def test_gzip_and_deflate_bodies_are_decoded() -> None:
    payload = b'{"text": "' + b"hello " * 500 + b'"}'
    for encoding, blob in [
        ("gzip", gzip.compress(payload)),
        ("deflate", zlib.compress(payload)),
        ("deflate", zlib.compress(payload)[2:-4]),  # raw deflate, as some servers send
    ]:
        raw = (
            b"HTTP/1.1 200 OK\r\nContent-Encoding: %s\r\nContent-Length: %d\r\n\r\n"
            % (encoding.encode(), len(blob))
            + blob
        )
        p = ResponseParser()
        got = b""
        for i in range(0, len(raw), 50):
            p.feed(raw[i : i + 50])
            got += p.take_body()
        assert p.complete and got == payload, encoding


def test_truncated_gzip_in_close_delimited_body_is_incomplete() -> None:
    blob = gzip.compress(b"x" * 1000)
    p = parse(b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\n\r\n" + blob[: len(blob) // 2])
    with pytest.raises(IncompleteResponseError):
        p.feed_eof()


def test_unknown_content_encoding_is_a_protocol_error() -> None:
    with pytest.raises(ProtocolError, match="br"):
        parse(b"HTTP/1.1 200 OK\r\nContent-Encoding: br\r\nContent-Length: 1\r\n\r\nx")


def test_interim_1xx_responses_are_skipped() -> None:
    p = parse(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok")
    assert p.status == 201 and p.complete and body_of(p) == b"ok"
    assert p.headers == [("content-length", "2")]
    # An interim response's headers never frame the final body.
    p = parse(b"HTTP/1.1 103 Early Hints\r\nContent-Encoding: gzip\r\nContent-Length: 9\r\n\r\n"
              b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nplain", eof=True)
    assert p.complete and body_of(p) == b"plain"


def test_no_body_statuses_and_head() -> None:
    p = parse(b"HTTP/1.1 204 No Content\r\n\r\n")
    assert p.complete and p.keep_alive and body_of(p) == b""
    p = parse(b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n", head_only=True)
    assert p.complete and not p.keep_alive and body_of(p) == b""


def test_keep_alive_rules() -> None:
    assert not parse(
        b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
    ).keep_alive
    assert not parse(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n").keep_alive
    assert parse(
        b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n"
    ).keep_alive
    # Bytes after a complete response: never reuse that connection.
    p = parse(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\nHTTP/1.1 200 OK\r\n")
    assert p.complete and not p.keep_alive


def test_one_parser_serves_consecutive_responses() -> None:
    p = ResponseParser()
    for i in range(3):
        p.start()
        p.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n%d" % i)
        assert p.complete and p.take_body() == b"%d" % i


def test_client_leniencies() -> None:
    p = parse(b"HTTP/1.1 200 OK\nContent-Length: 5\n\nhello")  # bare LF line endings
    assert p.complete and body_of(p) == b"hello"


def test_content_length_beside_transfer_encoding_is_a_protocol_error() -> None:
    # The shape of response smuggling/splitting (RFC 9112 section 6.3): refuse it.
    with pytest.raises(ProtocolError):
        parse(
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5\r\nhello\r\n0\r\n\r\n"
        )


def test_garbage_is_a_protocol_error() -> None:
    with pytest.raises(ProtocolError):
        parse(b"SSH-2.0-OpenSSH_9.6\r\n\r\n")
    with pytest.raises(ProtocolError):
        parse(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n")


class _CtrlCInHeader(ResponseParser):
    """Ctrl-C arriving while llhttp runs our header callback (signals land anywhere;
    the body goes to a list's append, where no Python code runs)."""

    def on_header(self, name: bytes, value: bytes) -> None:
        raise KeyboardInterrupt


class _CtrlCAtTheEnd(ResponseParser):
    """Ctrl-C arriving in the end-of-message callback, once the response is complete."""

    def on_message_complete(self) -> None:
        super().on_message_complete()
        raise KeyboardInterrupt


@pytest.mark.parametrize("parser", [_CtrlCInHeader, _CtrlCAtTheEnd], ids=["header", "complete"])
def test_ctrl_c_inside_a_parser_callback_stays_a_keyboard_interrupt(parser) -> None:
    # httptools turns whatever a callback raises into HttpParserCallbackError, an
    # Exception: a KeyboardInterrupt must not come out as a protocol error (an exit
    # code 1 "invalid HTTP response" instead of 130) nor vanish.
    p = parser()
    with pytest.raises(KeyboardInterrupt):
        p.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc")


def test_header_values_are_latin1_and_names_lower_case() -> None:
    p = parse(b"HTTP/1.1 200 OK\r\nX-Req-ID: caf\xe9\r\nContent-Length: 0\r\n\r\n")
    assert p.headers == [("x-req-id", "caf\u00e9"), ("content-length", "0")]


# ---------------------------------------------------------------- URLs


def test_split_url() -> None:
    t = split_url("https://API.example.com/v1/chat/completions?key=secret#frag")
    assert t.origin == Origin("https", "api.example.com", 443)
    assert t.target == "/v1/chat/completions?key=secret"
    assert t.host_header == "api.example.com"
    assert t.safe_url == "https://api.example.com/v1/chat/completions"
    t = split_url("http://127.0.0.1:8080")
    assert (t.origin, t.target, t.host_header) == (
        Origin("http", "127.0.0.1", 8080),
        "/",
        "127.0.0.1:8080",
    )
    t = split_url("http://[::1]:9000/x?y")
    assert t.origin == Origin("http", "::1", 9000) and t.host_header == "[::1]:9000"
    assert t.origin.where == "[::1]:9000"
    assert split_url("http://h/a b").target == "/a%20b"


@pytest.mark.parametrize(
    "url", ["ftp://h/", "api.example.com/v1", "http://", "http://h:99999/", "http://h:x/"]
)
def test_split_url_rejects(url: str) -> None:
    with pytest.raises(InvalidParameterError):
        split_url(url)


def test_split_url_refuses_credentials_without_echoing_them() -> None:
    with pytest.raises(InvalidParameterError) as info:
        split_url("https://user:hunter2@h/")
    assert "hunter2" not in str(info.value)


# ---------------------------------------------------------------- proxies


HTTPS = Origin("https", "api.openai.com", 443)
HTTP = Origin("http", "internal.example", 80)


def test_proxy_from_env_picks_by_scheme_lower_case_first() -> None:
    env = {"HTTPS_PROXY": "http://upper:1", "https_proxy": "http://lower:2", "HTTP_PROXY": "p:3"}
    assert proxy_from_env(HTTPS, env) == Proxy(Origin("http", "lower", 2), None)
    assert proxy_from_env(HTTP, env) == Proxy(Origin("http", "p", 3), None)
    assert proxy_from_env(HTTPS, {"ALL_PROXY": "http://all:4"}).origin.host == "all"
    assert proxy_from_env(HTTPS, {}) is None
    assert proxy_from_env(HTTPS, {"https_proxy": ""}) is None


@pytest.mark.parametrize(
    ("no_proxy", "origin", "bypass"),
    [
        ("*", HTTPS, True),
        ("openai.com", HTTPS, True),
        (".openai.com", HTTPS, True),
        ("api.openai.com:443", HTTPS, True),
        ("api.openai.com:8443", HTTPS, False),
        ("penai.com", HTTPS, False),
        ("example.com, other", HTTPS, False),
        ("10.0.0.0/8", Origin("https", "10.1.2.3", 443), True),
        ("10.0.0.0/8", Origin("https", "11.1.2.3", 443), False),
        ("", HTTPS, False),
    ],
)
def test_no_proxy(no_proxy: str, origin: Origin, bypass: bool) -> None:
    env = {"https_proxy": "http://proxy:3128", "no_proxy": no_proxy}
    assert (proxy_from_env(origin, env) is None) is bypass


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1", "127.9.9.9"])
def test_loopback_is_always_direct(host: str) -> None:
    assert proxy_from_env(Origin("http", host, 80), {"http_proxy": "http://proxy:3128"}) is None


def test_proxy_url_parsing_and_auth_are_kept_out_of_repr() -> None:
    p = proxy_from_url("http://us%40er:p%3Ass@proxy.corp:8080")
    assert p.origin == Origin("http", "proxy.corp", 8080)
    assert p.auth == "Basic dXNAZXI6cDpzcw=="  # base64("us@er:p:ss")
    assert "p:ss" not in repr(p) and "Basic" not in repr(p)
    assert proxy_from_url("proxy.corp").origin.port == 1080
    with pytest.raises(InvalidParameterError, match="https:// proxies"):
        proxy_from_url("socks5://proxy:1080")


def test_connect_request_and_response() -> None:
    req = connect_request(HTTPS, "Basic abc")
    assert req == (
        b"CONNECT api.openai.com:443 HTTP/1.1\r\nHost: api.openai.com:443\r\n"
        b"Proxy-Authorization: Basic abc\r\n\r\n"
    )
    assert parse_connect_response(b"HTTP/1.1 200 Connection established\r\n") is None
    assert parse_connect_response(b"HTTP/1.1 200 Connection established\r\n\r\n") == (
        200,
        "Connection established",
        39,
    )
    assert parse_connect_response(b"HTTP/1.1 407 Proxy Auth\r\nX: y\r\n\r\n")[0] == 407
    assert parse_connect_response(b"garbage\r\n\r\n")[0] == 0
