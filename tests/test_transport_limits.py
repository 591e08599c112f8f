"""Limits against a hostile or broken server, on both default clients.

Each test scripts the exact bytes such a server sends (``tests/srv.py``)
and checks the transport refuses them with a typed error, or never mistakes them
for an answer. The numbered items are those of the transport-limits issue.
"""

from __future__ import annotations

import asyncio
import gzip
import os
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import msgflux as mf
from msgflux import exceptions as exc
from msgflux._transport.async_client import AsyncHTTPTransport
from msgflux._transport.http11 import encode_request
from msgflux._transport.proxy import proxy_from_env
from msgflux._transport.routing import Router
from msgflux._transport.sync_client import HTTPTransport
from msgflux._transport.types import HttpRequest, Timeouts
from msgflux._transport.urls import Origin, split_url
from scripted_server import Reply, ScriptedServer, json_reply, raw, sse_reply, stall, text_reply
from test_faults_support import FAST as FAST_RETRIES
from test_faults_support import chain, completion, openai

FAST = Timeouts(connect=2.0, first_byte=2.0, idle=2.0, total=10.0)
KINDS = pytest.mark.parametrize("kind", ["sync", "async"])
MiB = 1 << 20


@pytest.fixture
def srv() -> Iterator[ScriptedServer]:
    with ScriptedServer() as server:
        yield server


def post(server: ScriptedServer, stream: bool = False, headers: tuple = ()) -> HttpRequest:
    return HttpRequest("POST", server.url + "/v1/chat", headers, b"{}", stream=stream)


def run(kind: str, steps: Callable[[Any], Any], **options: Any) -> Any:
    """``steps(transport)`` on a fresh transport of ``kind``; async steps are awaited."""
    options.setdefault("trust_env", False)
    if kind == "sync":
        with HTTPTransport(**options) as t:
            return steps(t)

    async def main() -> Any:
        async with AsyncHTTPTransport(**options) as t:
            return await steps(t)

    return asyncio.run(main())


def send(kind: str, req: HttpRequest, **options: Any) -> Any:
    return run(kind, lambda t: t.send(req, FAST), **options)


def read_stream(kind: str, req: HttpRequest, **options: Any) -> list[bytes]:
    if kind == "sync":
        def steps(t: HTTPTransport) -> list[bytes]:
            with t.open_stream(req, FAST) as s:
                return [e.data for e in s]
        return run(kind, steps, **options)

    async def asteps(t: AsyncHTTPTransport) -> list[bytes]:
        async with await t.open_stream(req, FAST) as s:
            return [e.data async for e in s]
    return run(kind, asteps, **options)


def chunked_head(extra: str = "") -> bytes:
    return (f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n{extra}"
            "Transfer-Encoding: chunked\r\n\r\n").encode()


# ---------------------------------------------------------------- 1. unread bytes on reuse


@KINDS
def test_1_stray_response_on_an_idle_connection_is_never_the_next_answer(
        srv: ScriptedServer, kind: str) -> None:
    # The server answers, then writes a duplicate response nobody asked for. It
    # lands while the connection sits idle in the pool, before the loop or the
    # next call looked at the socket.
    stray = Reply((
        ("write", b'HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\n{"n": 1}'),
        ("sleep", 0.05),
        ("write", b'HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\n{"n": 9}'),
    ))
    srv.enqueue(stray, json_reply(200, {"n": 2}))
    req = post(srv)
    if kind == "sync":
        def steps(t: Any) -> list[bytes]:
            first = t.send(req, FAST).body
            time.sleep(0.3)
            return [first, t.send(req, FAST).body]
    else:
        async def steps(t: Any) -> list[bytes]:
            first = (await t.send(req, FAST)).body
            time.sleep(0.3)  # blocking on purpose: the loop never sees the stray bytes arrive
            return [first, (await t.send(req, FAST)).body]
    assert run(kind, steps) == [b'{"n": 1}', b'{"n": 2}']
    assert srv.connections == 2


# ---------------------------------------------------------------- 2. trailers


@KINDS
@pytest.mark.parametrize("shape", ["many", "one-long"])
def test_2_trailers_count_against_the_head_limit(
        srv: ScriptedServer, kind: str, shape: str) -> None:
    if shape == "many":
        trailers = b"x-t: " + b"a" * 100 + b"\r\n"
        trailers *= (1 * MiB) // len(trailers)
    else:
        trailers = b"x-t: " + b"a" * (1 * MiB) + b"\r\n"
    body = chunked_head() + b'8\r\n{"n": 1}\r\n0\r\n' + trailers + b"\r\n"
    srv.enqueue(raw(body))
    with pytest.raises(exc.TransportError, match="trailer"):
        send(kind, post(srv))


@KINDS
def test_2_small_trailers_are_accepted_and_not_mixed_into_the_headers(
        srv: ScriptedServer, kind: str) -> None:
    body = chunked_head() + b'8\r\n{"n": 1}\r\n0\r\nx-checksum: abc\r\n\r\n'
    srv.enqueue(raw(body))
    resp = send(kind, post(srv))
    assert resp.body == b'{"n": 1}'
    assert "x-checksum" not in dict(resp.headers)


# ---------------------------------------------------------------- 3. sizes


@pytest.fixture(scope="module")
def gzip_bomb() -> bytes:
    """~70 KiB of gzip that inflates to 70 MiB (above the 64 MiB default)."""
    return gzip.compress(b"\0" * (70 * MiB), compresslevel=9)


@KINDS
def test_3_a_gzip_bomb_stops_at_the_default_response_limit(
        srv: ScriptedServer, kind: str, gzip_bomb: bytes) -> None:
    srv.enqueue(text_reply(200, gzip_bomb, {"Content-Encoding": "gzip"}))
    with pytest.raises(exc.TransportError, match="max_response_bytes"):
        send(kind, post(srv))


@KINDS
@pytest.mark.parametrize("framing", ["content-length", "chunked", "close-delimited"])
def test_3_a_body_over_max_response_bytes_is_refused(
        srv: ScriptedServer, kind: str, framing: str) -> None:
    body = b"x" * (300 * 1024)
    srv.enqueue(text_reply(200, body, chunked=framing == "chunked",
                                       close_delimited=framing == "close-delimited"))
    with pytest.raises(exc.TransportError, match="max_response_bytes"):
        send(kind, post(srv), max_response_bytes=256 * 1024)
    srv.enqueue(text_reply(200, body, chunked=framing == "chunked",
                                       close_delimited=framing == "close-delimited"))
    assert send(kind, post(srv), max_response_bytes=512 * 1024).body == body


@KINDS
def test_3_a_stream_that_asked_for_identity_is_not_inflated(
        srv: ScriptedServer, kind: str) -> None:
    events = gzip.compress(b"data: {}\n\n" * 10)
    srv.enqueue(sse_reply([events], headers={"Content-Encoding": "gzip"}))
    with pytest.raises(exc.TransportError, match="identity"):
        read_stream(kind, post(srv, stream=True))


@KINDS
def test_3_one_sse_event_is_bounded(srv: ScriptedServer, kind: str) -> None:
    huge = b"data: " + b"x" * (300 * 1024)  # never terminated: would grow forever
    srv.enqueue(sse_reply([b"data: {}\n\n", huge, huge], chunk_split=16384))
    with pytest.raises(exc.TransportError, match="max_response_bytes"):
        read_stream(kind, post(srv, stream=True), max_response_bytes=256 * 1024)


@KINDS
def test_3_an_error_body_read_from_a_stream_is_bounded(
        srv: ScriptedServer, kind: str) -> None:
    srv.enqueue(text_reply(500, b"e" * (300 * 1024), chunked=True))
    req = post(srv, stream=True)
    if kind == "sync":
        def steps(t: Any) -> bytes:
            with t.open_stream(req, FAST) as s:
                return s.read()
    else:
        async def steps(t: Any) -> bytes:
            async with await t.open_stream(req, FAST) as s:
                return await s.read()
    with pytest.raises(exc.TransportError, match="max_response_bytes"):
        run(kind, steps, max_response_bytes=256 * 1024)


def test_3_max_response_bytes_is_a_model_option(srv: ScriptedServer) -> None:
    srv.enqueue(json_reply(200, completion("x" * 5000)))
    with openai(srv, max_response_bytes=1024) as model, \
            pytest.raises(exc.TransportError, match="max_response_bytes"):
        model("hi")
    with pytest.raises(exc.InvalidParameterError, match="max_response_bytes"):
        openai(srv, max_response_bytes=0)


# ---------------------------------------------------------------- 4. header names


@pytest.mark.parametrize("name", ["Transfer-Encoding\t", "X Bad", "X:Bad", "", "Naïve", "X(y)"])
def test_4_header_names_must_be_tokens(name: str) -> None:
    with pytest.raises(exc.InvalidParameterError, match="header name"):
        encode_request("POST", "/", "h", [(name, "v")], b"{}")


def test_4_a_bad_header_name_fails_before_the_network(srv: ScriptedServer) -> None:
    with openai(srv, extra_headers={"Transfer-Encoding\t": "chunked"}, timeout=1.0) as model, \
            pytest.raises(exc.InvalidParameterError):
        model("hi")
    assert srv.requests == []


# ---------------------------------------------------------------- 5. URLs


def test_5_non_ascii_hosts_are_idna_encoded() -> None:
    target = split_url("https://bücher.example:8443/v1")
    assert target.host_header == "xn--bcher-kva.example:8443"
    assert target.origin.host == "xn--bcher-kva.example"


@pytest.mark.parametrize("port", ["\u0661\u0662", "\uff18\uff10", "+80", " 80"])
def test_5_ports_are_ascii_digits_only(port: str) -> None:
    with pytest.raises(exc.InvalidParameterError, match="port"):
        split_url(f"http://h:{port}/v1")


@pytest.mark.parametrize("base_url", ["http://h/v1?api-version=1&token=s3cr3t",
                                      "http://h/v1#frag", "http://h/v1?"])
def test_5_a_query_or_fragment_in_base_url_is_refused(base_url: str) -> None:
    with pytest.raises(exc.InvalidParameterError, match="query or fragment") as info:
        mf.Model.chat_completion("openai/m", base_url=base_url, api_key="sk-x")
    assert "s3cr3t" not in str(info.value)


def test_5_a_query_in_the_base_url_variable_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", "http://h/v1?token=s3cr3t")
    with pytest.raises(exc.InvalidParameterError, match="query or fragment") as info:
        mf.Model.chat_completion("openai/m", api_key="sk-x")
    assert "s3cr3t" not in str(info.value)


# ---------------------------------------------------------------- 6. proxies


PROXY_ENV = {"https_proxy": "http://proxy.example:3128", "http_proxy": "http://proxy.example:3128"}


@pytest.mark.parametrize("host", ["127.attacker.example", "api.localhost", "127.0.0.1.nip.io",
                                  "localhost.attacker.example"])
def test_6_names_that_look_like_loopback_still_use_the_proxy(host: str) -> None:
    for scheme in ("http", "https"):
        assert proxy_from_env(Origin(scheme, host, 443), PROXY_ENV) is not None
    router = Router("http://proxy.example:3128", trust_env=False)
    assert router.route(Origin("https", host, 443)).tunnel is not None


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1", "127.9.8.7", "::1"])
def test_6_loopback_addresses_stay_direct(host: str) -> None:
    assert proxy_from_env(Origin("https", host, 443), PROXY_ENV) is None
    router = Router("http://proxy.example:3128", trust_env=False)
    assert router.route(Origin("https", host, 443)).tunnel is None


def test_6_http_proxy_is_ignored_under_cgi() -> None:
    origin = Origin("http", "api.example", 80)
    env = {"HTTP_PROXY": "http://attacker.example:1", "REQUEST_METHOD": "GET"}
    assert proxy_from_env(origin, env) is None
    # Outside CGI it is honoured, and so is the lower-case name under CGI.
    assert proxy_from_env(origin, {"HTTP_PROXY": "http://p.example:1"}) is not None
    cgi_lower = {"http_proxy": "http://p.example:1", "REQUEST_METHOD": "GET"}
    assert proxy_from_env(origin, cgi_lower) is not None


# ---------------------------------------------------------------- 7. fork


def _in_child(work: Callable[[], bool]) -> int:
    """Run ``work`` in a forked child; its exit status (0 when it returned True)."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 1
        try:
            code = 0 if work() else 1
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # fork() beside server threads
def test_7_sync_pool_is_dropped_in_a_forked_child(srv: ScriptedServer) -> None:
    srv.enqueue(*(json_reply(200, {"n": i}) for i in range(3)))
    req = post(srv)
    with HTTPTransport(trust_env=False) as t:
        assert t.send(req, FAST).status == 200  # one pooled connection
        assert _in_child(lambda: t.send(req, FAST).status == 200) == 0
        assert t.send(req, FAST).status == 200
    by_conn = [r.connection for r in srv.requests]
    assert by_conn == [1, 2, 1]  # the child dialled its own; the parent kept its own


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_7_async_pool_is_dropped_in_a_forked_child(srv: ScriptedServer) -> None:
    srv.enqueue(*(json_reply(200, {"n": i}) for i in range(3)))
    req = post(srv)
    t = AsyncHTTPTransport(trust_env=False)
    loop = asyncio.new_event_loop()
    try:
        assert loop.run_until_complete(t.send(req, FAST)).status == 200
        child = _in_child(lambda: loop.run_until_complete(t.send(req, FAST)).status == 200)
        assert child == 0
        assert loop.run_until_complete(t.send(req, FAST)).status == 200
        loop.run_until_complete(t.aclose())
    finally:
        loop.close()
    assert [r.connection for r in srv.requests] == [1, 2, 1]


# ---------------------------------------------------------------- 8. secrets


ESCAPED_KEY = "sk-CANARY/9f8e+7d6c5b4a"


def _texts(e: BaseException) -> str:
    import traceback

    out = ["".join(traceback.format_exception(e))]
    for link in chain(e):
        out += [str(link), repr(link), repr(getattr(link, "args", ())),
                str(getattr(link, "body", "")), str(getattr(link, "message", ""))]
        out += [repr(getattr(link, "object", ""))]  # UnicodeError keeps its input
    return "\n".join(out)


def test_8_a_key_echoed_json_escaped_is_redacted(srv: ScriptedServer) -> None:
    escaped = ESCAPED_KEY.replace("/", "\\/")
    body = ('{"error": {"message": "Incorrect API key provided: ' + escaped
            + '", "type": "invalid_request_error"}}')
    srv.enqueue(text_reply(401, body, content_type="application/json"))
    with openai(srv, api_key=ESCAPED_KEY) as model, \
            pytest.raises(exc.AuthenticationError) as info:
        model("hi")
    text = _texts(info.value)
    assert "Incorrect API key provided" in text
    assert ESCAPED_KEY not in text and escaped not in text


def test_8_no_exception_in_the_chain_holds_the_request_head(
        srv: ScriptedServer) -> None:
    key = "sk-CANARY-head-0123456789"
    with openai(srv, api_key=key, extra_headers={"X-Note": "naïve ☃"}) as model, \
            pytest.raises(exc.InvalidParameterError) as info:
        model("hi")
    assert "x-note" in str(info.value).lower()
    assert key not in _texts(info.value)


@pytest.mark.parametrize("base_url", ["http://user:s3cr3t-pw@h.example/v1",
                                      "http://:s3cr3t-pw@h.example/v1"])
def test_8_credentials_in_base_url_are_refused_without_echo(base_url: str) -> None:
    with pytest.raises(exc.InvalidParameterError, match="credentials") as info:
        mf.Model.chat_completion("openai/m", base_url=base_url, api_key="sk-x")
    assert "s3cr3t" not in _texts(info.value)


# ---------------------------------------------------------------- 9. framing conflicts


@KINDS
def test_9_content_length_beside_chunked_is_refused_and_not_reused(
        srv: ScriptedServer, kind: str) -> None:
    smuggled = (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
                b'8\r\n{"n": 1}\r\n0\r\n\r\n')
    srv.enqueue(raw(smuggled), json_reply(200, {"n": 2}))
    req = post(srv)
    if kind == "sync":
        def steps(t: Any) -> list[Any]:
            with pytest.raises(exc.TransportError, match="invalid HTTP response"):
                t.send(req, FAST)
            return [t.send(req, FAST).body]
    else:
        async def steps(t: Any) -> list[Any]:
            with pytest.raises(exc.TransportError, match="invalid HTTP response"):
                await t.send(req, FAST)
            return [(await t.send(req, FAST)).body]
    assert run(kind, steps) == [b'{"n": 2}']
    assert [r.connection for r in srv.requests] == [1, 2]


# ---------------------------------------------------------------- 10. worst-case duration


@pytest.mark.parametrize("stream", [False, True], ids=["call", "stream"])
def test_10_the_total_deadline_spans_every_attempt(
        srv: ScriptedServer, stream: bool) -> None:
    srv.enqueue(*(stall(3) for _ in range(4)))
    timeout = {"first_byte": 0.4, "total": 0.6}
    with openai(srv, timeout=timeout) as model, \
            pytest.raises(exc.APITimeoutError) as info:
        response = model("hi", stream=stream)
        if stream:
            list(response.consume())
    # Three retries were allowed, but the call's deadline left room for two attempts.
    assert len(srv.requests) == 2
    assert isinstance(info.value, exc.TotalTimeoutError)


def test_10_retries_never_sleep_past_the_deadline(srv: ScriptedServer) -> None:
    # The server asks for a 60 s pause; the call has 1 s in all: the 503 comes back at once.
    srv.enqueue(json_reply(503, {"error": {"message": "later"}},
                                       {"Retry-After": "60"}))
    policy = mf.RetryPolicy(max_retries=2, retry_after_max=60.0)
    with openai(srv, max_retries=policy, timeout={"total": 1.0}) as model, \
            pytest.raises(exc.ServerError):
        model("hi")
    assert len(srv.requests) == 1


# ---------------------------------------------------------------- 11. redirects


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_11_a_refused_redirect_says_where_it_pointed(
        srv: ScriptedServer, status: int) -> None:
    where = "https://elsewhere.example/v1/chat/completions"
    srv.enqueue(text_reply(status, b"", {"Location": where}))
    with openai(srv, max_retries=FAST_RETRIES) as model, \
            pytest.raises(exc.APIStatusError) as info:
        model("hi")
    assert where in str(info.value)
    assert "redirect" in str(info.value)
    assert len(srv.requests) == 1
