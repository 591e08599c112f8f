"""Prompt caching through the public API, checked on the bytes sent to the scripted
server and on the providers' documented usage payloads: Anthropic ``cache_control``
breakpoints (explicit and automatic, TTLs, the 4-breakpoint limit), OpenAI's
``prompt_cache_key``/``prompt_cache_retention``, Gemini's implicit cache."""

from __future__ import annotations

import pytest

import msgflux as mf
from msgflux import exceptions as exc
from scripted_server import ScriptedServer, json_reply, sse_reply
from test_faults_support import anthropic, anthropic_events, completion, openai

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Weather of a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}
TIME = {"type": "function", "function": {
    "name": "get_time", "parameters": {"type": "object", "properties": {}}}}
EPHEMERAL = {"type": "ephemeral"}
HOUR = {"type": "ephemeral", "ttl": "1h"}


@pytest.fixture
def srv():
    with ScriptedServer() as s:
        yield s


def claude_message(usage: dict) -> dict:
    """A Messages response; ``usage`` as Anthropic's prompt-caching docs show it."""
    return {"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-x",
            "content": [{"type": "text", "text": "ok"}], "stop_reason": "end_turn",
            "usage": usage}


def sent(srv) -> dict:
    return srv.requests[-1].json()


def marks(body: dict) -> list:
    """Every cache_control in prompt order: tools, system, messages."""
    blocks = list(body.get("tools", []))
    system = body.get("system")
    blocks += system if isinstance(system, list) else []
    for message in body["messages"]:
        content = message["content"]
        blocks += content if isinstance(content, list) else []
    return [b["cache_control"] for b in blocks if "cache_control" in b]


# ---------------------------------------------------------------- Anthropic


def test_explicit_breakpoints_on_system_part_and_tool(srv) -> None:
    srv.enqueue(json_reply(200, claude_message({"input_tokens": 5, "output_tokens": 1})))
    tool = {**WEATHER, "cache_control": HOUR}
    messages = [
        {"role": "system", "content": "You are terse.", "cache_control": HOUR},
        {"role": "user", "content": [
            {"type": "text", "text": "A long document...", "cache_control": EPHEMERAL},
            {"type": "text", "text": "What does it say?"}]},
    ]
    with anthropic(srv) as model:
        model(messages, tool_schemas=[tool])
    body = sent(srv)
    assert body["tools"][0]["cache_control"] == HOUR
    assert body["system"] == [{"type": "text", "text": "You are terse.", "cache_control": HOUR}]
    parts = body["messages"][0]["content"]
    assert parts[0]["cache_control"] == EPHEMERAL and "cache_control" not in parts[1]
    assert marks(body) == [HOUR, HOUR, EPHEMERAL]
    beta = srv.requests[-1].headers["anthropic-beta"]
    assert "extended-cache-ttl-2025-04-11" in beta.split(",")


def test_no_cache_no_cache_control(srv) -> None:
    srv.enqueue(json_reply(200, claude_message({"input_tokens": 5, "output_tokens": 1})))
    with anthropic(srv) as model:
        model("hi", system_prompt="be brief")
    body = sent(srv)
    assert marks(body) == [] and body["system"] == "be brief"
    assert body["messages"][0]["content"] == "hi"
    assert "anthropic-beta" not in srv.requests[-1].headers


def test_automatic_policy_caches_tools_system_and_history(srv) -> None:
    srv.enqueue(json_reply(200, claude_message({"input_tokens": 5, "output_tokens": 1})))
    srv.enqueue(json_reply(200, claude_message({"input_tokens": 5, "output_tokens": 1})))
    history = [{"role": "user", "content": "first question"},
               {"role": "assistant", "content": "first answer"},
               {"role": "user", "content": "second question"}]
    with anthropic(srv, prompt_cache=True) as model:
        model(history, system_prompt="rules", tool_schemas=[WEATHER, TIME])
        body = sent(srv)
        assert marks(body) == [EPHEMERAL] * 3
        assert "cache_control" in body["tools"][-1] and "cache_control" not in body["tools"][0]
        assert body["system"][-1]["cache_control"] == EPHEMERAL
        assert body["messages"][-1]["content"][-1]["cache_control"] == EPHEMERAL
        # one question, no history yet: only the stable parts are marked; 1h per call
        model("a question", system_prompt="rules", prompt_cache="1h")
    body = sent(srv)
    assert marks(body) == [HOUR] and body["messages"][0]["content"] == "a question"


def test_automatic_breakpoints_stay_within_the_limit(srv) -> None:
    srv.enqueue(json_reply(200, claude_message({"input_tokens": 5, "output_tokens": 1})))
    messages = [{"role": "system", "content": "rules", "cache_control": EPHEMERAL},
                {"role": "user", "content": "q1", "cache_control": EPHEMERAL},
                {"role": "assistant", "content": "a1", "cache_control": EPHEMERAL},
                {"role": "user", "content": "q2"}]
    with anthropic(srv, prompt_cache=True) as model:
        model(messages, tool_schemas=[WEATHER])
    assert len(marks(sent(srv))) == 4  # three explicit, one automatic (the tools)


def test_more_than_four_breakpoints_fail_before_the_network(srv) -> None:
    messages = [{"role": "user", "content": f"q{i}", "cache_control": EPHEMERAL}
                if i % 2 == 0 else
                {"role": "assistant", "content": f"a{i}", "cache_control": EPHEMERAL}
                for i in range(5)]
    with anthropic(srv) as model, pytest.raises(exc.InvalidParameterError, match="at most 4"):
        model(messages)
    assert srv.requests == []


def test_an_hour_after_five_minutes_fails_before_the_network(srv) -> None:
    messages = [{"role": "system", "content": "rules", "cache_control": EPHEMERAL},
                {"role": "user", "content": "q", "cache_control": HOUR}]
    with anthropic(srv) as model, pytest.raises(exc.InvalidParameterError, match="1-hour"):
        model(messages)
    assert srv.requests == []


def test_cache_reads_and_writes_come_back_in_usage(srv) -> None:
    # The usage block of Anthropic's prompt-caching documentation.
    srv.enqueue(json_reply(200, claude_message({
        "input_tokens": 21, "cache_creation_input_tokens": 188086,
        "cache_read_input_tokens": 0, "output_tokens": 393,
        "cache_creation": {"ephemeral_5m_input_tokens": 0,
                           "ephemeral_1h_input_tokens": 188086}})))
    srv.enqueue(json_reply(200, claude_message({
        "input_tokens": 21, "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 188086, "output_tokens": 393})))
    with anthropic(srv) as model:
        first = model("hi").metadata.usage
        second = model("hi").metadata.usage
    assert (first.prompt_tokens, first.cache_write_tokens, first.cache_write_1h_tokens) == (
        21 + 188086, 188086, 188086)
    assert first.cached_tokens == 0 and first.completion_tokens == 393
    assert (second.prompt_tokens, second.cached_tokens) == (21 + 188086, 188086)
    assert "cache_write_1h_tokens" not in second


def test_a_stream_reports_cache_usage(srv) -> None:
    events = anthropic_events("Hel", "lo")
    events[0] = events[0].replace(
        '"usage": {"input_tokens": 3, "output_tokens": 0}',
        '"usage": {"input_tokens": 3, "output_tokens": 0, "cache_read_input_tokens": 1000, '
        '"cache_creation_input_tokens": 0}')
    srv.enqueue(sse_reply(events))
    with anthropic(srv) as model:
        response = model("hi", stream=True)
        assert "".join(response.consume()) == "Hello"
    usage = response.metadata.usage
    assert (usage.prompt_tokens, usage.cached_tokens, usage.completion_tokens) == (1003, 1000, 2)


def test_bad_cache_hints_fail_before_the_network(srv) -> None:
    with anthropic(srv) as model:
        for bad in ({"type": "persistent"}, "2h", 5):
            with pytest.raises(exc.MessageFormatError):
                model([{"role": "user", "content": "q", "cache_control": bad}])
        with pytest.raises(exc.MessageFormatError):
            model([{"role": "user", "content": "q"}],
                  tool_schemas=[{**WEATHER, "cache_control": "forever"}])
        for bad in ("10m", {"ttl": "2h"}, {"retention": "forever"}, 3, {"auto": "yes"}):
            with pytest.raises(exc.InvalidParameterError):
                model("q", prompt_cache=bad)
    assert srv.requests == []


# ---------------------------------------------------------------- OpenAI


def test_openai_routing_key_and_retention(srv) -> None:
    srv.enqueue(json_reply(200, completion("ok")))
    srv.enqueue(json_reply(200, completion("ok")))
    messages = [{"role": "system", "content": "rules", "cache_control": EPHEMERAL},
                {"role": "user", "content": "q"}]
    with openai(srv, prompt_cache={"key": "user-42", "retention": "24h"}) as model:
        model(messages, tool_schemas=[{**WEATHER, "cache_control": EPHEMERAL}])
    body = sent(srv)
    assert (body["prompt_cache_key"], body["prompt_cache_retention"]) == ("user-42", "24h")
    assert "cache_control" not in repr(body)  # OpenAI caches on its own: no breakpoints
    with openai(srv, prompt_cache_retention="in_memory") as model:  # msgflux 0.5.1's name
        model("q")
    body = sent(srv)
    assert body["prompt_cache_retention"] == "in_memory" and "prompt_cache_key" not in body


def test_openai_cached_tokens_in_usage(srv) -> None:
    body = completion("ok")
    body["usage"] = {"prompt_tokens": 2006, "completion_tokens": 300, "total_tokens": 2306,
                     "prompt_tokens_details": {"cached_tokens": 1920},
                     "completion_tokens_details": {"reasoning_tokens": 0}}
    srv.enqueue(json_reply(200, body))
    with openai(srv) as model:
        usage = model("q").metadata.usage
    assert (usage.prompt_tokens, usage.cached_tokens) == (2006, 1920)


# ---------------------------------------------------------------- Gemini


def test_gemini_implicit_cache_in_usage(srv) -> None:
    srv.enqueue(json_reply(200, {
        "candidates": [{"content": {"role": "model", "parts": [{"text": "ok"}]},
                        "finishReason": "STOP"}],
        "usageMetadata": {"promptTokenCount": 2006, "candidatesTokenCount": 300,
                          "totalTokenCount": 2306, "cachedContentTokenCount": 1920},
        "modelVersion": "gemini-2.5-flash"}))
    model = mf.Model.chat_completion("google/gemini-2.5-flash", base_url=srv.url,
                                     api_key="g-test", prompt_cache=True)
    with model:
        usage = model([{"role": "user", "content": "q", "cache_control": EPHEMERAL}]
                      ).metadata.usage
    assert (usage.prompt_tokens, usage.cached_tokens, usage.completion_tokens) == (
        2006, 1920, 300)
    assert "cache_control" not in repr(sent(srv))


def test_prompt_cache_is_serialized_without_objects(srv) -> None:
    model = openai(srv, prompt_cache=mf.PromptCache(auto=True, ttl="1h", key="k"))
    state = model.serialize()["state"]
    assert state["prompt_cache"] == {"auto": True, "ttl": "1h", "key": "k", "retention": None}
