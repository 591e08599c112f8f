"""Observation through the public API: logging records and hook events, asserted on
their structured facts (never on wording), against the scripted loopback server."""

from __future__ import annotations

import asyncio
import logging

import pytest

import msgflux as mf
import msgflux.transport
from msgflux import exceptions as exc
from msgflux.observe import (
    AttemptFinished,
    CallFailed,
    GatewayFallback,
    RequestStarted,
    ResponseReceived,
    RetryScheduled,
)
from scripted_server import ScriptedServer, json_reply, sse_reply
from test_faults_streams import after
from test_faults_support import DONE, chunk, completion, error_body, openai

KEY = "sk-observe-secret-1234567890"
PROMPT = "my very private prompt"


@pytest.fixture
def srv():
    with ScriptedServer() as s:
        yield s


@pytest.fixture
def events():
    """Every event of every call, through a global hook."""
    seen: list = []
    mf.observe.add_hook(seen.append)
    yield seen
    mf.observe.remove_hook(seen.append)


@pytest.fixture(autouse=True)
def _no_content_capture():
    yield
    mf.observe.configure(capture_content=False)


def _events_of(caplog, logger: str = "msgflux.call") -> list:
    return [r for r in caplog.records if r.name == logger]


def _usage_reply(text: str = "hi", prompt: int = 5, out: int = 1):
    body = completion(text)
    body["usage"] = {"prompt_tokens": prompt, "completion_tokens": out,
                     "total_tokens": prompt + out}
    return json_reply(200, body)


# ---------------------------------------------------------------- logging


def test_nobody_listens_nothing_is_built(srv, caplog) -> None:
    caplog.set_level(logging.WARNING, logger="msgflux")
    model = openai(srv)
    request = model.prepare("hi").request
    assert model._wiring.observe(request, mf.RetryPolicy()) is None
    caplog.set_level(logging.INFO, logger="msgflux")
    assert model._wiring.observe(request, mf.RetryPolicy()) is not None


def test_each_attempt_and_each_retry_is_a_record(srv, caplog) -> None:
    srv.enqueue(json_reply(429, error_body(429), headers={"retry-after": "0"}))
    srv.enqueue(_usage_reply(prompt=7, out=2))
    caplog.set_level(logging.DEBUG, logger="msgflux")
    with openai(srv, api_key=KEY) as model:
        response = model(PROMPT)
    assert response.metadata.attempts == 2
    records = _events_of(caplog)
    kinds = [(type(r.msgflux_event).__name__, r.levelno) for r in records]
    assert kinds == [("AttemptFinished", logging.DEBUG), ("RetryScheduled", logging.INFO),
                     ("AttemptFinished", logging.DEBUG), ("ResponseReceived", logging.DEBUG)]
    failed, retry, answered, done = (r.msgflux_event for r in records)
    assert (failed.attempt, failed.max_attempts, failed.status, failed.error) == (
        1, 4, 429, "RateLimitError")
    assert (retry.retry, retry.max_retries, retry.reason, retry.status, retry.retry_after) == (
        1, 3, "RateLimitError", 429, 0.0)
    assert retry.delay == 0.0
    assert (answered.attempt, answered.status, answered.error) == (2, 200, None)
    assert answered.usage.prompt_tokens == 7 and answered.usage.completion_tokens == 2
    assert answered.first_byte is not None and 0 <= answered.first_byte <= answered.total
    assert {failed.provider, answered.model} == {"openai", "gpt-4o"}
    assert done.attempts == 2 and done.usage.total_tokens == 9 and done.finish_reason == "stop"
    assert len({r.msgflux_event.call_id for r in records}) == 1
    for record in caplog.records:  # never a key, never the prompt (content is opt-in)
        text = record.getMessage()
        assert KEY not in text and PROMPT not in text


def test_a_fresh_connection_reports_its_connect_time(srv, caplog) -> None:
    srv.enqueue(_usage_reply())
    srv.enqueue(_usage_reply())
    caplog.set_level(logging.DEBUG, logger="msgflux")
    with openai(srv) as model:
        model("a")
        model("b")
    first, second = (r.msgflux_event for r in _events_of(caplog)
                     if isinstance(r.msgflux_event, AttemptFinished))
    assert first.connect is not None and first.connect <= first.first_byte
    assert second.connect is None  # the pooled connection was reused


def test_content_only_when_the_caller_opts_in(srv, caplog) -> None:
    mf.observe.configure(capture_content=True)
    srv.enqueue(json_reply(200, completion("the answer")))
    caplog.set_level(logging.DEBUG, logger="msgflux")
    with openai(srv, api_key=KEY) as model:
        model(PROMPT)
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert PROMPT in text and "the answer" in text and KEY not in text
    started = [r.msgflux_event for r in _events_of(caplog)
               if isinstance(r.msgflux_event, RequestStarted)]
    assert started[0].messages[0].content == PROMPT
    assert started[0].endpoint == "POST /v1/chat/completions"


def test_configure_is_checked() -> None:
    with pytest.raises(exc.InvalidParameterError):
        mf.observe.configure(capture_content="yes")


# ---------------------------------------------------------------- hooks


def test_hooks_per_model_and_global(srv, events) -> None:
    mine: list = []
    srv.enqueue(json_reply(503, error_body(503)))
    srv.enqueue(_usage_reply())
    srv.enqueue(_usage_reply())
    with openai(srv, hooks=[mine.append]) as model, openai(srv) as other:
        model("hi")
        other("hi")
    assert [type(e) for e in mine] == [RequestStarted, AttemptFinished, RetryScheduled,
                                       AttemptFinished, ResponseReceived]
    assert len(events) == len(mine) + 3  # the other model's start, attempt and answer
    assert {e.call_id for e in mine} != {e.call_id for e in events[len(mine):]}
    answer = mine[-1]
    assert answer.attempts == 2 and answer.cost is None and answer.output is None


def test_a_hook_that_raises_is_reported_and_the_call_goes_on(srv, caplog) -> None:
    def broken(event):
        raise RuntimeError("hook bug")

    srv.enqueue(json_reply(200, completion("fine")))
    caplog.set_level(logging.WARNING, logger="msgflux")
    with openai(srv, hooks=[broken]) as model:
        assert model("hi").consume() == "fine"
    reports = [r for r in caplog.records if r.name == "msgflux.observe"]
    assert reports and all(r.levelno == logging.WARNING for r in reports)
    assert reports[0].exc_info[0] is RuntimeError


def test_hooks_are_checked_before_the_network(srv) -> None:
    async def coroutine_hook(event):
        pass

    for bad in ([coroutine_hook], ["not callable"], 3):
        with pytest.raises(exc.InvalidParameterError):
            openai(srv, hooks=bad)
    with pytest.raises(exc.InvalidParameterError):
        mf.observe.add_hook(coroutine_hook)
    assert srv.requests == []
    assert "hooks" not in openai(srv, hooks=[print]).serialize()["state"]


def test_async_call_reports_the_same_events(srv, events) -> None:
    srv.enqueue(json_reply(500, error_body(500)))
    srv.enqueue(json_reply(500, error_body(500)))

    async def main():
        async with openai(srv, max_retries=mf.RetryPolicy(1, 0.001, 0.001)) as model:
            with pytest.raises(exc.ServerError) as caught:
                await model.acall("hi")
            return caught.value

    error = asyncio.run(main())
    assert [type(e) for e in events] == [RequestStarted, AttemptFinished, RetryScheduled,
                                         AttemptFinished, CallFailed]
    assert events[-1].error is error and events[-1].attempts == 2 and not events[-1].broken
    assert error.attempts == 2


# ---------------------------------------------------------------- streams


def _usage_chunk(prompt: int, out: int) -> dict:
    return {"id": "s1", "model": "m", "choices": [],
            "usage": {"prompt_tokens": prompt, "completion_tokens": out,
                      "total_tokens": prompt + out}}


def test_a_stream_reports_when_it_ends(srv, events) -> None:
    srv.enqueue(sse_reply([chunk("Hel"), chunk("lo", finish="stop"), _usage_chunk(4, 2), DONE]))
    with openai(srv) as model:
        response = model("hi", stream=True)
        assert not any(isinstance(e, ResponseReceived) for e in events)  # not ended yet
        assert "".join(response.consume()) == "Hello"
    attempt = next(e for e in events if isinstance(e, AttemptFinished))
    answer = events[-1]
    assert isinstance(answer, ResponseReceived) and answer.stream
    assert attempt.status == 200 and attempt.usage.total_tokens == 6
    assert attempt.first_byte is not None and attempt.total >= attempt.first_byte
    assert answer.usage.total_tokens == 6 and response.metadata.attempts == 1


@pytest.mark.parametrize("fault", ["no end marker", "connection dropped"])
def test_a_stream_that_breaks_midway_is_reported(srv, events, caplog, fault) -> None:
    if fault == "no end marker":
        srv.enqueue(sse_reply([chunk("Hel"), chunk("lo")]))
    else:
        reply = sse_reply([chunk("Hel"), chunk("lo"), chunk(" you", finish="stop"), DONE])
        srv.enqueue(reply.drop_after(after(reply, b'"lo"')))
    caplog.set_level(logging.WARNING, logger="msgflux")
    with openai(srv) as model:
        response = model("hi", stream=True)
        with pytest.raises(exc.StreamError) as caught:
            "".join(response.consume())
    failed = events[-1]
    assert isinstance(failed, CallFailed) and failed.broken and failed.error is caught.value
    assert caught.value.partial_text.startswith("Hel")
    warnings = [r for r in _events_of(caplog) if r.levelno == logging.WARNING]
    assert [type(r.msgflux_event) for r in warnings] == [CallFailed]


# ---------------------------------------------------------------- gateway


def test_a_gateway_fallback_is_reported_and_attempts_add_up(srv, events, caplog) -> None:
    with ScriptedServer() as down:
        for _ in range(2):
            down.enqueue(json_reply(503, error_body(503)))
        srv.enqueue(json_reply(200, completion("from the second")))
        first = openai(down, max_retries=mf.RetryPolicy(1, 0.001, 0.001))
        second = mf.Model.chat_completion("openai/gpt-4o-mini", base_url=srv.url + "/v1",
                                          api_key="sk-test")
        caplog.set_level(logging.WARNING, logger="msgflux")
        gateway = mf.ModelGateway([first, second])
        response = gateway("hi")
        gateway.close()
    assert response.consume() == "from the second"
    assert response.metadata.attempts == 3
    fallback = [e for e in events if isinstance(e, GatewayFallback)]
    assert len(fallback) == 1
    assert (fallback[0].model, fallback[0].next_model, fallback[0].error_type) == (
        "gpt-4o", "openai/gpt-4o-mini", "ServerError")
    records = [r for r in caplog.records if r.name == "msgflux.gateway"]
    assert [r.levelno for r in records] == [logging.WARNING]
    assert isinstance(records[0].msgflux_event, GatewayFallback)


def test_a_transport_of_your_own_need_not_time_its_attempts(events) -> None:
    class Canned:  # the Transport protocol, without timings
        def send(self, request, timeouts=None):
            import json

            return mf.transport.HttpResponse(200, [], json.dumps(completion("ok")).encode())

        def open_stream(self, request, timeouts=None):
            raise AssertionError("not streamed")

        def close(self) -> None:
            pass

    model = mf.Model.chat_completion("openai/gpt-4o", api_key="sk-test", transport=Canned())
    assert model("hi").consume() == "ok"
    attempt = next(e for e in events if isinstance(e, AttemptFinished))
    assert (attempt.status, attempt.connect, attempt.first_byte) == (200, None, None)
    assert attempt.total >= 0
