"""Retries through the public model API, counted at the scripted server.

Connection failures and 408/409/429/5xx/529 are retried with exponential
backoff and full jitter, ``Retry-After`` (seconds, HTTP date) and
``retry-after-ms`` are honoured and capped, ``max_retries`` works per model and
per call, 4xx bad requests are never retried, and a stream is retried only
while nothing has reached the caller.
"""

from __future__ import annotations

import asyncio
import email.utils
import time

import pytest

import msgflux as mf
from msgflux import exceptions as exc
from msgflux._transport import retry as retry_mod
from scripted_server import ScriptedServer, drop, json_reply, reset, sse_reply
from test_faults_support import (
    DONE,
    FAST,
    NOT_RETRIED,
    RETRYABLE,
    chunk,
    completion,
    error_body,
    free_port,
    openai,
    response,
    responses,
    responses_events,
)

EXPECTED = {408: exc.ServerError, 409: exc.ConflictError, 429: exc.RateLimitError,
            500: exc.ServerError, 502: exc.ServerError, 503: exc.ServerError,
            504: exc.ServerError, 529: exc.OverloadedError, 400: exc.BadRequestError,
            401: exc.AuthenticationError, 403: exc.PermissionDeniedError,
            404: exc.NotFoundError, 422: exc.UnprocessableEntityError}


@pytest.fixture
def srv():
    with ScriptedServer() as s:
        yield s


def fail(status: int, **headers: str):
    return json_reply(status, error_body(status), headers=headers or None)


def run(model, *args, use_async: bool, **kwargs):
    if use_async:
        async def main():
            try:
                return await model.acall(*args, **kwargs)
            finally:
                await model.aclose()
        return asyncio.run(main())
    with model:
        return model(*args, **kwargs)


@pytest.fixture
def delays(monkeypatch):
    """Every wait the retry driver chose: (attempt, retry_after, delay)."""
    seen: list[tuple[int, float | None, float]] = []
    original = retry_mod.RetryPolicy.delay

    def spy(self, attempt, retry_after=None):
        value = original(self, attempt, retry_after)
        seen.append((attempt, retry_after, value))
        return value

    monkeypatch.setattr(retry_mod.RetryPolicy, "delay", spy)
    return seen


# ---------------------------------------------------------------- statuses


@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
@pytest.mark.parametrize("status", RETRYABLE)
def test_retryable_status_is_retried_then_succeeds(srv, status, use_async) -> None:
    srv.enqueue(fail(status), fail(status), json_reply(200, completion("fine")))
    r = run(openai(srv), "hi", use_async=use_async)
    assert r.consume() == "fine"
    assert len(srv.requests) == 3
    assert not srv.unexpected


@pytest.mark.parametrize("status", RETRYABLE)
def test_retryable_status_gives_up_after_max_retries(srv, status) -> None:
    srv.enqueue(*[fail(status) for _ in range(5)])
    with pytest.raises(EXPECTED[status]) as info:
        run(openai(srv), "hi", use_async=False)
    assert info.value.status == status and info.value.retryable
    assert len(srv.requests) == FAST.max_retries + 1
    assert srv.pending_replies == 1


@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
@pytest.mark.parametrize("status", NOT_RETRIED)
def test_bad_request_statuses_are_never_retried(srv, status, use_async) -> None:
    srv.enqueue(fail(status), json_reply(200, completion()))
    with pytest.raises(EXPECTED[status]) as info:
        run(openai(srv), "hi", use_async=use_async)
    assert info.value.status == status and not info.value.retryable
    assert len(srv.requests) == 1
    assert srv.pending_replies == 1


# ---------------------------------------------------------------- connection failures


@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
def test_dropped_and_reset_connections_are_retried(srv, use_async) -> None:
    srv.enqueue(drop(), reset(), json_reply(200, completion("after faults")))
    r = run(openai(srv), "hi", use_async=use_async)
    assert r.consume() == "after faults"
    assert len(srv.requests) == 3
    assert srv.connections == 3  # each retry on a fresh connection


@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
def test_response_cut_mid_body_is_retried(srv, use_async) -> None:
    srv.enqueue(json_reply(200, completion("x" * 200)).drop_after(120),
                json_reply(200, completion("whole")))
    assert run(openai(srv), "hi", use_async=use_async).consume() == "whole"
    assert len(srv.requests) == 2


@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
def test_connection_refused_is_retried_then_raised(delays, use_async) -> None:
    port = free_port()
    model = mf.Model.chat_completion("openai/gpt-4o", base_url=f"http://127.0.0.1:{port}/v1",
                                     api_key="sk-test", max_retries=FAST)
    with pytest.raises(exc.APIConnectionError, match="refused") as info:
        run(model, "hi", use_async=use_async)
    assert info.value.retryable
    assert [d[0] for d in delays] == [0, 1, 2]  # three waits: four attempts


# ---------------------------------------------------------------- backoff


def test_backoff_is_exponential_with_full_jitter(srv, monkeypatch) -> None:
    ceilings: list[tuple[float, float]] = []
    uniform = retry_mod.random.uniform

    def spy(a: float, b: float) -> float:
        ceilings.append((a, b))
        return uniform(a, b)

    monkeypatch.setattr(retry_mod.random, "uniform", spy)
    policy = mf.RetryPolicy(max_retries=5, backoff_base=0.001, backoff_max=0.004)
    srv.enqueue(*[fail(503) for _ in range(5)], json_reply(200, completion()))
    run(openai(srv, max_retries=policy), "hi", use_async=False)
    assert ceilings == [(0.0, 0.001), (0.0, 0.002), (0.0, 0.004), (0.0, 0.004), (0.0, 0.004)]
    assert len(srv.requests) == 6


def test_jitter_spreads_waits_over_the_whole_interval() -> None:
    policy = mf.RetryPolicy(backoff_base=1.0, backoff_max=8.0)
    waits = [policy.delay(2) for _ in range(400)]
    assert all(0.0 <= w <= 4.0 for w in waits)
    assert min(waits) < 0.5 and max(waits) > 3.5  # full jitter, not equal jitter


# ---------------------------------------------------------------- Retry-After


@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
def test_retry_after_ms_is_honoured(srv, delays, use_async) -> None:
    policy = mf.RetryPolicy(max_retries=1, retry_after_max=5.0)
    srv.enqueue(fail(429, **{"retry-after-ms": "150"}), json_reply(200, completion()))
    t0 = time.monotonic()
    run(openai(srv, max_retries=policy), "hi", use_async=use_async)
    assert time.monotonic() - t0 >= 0.15
    assert delays == [(0, 0.15, 0.15)]
    assert len(srv.requests) == 2


def test_retry_after_seconds_is_honoured_and_capped(srv, delays) -> None:
    srv.enqueue(fail(503, **{"Retry-After": "30"}), json_reply(200, completion()))
    t0 = time.monotonic()
    run(openai(srv), "hi", use_async=False)  # FAST caps Retry-After at 0.05 s
    assert time.monotonic() - t0 < 15  # far from the 30 s asked for
    assert delays == [(0, 30.0, FAST.retry_after_max)]


def test_retry_after_seconds_is_waited_for(srv) -> None:
    policy = mf.RetryPolicy(max_retries=1, retry_after_max=5.0)
    srv.enqueue(fail(503, **{"Retry-After": "0.3"}), json_reply(200, completion()))
    t0 = time.monotonic()
    run(openai(srv, max_retries=policy), "hi", use_async=False)
    assert time.monotonic() - t0 >= 0.3


def test_retry_after_http_date_is_honoured_and_capped(srv, delays) -> None:
    when = email.utils.formatdate(time.time() + 30, usegmt=True)
    srv.enqueue(fail(429, **{"Retry-After": when}), json_reply(200, completion()))
    run(openai(srv), "hi", use_async=False)
    [(_attempt, hint, wait)] = delays
    assert 25 < hint <= 31 and wait == FAST.retry_after_max


def test_retry_after_in_the_past_means_now(srv, delays) -> None:
    when = email.utils.formatdate(time.time() - 3600, usegmt=True)
    srv.enqueue(fail(503, **{"Retry-After": when}), json_reply(200, completion()))
    run(openai(srv), "hi", use_async=False)
    assert delays == [(0, 0.0, 0.0)]


def test_retry_after_is_on_the_error_when_retries_run_out(srv) -> None:
    srv.enqueue(fail(429, **{"Retry-After": "7"}))
    with pytest.raises(exc.RateLimitError) as info:
        run(openai(srv, max_retries=0), "hi", use_async=False)
    assert info.value.retry_after == 7.0


def test_garbage_retry_after_falls_back_to_backoff(srv, delays) -> None:
    srv.enqueue(fail(503, **{"Retry-After": "soon-ish", "retry-after-ms": "-4"}),
                json_reply(200, completion()))
    run(openai(srv), "hi", use_async=False)
    [(_attempt, hint, wait)] = delays
    assert hint is None and 0 <= wait <= FAST.backoff_base


# ---------------------------------------------------------------- max_retries


def test_max_retries_per_model(srv) -> None:
    srv.enqueue(*[fail(503, **{"retry-after-ms": "0"}) for _ in range(9)])
    with pytest.raises(exc.ServerError):
        run(openai(srv, max_retries=5), "hi", use_async=False)
    assert len(srv.requests) == 6


def test_default_is_two_retries(srv) -> None:
    srv.enqueue(*[fail(503, **{"retry-after-ms": "0"}) for _ in range(5)])
    model = mf.Model.chat_completion("openai/gpt-4o", base_url=srv.url + "/v1", api_key="k")
    with pytest.raises(exc.ServerError):
        run(model, "hi", use_async=False)
    assert len(srv.requests) == 3


@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
def test_max_retries_per_call_overrides_the_model(srv, use_async) -> None:
    srv.enqueue(*[fail(503, **{"retry-after-ms": "0"}) for _ in range(9)])
    with pytest.raises(exc.ServerError):
        run(openai(srv, max_retries=4), "hi", use_async=use_async, max_retries=0)
    assert len(srv.requests) == 1
    with pytest.raises(exc.ServerError):
        run(openai(srv, max_retries=0), "hi", use_async=use_async, max_retries=2)
    assert len(srv.requests) == 1 + 3
    with pytest.raises(exc.ServerError):
        run(openai(srv, max_retries=0), "hi", use_async=use_async,
            max_retries=mf.RetryPolicy(max_retries=1, backoff_base=0.001))
    assert len(srv.requests) == 4 + 2


@pytest.mark.parametrize("bad", [-1, 1.5, "3", True, mf.RetryPolicy(max_retries=-1),
                                 mf.RetryPolicy(backoff_base=float("nan")), {"max_retries": "x"}])
def test_bad_max_retries_fails_before_the_network(bad) -> None:
    with pytest.raises(exc.InvalidParameterError, match="max_retries"):
        mf.Model.chat_completion("openai/gpt-4o", base_url="http://127.0.0.1:9/v1",
                                 api_key="k", max_retries=bad)
    model = mf.Model.chat_completion("openai/gpt-4o", base_url="http://127.0.0.1:9/v1",
                                     api_key="k")
    with pytest.raises(exc.InvalidParameterError, match="max_retries"):
        model("hi", max_retries=bad)


def test_retry_policy_survives_serialize_round_trip(monkeypatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-env")  # serialize() never holds the key
    policy = mf.RetryPolicy(max_retries=4, backoff_base=0.25)
    model = mf.Model.chat_completion("openai/gpt-4o", base_url="http://127.0.0.1:9/v1",
                                     api_key="k", max_retries=policy)
    state = model.serialize()
    import json

    json.dumps(state)
    again = mf.Model.from_serialized(state)
    assert again.prepare("hi").policy == policy


# ---------------------------------------------------------------- streams


def stream_of(*texts: str, done: bool = True):
    events = [chunk(role="assistant")] + [chunk(t) for t in texts] + [chunk(finish="stop")]
    return sse_reply(events + ([DONE] if done else []))


def read_stream(model, use_async: bool, **kwargs) -> tuple[list[str], BaseException | None]:
    got: list[str] = []
    if use_async:
        async def main():
            try:
                r = await model.acall("hi", stream=True, **kwargs)
                async for c in r.consume():
                    got.append(c)
            finally:
                await model.aclose()
        try:
            asyncio.run(main())
        except Exception as e:
            return got, e
        return got, None
    try:
        with model:
            r = model("hi", stream=True, **kwargs)
            for c in r.consume():
                got.append(c)
    except Exception as e:
        return got, e
    return got, None


def header_len(reply) -> int:
    return len(reply.steps[0][1])


@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
def test_stream_failures_before_the_first_chunk_are_retried(srv, use_async) -> None:
    role_only = sse_reply([chunk(role="assistant")])
    cut_after_role = stream_of("never").drop_after(header_len(role_only) + 60)
    srv.enqueue(
        fail(503),                                      # status error
        drop(),                                          # no response at all
        stream_of("x").drop_after(header_len(stream_of("x"))),  # headers, then nothing
        cut_after_role,                                  # only a role chunk arrived
        stream_of("Hel", "lo"),
    )
    model = openai(srv, max_retries=mf.RetryPolicy(max_retries=4, backoff_base=0.001))
    got, error = read_stream(model, use_async)
    assert error is None, error
    assert got == ["Hel", "lo"]
    assert len(srv.requests) == 5


@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
def test_in_band_error_before_the_first_chunk_is_retried(srv, use_async) -> None:
    srv.enqueue(sse_reply([chunk(role="assistant"),
                           {"error": {"message": "overloaded", "type": "server_error"}}]),
                stream_of("ok"))
    got, error = read_stream(openai(srv), use_async)
    assert error is None and got == ["ok"]
    assert len(srv.requests) == 2


@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
def test_stream_bad_request_is_not_retried(srv, use_async) -> None:
    srv.enqueue(fail(400), stream_of("never"))
    got, error = read_stream(openai(srv), use_async)
    assert isinstance(error, exc.BadRequestError) and got == []
    assert len(srv.requests) == 1


@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
def test_stream_is_never_retried_after_the_first_chunk(srv, use_async) -> None:
    full = stream_of("Hello", " wor", "ld")
    # Cut after the first text chunk ("Hello") but before the rest.
    body = b"".join(s[1] for s in full.steps if s[0] == "write")
    cut = body.index(b"Hello") + 40
    srv.enqueue(full.drop_after(cut), stream_of("second", "try"))
    got, error = read_stream(openai(srv), use_async)
    assert isinstance(error, exc.StreamError), error
    assert got == ["Hello"] and error.partial_text == "Hello"
    assert isinstance(error.__cause__, exc.APIConnectionError)
    assert len(srv.requests) == 1 and srv.pending_replies == 1


# ---------------------------------------------------------------- other dialects


ANTHROPIC_OK = {"id": "m", "type": "message", "role": "assistant", "model": "claude-x",
                "content": [{"type": "text", "text": "fine"}], "stop_reason": "end_turn",
                "usage": {"input_tokens": 1, "output_tokens": 1}}
GOOGLE_OK = {"candidates": [{"content": {"role": "model", "parts": [{"text": "fine"}]},
                             "finishReason": "STOP"}]}


OK = {"anthropic": ANTHROPIC_OK, "google": GOOGLE_OK, "openai_responses": response("fine")}


def other(dialect: str, srv):
    if dialect == "anthropic":
        return mf.Model.chat_completion("anthropic/claude-x", base_url=srv.url, api_key="k",
                                        max_tokens=16, max_retries=FAST)
    if dialect == "openai_responses":
        return responses(srv)
    return mf.Model.chat_completion("google/gemini-2.0-flash", base_url=srv.url, api_key="k",
                                    max_retries=FAST)


@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
@pytest.mark.parametrize(("dialect", "status", "cls"), [
    ("anthropic", 529, exc.OverloadedError), ("anthropic", 429, exc.RateLimitError),
    ("google", 503, exc.ServerError), ("google", 429, exc.RateLimitError),
    ("openai_responses", 503, exc.ServerError), ("openai_responses", 429, exc.RateLimitError)])
def test_other_dialects_retry_then_succeed(srv, use_async, dialect, status, cls) -> None:
    ok = OK[dialect]
    srv.enqueue(json_reply(status, {"type": "error", "error": {"type": "overloaded_error"
                                                               if status == 529 else "x",
                                                               "message": "busy"}}),
                json_reply(200, ok))
    assert run(other(dialect, srv), "hi", use_async=use_async).consume() == "fine"
    assert len(srv.requests) == 2
    srv.enqueue(*[json_reply(status, {"error": {"message": "busy"}}) for _ in range(4)])
    with pytest.raises(cls):
        run(other(dialect, srv), "hi", use_async=use_async)
    assert len(srv.requests) == 2 + 4


@pytest.mark.parametrize("dialect", ["anthropic", "google", "openai_responses"])
@pytest.mark.parametrize("status", NOT_RETRIED)
def test_other_dialects_never_retry_bad_requests(srv, dialect, status) -> None:
    srv.enqueue(json_reply(status, {"error": {"message": "no"}}), json_reply(200, {}))
    with pytest.raises(EXPECTED[status]):
        run(other(dialect, srv), "hi", use_async=False)
    assert len(srv.requests) == 1


def test_deferred_stream_inside_a_loop_is_retried_before_its_first_chunk(srv) -> None:
    # model(..., stream=True) inside a running loop starts at iteration: still retried.
    srv.enqueue(fail(503), drop(), stream_of("o", "k"))
    model = openai(srv)

    async def main() -> list[str]:
        r = model("hi", stream=True)
        assert not srv.requests  # nothing sent at the call
        try:
            return [c async for c in r.consume()]
        finally:
            await model.aclose()

    assert asyncio.run(main()) == ["o", "k"]
    assert len(srv.requests) == 3


@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
def test_responses_stream_retried_before_its_first_chunk_and_never_after(srv, delays,
                                                                          use_async) -> None:
    """429 with Retry-After, a dropped connection and an error event before any text are
    retried; a stream cut after its first text is not."""
    error_first = [*responses_events(completed=False),
                   'event: error\ndata: {"type": "error", "code": "server_error", '
                   '"message": "x"}\n\n']
    full = sse_reply(responses_events("Hello", " wor", "ld"))
    body = b"".join(s[1] for s in full.steps if s[0] == "write")
    srv.enqueue(fail(429, **{"retry-after-ms": "7"}), drop(), sse_reply(error_first),
                full.drop_after(body.index(b"Hello") + 40), sse_reply(responses_events("no")))
    model = responses(srv, max_retries=mf.RetryPolicy(max_retries=4, backoff_base=0.001))
    got, error = read_stream(model, use_async)
    assert isinstance(error, exc.StreamError), error
    assert got == ["Hello"] and error.partial_text == "Hello"
    assert len(srv.requests) == 4 and srv.pending_replies == 1
    assert delays[0][1] == pytest.approx(0.007)  # the server's Retry-After was honoured
    assert all(r.path == "/v1/responses" for r in srv.requests)
