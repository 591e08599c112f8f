"""AsyncHTTPTransport against the scripted loopback server (no mocks of our own code)."""

from __future__ import annotations

import asyncio
import gc
import os
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator

import pytest
import pytest_asyncio

from msgflux._transport.async_client import AsyncHTTPTransport
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
    drop,
    json_reply,
    raw,
    reset,
    sse_reply,
    stall,
    text_reply,
)
from test_faults_support import STALL, idle_408, open_fds, settle_fds

SECRET = "sk-secret-never-printed"
FAST = Timeouts(connect=2.0, first_byte=2.0, idle=2.0, total=5.0)
pytestmark = pytest.mark.filterwarnings("error::ResourceWarning")


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    with ScriptedServer() as srv:
        yield srv


@pytest_asyncio.fixture
async def transport() -> AsyncIterator[AsyncHTTPTransport]:
    async with AsyncHTTPTransport(trust_env=False) as t:
        yield t


def post(server: ScriptedServer, path: str = "/v1/chat", stream: bool = False) -> HttpRequest:
    return HttpRequest(
        "POST",
        server.url + path + "?key=" + SECRET,
        (("Authorization", f"Bearer {SECRET}"),),
        b'{"model": "m"}',
        stream=stream,
    )


# ---------------------------------------------------------------- plain requests


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "reply",
    [
        json_reply(200, {"ok": 1}),
        json_reply(200, {"ok": 1}, chunked=True),
        json_reply(200, {"ok": 1}, gzip=True),
        text_reply(200, '{"ok": 1}', close_delimited=True),
    ],
    ids=["content-length", "chunked", "gzip", "close-delimited"],
)
async def test_send_body_framings(
    server: ScriptedServer, transport: AsyncHTTPTransport, reply
) -> None:
    server.enqueue(reply)
    resp = await transport.send(post(server), FAST)
    assert (resp.status, resp.body) == (200, b'{"ok": 1}')
    assert server.requests[0].json() == {"model": "m"}


@pytest.mark.asyncio
async def test_error_status_returned_and_connection_reused(
    server: ScriptedServer, transport: AsyncHTTPTransport
) -> None:
    server.enqueue(json_reply(503, {"error": "later"}, {"Retry-After": "1"}), json_reply(200, {}))
    r = await transport.send(post(server), FAST)
    assert (r.status, r.header("retry-after")) == (503, "1")
    assert (await transport.send(post(server), FAST)).status == 200
    assert server.connections == 1


@pytest.mark.asyncio
async def test_concurrent_requests_then_reuse(
    server: ScriptedServer, transport: AsyncHTTPTransport
) -> None:
    for i in range(60):
        server.enqueue(json_reply(200, {"i": i}))
    first = await asyncio.gather(*(transport.send(post(server), FAST) for _ in range(20)))
    opened = server.connections
    assert opened <= 20
    second = await asyncio.gather(*(transport.send(post(server), FAST) for _ in range(20)))
    third = [await transport.send(post(server), FAST) for _ in range(20)]
    bodies = sorted(r.body for r in first + second + third)
    assert bodies == sorted(b'{"i": %d}' % i for i in range(60))
    assert server.connections == opened  # everything after the first wave reused


@pytest.mark.asyncio
@pytest.mark.parametrize("fault", [drop, reset], ids=["eof", "rst"])
async def test_dead_pooled_connection_is_retried_once(
    server: ScriptedServer, transport: AsyncHTTPTransport, fault
) -> None:
    server.enqueue(json_reply(200, {"n": 1}), fault(), json_reply(200, {"n": 2}))
    await transport.send(post(server), FAST)
    assert (await transport.send(post(server), FAST)).body == b'{"n": 2}'
    assert [r.connection for r in server.requests] == [1, 1, 2]


@pytest.mark.asyncio
async def test_fresh_connection_closed_is_an_error_without_retry(
    server: ScriptedServer, transport: AsyncHTTPTransport
) -> None:
    server.enqueue(drop(), json_reply(200, {}))
    with pytest.raises(APIConnectionError, match="closed before a response arrived"):
        await transport.send(post(server), FAST)
    assert len(server.requests) == 1


@pytest.mark.asyncio
async def test_server_closed_idle_connection_is_skipped(
    server: ScriptedServer, transport: AsyncHTTPTransport
) -> None:
    server.enqueue(json_reply(200, {}).then_close(), json_reply(200, {"n": 2}))
    await transport.send(post(server), FAST)
    await asyncio.sleep(0.05)
    assert (await transport.send(post(server), FAST)).body == b'{"n": 2}'
    assert len(server.requests) == 2 and server.connections == 2


@pytest.mark.asyncio
async def test_unsolicited_bytes_on_an_idle_connection_are_not_a_response(
    server: ScriptedServer, transport: AsyncHTTPTransport
) -> None:
    sent = threading.Event()
    server.enqueue(idle_408(sent), json_reply(200, {"n": 2}))
    await transport.send(post(server), FAST)
    # The 408 arrived while the connection was pooled: waiting off the loop lets the
    # loop read it first.
    assert await asyncio.to_thread(sent.wait, STALL)
    assert (await transport.send(post(server), FAST)).body == b'{"n": 2}'
    assert server.connections == 2


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "reply",
    [
        json_reply(200, {"long": "x" * 200}).drop_after(120),
        json_reply(200, {"long": "x" * 200}, chunked=True).drop_after(150),
        json_reply(200, {"long": "x" * 200}).reset_after(120),
    ],
    ids=["content-length", "chunked", "reset"],
)
async def test_body_cut_short_is_an_error(
    server: ScriptedServer, transport: AsyncHTTPTransport, reply
) -> None:
    server.enqueue(reply)
    with pytest.raises(APIConnectionError) as info:
        await transport.send(post(server), FAST)
    assert f"127.0.0.1:{server.port}" in str(info.value)
    assert SECRET not in str(info.value) and SECRET not in str(info.value.url)


@pytest.mark.asyncio
async def test_malformed_response(server: ScriptedServer, transport: AsyncHTTPTransport) -> None:
    server.enqueue(raw(b"HTTP/1.1 abc\r\n\r\n", close=True))
    with pytest.raises(TransportError, match="invalid HTTP response"):
        await transport.send(post(server), FAST)


@pytest.mark.asyncio
async def test_connection_refused(transport: AsyncHTTPTransport) -> None:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    with pytest.raises(APIConnectionError, match="refused") as info:
        await transport.send(HttpRequest("GET", f"http://127.0.0.1:{port}/"), FAST)
    assert f"127.0.0.1:{port}" in str(info.value)


# ---------------------------------------------------------------- timeouts


@pytest.mark.asyncio
async def test_first_byte_timeout(server: ScriptedServer, transport: AsyncHTTPTransport) -> None:
    server.enqueue(stall(STALL))
    t0 = time.monotonic()
    with pytest.raises(FirstByteTimeoutError, match=r"first_byte timeout.*0\.2 s"):
        await transport.send(post(server), Timeouts(first_byte=0.2))
    assert time.monotonic() - t0 < STALL / 2


@pytest.mark.asyncio
async def test_idle_timeout_mid_stream(
    server: ScriptedServer, transport: AsyncHTTPTransport
) -> None:
    reply = sse_reply([{"n": 1}, {"n": 2}, {"n": 3}])
    first_two = sum(len(step[1]) for step in reply.steps[:3])
    server.enqueue(reply.stall_after(first_two, STALL))
    got = []
    stream = await transport.open_stream(post(server, stream=True), Timeouts(idle=0.3))
    with pytest.raises(IdleTimeoutError):
        async for ev in stream:
            got.append(ev.data)
    assert got == [b'{"n": 1}', b'{"n": 2}']


@pytest.mark.asyncio
async def test_slow_consumer_is_not_an_idle_timeout(
    server: ScriptedServer, transport: AsyncHTTPTransport
) -> None:
    # Idle measures the server's silence while we wait, not our own work.
    server.enqueue(sse_reply([{"n": 1}, {"n": 2}]))
    stream = await transport.open_stream(post(server, stream=True), Timeouts(idle=0.2))
    got = []
    async for ev in stream:
        got.append(ev.data)
        await asyncio.sleep(0.4)
    assert len(got) == 2


@pytest.mark.asyncio
async def test_total_timeout_on_a_dripping_stream(
    server: ScriptedServer, transport: AsyncHTTPTransport
) -> None:
    # 500 events 0.05 s apart: 25 s, so the limit cuts the stream far from its end.
    server.enqueue(sse_reply([{"n": i} for i in range(500)], delay_between=0.05))
    got = []
    t0 = time.monotonic()
    stream = await transport.open_stream(post(server, stream=True), Timeouts(idle=1, total=0.4))
    with pytest.raises(TotalTimeoutError):
        async for ev in stream:
            got.append(ev)
    assert 0.35 < time.monotonic() - t0 < STALL / 2  # it waited, then stopped waiting
    assert 0 < len(got) < 500


@pytest.mark.asyncio
async def test_connect_timeout_covers_a_stalled_tls_handshake(
    server: ScriptedServer, transport: AsyncHTTPTransport
) -> None:
    url = server.url.replace("http://", "https://")
    with pytest.raises(ConnectTimeoutError, match="connect timeout"):
        await transport.send(HttpRequest("GET", url + "/"), Timeouts(connect=0.3))


@pytest.mark.asyncio
async def test_cancelled_request_closes_its_connection(
    server: ScriptedServer, transport: AsyncHTTPTransport
) -> None:
    server.enqueue(stall(STALL), json_reply(200, {}))
    task = asyncio.ensure_future(transport.send(post(server), FAST))
    await asyncio.to_thread(server.wait_for_requests, 1, STALL)  # in flight, then cancelled
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert (await transport.send(post(server), FAST)).status == 200
    assert server.connections == 2


# ---------------------------------------------------------------- streams


@pytest.mark.asyncio
async def test_stream_events_split_at_every_byte(
    server: ScriptedServer, transport: AsyncHTTPTransport
) -> None:
    events = [{"i": i} for i in range(5)] + ["event: end\ndata: [DONE]\n\n"]
    server.enqueue(sse_reply(events, chunk_split=1))
    async with await transport.open_stream(post(server, stream=True), FAST) as s:
        got = [ev async for ev in s]
    assert got[:5] == [SSEEvent(b'{"i": %d}' % i) for i in range(5)]
    assert got[5] == SSEEvent(b"[DONE]", "end")


@pytest.mark.asyncio
async def test_many_events_in_one_read(
    server: ScriptedServer, transport: AsyncHTTPTransport
) -> None:
    body = "".join(f"data: {i}\n\n" for i in range(500))
    server.enqueue(sse_reply([body]), json_reply(200, {}))
    async with await transport.open_stream(post(server, stream=True), FAST) as s:
        got = [ev.data async for ev in s]
    assert got == [b"%d" % i for i in range(500)]
    await transport.send(post(server), FAST)
    assert server.connections == 1


@pytest.mark.asyncio
async def test_large_stream_with_backpressure(
    server: ScriptedServer, transport: AsyncHTTPTransport
) -> None:
    chunk = "data: " + "x" * 8000 + "\n\n"
    server.enqueue(sse_reply([chunk] * 500))  # ~4 MB, more than the 1 MiB high-water mark
    s = await transport.open_stream(post(server, stream=True), FAST)
    await asyncio.sleep(0.3)  # let it buffer up to the mark and pause
    n = 0
    async for ev in s:
        n += 1
        assert len(ev.data) == 8000
    assert n == 500


@pytest.mark.asyncio
async def test_stream_error_status_body(
    server: ScriptedServer, transport: AsyncHTTPTransport
) -> None:
    server.enqueue(json_reply(400, {"error": "bad"}))
    async with await transport.open_stream(post(server, stream=True), FAST) as s:
        assert s.status == 400
        assert await s.read() == b'{"error": "bad"}'


@pytest.mark.asyncio
async def test_stream_broken_mid_event(
    server: ScriptedServer, transport: AsyncHTTPTransport
) -> None:
    reply = sse_reply([{"n": 1}, {"n": 2}], chunk_split=4)
    total = sum(len(step[1]) for step in reply.steps if step[0] == "write")
    server.enqueue(reply.drop_after(total - 12))
    got = []
    s = await transport.open_stream(post(server, stream=True), FAST)
    with pytest.raises(APIConnectionError, match="broke before the response was complete"):
        async for ev in s:
            got.append(ev.data)
    assert got == [b'{"n": 1}']


@pytest.mark.asyncio
async def test_unterminated_final_event(
    server: ScriptedServer, transport: AsyncHTTPTransport
) -> None:
    server.enqueue(sse_reply(["data: one\n\n", "data: two"]))
    async with await transport.open_stream(post(server, stream=True), FAST) as s:
        assert [e.data async for e in s] == [b"one"]
    assert s.sse_tail == b"data: two"


@pytest.mark.asyncio
async def test_stream_closed_early_is_not_pooled(
    server: ScriptedServer, transport: AsyncHTTPTransport
) -> None:
    server.enqueue(sse_reply([{"n": i} for i in range(3)], delay_between=STALL),
                   json_reply(200, {}))
    async with await transport.open_stream(post(server, stream=True), FAST) as s:
        assert (await s.__anext__()).data == b'{"n": 0}'
    await transport.send(post(server), FAST)
    assert server.connections == 2


# ---------------------------------------------------------------- loops, TLS, leaks


def test_one_transport_across_several_asyncio_runs(server: ScriptedServer) -> None:
    t = AsyncHTTPTransport(trust_env=False)
    fds = open_fds()
    for i in range(4):
        server.enqueue(json_reply(200, {"run": i}), json_reply(200, {"run": i}))

        async def main() -> list[bytes]:
            a = await t.send(post(server), FAST)
            b = await t.send(post(server), FAST)
            return [a.body, b.body]

        assert asyncio.run(main()) == [b'{"run": %d}' % i] * 2
    # One connection per loop: a pooled connection never crosses loops, and
    # asyncio.run's shutdown closed each loop's connections.
    assert server.connections == 4
    assert [r.connection for r in server.requests] == [1, 1, 2, 2, 3, 3, 4, 4]
    assert settle_fds(fds) <= fds
    t.close()
    assert not t._pools


def test_pool_of_a_loop_closed_without_shutdown_is_dropped(server: ScriptedServer) -> None:
    t = AsyncHTTPTransport(trust_env=False)
    fds = open_fds()
    server.enqueue(json_reply(200, {}), json_reply(200, {}))
    loop = asyncio.new_event_loop()
    loop.run_until_complete(t.send(post(server), FAST))
    loop.close()  # no shutdown_asyncgens: the pool is found dead on next use
    with pytest.warns(ResourceWarning):  # asyncio's own note about the transport we closed
        asyncio.run(t.send(post(server), FAST))
        gc.collect()
    assert server.connections == 2
    assert settle_fds(fds) <= fds


@pytest.fixture(scope="module")
def tls_server() -> Iterator[ScriptedServer]:
    try:
        srv = ScriptedServer(tls=True)
    except (RuntimeError, OSError) as exc:
        pytest.skip(f"no openssl to make a test certificate: {exc}")
    with srv:
        yield srv


@pytest.mark.asyncio
async def test_https_and_connect_tunnel(tls_server: ScriptedServer) -> None:
    ctx = tls_server.client_ssl_context()
    tls_server.enqueue(json_reply(200, {"direct": 1}), sse_reply([{"n": 1}]))
    async with AsyncHTTPTransport(ssl_context=ctx, trust_env=False) as t:
        url = f"https://localhost:{tls_server.port}/v1"
        assert (await t.send(HttpRequest("POST", url, (), b"{}"), FAST)).body == b'{"direct": 1}'
        s = await t.open_stream(HttpRequest("POST", url, (), b"{}", stream=True), FAST)
        assert [e.data async for e in s] == [b'{"n": 1}']
    tls_server.enqueue(json_reply(200, {"via": "tunnel"}))
    with ConnectProxy(("127.0.0.1", tls_server.port)) as proxy:
        async with AsyncHTTPTransport(ssl_context=ctx, proxy=proxy.url) as t:
            url = f"https://scripted.test:{tls_server.port}/v1"
            resp = await t.send(HttpRequest("POST", url, (), b"{}"), FAST)
    assert resp.body == b'{"via": "tunnel"}'
    assert proxy.targets == [f"scripted.test:{tls_server.port}"]


@pytest.mark.asyncio
async def test_untrusted_certificate(tls_server: ScriptedServer) -> None:
    async with AsyncHTTPTransport(trust_env=False) as t:
        with pytest.raises(APIConnectionError, match="certificate verification failed") as info:
            await t.send(HttpRequest("GET", f"https://localhost:{tls_server.port}/"), FAST)
    assert not info.value.retryable


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc/self/fd")
def test_no_socket_leaks() -> None:
    before = open_fds()
    with ScriptedServer() as srv:
        t = AsyncHTTPTransport(trust_env=False)
        srv.enqueue(
            json_reply(200, {}),
            json_reply(200, {}).drop_after(20),
            sse_reply([{"n": 1}, {"n": 2}], delay_between=0.2),
            stall(STALL),
            json_reply(200, {}),
        )

        async def main() -> None:
            await t.send(post(srv), FAST)
            with pytest.raises(APIConnectionError):
                await t.send(post(srv), FAST)
            s = await t.open_stream(post(srv, stream=True), FAST)
            await s.__anext__()
            await s.aclose()
            with pytest.raises(FirstByteTimeoutError):
                await t.send(post(srv), Timeouts(first_byte=0.1))
            await t.open_stream(post(srv, stream=True), FAST)  # abandoned, never closed
            await t.aclose()

        asyncio.run(main())
        gc.collect()
    assert settle_fds(before) <= before
