"""``mf.ModelGateway`` fallbacks under faults, sync and async, whole and streamed.

The gateway moves on for retryable and availability errors (after each
model's own retries), never for bad requests or bad input; ``metadata.gateway``
says which model answered and what failed before it; a stream falls back only
while nothing has reached the caller.
"""

from __future__ import annotations

import asyncio

import pytest

import msgflux as mf
from msgflux import exceptions as exc
from scripted_server import ScriptedServer, drop, json_reply, sse_reply, stall
from test_faults_support import (
    DONE,
    FAST,
    chunk,
    completion,
    error_body,
    free_port,
    hanging_listener,
)

MODES = pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])


@pytest.fixture
def a():
    with ScriptedServer() as s:
        yield s


@pytest.fixture
def b():
    with ScriptedServer() as s:
        yield s


def model(name: str, url: str, **kwargs):
    kwargs.setdefault("max_retries", FAST)
    return mf.Model.chat_completion(f"openai/{name}", base_url=url + "/v1", api_key="sk-test",
                                    **kwargs)


def gateway(a_url: str, b: ScriptedServer, **kwargs) -> mf.ModelGateway:
    return mf.ModelGateway([model("model-a", a_url, **kwargs), model("model-b", b.url)])


def call(gw, use_async: bool, **kwargs):
    if use_async:
        async def main():
            try:
                r = await gw.acall("hi", **kwargs)
                if kwargs.get("stream"):
                    return r, [c async for c in r.consume()]
                return r, None
            finally:
                await gw.aclose()
        return asyncio.run(main())
    try:
        r = gw("hi", **kwargs)
        if kwargs.get("stream"):
            return r, list(r.consume())
        return r, None
    finally:
        gw.close()


def stream_reply(*texts: str):
    return sse_reply([chunk(role="assistant"), *[chunk(t) for t in texts],
                      chunk(finish="stop"), DONE])


def fail(status: int):
    return json_reply(status, error_body(status))


# ---------------------------------------------------------------- falls back


@MODES
@pytest.mark.parametrize("status", [429, 500, 503, 529, 401, 403, 404])
def test_falls_back_on_availability_errors(a, b, use_async, status) -> None:
    a.enqueue(*[fail(status) for _ in range(FAST.max_retries + 1)])
    b.enqueue(json_reply(200, completion("from b")))
    r, _ = call(gateway(a.url, b), use_async)
    assert r.consume() == "from b"
    info = r.metadata.gateway
    assert info["model"] == "openai/model-b"
    [failed] = info["failed"]
    assert failed["model"] == "openai/model-a" and str(status) in failed["error"]
    retried = status in (429, 500, 503, 529)
    assert len(a.requests) == (FAST.max_retries + 1 if retried else 1)
    assert len(b.requests) == 1


@MODES
def test_falls_back_on_connection_refused(b, use_async) -> None:
    b.enqueue(json_reply(200, completion("from b")))
    gw = mf.ModelGateway([model("model-a", f"http://127.0.0.1:{free_port()}"),
                          model("model-b", b.url)])
    r, _ = call(gw, use_async)
    assert r.consume() == "from b"
    assert "APIConnectionError" in r.metadata.gateway["failed"][0]["error"]


@MODES
def test_falls_back_on_timeouts(a, b, use_async) -> None:
    a.enqueue(*[stall(5) for _ in range(FAST.max_retries + 1)])
    b.enqueue(json_reply(200, completion("from b")))
    r, _ = call(gateway(a.url, b, timeout={"first_byte": 0.1}), use_async)
    assert r.consume() == "from b"
    assert "FirstByteTimeoutError" in r.metadata.gateway["failed"][0]["error"]


def test_falls_back_on_connect_timeout(b) -> None:
    try:
        ctx = hanging_listener()
        port = ctx.__enter__()
    except RuntimeError as e:
        pytest.skip(str(e))
    try:
        b.enqueue(json_reply(200, completion("from b")))
        gw = mf.ModelGateway([
            model("model-a", f"http://127.0.0.1:{port}", timeout={"connect": 0.1}, max_retries=0),
            model("model-b", b.url)])
        r, _ = call(gw, False)
        assert r.consume() == "from b"
        assert "ConnectTimeoutError" in r.metadata.gateway["failed"][0]["error"]
    finally:
        ctx.__exit__(None, None, None)


@MODES
def test_the_first_model_answers_when_healthy(a, b, use_async) -> None:
    a.enqueue(json_reply(200, completion("from a")))
    r, _ = call(gateway(a.url, b), use_async)
    assert r.consume() == "from a"
    assert r.metadata.gateway == {"model": "openai/model-a", "failed": []}
    assert not b.requests


def test_model_preference_goes_first(a, b) -> None:
    b.enqueue(json_reply(200, completion("from b")))
    gw = gateway(a.url, b)
    r = gw("hi", model_preference="openai/model-b")
    gw.close()
    assert r.consume() == "from b" and not a.requests


# ---------------------------------------------------------------- does not fall back


@MODES
@pytest.mark.parametrize("status", [400, 422])
def test_bad_requests_do_not_fall_back(a, b, use_async, status) -> None:
    a.enqueue(fail(status))
    b.enqueue(json_reply(200, completion("from b")))
    with pytest.raises(exc.BadRequestError):
        call(gateway(a.url, b), use_async)
    assert len(a.requests) == 1 and not b.requests


@MODES
def test_bad_input_does_not_fall_back(a, b, use_async) -> None:
    with pytest.raises(exc.MessageFormatError):
        gw = gateway(a.url, b)
        if use_async:
            asyncio.run(gw.acall([{"role": "nobody", "content": "x"}]))
        else:
            gw([{"role": "nobody", "content": "x"}])
    assert not a.requests and not b.requests


@MODES
def test_every_model_failing_is_a_gateway_error(a, b, use_async) -> None:
    a.enqueue(*[fail(503) for _ in range(4)])
    b.enqueue(drop(), drop(), drop(), drop())
    with pytest.raises(exc.ModelGatewayError) as info:
        call(gateway(a.url, b), use_async)
    names = [name for name, _ in info.value.errors]
    assert names == ["openai/model-a", "openai/model-b"]
    assert isinstance(info.value.errors[0][1], exc.ServerError)
    assert isinstance(info.value.errors[1][1], exc.APIConnectionError)
    assert info.value.__cause__ is info.value.errors[-1][1]


# ---------------------------------------------------------------- streams


@MODES
def test_stream_falls_back_before_its_first_chunk(a, b, use_async) -> None:
    cut = stream_reply("never").drop_after(len(stream_reply("x").steps[0][1]))
    # (drop() first: on a reused keep-alive connection a close without a byte is
    # re-sent once transparently, which would consume one more scripted reply.)
    a.enqueue(drop(), fail(503), cut, fail(502))
    b.enqueue(stream_reply("from", " b"))
    r, got = call(gateway(a.url, b), use_async, stream=True)
    assert got == ["from", " b"] and r.data == "from b"
    assert len(a.requests) == 4 and len(b.requests) == 1


@MODES
def test_stream_metadata_keeps_the_gateway_record_after_the_end(a, b, use_async) -> None:
    a.enqueue(*[fail(503) for _ in range(4)])
    b.enqueue(stream_reply("from", " b"))
    r, got = call(gateway(a.url, b), use_async, stream=True)
    assert got == ["from", " b"]
    assert r.metadata.finish_reason == "stop"
    assert r.metadata.gateway["model"] == "openai/model-b"


@MODES
def test_stream_never_falls_back_after_its_first_chunk(a, b, use_async) -> None:
    full = stream_reply("Hello", " world")
    body = b"".join(s[1] for s in full.steps if s[0] == "write")
    a.enqueue(full.drop_after(body.index(b"\n\n", body.index(b"Hello")) + 4))
    b.enqueue(stream_reply("from b"))
    with pytest.raises(exc.StreamError) as info:
        call(gateway(a.url, b), use_async, stream=True)
    assert info.value.partial_text == "Hello"
    assert len(a.requests) == 1 and not b.requests


def test_sync_stream_inside_a_running_loop_still_falls_back(a, b) -> None:
    # model(..., stream=True) inside a running loop defers its I/O to iteration;
    # through a gateway the fallback must still happen.
    a.enqueue(*[fail(503) for _ in range(4)])
    b.enqueue(stream_reply("from b"))
    gw = gateway(a.url, b)

    async def main():
        r = gw("hi", stream=True)
        return [c async for c in r.consume()]

    try:
        assert asyncio.run(main()) == ["from b"]
    finally:
        gw.close()
    assert len(a.requests) == FAST.max_retries + 1 and len(b.requests) == 1


def test_sync_stream_inside_a_running_loop_records_and_gives_up(a, b) -> None:
    a.enqueue(*[fail(503) for _ in range(4)])
    b.enqueue(stream_reply("from", " b"), fail(400))
    gw = gateway(a.url, b)

    async def main():
        r = gw("hi", stream=True)  # no I/O here: the loop is running
        chunks = [c async for c in r.consume()]
        return r, chunks

    try:
        r, chunks = asyncio.run(main())
        assert chunks == ["from", " b"] and r.metadata.gateway["model"] == "openai/model-b"
        assert [f["model"] for f in r.metadata.gateway["failed"]] == ["openai/model-a"]
        a.enqueue(*[fail(503) for _ in range(4)])
        with pytest.raises(exc.BadRequestError):  # model b's bad request is not fallen back
            asyncio.run(main())
        a.enqueue(*[fail(503) for _ in range(4)])
        b.enqueue(*[fail(502) for _ in range(4)])
        with pytest.raises(exc.ModelGatewayError) as info:
            asyncio.run(main())
        assert [name for name, _ in info.value.errors] == ["openai/model-a", "openai/model-b"]
    finally:
        gw.close()
