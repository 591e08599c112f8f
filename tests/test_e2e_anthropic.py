"""The anthropic provider end to end against llama.cpp's real ``/v1/messages``.

``anthropic/claude-3-5-sonnet-20241022`` is pointed at the session's llama.cpp
server (SmolLM2-135M), which speaks the Messages API, so every request goes
through the anthropic dialect, our transport and a real server. The small
model's wording is never asserted: only types, shapes and response types.
Greedy decoding (temperature 0) keeps the tool-call prompts deterministic.

What llama.cpp's ``/v1/messages`` does not do, and so is not covered here:
``output_config``/``output_format`` (ignored: structured output is tested on
the forced-tool path that Claude 3.5 uses), ``thinking`` (ignored),
``tool_choice: none`` (ignored), images (HTTP 500 without a vision projector).
It also echoes a prefill in whole (non-streamed) replies, which Anthropic
never does; see ``test_llamacpp_echoes_prefill_in_whole_replies``.
"""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
import pytest

import msgflux as mf
from msgflux import exceptions as exc
from msgflux.models.tool_calls import ToolCallAggregator

MODEL = "anthropic/claude-3-5-sonnet-20241022"
WEATHER_TOOL = [{
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather for a city",
        "parameters": {
            "type": "object",
            "properties": {"location": {"type": "string"}},
            "required": ["location"],
        },
    },
}]
PARIS = [{"role": "user", "content": "What is the weather like in Paris?"}]


@pytest.fixture
def claude(llama_server: Any) -> Any:
    """The anthropic provider on llama.cpp, greedy, with room for a tool call."""
    return mf.Model.chat_completion(MODEL, base_url=llama_server.root_url, api_key="sk-ant-x",
                                    temperature=0, max_tokens=64, max_retries=0)


@pytest.fixture
def anthropic_env(monkeypatch: pytest.MonkeyPatch, llama_server: Any) -> Any:
    """Run code written for the real Anthropic API unchanged against the local server.

    Code written for Claude sets no max_tokens, so the model layer sends the profile's
    output limit (8192 for Claude 3.5 Sonnet). SmolLM2 sampling at the server's default
    temperature sometimes rambles that far, which takes minutes on this CPU: the limit
    is lowered here, outside the code under test.
    """
    from msgflux.models import call

    monkeypatch.setenv("ANTHROPIC_BASE_URL", llama_server.root_url)
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-local-test-not-a-real-key")
    monkeypatch.setattr(call, "profile_output_limit", lambda wiring: 200)
    return llama_server


def assert_usage(metadata: Any) -> None:
    usage = metadata.usage
    assert usage.prompt_tokens > 0 and usage.completion_tokens > 0
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert metadata.provider == "anthropic"


# ---------------------------------------------------------------- text


def test_text_with_system_prompt(claude: Any) -> None:
    response = claude(messages=[{"role": "user", "content": "What is AI?"}],
                      system_prompt="You are a helpful assistant.")
    assert response.response_type == "text_generation"
    text = response.consume()
    assert isinstance(text, str) and text
    assert response.metadata.finish_reason in ("stop", "length")
    assert_usage(response.metadata)


def test_chatml_history_and_stop_sequences(llama_server: Any, prompt_tokens: Any) -> None:
    model = mf.Model.chat_completion(MODEL, base_url=llama_server.root_url + "/v1",
                                     api_key="k", temperature=0, max_tokens=40, stop=["e"])
    messages = [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "Hello!"},
        {"role": "assistant", "content": "Hi! How can I help?"},
        {"role": "user", "content": "Tell me a joke."},
    ]
    response = model(messages=messages)
    text = response.consume()
    assert isinstance(text, str) and "e" not in text  # the stop sequence cut it
    assert response.metadata.finish_reason == "stop"
    # The system prompt and every turn reached the server (as `system` and `messages`).
    assert response.metadata.usage.prompt_tokens == prompt_tokens(messages)


def test_async_calls(claude: Any) -> None:
    async def main() -> list[Any]:
        return await asyncio.gather(*(claude.acall(messages=q)
                                      for q in ("What is AI?", "What is ML?")))

    responses = asyncio.run(main())
    assert all(isinstance(r.consume(), str) and r.consume() for r in responses)


# ---------------------------------------------------------------- streams


def test_stream_sync(claude: Any) -> None:
    response = claude(messages="Count to 10", stream=True)
    chunks = list(response.consume())
    assert len(chunks) > 1 and all(isinstance(c, str) for c in chunks)
    assert response.response_type == "text_generation"
    assert response.metadata.finish_reason in ("stop", "length")
    assert_usage(response.metadata)
    assert response.metadata.usage.completion_tokens >= len(chunks) - 1


def test_stream_async(claude: Any) -> None:
    async def main() -> tuple[list[str], Any]:
        response = await claude.acall(messages="Count to 10", stream=True)
        chunks = [chunk async for chunk in response.consume()]
        return chunks, response

    chunks, response = asyncio.run(main())
    assert len(chunks) > 1 and "".join(chunks)
    assert_usage(response.metadata)


def test_stream_matches_whole_reply(claude: Any) -> None:
    whole = claude(messages="Name a colour.").consume()
    streamed = "".join(claude(messages="Name a colour.", stream=True).consume())
    assert streamed == whole  # greedy: same tokens, decoded by either path


# ---------------------------------------------------------------- tools


@pytest.mark.parametrize("choice", ["required", "get_weather", "auto"])
def test_tool_call(claude: Any, choice: str) -> None:
    response = claude(messages=PARIS, tool_schemas=WEATHER_TOOL, tool_choice=choice)
    assert response.response_type == "tool_call"
    agg = response.consume()
    assert isinstance(agg, ToolCallAggregator)
    [call] = agg.get_calls()
    assert call["function"]["name"] == "get_weather"
    assert isinstance(call["function"]["arguments"]["location"], str)
    assert call["id"]
    assert response.metadata.finish_reason == "tool_calls"


def test_tool_call_streamed(claude: Any) -> None:
    response = claude(messages=PARIS, tool_schemas=WEATHER_TOOL, tool_choice="required",
                      stream=True)
    agg = response.consume()
    assert response.response_type == "tool_call"
    [call] = agg.get_calls()
    assert call["function"]["name"] == "get_weather"
    assert isinstance(call["function"]["arguments"]["location"], str)
    assert response.metadata.finish_reason == "tool_calls"


def test_tool_call_flow(claude: Any) -> None:
    """The guide's flow: call, run the tool, send get_messages() back, get text."""
    messages: list[dict[str, Any]] = list(PARIS)
    agg = claude(messages=messages, tool_schemas=WEATHER_TOOL, tool_choice="required").consume()
    for call in agg.get_calls():
        agg.insert_results(call["id"], f"The weather in {call['function']['arguments']['location']}"
                                       " is 22°C")
    messages.extend(agg.get_messages())
    assert [m["role"] for m in messages] == ["user", "assistant", "tool"]
    final = claude(messages=messages)  # no tool_schemas, as in the guide
    assert final.response_type == "text_generation"
    assert isinstance(final.consume(), str) and final.consume()


# ---------------------------------------------------------------- structured output


class Weather(msgspec.Struct):
    """Get the current weather for a city"""

    location: str


def test_structured_output_via_forced_tool(claude: Any) -> None:
    # Claude 3.5 has no output_config: the schema becomes a forced tool, and its input
    # comes back as the structured answer (never as a tool call).
    response = claude(messages=PARIS, generation_schema=Weather)
    assert response.response_type == "structured"
    result = response.consume()
    assert isinstance(result["location"], str) and result.location == result["location"]
    assert response.metadata.finish_reason == "stop"


def test_structured_output_streamed(claude: Any) -> None:
    response = claude(messages=PARIS, generation_schema=Weather, stream=True)
    objects = list(response.consume())  # the answer tool's input, read as partial objects
    assert objects[-1] is response.data and objects[0]["location"]
    assert response.response_type == "structured"
    assert isinstance(response.data["location"], str)


# ---------------------------------------------------------------- prefilling


def test_prefilling_guide_examples(anthropic_env: Any) -> None:
    """Both prefilling examples of the guide, as written (server via ANTHROPIC_BASE_URL)."""
    import msgflux as mf

    model = mf.Model.chat_completion("anthropic/claude-3-5-sonnet-20241022")

    response = model(
        messages=[{"role": "user", "content": "What is 30 * 3 + 33?"}],
        prefilling="Let's think step by step:"
    )

    print(response.consume())
    assert response.consume().startswith("Let's think step by step:")

    # Force JSON output
    response = model(
        messages=[{"role": "user", "content": "List 3 colors"}],
        prefilling="{"
    )

    print(response.consume())
    assert response.consume().startswith("{")


def test_prefilling_streamed_continues_the_prefix(claude: Any) -> None:
    response = claude(messages=[{"role": "user", "content": "What is 30 * 3 + 33?"}],
                      prefilling="Let's think step by step:", stream=True)
    chunks = list(response.consume())
    assert chunks[0] == "Let's think step by step:"
    # llama.cpp streams only the continuation (as Anthropic does): no second prefix.
    assert not "".join(chunks[1:]).lstrip().startswith("Let's think")


def test_llamacpp_echoes_prefill_in_whole_replies(llama_server: Any) -> None:
    """Documents a server difference: llama.cpp's whole reply repeats the prefill.

    Anthropic returns only the continuation; the anthropic row assumes that, so a
    whole reply from llama.cpp shows the prefix twice (streams are right).
    """
    from msgflux._transport.sync_client import HTTPTransport
    from msgflux.models.dialects import anthropic
    from msgflux.models.dialects.base import Endpoint
    from msgflux.models.request import ChatRequest, Message

    request = ChatRequest(model="claude-3-5-sonnet-20241022", temperature=0, max_tokens=16,
                          messages=(Message("user", "What is 30 * 3 + 33?"),),
                          prefill="Let's think step by step:")
    http = anthropic.build_request(request, Endpoint("anthropic", llama_server.root_url))
    transport = HTTPTransport()
    try:
        reply = transport.send(http)
    finally:
        transport.close()
    assert reply.status == 200
    text = anthropic.parse_response(reply.body, request).text
    assert text is not None and text.startswith("Let's think step by step:")


# ---------------------------------------------------------------- errors from the real server


def test_image_input_is_a_typed_server_error(claude: Any) -> None:
    with pytest.raises(exc.ServerError) as info:
        claude(messages=[mf.ChatBlock.user("Describe this image",
                                           media=mf.ChatBlock.image("https://example.com/a.jpg"))])
    assert info.value.status == 500 and info.value.provider == "anthropic"
    assert "image" in info.value.message


# ---------------------------------------------------------------- scripted server: faults

MESSAGES = "/v1/messages"
KEY = "sk-ant-secret-never-printed"


@pytest.fixture
def srv() -> Any:
    from scripted_server import ScriptedServer

    with ScriptedServer() as server:
        yield server


def scripted(srv: Any, **kwargs: Any) -> Any:
    return mf.Model.chat_completion(MODEL, base_url=srv.url, api_key=KEY,
                                    **{"max_retries": 0, **kwargs})


def message(text: str, stop: str = "end_turn") -> dict[str, Any]:
    return {"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-x",
            "content": [{"type": "text", "text": text}], "stop_reason": stop,
            "usage": {"input_tokens": 5, "output_tokens": 3, "cache_read_input_tokens": 10,
                      "cache_creation_input_tokens": 2}}


def overloaded(status: int = 529) -> Any:
    from scripted_server import json_reply

    return json_reply(status, {"type": "error", "error": {"type": "overloaded_error",
                                                          "message": "Overloaded"}},
                      {"Retry-After": "0", "request-id": "req_overloaded"})


def recorded(name: str) -> Any:
    from pathlib import Path

    from scripted_server import sse_reply

    return sse_reply([(Path(__file__).parent / "data" / "anthropic" / name).read_bytes()])


def test_scripted_request_and_usage(srv: Any) -> None:
    from scripted_server import json_reply

    srv.route("POST", MESSAGES, json_reply(200, message("Hello!")))
    response = scripted(srv)(messages="Hi", system_prompt="Be brief.")
    assert response.consume() == "Hello!"
    usage = response.metadata.usage
    assert (usage.prompt_tokens, usage.cached_tokens, usage.cache_write_tokens) == (17, 10, 2)
    [req] = srv.requests
    assert req.headers["x-api-key"] == KEY and req.headers["anthropic-version"] == "2023-06-01"
    assert KEY not in req.target
    body = req.json()
    assert body["system"] == "Be brief." and body["messages"] == [
        {"role": "user", "content": "Hi"}]
    # max_tokens is required: the model layer filled it from the profile's output limit.
    assert isinstance(body["max_tokens"], int) and body["max_tokens"] > 0


def test_overloaded_529_is_retried_then_typed(srv: Any) -> None:
    from scripted_server import json_reply

    srv.route("POST", MESSAGES, overloaded(), json_reply(200, message("ok")))
    assert scripted(srv, max_retries=1)("Hi").consume() == "ok"
    srv.route("POST", MESSAGES, overloaded())
    with pytest.raises(exc.OverloadedError) as info:
        scripted(srv)("Hi")
    assert info.value.status == 529 and info.value.request_id == "req_overloaded"
    assert KEY not in str(info.value)


@pytest.mark.parametrize(("status", "kind", "cls"), [
    (400, "invalid_request_error", exc.BadRequestError),
    (401, "authentication_error", exc.AuthenticationError),
    (429, "rate_limit_error", exc.RateLimitError),
    (500, "api_error", exc.ServerError),
])
def test_error_bodies_are_typed(srv: Any, status: int, kind: str, cls: type) -> None:
    from scripted_server import json_reply

    srv.route("POST", MESSAGES, json_reply(status, {
        "type": "error", "error": {"type": kind, "message": f"{kind} here"}},
        {"retry-after": "3"}))
    with pytest.raises(cls) as info:
        scripted(srv)("Hi")
    assert info.value.error_type == kind and info.value.message == f"{kind} here"
    assert info.value.retry_after == 3.0
    assert len(srv.requests) == 1


def without_text_block(name: str) -> Any:
    """A recorded stream minus its text block (Claude often goes from thinking to tool_use)."""
    from pathlib import Path

    from scripted_server import sse_reply

    raw = (Path(__file__).parent / "data" / "anthropic" / name).read_bytes()
    events = [e for e in raw.split(b"\n\n") if e and b'"index":1' not in e]
    return sse_reply([b"".join(e + b"\n\n" for e in events)])


def test_stream_with_thinking_and_parallel_tools_round_trip(srv: Any) -> None:
    """A recorded Claude stream through the whole stack, then the tool loop goes back."""
    from scripted_server import json_reply

    srv.route("POST", MESSAGES, without_text_block("thinking_parallel_tools.sse"),
              json_reply(200, message("Tokyo is colder.")))
    m = scripted(srv, reasoning_effort="low")
    messages: list[Any] = [{"role": "user", "content": "Weather in Paris and Tokyo?"}]
    response = m(messages=messages, tool_schemas=WEATHER_TOOL, stream=True)
    agg = response.consume()
    assert response.response_type == "tool_call"
    assert response.reasoning.startswith("The user wants the weather")
    assert [c["function"]["arguments"]["location"] for c in agg.get_calls()] == [
        "Paris, France", "Tokyo, Japan"]
    assert response.metadata.usage.cache_write_tokens == 1024
    for call in agg.get_calls():
        agg.insert_results(call["id"], "20C")
    messages.extend(agg.get_messages())
    assert m(messages=messages, tool_schemas=WEATHER_TOOL).consume() == "Tokyo is colder."
    second = srv.requests[1].json()
    assistant = second["messages"][1]["content"]
    assert assistant[0] == {
        "type": "thinking", "thinking": response.reasoning,
        "signature": "EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds"}
    assert [b["type"] for b in assistant] == ["thinking", "tool_use", "tool_use"]
    assert [b["type"] for b in second["messages"][2]["content"]] == ["tool_result"] * 2
    assert second["thinking"] == {"type": "enabled", "budget_tokens": 2048}


def test_stream_with_text_before_tool_use_is_a_tool_call(srv: Any) -> None:
    srv.route("POST", MESSAGES, recorded("thinking_parallel_tools.sse"))
    response = scripted(srv)("Weather?", tool_schemas=WEATHER_TOOL, stream=True)
    assert response.response_type == "tool_call"
    agg = response.consume()
    assert len(agg.get_calls()) == 2
    assert agg.text  # the sentence Claude wrote before its calls is kept


def test_stream_error_event_mid_answer(srv: Any) -> None:
    srv.route("POST", MESSAGES, recorded("overloaded_midstream.sse"))
    response = scripted(srv)("Hi", stream=True)
    with pytest.raises(exc.StreamError) as info:
        list(response.consume())
    assert info.value.partial_text == "Partial"
    assert isinstance(info.value.__cause__, exc.OverloadedError)


def test_stream_error_event_before_any_answer_is_retried(srv: Any) -> None:
    from scripted_server import sse_reply

    error = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    event = b"event: error\ndata: " + msgspec.json.encode(error) + b"\n\n"
    srv.route("POST", MESSAGES, sse_reply([event]), recorded("redacted_and_text.sse"))
    response = scripted(srv, max_retries=1)("What is 30 * 3 + 33?", stream=True)
    assert "".join(response.consume()) == "The answer is 123."
    assert len(srv.requests) == 2


def test_stream_cut_before_its_end_is_an_error(srv: Any) -> None:
    from pathlib import Path

    from scripted_server import sse_reply

    raw = (Path(__file__).parent / "data" / "anthropic" / "redacted_and_text.sse").read_bytes()
    cut = raw[:raw.index(b"event: message_delta")]  # no stop reason, no message_stop
    srv.route("POST", MESSAGES, sse_reply([cut]))
    response = scripted(srv)("Hi", stream=True)
    with pytest.raises(exc.StreamError) as info:
        list(response.consume())
    assert info.value.partial_text == "The answer is 123."
