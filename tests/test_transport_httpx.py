"""The httpx backend (``http_client=``): what it adds and what msgflux keeps on top.

The transport-independent suites also run over it (see ``tests/conftest.py``);
this module covers what only it has: the caller's client and its features,
redirects refused although the client would follow them, and HTTP/2 against a
real h2 server (hypercorn) over TLS with certificates made on the fly.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import ssl
import threading
from collections.abc import Iterator
from typing import Any

import pytest

import msgflux as mf
from msgflux import exceptions as exc
from scripted_server import ScriptedServer, json_reply, sse_reply, stall, text_reply
from test_faults_support import DONE, FAST, chunk, completion, free_port

httpx = pytest.importorskip("httpx")


@pytest.fixture
def srv() -> Iterator[ScriptedServer]:
    with ScriptedServer() as server:
        yield server


def model(srv: ScriptedServer, client: Any, **kwargs: Any) -> Any:
    kwargs.setdefault("max_retries", FAST)
    return mf.Model.chat_completion("openai/gpt-4o", base_url=srv.url + "/v1",
                                    api_key="sk-httpx", http_client=client, **kwargs)


# ---------------------------------------------------------------- the caller's client


def test_calls_go_through_the_callers_client_with_its_hooks(srv: ScriptedServer) -> None:
    seen: list[str] = []
    srv.enqueue(json_reply(200, completion("whole")),
                sse_reply([chunk("str"), chunk("eam", finish="stop"), DONE]))
    with httpx.Client(headers={"X-Team": "red"},
                      event_hooks={"request": [lambda r: seen.append(r.url.path)]}) as client:
        m = model(srv, client)
        assert m("hi").consume() == "whole"
        assert "".join(m("hi", stream=True).consume()) == "stream"
        m.close()
        assert not client.is_closed  # the caller's client stays the caller's
    assert seen == ["/v1/chat/completions"] * 2
    first, second = srv.requests
    assert first.headers["x-team"] == "red" and first.headers["authorization"] == "Bearer sk-httpx"
    assert second.headers["accept-encoding"] == "identity"


def test_async_client_and_both_together(srv: ScriptedServer) -> None:
    srv.enqueue(*(json_reply(200, completion(f"n{i}")) for i in range(3)))

    async def main() -> list[str]:
        async with httpx.AsyncClient() as aclient:
            m = model(srv, aclient)
            one = (await m.acall("hi")).consume()
            with httpx.Client() as client:
                both = model(srv, (client, aclient))
                two = both("hi").consume()
                three = (await both.acall("hi")).consume()
            return [one, two, three]

    assert asyncio.run(main()) == ["n0", "n1", "n2"]


def test_a_missing_kind_of_client_is_a_clear_error(srv: ScriptedServer) -> None:
    async def main() -> None:
        async with httpx.AsyncClient() as aclient:
            with pytest.raises(exc.InvalidParameterError, match="no client for blocking calls"):
                model(srv, aclient)("hi")

    asyncio.run(main())
    assert srv.requests == []


@pytest.mark.parametrize("bad", [object(), "httpx", [None]])
def test_http_client_must_be_an_httpx_client(bad: Any) -> None:
    with pytest.raises(exc.InvalidParameterError, match="http_client"):
        mf.Model.chat_completion("openai/m", base_url="http://h/v1", api_key="k",
                                 http_client=bad)


def test_http_client_with_default_transport_options_is_refused() -> None:
    with httpx.Client() as client, pytest.raises(exc.InvalidParameterError, match="replaces"):
        mf.Model.chat_completion("openai/m", base_url="http://h/v1", api_key="k",
                                 http_client=client, verify=True)


def test_serialize_leaves_the_client_out(srv: ScriptedServer) -> None:
    with httpx.Client() as client:
        state = model(srv, client).serialize()["state"]
    assert "http_client" not in state
    json.dumps(state)


# ---------------------------------------------------------------- msgflux's guarantees


@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
def test_redirects_are_refused_although_the_client_follows_them(
        srv: ScriptedServer, use_async: bool) -> None:
    where = "http://elsewhere.example/v1/chat/completions"
    srv.enqueue(text_reply(307, b"", {"Location": where}))
    with pytest.raises(exc.APIStatusError, match="never follows redirects") as info:
        if use_async:
            async def main() -> None:
                async with httpx.AsyncClient(follow_redirects=True) as aclient:
                    await model(srv, aclient).acall("hi")
            asyncio.run(main())
        else:
            with httpx.Client(follow_redirects=True) as client:
                model(srv, client)("hi")
    assert where in str(info.value)
    assert len(srv.requests) == 1


def test_timeouts_are_msgflux_timeouts(srv: ScriptedServer) -> None:
    srv.enqueue(stall(3))
    with httpx.Client(timeout=60) as client:
        m = model(srv, client, max_retries=0, timeout={"first_byte": 0.3, "idle": 0.3})
        with pytest.raises(exc.FirstByteTimeoutError):
            m("hi")
        refused = mf.Model.chat_completion(
            "openai/m", base_url=f"http://127.0.0.1:{free_port()}", api_key="k",
            max_retries=0, http_client=client)
        with pytest.raises(exc.APIConnectionError, match="could not connect"):
            refused("hi")


def test_an_idle_stream_times_out(srv: ScriptedServer) -> None:
    srv.enqueue(sse_reply([chunk("a"), chunk("b")], delay_between=2.0))
    with httpx.Client() as client:
        m = model(srv, client, max_retries=0, timeout={"idle": 0.3})
        with pytest.raises(exc.StreamError) as info:
            list(m("hi", stream=True).consume())
    assert isinstance(info.value.__cause__, exc.IdleTimeoutError)
    assert info.value.partial_text == "a"


def test_size_limits_hold(srv: ScriptedServer) -> None:
    bomb = gzip.compress(b"\0" * (8 << 20))
    srv.enqueue(text_reply(200, bomb, {"Content-Encoding": "gzip"}),
                sse_reply([b"data: " + b"x" * 300_000]))
    with httpx.Client() as client:
        m = model(srv, client, max_response_bytes=1 << 20, max_retries=0)
        with pytest.raises(exc.TransportError, match="max_response_bytes"):
            m("hi")
        m2 = model(srv, client, max_response_bytes=100_000, max_retries=0)
        with pytest.raises(exc.TransportError, match="max_response_bytes"):
            list(m2("hi", stream=True).consume())


def test_invalid_header_names_fail_before_the_network(srv: ScriptedServer) -> None:
    with httpx.Client() as client, pytest.raises(exc.InvalidParameterError, match="header name"):
        model(srv, client, extra_headers={"X Bad": "1"})("hi")
    assert srv.requests == []


# ---------------------------------------------------------------- HTTP/2 on a real h2 server


async def _h2_app(scope: dict, receive: Any, send: Any) -> None:
    """An OpenAI-compatible endpoint: a whole answer, or an SSE stream."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    version = scope.get("http_version")
    if json.loads(body).get("stream"):
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/event-stream")]})
        for piece in (chunk(f"h{version}"), chunk("!", finish="stop")):
            data = b"data: " + json.dumps(piece).encode() + b"\n\n"
            await send({"type": "http.response.body", "body": data, "more_body": True})
        await send({"type": "http.response.body", "body": DONE.encode()})
        return
    payload = json.dumps(completion(f"over HTTP/{version}")).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": payload})


@pytest.fixture(scope="module")
def h2_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, ssl.SSLContext]]:
    trustme = pytest.importorskip("trustme")
    pytest.importorskip("h2")
    hypercorn_asyncio = pytest.importorskip("hypercorn.asyncio")
    from hypercorn.config import Config

    ca = trustme.CA()
    cert = ca.issue_cert("localhost")
    d = tmp_path_factory.mktemp("h2")
    cert.cert_chain_pems[0].write_to_path(d / "cert.pem")
    cert.private_key_pem.write_to_path(d / "key.pem")
    port = free_port()
    config = Config()
    config.bind = [f"127.0.0.1:{port}"]
    config.certfile, config.keyfile = str(d / "cert.pem"), str(d / "key.pem")
    config.alpn_protocols = ["h2"]  # HTTP/2 only: a fallback to 1.1 would fail the test
    config.accesslog = config.errorlog = None
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    ready = threading.Event()

    async def run() -> None:
        ready.set()
        await hypercorn_asyncio.serve(_h2_app, config, shutdown_trigger=stop.wait)

    thread = threading.Thread(target=loop.run_until_complete, args=(run(),), daemon=True)
    thread.start()
    ready.wait(5)
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    for _ in range(100):  # bounded: until hypercorn listens (~10 s at most)
        try:
            with httpx.Client(verify=ctx, http2=True) as probe:
                probe.get(f"https://localhost:{port}/", timeout=0.5)
            break
        except httpx.TransportError:
            import time

            time.sleep(0.1)
    yield f"https://localhost:{port}/v1", ctx
    loop.call_soon_threadsafe(stop.set)
    thread.join(10)
    loop.close()


def test_http2_through_an_httpx_client(h2_server: tuple[str, ssl.SSLContext]) -> None:
    url, ctx = h2_server
    versions: list[str] = []
    hooks = {"response": [lambda r: versions.append(r.http_version)]}
    with httpx.Client(http2=True, verify=ctx, event_hooks=hooks) as client:
        m = mf.Model.chat_completion("openai/m", base_url=url, api_key="k", http_client=client)
        assert m("hi").consume() == "over HTTP/2"
        assert "".join(m("hi", stream=True).consume()) == "h2!"

    async def main() -> list[str]:
        async with httpx.AsyncClient(http2=True, verify=ctx, event_hooks={
                "response": [_async_hook(versions)]}) as aclient:
            am = mf.Model.chat_completion("openai/m", base_url=url, api_key="k",
                                          http_client=aclient)
            calls = [am.acall("hi") for _ in range(4)]  # multiplexed on one connection
            return [r.consume() for r in await asyncio.gather(*calls)]

    assert asyncio.run(main()) == ["over HTTP/2"] * 4
    assert versions == ["HTTP/2"] * 6


def _async_hook(versions: list[str]) -> Any:
    async def hook(response: Any) -> None:
        versions.append(response.http_version)
    return hook
