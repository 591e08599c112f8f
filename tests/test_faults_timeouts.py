"""Timeouts through the public model API: connect, first byte, idle, total.

Each is its own typed error (also the builtin ``TimeoutError``), set with the
model's or the call's ``timeout=`` (seconds, a dict or ``mf.Timeouts``); a
stalled server or stream never hangs the caller. Every wait here is bounded by
an assertion on the elapsed time: at most half the stall, so the bound proves the
caller did not wait the stall out without being a tight window on a loaded machine.
"""

from __future__ import annotations

import asyncio
import time

import pytest

import msgflux as mf
from msgflux import exceptions as exc
from scripted_server import ScriptedServer, json_reply, slow_headers, sse_reply, stall
from test_faults_support import (
    DONE,
    FAST,
    STALL,
    chunk,
    completion,
    hanging_listener,
    openai,
)


@pytest.fixture
def srv():
    with ScriptedServer() as s:
        yield s


def call(model, use_async: bool, **kwargs):
    if use_async:
        async def main():
            try:
                r = await model.acall("hi", **kwargs)
                if kwargs.get("stream"):
                    return r, [c async for c in r.consume()]
                return r, None
            finally:
                await model.aclose()
        return asyncio.run(main())
    with model:
        r = model("hi", **kwargs)
        if kwargs.get("stream"):
            return r, list(r.consume())
        return r, None


def body_of(reply) -> bytes:
    return b"".join(s[1] for s in reply.steps if s[0] == "write")


MODES = pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])


# ---------------------------------------------------------------- connect


@MODES
def test_connect_timeout(use_async) -> None:
    try:
        ctx = hanging_listener()
        port = ctx.__enter__()
    except RuntimeError as e:
        pytest.skip(str(e))
    try:
        model = mf.Model.chat_completion(
            "openai/gpt-4o", base_url=f"http://127.0.0.1:{port}/v1", api_key="k",
            timeout={"connect": 0.2}, max_retries=0)
        t0 = time.monotonic()
        with pytest.raises(exc.ConnectTimeoutError, match="connect timeout") as info:
            call(model, use_async)
        assert time.monotonic() - t0 < STALL / 2
        assert isinstance(info.value, TimeoutError) and info.value.retryable
    finally:
        ctx.__exit__(None, None, None)


# ---------------------------------------------------------------- first byte


@MODES
@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_first_byte_timeout(srv, use_async, stream) -> None:
    srv.enqueue(stall(STALL))
    model = openai(srv, timeout={"first_byte": 0.2, "idle": 5, "total": 10}, max_retries=0)
    t0 = time.monotonic()
    with pytest.raises(exc.FirstByteTimeoutError, match="first_byte") as info:
        call(model, use_async, stream=stream)
    assert time.monotonic() - t0 < STALL / 2
    assert isinstance(info.value, TimeoutError)


@MODES
def test_first_byte_timeout_is_retried(srv, use_async) -> None:
    srv.enqueue(stall(STALL), json_reply(200, completion("second")))
    # The limit also applies to the retry, which must answer within it: not too tight.
    model = openai(srv, timeout={"first_byte": 1.0})
    t0 = time.monotonic()
    r, _ = call(model, use_async)
    assert r.consume() == "second" and len(srv.requests) == 2
    assert time.monotonic() - t0 < STALL / 2


def test_timeout_as_a_number_bounds_the_first_byte(srv) -> None:
    srv.enqueue(stall(STALL))
    t0 = time.monotonic()
    with pytest.raises(exc.APITimeoutError) as info:  # first_byte (or total: the same limit)
        call(openai(srv, timeout=0.25, max_retries=0), False)
    assert isinstance(info.value, (exc.FirstByteTimeoutError, exc.TotalTimeoutError))
    assert time.monotonic() - t0 < STALL / 2


def test_per_call_timeout_overrides_the_model(srv) -> None:
    srv.enqueue(stall(STALL))
    model = openai(srv, timeout=60, max_retries=0)
    t0 = time.monotonic()
    with pytest.raises(exc.FirstByteTimeoutError):
        call(model, False, timeout=mf.Timeouts(first_byte=0.2))
    assert time.monotonic() - t0 < STALL / 2


# ---------------------------------------------------------------- idle


@MODES
def test_idle_timeout_mid_body(srv, use_async) -> None:
    reply = json_reply(200, completion("x" * 500))
    srv.enqueue(reply.stall_after(len(body_of(reply)) - 100, STALL))
    model = openai(srv, timeout={"first_byte": 5, "idle": 0.2}, max_retries=0)
    t0 = time.monotonic()
    with pytest.raises(exc.IdleTimeoutError, match="idle"):
        call(model, use_async)
    assert time.monotonic() - t0 < STALL / 2


@MODES
def test_slow_headers_hit_the_idle_timeout(srv, use_async) -> None:
    srv.enqueue(slow_headers(json_reply(200, completion()), per_byte=STALL))
    model = openai(srv, timeout={"first_byte": 5, "idle": 0.2}, max_retries=0)
    t0 = time.monotonic()
    with pytest.raises(exc.IdleTimeoutError):
        call(model, use_async)
    assert time.monotonic() - t0 < STALL / 2


@MODES
def test_stream_stalled_mid_way_raises_with_the_partial_text(srv, use_async) -> None:
    reply = sse_reply([chunk(role="assistant"), chunk("Hel"), chunk("lo"),
                       chunk(finish="stop"), DONE])
    body = body_of(reply)
    srv.enqueue(reply.stall_after(body.index(b"\n\n", body.index(b'"lo"')) + 2, STALL))
    model = openai(srv, timeout={"first_byte": 5, "idle": 0.25})
    got: list[str] = []
    t0 = time.monotonic()

    if use_async:
        async def main():
            try:
                r = await model.acall("hi", stream=True)
                async for c in r.consume():
                    got.append(c)
            finally:
                await model.aclose()
        with pytest.raises(exc.StreamError) as info:
            asyncio.run(main())
    else:
        with model, pytest.raises(exc.StreamError) as info:
            for c in model("hi", stream=True).consume():
                got.append(c)
    assert time.monotonic() - t0 < STALL / 2
    assert got == ["Hel", "lo"] and info.value.partial_text == "Hello"
    assert isinstance(info.value.__cause__, exc.IdleTimeoutError)
    assert len(srv.requests) == 1  # never retried once text reached the caller


@MODES
def test_stream_stalled_before_the_first_chunk_is_retried(srv, use_async) -> None:
    reply = sse_reply([chunk(role="assistant"), chunk("ok"), chunk(finish="stop"), DONE])
    srv.enqueue(reply.stall_after(len(reply.steps[0][1]), STALL), reply)
    # The idle limit also applies to the retry, which must not stall: not too tight.
    model = openai(srv, timeout={"first_byte": 5, "idle": 1.0})
    t0 = time.monotonic()
    _r, got = call(model, use_async, stream=True)
    assert got == ["ok"] and len(srv.requests) == 2
    assert time.monotonic() - t0 < STALL / 2


# ---------------------------------------------------------------- total


@MODES
def test_total_timeout_on_a_dripping_stream(srv, use_async) -> None:
    # 600 chunks 0.03 s apart: 18 s, so the limit cuts it far from its end.
    events = [chunk(role="assistant")] + [chunk(f"t{i} ") for i in range(600)]
    srv.enqueue(sse_reply([*events, chunk(finish="stop"), DONE], delay_between=0.03))
    model = openai(srv, timeout={"first_byte": 5, "idle": 1, "total": 0.5})
    t0 = time.monotonic()
    with pytest.raises(exc.StreamError) as info:
        call(model, use_async, stream=True)
    assert 0.4 < time.monotonic() - t0 < 9
    assert isinstance(info.value.__cause__, exc.TotalTimeoutError)
    assert info.value.partial_text.startswith("t0 t1 ")
    assert "t599" not in info.value.partial_text
    assert len(srv.requests) == 1


@MODES
def test_total_timeout_on_a_slow_whole_response(srv, use_async) -> None:
    # About 100 head bytes 0.2 s apart: 20 s, each gap well within the idle limit.
    srv.enqueue(slow_headers(json_reply(200, completion()), per_byte=0.2))
    model = openai(srv, timeout={"first_byte": 5, "idle": 2, "total": 0.4}, max_retries=0)
    t0 = time.monotonic()
    with pytest.raises(exc.TotalTimeoutError, match="total"):
        call(model, use_async)
    assert time.monotonic() - t0 < 9


# ---------------------------------------------------------------- a number limits each wait


@MODES
def test_timeout_as_a_number_does_not_cut_a_healthy_long_stream(srv, use_async) -> None:
    """timeout=2 limits each wait, as in httpx and the vendor SDKs: a stream whose
    chunks come every 0.5 s for 3 s in all is not a timeout."""
    events = [chunk(role="assistant")] + [chunk(f"t{i} ") for i in range(4)]
    srv.enqueue(sse_reply([*events, chunk(finish="stop"), DONE], delay_between=0.5))
    r, chunks = call(openai(srv, timeout=2, max_retries=0), use_async, stream=True)
    assert "".join(chunks) == "".join(f"t{i} " for i in range(4))
    assert r.metadata.finish_reason == "stop"


@MODES
def test_timeout_as_a_number_bounds_each_gap_of_a_stream(srv, use_async) -> None:
    reply = sse_reply([chunk(role="assistant"), chunk("a"), chunk(finish="stop"), DONE])
    first = len(body_of(sse_reply([chunk(role="assistant"), chunk("a")]))) - len(b"0\r\n\r\n")
    srv.enqueue(reply.stall_after(first, STALL))
    t0 = time.monotonic()
    with pytest.raises(exc.StreamError) as info:
        call(openai(srv, timeout=0.3, max_retries=0), use_async, stream=True)
    assert isinstance(info.value.__cause__, exc.IdleTimeoutError)
    assert info.value.partial_text == "a"
    assert time.monotonic() - t0 < STALL / 2


def test_a_number_sets_each_phase_and_leaves_the_total_to_the_call_kind() -> None:
    from msgflux._transport.attempt import INF, Attempt
    from msgflux._transport.types import NON_STREAM_TOTAL
    from msgflux._transport.urls import split_url

    target = split_url("http://127.0.0.1:9/v1")
    each = mf.Timeouts.each(7.0)
    assert (each.connect, each.first_byte, each.idle) == (7.0, 7.0, 7.0)
    # Streams have no default deadline; non-streamed calls a generous one.
    assert Attempt(each, target, "x", 0.0, stream=True).deadline == INF
    assert Attempt(each, target, "x", 0.0, stream=False).deadline == NON_STREAM_TOTAL
    assert Attempt(mf.Timeouts(), target, "x", 0.0, stream=True).deadline == INF
    # An explicit total applies to both.
    explicit = mf.Timeouts(total=30.0)
    assert Attempt(explicit, target, "x", 0.0, stream=True).deadline == 30.0
    assert Attempt(mf.Timeouts(total=None), target, "x", 0.0).deadline == INF


# ---------------------------------------------------------------- a stalled stream never hangs


@MODES
def test_stalled_stream_never_hangs_even_with_retries(srv, use_async) -> None:
    role_only = sse_reply([chunk(role="assistant")])
    cut = len(body_of(role_only)) - len(b"0\r\n\r\n")  # all but the end of the body
    srv.enqueue(*[role_only.stall_after(cut, STALL) for _ in range(FAST.max_retries + 1)])
    model = openai(srv, timeout={"first_byte": 0.2, "idle": 0.15, "total": 1})
    t0 = time.monotonic()
    with pytest.raises(exc.APITimeoutError):
        call(model, use_async, stream=True)
    assert time.monotonic() - t0 < STALL / 2
    assert len(srv.requests) == FAST.max_retries + 1


# ---------------------------------------------------------------- bad values


@pytest.mark.parametrize("bad", [
    -1, 0, float("nan"), "10", True, [1], {"connect": -1}, {"first_byte": 0},
    {"idle": -0.5}, {"total": float("nan")}, {"bogus": 1}, {"connect": "1"},
    mf.Timeouts(connect=-5), mf.Timeouts(total=0),
])
def test_bad_timeouts_fail_before_the_network(bad) -> None:
    with pytest.raises(exc.InvalidParameterError, match="timeout"):
        mf.Model.chat_completion("openai/gpt-4o", base_url="http://127.0.0.1:9/v1",
                                 api_key="k", timeout=bad)
    model = mf.Model.chat_completion("openai/gpt-4o", base_url="http://127.0.0.1:9/v1",
                                     api_key="k")
    with pytest.raises(exc.InvalidParameterError, match="timeout"):
        model("hi", timeout=bad)


@pytest.mark.parametrize("good", [0.5, 3, {"connect": 1, "idle": None},
                                  mf.Timeouts(first_byte=float("inf"))])
def test_good_timeouts_are_accepted(srv, good) -> None:
    srv.enqueue(json_reply(200, completion("fine")))
    r, _ = call(openai(srv, timeout=good), False)
    assert r.consume() == "fine"
