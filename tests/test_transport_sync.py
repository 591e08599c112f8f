"""HTTPTransport against the scripted loopback server (no mocks of our own code)."""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from msgflux._transport import sync_client
from msgflux._transport.sync_client import HTTPTransport
from msgflux._transport.types import HttpRequest, SSEEvent, Timeouts
from msgflux.exceptions import (
    APIConnectionError,
    ConnectTimeoutError,
    FirstByteTimeoutError,
    IdleTimeoutError,
    TotalTimeoutError,
    TransportError,
)
from scripted_server import (
    ConnectProxy,
    ScriptedServer,
    delay,
    drop,
    json_reply,
    raw,
    reset,
    slow_headers,
    sse_reply,
    stall,
    text_reply,
)
from test_faults_support import STALL, hanging_listener, idle_408, open_fds, settle_fds

SECRET = "sk-secret-never-printed"
FAST = Timeouts(connect=2.0, first_byte=2.0, idle=2.0, total=5.0)


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    with ScriptedServer() as srv:
        yield srv


@pytest.fixture
def transport() -> Iterator[HTTPTransport]:
    with HTTPTransport(trust_env=False) as t:
        yield t


def post(server: ScriptedServer, path: str = "/v1/chat", stream: bool = False) -> HttpRequest:
    return HttpRequest(
        "POST",
        server.url + path + "?key=" + SECRET,
        (("Authorization", f"Bearer {SECRET}"), ("Content-Type", "application/json")),
        b'{"model": "m"}',
        stream=stream,
    )


# ---------------------------------------------------------------- plain requests


@pytest.mark.parametrize(
    "reply",
    [
        json_reply(200, {"ok": 1}),
        json_reply(200, {"ok": 1}, chunked=True),
        json_reply(200, {"ok": 1}, gzip=True),
        json_reply(200, {"ok": 1}, gzip=True, chunked=True),
        text_reply(200, '{"ok": 1}', close_delimited=True),
    ],
    ids=["content-length", "chunked", "gzip", "gzip-chunked", "close-delimited"],
)
def test_send_body_framings(server: ScriptedServer, transport: HTTPTransport, reply) -> None:
    server.enqueue(reply)
    resp = transport.send(post(server), FAST)
    assert resp.status == 200
    assert resp.body == b'{"ok": 1}'


def test_request_as_sent(server: ScriptedServer, transport: HTTPTransport) -> None:
    server.enqueue(json_reply(200, {}), sse_reply(["data: x\n\n"]))
    transport.send(post(server), FAST)
    with transport.open_stream(post(server, stream=True), FAST) as s:
        list(s)
    plain, streamed = server.requests
    assert plain.method == "POST" and plain.path == "/v1/chat"
    assert plain.json() == {"model": "m"}
    assert plain.headers["host"] == f"127.0.0.1:{server.port}"
    assert plain.headers["content-length"] == "14"
    assert plain.headers["authorization"] == f"Bearer {SECRET}"
    assert plain.headers["accept-encoding"] == "gzip, deflate"
    assert streamed.headers["accept-encoding"] == "identity"


def test_error_statuses_are_returned_not_raised(
    server: ScriptedServer, transport: HTTPTransport
) -> None:
    server.enqueue(
        json_reply(429, {"error": "slow down"}, {"Retry-After": "2"}),
        json_reply(500, {"error": "boom"}),
    )
    r1 = transport.send(post(server), FAST)
    r2 = transport.send(post(server), FAST)
    assert (r1.status, r1.header("retry-after")) == (429, "2")
    assert r2.status == 500 and b"boom" in r2.body
    assert server.connections == 1  # error bodies were read: connection reused


# ---------------------------------------------------------------- keep-alive


def test_keep_alive_reuses_one_connection(server: ScriptedServer, transport: HTTPTransport) -> None:
    for i in range(5):
        server.enqueue(json_reply(200, {"i": i}))
    bodies = [transport.send(post(server), FAST).body for _ in range(5)]
    assert bodies == [b'{"i": %d}' % i for i in range(5)]
    assert server.connections == 1


def test_connection_close_is_not_reused(server: ScriptedServer, transport: HTTPTransport) -> None:
    server.enqueue(json_reply(200, {}, {"Connection": "close"}).then_close())
    server.enqueue(json_reply(200, {}))
    transport.send(post(server), FAST)
    transport.send(post(server), FAST)
    assert server.connections == 2


@pytest.mark.parametrize("probe", [True, False], ids=["probed", "retried"])
def test_server_closed_idle_connection(
    server: ScriptedServer, transport: HTTPTransport, probe: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A pooled socket is probed for a FIN before reuse; where it cannot be (no poll,
    # as on Windows), the stale-connection retry covers it.
    if not probe:
        monkeypatch.setattr(sync_client, "poll", None)
    server.enqueue(json_reply(200, {"n": 1}).then_close(), json_reply(200, {"n": 2}))
    transport.send(post(server), FAST)
    time.sleep(0.05)  # let the FIN arrive
    assert transport.send(post(server), FAST).body == b'{"n": 2}'
    assert len(server.requests) == 2 and server.connections == 2


def test_unsolicited_bytes_on_an_idle_connection_are_not_a_response(
    server: ScriptedServer, transport: HTTPTransport
) -> None:
    sent = threading.Event()
    server.enqueue(idle_408(sent), json_reply(200, {"n": 2}))
    transport.send(post(server), FAST)
    assert sent.wait(STALL)  # the 408 arrived while the connection was pooled
    assert transport.send(post(server), FAST).body == b'{"n": 2}'
    assert server.connections == 2


@pytest.mark.parametrize("fault", [drop, reset], ids=["eof", "rst"])
def test_dead_pooled_connection_is_retried_once(
    server: ScriptedServer, transport: HTTPTransport, fault
) -> None:
    server.enqueue(json_reply(200, {"n": 1}), fault(), json_reply(200, {"n": 2}))
    transport.send(post(server), FAST)
    assert transport.send(post(server), FAST).body == b'{"n": 2}'
    reqs = server.requests
    assert len(reqs) == 3 and [r.connection for r in reqs] == [1, 1, 2]


def test_fresh_connection_closed_without_response_is_an_error(
    server: ScriptedServer, transport: HTTPTransport
) -> None:
    server.enqueue(drop(), json_reply(200, {}))
    with pytest.raises(APIConnectionError, match="closed before a response arrived") as info:
        transport.send(post(server), FAST)
    assert info.value.retryable
    assert len(server.requests) == 1  # no hidden retry on a fresh connection


def test_dead_pooled_then_dead_fresh_raises(
    server: ScriptedServer, transport: HTTPTransport
) -> None:
    server.enqueue(json_reply(200, {}), drop(), drop())
    transport.send(post(server), FAST)
    with pytest.raises(APIConnectionError):
        transport.send(post(server), FAST)
    assert len(server.requests) == 3  # exactly one transparent retry


# ---------------------------------------------------------------- broken bodies


@pytest.mark.parametrize(
    "reply",
    [
        json_reply(200, {"long": "x" * 200}).drop_after(120),
        json_reply(200, {"long": "x" * 200}, chunked=True).drop_after(150),
        json_reply(200, {"long": "x" * 200}).reset_after(120),
        raw(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort", close=True),
        raw(b"HTTP/1.1 200 OK\r\nContent-Le", close=True),
    ],
    ids=["content-length", "chunked", "reset", "declared-longer", "mid-head"],
)
def test_body_cut_short_is_an_error_never_a_short_body(
    server: ScriptedServer, transport: HTTPTransport, reply
) -> None:
    server.enqueue(reply)
    with pytest.raises(APIConnectionError) as info:
        transport.send(post(server), FAST)
    message = str(info.value)
    assert f"127.0.0.1:{server.port}" in message
    assert SECRET not in message and SECRET not in str(info.value.url)


def test_malformed_response_is_a_transport_error(
    server: ScriptedServer, transport: HTTPTransport
) -> None:
    server.enqueue(raw(b"NOT HTTP AT ALL\r\n\r\n", close=True))
    with pytest.raises(TransportError, match="invalid HTTP response") as info:
        transport.send(post(server), FAST)
    assert not info.value.retryable


def test_connection_refused() -> None:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    with (
        HTTPTransport(trust_env=False) as t,
        pytest.raises(APIConnectionError, match="refused") as info,
    ):
        t.send(HttpRequest("GET", f"http://127.0.0.1:{port}/x", (("Authorization", SECRET),)))
    assert f"127.0.0.1:{port}" in str(info.value) and SECRET not in str(info.value)
    assert info.value.retryable


# ---------------------------------------------------------------- timeouts


def test_first_byte_timeout(server: ScriptedServer, transport: HTTPTransport) -> None:
    server.enqueue(stall(STALL))
    t0 = time.monotonic()
    with pytest.raises(FirstByteTimeoutError) as info:
        transport.send(post(server), Timeouts(first_byte=0.2, idle=STALL, total=STALL))
    assert time.monotonic() - t0 < STALL / 2
    message = str(info.value)
    assert "first_byte" in message and "0.2 s" in message and "timeout=" in message
    assert isinstance(info.value, TimeoutError) and info.value.retryable


def test_delay_within_first_byte_is_fine(server: ScriptedServer, transport: HTTPTransport) -> None:
    # A first wait longer than the idle limit: only first_byte applies to it.
    server.enqueue(delay(0.2, json_reply(200, {})))
    assert transport.send(post(server), Timeouts(first_byte=STALL, idle=0.1)).status == 200


def test_slow_headers_are_bounded_by_idle(server: ScriptedServer, transport: HTTPTransport) -> None:
    # A head sent byte by byte: fine while each gap is within idle, however long in all.
    server.enqueue(slow_headers(json_reply(200, {}), per_byte=0.005))
    assert transport.send(post(server), Timeouts(first_byte=STALL, idle=5)).status == 200
    server.enqueue(slow_headers(json_reply(200, {}), per_byte=STALL))
    with pytest.raises(IdleTimeoutError):
        transport.send(post(server), Timeouts(first_byte=STALL, idle=0.2, total=STALL))


def test_idle_timeout_mid_stream(server: ScriptedServer, transport: HTTPTransport) -> None:
    reply = sse_reply([{"n": 1}, {"n": 2}, {"n": 3}])
    first_two = len(reply.steps[0][1]) + len(reply.steps[1][1]) + len(reply.steps[2][1])
    server.enqueue(reply.stall_after(first_two, STALL))
    got = []
    t0 = time.monotonic()
    with transport.open_stream(post(server, stream=True), Timeouts(idle=0.3)) as s:
        assert s.status == 200
        with pytest.raises(IdleTimeoutError, match="idle timeout"):
            for ev in s:
                got.append(ev.data)
    assert got == [b'{"n": 1}', b'{"n": 2}']
    assert time.monotonic() - t0 < STALL / 2


def test_total_timeout_on_a_dripping_stream(
    server: ScriptedServer, transport: HTTPTransport
) -> None:
    # 500 events 0.05 s apart: 25 s, so the limit cuts the stream far from its end.
    server.enqueue(sse_reply([{"n": i} for i in range(500)], delay_between=0.05))
    got = []
    t0 = time.monotonic()
    with pytest.raises(TotalTimeoutError, match="total timeout"):  # noqa: SIM117
        with transport.open_stream(post(server, stream=True), Timeouts(idle=1, total=0.4)) as s:
            for ev in s:
                got.append(ev)
    assert 0.35 < time.monotonic() - t0 < STALL / 2  # it waited, then stopped waiting
    assert 0 < len(got) < 500


def test_connect_timeout_when_the_backlog_is_full() -> None:
    # A listener that never accepts, with its accept queue filled: Linux then
    # drops further SYNs, so connect() hangs and the connect timeout fires.
    with contextlib.ExitStack() as stack:
        try:
            port = stack.enter_context(hanging_listener())
        except RuntimeError as exc:  # e.g. tcp_abort_on_overflow answers with RST
            pytest.skip(str(exc))
        with HTTPTransport(trust_env=False) as t, pytest.raises(ConnectTimeoutError) as info:
            t.send(HttpRequest("GET", f"http://127.0.0.1:{port}/"), Timeouts(connect=0.3))
        assert "connect timeout" in str(info.value) and "0.3 s" in str(info.value)


def test_connect_timeout_covers_a_stalled_tls_handshake(server: ScriptedServer) -> None:
    # The plain-HTTP scripted server never answers a TLS ClientHello.
    url = server.url.replace("http://", "https://")
    with HTTPTransport(trust_env=False) as t, pytest.raises(ConnectTimeoutError):
        t.send(HttpRequest("GET", url + "/"), Timeouts(connect=0.3))


# ---------------------------------------------------------------- streams


def test_stream_events_split_at_every_byte(
    server: ScriptedServer, transport: HTTPTransport
) -> None:
    events = [{"i": i} for i in range(5)] + ["event: end\ndata: [DONE]\n\n"]
    server.enqueue(sse_reply(events, chunk_split=1))
    with transport.open_stream(post(server, stream=True), FAST) as s:
        got = list(s)
    assert got[:5] == [SSEEvent(b'{"i": %d}' % i) for i in range(5)]
    assert got[5] == SSEEvent(b"[DONE]", "end")
    assert s.sse_tail == b""


@pytest.mark.parametrize("chunked", [True, False], ids=["chunked", "close-delimited"])
def test_stream_framings_and_reuse(
    server: ScriptedServer, transport: HTTPTransport, chunked: bool
) -> None:
    server.enqueue(sse_reply([{"a": 1}, {"b": 2}], chunked=chunked))
    server.enqueue(json_reply(200, {}))
    with transport.open_stream(post(server, stream=True), FAST) as s:
        assert [e.data for e in s] == [b'{"a": 1}', b'{"b": 2}']
    transport.send(post(server), FAST)
    assert server.connections == (1 if chunked else 2)


def test_stream_error_status_body_is_readable(
    server: ScriptedServer, transport: HTTPTransport
) -> None:
    server.enqueue(json_reply(401, {"error": {"message": "bad key"}}))
    with transport.open_stream(post(server, stream=True), FAST) as s:
        assert s.status == 401
        assert s.header("content-type") == "application/json"
        assert s.read() == b'{"error": {"message": "bad key"}}'


def test_stream_broken_mid_event_raises_after_delivering_complete_events(
    server: ScriptedServer, transport: HTTPTransport
) -> None:
    reply = sse_reply([{"n": 1}, {"n": 2}], chunk_split=4)
    total = sum(len(step[1]) for step in reply.steps if step[0] == "write")
    server.enqueue(reply.drop_after(total - 12))
    got = []
    with (
        transport.open_stream(post(server, stream=True), FAST) as s,
        pytest.raises(APIConnectionError, match="broke before the response was complete"),
    ):
        for ev in s:
            got.append(ev.data)
    assert got == [b'{"n": 1}']


def test_unterminated_final_event_is_reported_in_sse_tail(
    server: ScriptedServer, transport: HTTPTransport
) -> None:
    server.enqueue(sse_reply(["data: one\n\n", "data: two"]))
    with transport.open_stream(post(server, stream=True), FAST) as s:
        assert [e.data for e in s] == [b"one"]
    assert s.sse_tail == b"data: two"


def test_stream_closed_early_is_not_pooled(
    server: ScriptedServer, transport: HTTPTransport
) -> None:
    server.enqueue(sse_reply([{"n": i} for i in range(3)], delay_between=STALL),
                   json_reply(200, {}))
    with transport.open_stream(post(server, stream=True), FAST) as s:
        assert next(iter(s)).data == b'{"n": 0}'
    transport.send(post(server), FAST)
    assert server.connections == 2


def test_stream_closed_after_last_event_reuses_connection(
    server: ScriptedServer, transport: HTTPTransport
) -> None:
    # The caller stops at [DONE]; the chunked terminator has arrived by then
    # (or just after), and close() picks it up without blocking.
    sent = threading.Event()
    server.enqueue(sse_reply(["data: a\n\n", "data: [DONE]\n\n"]).then_set(sent),
                   json_reply(200, {}))
    with transport.open_stream(post(server, stream=True), FAST) as s:
        for ev in s:
            if ev.data == b"[DONE]":
                assert sent.wait(STALL)  # the terminator is on its way, maybe not read yet
                break
    transport.send(post(server), FAST)
    assert server.connections == 1


# ---------------------------------------------------------------- TLS and proxies


@pytest.fixture(scope="module")
def tls_server() -> Iterator[ScriptedServer]:
    try:
        srv = ScriptedServer(tls=True)
    except (RuntimeError, OSError) as exc:
        pytest.skip(f"no openssl to make a test certificate: {exc}")
    with srv:
        yield srv


def test_https_with_trusted_certificate(tls_server: ScriptedServer) -> None:
    tls_server.enqueue(json_reply(200, {"tls": True}), sse_reply([{"n": 1}]))
    with HTTPTransport(ssl_context=tls_server.client_ssl_context(), trust_env=False) as t:
        url = f"https://localhost:{tls_server.port}/v1"
        assert t.send(HttpRequest("POST", url, (), b"{}"), FAST).body == b'{"tls": true}'
        with t.open_stream(HttpRequest("POST", url, (), b"{}", stream=True), FAST) as s:
            assert [e.data for e in s] == [b'{"n": 1}']


def test_https_untrusted_certificate_is_not_retryable(tls_server: ScriptedServer) -> None:
    with HTTPTransport(trust_env=False) as t, pytest.raises(APIConnectionError) as info:
        t.send(HttpRequest("GET", f"https://localhost:{tls_server.port}/"), FAST)
    assert "certificate verification failed" in str(info.value)
    assert not info.value.retryable


def test_https_through_connect_proxy(tls_server: ScriptedServer) -> None:
    tls_server.enqueue(json_reply(200, {"via": "tunnel"}))
    with ConnectProxy(("127.0.0.1", tls_server.port)) as proxy:
        proxy_url = proxy.url.replace("http://", "http://user:pw@")
        with HTTPTransport(ssl_context=tls_server.client_ssl_context(), proxy=proxy_url) as t:
            url = f"https://scripted.test:{tls_server.port}/v1"
            resp = t.send(HttpRequest("POST", url, (), b"{}"), FAST)
    assert resp.body == b'{"via": "tunnel"}'
    assert proxy.targets == [f"scripted.test:{tls_server.port}"]
    assert proxy.auth == ["Basic dXNlcjpwdw=="]
    assert tls_server.requests[-1].headers["host"] == f"scripted.test:{tls_server.port}"


def test_proxy_refusing_connect(tls_server: ScriptedServer) -> None:
    with (
        ConnectProxy(("127.0.0.1", tls_server.port), refuse=407) as proxy,
        HTTPTransport(proxy=proxy.url) as t,
        pytest.raises(APIConnectionError, match="407") as info,
    ):
        t.send(HttpRequest("GET", "https://scripted.test/"), FAST)
    assert not info.value.retryable


def test_plain_http_through_proxy_from_environment(
    server: ScriptedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The scripted server plays the proxy: it sees the absolute-form target.
    monkeypatch.setenv("HTTP_PROXY", server.url)
    monkeypatch.delenv("http_proxy", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    server.enqueue(json_reply(200, {}))
    with HTTPTransport() as t:
        assert t.send(HttpRequest("GET", "http://scripted.test/v1/models"), FAST).status == 200
    req = server.requests[0]
    assert req.target == "http://scripted.test/v1/models"
    assert req.headers["host"] == "scripted.test"


# ---------------------------------------------------------------- threads and leaks


def test_eight_threads_share_one_transport(
    server: ScriptedServer, transport: HTTPTransport
) -> None:
    per_thread = 25
    for i in range(8 * per_thread):
        server.enqueue(json_reply(200, {"i": i}))
    errors: list[BaseException] = []
    bodies: list[bytes] = []
    lock = threading.Lock()

    def worker() -> None:
        try:
            for _ in range(per_thread):
                body = transport.send(post(server), FAST).body
                with lock:
                    bodies.append(body)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert not errors
    assert sorted(bodies) == sorted(b'{"i": %d}' % i for i in range(8 * per_thread))
    assert server.connections <= 8


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc/self/fd")
def test_no_socket_leaks_after_close() -> None:
    before = open_fds()
    with ScriptedServer() as srv:
        t = HTTPTransport(trust_env=False)
        srv.enqueue(
            json_reply(200, {}),
            json_reply(200, {}).drop_after(20),
            sse_reply([{"n": 1}, {"n": 2}], delay_between=0.2),
            json_reply(500, {}),
            stall(STALL),
            json_reply(200, {}),
        )
        t.send(post(srv), FAST)
        with pytest.raises(APIConnectionError):
            t.send(post(srv), FAST)
        s = t.open_stream(post(srv, stream=True), FAST)
        next(iter(s))
        s.close()
        t.send(post(srv), FAST)
        with pytest.raises(FirstByteTimeoutError):
            t.send(post(srv), Timeouts(first_byte=0.1))
        abandoned = t.open_stream(post(srv, stream=True), FAST)
        del abandoned  # never closed by the caller: __del__ must not leak it
        t.close()
    assert settle_fds(before) <= before
