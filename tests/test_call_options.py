"""Per-call options: every sampling option of the constructor, on each call, checked the
same way, overriding the model's value for that call only, and part of the cache key."""

from __future__ import annotations

import asyncio
import json

import pytest

import msgflux as mf
from msgflux import exceptions as exc
from msgflux.models.cache import cache_key
from msgflux.models.request import Usage
from scripted_server import ScriptedServer, json_reply

UNUSED = "http://127.0.0.1:9/v1"  # discard port: nothing is ever sent there


def model(**kwargs):
    return mf.Model.chat_completion("openai/gpt-4o", base_url=UNUSED, api_key="sk-test",
                                    **kwargs)


def body(call) -> dict:
    return json.loads(call.http_request().body)


def test_call_options_override_the_models_for_that_call_only() -> None:
    m = model(temperature=0.7, max_tokens=100, top_p=0.9, seed=1)
    call = m.prepare("hi", temperature=0.1, max_tokens=5, stop=["\n"], seed=7,
                     reasoning_effort="low")
    sent = body(call)
    assert sent["temperature"] == 0.1 and sent["max_completion_tokens"] == 5
    assert sent["top_p"] == 0.9  # not overridden: the model's
    assert sent["stop"] == ["\n"] and sent["seed"] == 7 and sent["reasoning_effort"] == "low"
    again = body(m.prepare("hi"))
    assert again["temperature"] == 0.7 and again["max_completion_tokens"] == 100
    assert "stop" not in again


def test_parallel_tool_calls_per_call() -> None:
    tool = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}
    sent = body(model(parallel_tool_calls=True).prepare("hi", tool_schemas=[tool],
                                                        parallel_tool_calls=False))
    assert sent["parallel_tool_calls"] is False


def test_none_means_the_models_value() -> None:
    assert body(model(temperature=0.3).prepare("hi", temperature=None))["temperature"] == 0.3


@pytest.mark.parametrize(("name", "value", "match"), [
    ("temperature", 3, "between 0 and 2"),
    ("temperature", float("nan"), "between 0 and 2"),
    ("top_p", -0.1, "between 0 and 1"),
    ("max_tokens", 0, "int >= 1"),
    ("max_tokens", True, "int >= 1"),
    ("seed", "7", "int"),
    ("stop", [1], "list of str"),
    ("reasoning_effort", 5, "a str"),
    ("parallel_tool_calls", "yes", "True or False"),
])
def test_bad_call_options_fail_as_at_construction(name, value, match) -> None:
    with pytest.raises(exc.InvalidParameterError, match=match):
        model()("hi", **{name: value})
    with pytest.raises(exc.InvalidParameterError, match=match):
        model(**{name: value})


def test_unknown_keywords_list_what_a_call_takes() -> None:
    m = model()
    with pytest.raises(exc.InvalidParameterError) as info:
        m("hi", temprature=0.2)
    message = str(info.value)
    assert "'temprature'" in message
    for accepted in ("temperature", "max_tokens", "generation_schema", "run_tools"):
        assert accepted in message
    with pytest.raises(exc.InvalidParameterError, match="'temprature'"):
        asyncio.run(m.acall("hi", temprature=0.2))
    # prepare() takes no tool-loop keywords: they are not in its list.
    with pytest.raises(exc.InvalidParameterError) as info:
        m.prepare("hi", run_tools=True)
    assert "run_tools" not in str(info.value).split("Accepted:")[1]


def test_call_options_are_part_of_the_cache_key() -> None:
    m = model(enable_cache=True)
    keys = {cache_key("openai", UNUSED, m.prepare("hi", **kw).request, None)
            for kw in ({}, {"temperature": 0.1}, {"temperature": 0.2}, {"max_tokens": 3},
                       {"stop": "x"}, {"seed": 1})}
    assert len(keys) == 6


def test_a_cached_answer_is_not_reused_for_other_options() -> None:
    reply = {"id": "c", "model": "gpt-4o", "choices": [
        {"index": 0, "message": {"role": "assistant", "content": "hello"},
         "finish_reason": "stop"}]}
    with ScriptedServer() as srv:
        m = mf.Model.chat_completion("openai/gpt-4o", base_url=f"{srv.url}/v1", api_key="k",
                                     enable_cache=True)
        for _ in range(2):
            srv.enqueue(json_reply(200, reply))
        m("hi", temperature=0.1)
        m("hi", temperature=0.1)  # a hit
        m("hi", temperature=0.2)  # another key
        assert len(srv.requests) == 2
        assert [r.json()["temperature"] for r in srv.requests] == [0.1, 0.2]


def test_usage_plus_sums_and_keeps_unknown_details_unknown() -> None:
    a = Usage(10, 5, 15, cached_tokens=2)
    b = Usage(1, 1, 2, reasoning_tokens=1)
    total = a.plus(b)
    assert (total.prompt_tokens, total.completion_tokens, total.total_tokens) == (11, 6, 17)
    assert (total.cached_tokens, total.reasoning_tokens, total.cache_write_tokens) == (2, 1, None)
    assert a.plus(None) == a


def test_call_options_reach_the_real_server(llama_server) -> None:
    m = mf.Model.chat_completion("llamacpp-server/x", base_url=llama_server.base_url,
                                 max_tokens=40, temperature=0)
    short = m("Tell me a long story about a dragon.", max_tokens=3)
    assert short.metadata.finish_reason == "length"
    assert short.metadata.usage.completion_tokens <= 3
    r = asyncio.run(m.acall("Count from 1 to 20 with commas.", stop=[","], max_tokens=30))
    assert "," not in r.consume()  # the server stopped before any stop sequence
    assert r.metadata.usage.completion_tokens <= 30
