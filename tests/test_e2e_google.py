"""The google provider end to end against the scripted loopback server.

No Gemini server runs here, so the scripted server plays one: it replays bytes
shaped like the Gemini API's and records what msgflux sent. Every call goes
through the model layer, the google dialect and our transport, sync and async.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import msgspec
import pytest

import msgflux as mf
from msgflux import exceptions as exc
from scripted_server import ScriptedServer, json_reply, sse_reply, text_reply

GENERATE = "/v1beta/models/gemini-2.5-flash:generateContent"
STREAM = "/v1beta/models/gemini-2.5-flash:streamGenerateContent"
KEY = "AIza-secret-never-printed"
TOOLS = [{
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get weather for a location.",
        "parameters": {
            "type": "object",
            "properties": {"location": {"type": "string"},
                           "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
            "required": ["location"],
            "additionalProperties": False,
        },
    },
}]


@pytest.fixture
def srv() -> Any:
    with ScriptedServer() as server:
        yield server


@pytest.fixture
def gemini_env(monkeypatch: pytest.MonkeyPatch, srv: ScriptedServer) -> ScriptedServer:
    for name in ("GEMINI_API_KEY", "GOOGLE_API_KEY", "GOOGLE_GENERATIVE_AI_API_KEY",
                 "GEMINI_BASE_URL", "GOOGLE_GEMINI_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("GEMINI_BASE_URL", srv.url)
    monkeypatch.setenv("GEMINI_API_KEY", KEY)
    return srv


def model(srv: ScriptedServer, **kwargs: Any) -> Any:
    return mf.Model.chat_completion("google/gemini-2.5-flash", base_url=srv.url, api_key=KEY,
                                    **{"max_retries": 0, **kwargs})


def candidate(parts: list[dict[str, Any]], finish: str | None = "STOP",
              usage: dict[str, int] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "candidates": [{"content": {"role": "model", "parts": parts}, "index": 0}],
        "modelVersion": "gemini-2.5-flash",
        "responseId": "resp-1",
    }
    if finish is not None:
        out["candidates"][0]["finishReason"] = finish
    if usage is not None:
        out["usageMetadata"] = usage
    return out


USAGE = {"promptTokenCount": 11, "candidatesTokenCount": 7, "thoughtsTokenCount": 5,
         "cachedContentTokenCount": 4, "totalTokenCount": 23}


def sse(chunks: list[dict[str, Any]], **kwargs: Any) -> Any:
    # Google's servers end SSE lines with CRLF.
    return sse_reply([f"data: {json.dumps(c)}\r\n\r\n" for c in chunks], **kwargs)


# ---------------------------------------------------------------- text


def test_text_call_request_and_metadata(srv: ScriptedServer) -> None:
    srv.route("POST", GENERATE, json_reply(200, candidate(
        [{"text": "Hello! How can I help you today?"}], usage=USAGE)))
    response = model(srv, temperature=0.2, max_tokens=100)(
        messages=[{"role": "user", "content": "Hello!"}],
        system_prompt="You are a helpful assistant.")
    assert response.response_type == "text_generation"
    assert response.consume() == "Hello! How can I help you today?"
    meta = response.metadata
    assert meta.provider == "google" and meta.finish_reason == "stop"
    assert meta.model == "gemini-2.5-flash"
    assert meta.usage.prompt_tokens == 11 and meta.usage.completion_tokens == 12
    assert meta.usage.total_tokens == 23 and meta.usage.cached_tokens == 4
    [req] = srv.requests
    assert req.path == GENERATE and req.query == ""
    assert req.headers["x-goog-api-key"] == KEY and KEY not in req.target
    assert req.json() == {
        "contents": [{"role": "user", "parts": [{"text": "Hello!"}]}],
        "systemInstruction": {"parts": [{"text": "You are a helpful assistant."}]},
        "generationConfig": {"temperature": 0.2, "maxOutputTokens": 100},
    }


def test_environment_variables_and_alias(gemini_env: ScriptedServer,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    gemini_env.route("POST", GENERATE, json_reply(200, candidate([{"text": "hi"}])),
                     json_reply(200, candidate([{"text": "again"}])))
    assert mf.Model.chat_completion("gemini/gemini-2.5-flash")("Hello!").consume() == "hi"
    # GOOGLE_GEMINI_BASE_URL and GOOGLE_API_KEY are read too.
    monkeypatch.delenv("GEMINI_BASE_URL")
    monkeypatch.delenv("GEMINI_API_KEY")
    monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", gemini_env.url + "/v1beta")
    monkeypatch.setenv("GOOGLE_API_KEY", "AIza-other")
    assert mf.Model.chat_completion("google/gemini-2.5-flash")("Hi").consume() == "again"
    assert [r.path for r in gemini_env.requests] == [GENERATE, GENERATE]
    assert gemini_env.requests[1].headers["x-goog-api-key"] == "AIza-other"


def test_async_call(srv: ScriptedServer) -> None:
    srv.route("POST", GENERATE, json_reply(200, candidate([{"text": "a"}])),
              json_reply(200, candidate([{"text": "b"}])))
    m = model(srv)

    async def main() -> list[str]:
        responses = [await m.acall(messages=q) for q in ("What is AI?", "What is ML?")]
        await m.aclose()
        return [r.consume() for r in responses]

    assert asyncio.run(main()) == ["a", "b"]


def test_reasoning_is_exposed(srv: ScriptedServer) -> None:
    srv.route("POST", GENERATE, json_reply(200, candidate([
        {"text": "**Adding**\nThirty times three is ninety.", "thought": True},
        {"text": "123"}], usage=USAGE)))
    response = model(srv, reasoning_effort="low")("What is 30 * 3 + 33?")
    assert response.consume() == "123"
    assert response.reasoning == "**Adding**\nThirty times three is ninety."
    assert srv.requests[0].json()["generationConfig"]["thinkingConfig"] == {
        "thinkingBudget": 1024, "includeThoughts": True}


# ---------------------------------------------------------------- streams

TEXT_STREAM = [
    candidate([{"text": "Thinking about counting.", "thought": True}], None),
    candidate([{"text": "1, 2, "}], None),
    candidate([{"text": "3"}], None),
    candidate([{"text": ""}], "STOP", USAGE),
]


def test_stream_sync(srv: ScriptedServer) -> None:
    srv.route("POST", STREAM, sse(TEXT_STREAM))
    response = model(srv)(messages="Count to 3", stream=True)
    assert list(response.consume()) == ["1, 2, ", "3"]
    assert response.reasoning == "Thinking about counting."
    assert response.metadata.finish_reason == "stop"
    assert response.metadata.usage.total_tokens == 23
    [req] = srv.requests
    assert req.query == "alt=sse" and req.headers["accept"] == "text/event-stream"


def test_stream_async(srv: ScriptedServer) -> None:
    srv.route("POST", STREAM, sse(TEXT_STREAM, chunk_split=7))

    async def main() -> tuple[list[str], Any]:
        response = await model(srv).acall(messages="Count to 3", stream=True)
        return [c async for c in response.consume()], response

    chunks, response = asyncio.run(main())
    assert "".join(chunks) == "1, 2, 3"
    assert response.metadata.usage.prompt_tokens == 11


def test_stream_cut_before_finish_is_an_error(srv: ScriptedServer) -> None:
    srv.route("POST", STREAM, sse(TEXT_STREAM[:3]))  # no finishReason: the body just ends
    response = model(srv)(messages="Count to 3", stream=True)
    with pytest.raises(exc.StreamError) as info:
        list(response.consume())
    assert info.value.partial_text == "1, 2, 3"


def test_stream_error_chunk_mid_answer(srv: ScriptedServer) -> None:
    error = {"error": {"code": 503, "message": "The model is overloaded. Please try again later.",
                       "status": "UNAVAILABLE"}}
    srv.route("POST", STREAM, sse([TEXT_STREAM[1], error]))
    response = model(srv)(messages="Count", stream=True)
    with pytest.raises(exc.StreamError) as info:
        list(response.consume())
    assert info.value.partial_text == "1, 2, "
    assert isinstance(info.value.__cause__, exc.OverloadedError)


def test_stream_dropped_connection(srv: ScriptedServer) -> None:
    reply = sse(TEXT_STREAM)
    head_and_first_chunk = sum(len(step[1]) for step in reply.steps[:2])
    srv.route("POST", STREAM, reply.drop_after(head_and_first_chunk + 40))  # inside chunk 2
    response = model(srv)(messages="Count", stream=True)
    with pytest.raises(exc.StreamError):
        list(response.consume())


# ---------------------------------------------------------------- tools


def test_tool_call_flow_with_thought_signature(srv: ScriptedServer) -> None:
    """The guide's tool flow: the signature and the call's name travel back to Gemini."""
    srv.route("POST", GENERATE,
              json_reply(200, candidate([
                  {"functionCall": {"name": "get_weather", "args": {"location": "Paris"}},
                   "thoughtSignature": "CiQBsig-paris"}])),
              json_reply(200, candidate([{"text": "It is 22°C in Paris."}])))
    m = model(srv)
    messages: list[dict[str, Any]] = [{"role": "user", "content": "What's the weather in Paris?"}]
    response = m(messages=messages, tool_schemas=TOOLS)
    assert response.response_type == "tool_call"
    agg = response.consume()
    for call in agg.get_calls():
        assert call["function"] == {"name": "get_weather", "arguments": {"location": "Paris"}}
        agg.insert_results(call["id"], f"The weather in {call['function']['arguments']['location']}"
                                       " is 22°C")
    messages.extend(agg.get_messages())
    final = m(messages=messages)
    assert final.consume() == "It is 22°C in Paris."
    first, second = (r.json() for r in srv.requests)
    assert first["tools"] == [{"functionDeclarations": [{
        "name": "get_weather", "description": "Get weather for a location.",
        "parametersJsonSchema": TOOLS[0]["function"]["parameters"]}]}]
    assert second["contents"][1:] == [
        {"role": "model", "parts": [{
            "functionCall": {"id": "call_0", "name": "get_weather", "args": {"location": "Paris"}},
            "thoughtSignature": "CiQBsig-paris"}]},
        {"role": "user", "parts": [{"functionResponse": {
            "id": "call_0", "name": "get_weather",
            "response": {"output": "The weather in Paris is 22°C"}}}]},
    ]
    assert "tools" not in second


def test_tool_choice_and_streamed_parallel_calls(srv: ScriptedServer) -> None:
    srv.route("POST", STREAM, sse([candidate([
        {"functionCall": {"name": "get_weather", "args": {"location": "Paris"}}},
        {"functionCall": {"name": "get_weather", "args": {"location": "Tokyo"}}},
    ], "STOP", USAGE)]))
    response = model(srv)(messages="Weather in Paris and Tokyo?", tool_schemas=TOOLS,
                          tool_choice="get_weather", stream=True)
    agg = response.consume()
    assert response.response_type == "tool_call"
    assert [c["function"]["arguments"]["location"] for c in agg.get_calls()] == ["Paris", "Tokyo"]
    assert response.metadata.finish_reason == "tool_calls"
    assert srv.requests[0].json()["toolConfig"] == {"functionCallingConfig": {
        "mode": "ANY", "allowedFunctionNames": ["get_weather"]}}


# ---------------------------------------------------------------- structured output and prefill


class CalendarEvent(msgspec.Struct):
    name: str
    date: str
    participants: list[str]


def test_structured_output(srv: ScriptedServer) -> None:
    answer = {"name": "science fair", "date": "Friday", "participants": ["Alice", "Bob"]}
    srv.route("POST", GENERATE, json_reply(200, candidate([{"text": json.dumps(answer)}])))
    response = model(srv)(messages="Alice and Bob are going to a science fair on Friday.",
                          system_prompt="Extract the event information.",
                          generation_schema=CalendarEvent)
    assert response.response_type == "structured"
    assert response.consume() == answer and response.consume().name == "science fair"
    config = srv.requests[0].json()["generationConfig"]
    assert config["responseMimeType"] == "application/json"
    assert config["responseJsonSchema"]["required"] == ["name", "date", "participants"]


def test_structured_output_invalid_answer(srv: ScriptedServer) -> None:
    for _ in range(2):  # the answer, and the answer asked again with the error
        srv.route("POST", GENERATE, json_reply(200, candidate([{"text": '{"name": 1}'}])))
    with pytest.raises(exc.StructuredOutputError) as info:
        model(srv)("x", generation_schema=CalendarEvent)
    assert info.value.raw_answers == ['{"name": 1}', '{"name": 1}']
    again = srv.requests[1].json()["contents"]
    assert again[-2] == {"role": "model", "parts": [{"text": '{"name": 1}'}]}
    assert "cannot be used" in again[-1]["parts"][0]["text"]


def test_prefilling_continues_a_trailing_model_turn(srv: ScriptedServer) -> None:
    srv.route("POST", GENERATE, json_reply(200, candidate([{"text": '"colors": ["red"]}'}])))
    response = model(srv)(messages=[{"role": "user", "content": "List 3 colors"}],
                          prefilling="{")
    assert response.consume() == '{"colors": ["red"]}'
    assert srv.requests[0].json()["contents"][-1] == {"role": "model", "parts": [{"text": "{"}]}


# ---------------------------------------------------------------- errors and retries


@pytest.mark.parametrize(("status", "kind", "cls"), [
    (400, "INVALID_ARGUMENT", exc.BadRequestError),
    (401, "UNAUTHENTICATED", exc.AuthenticationError),
    (403, "PERMISSION_DENIED", exc.PermissionDeniedError),
    (404, "NOT_FOUND", exc.NotFoundError),
    (429, "RESOURCE_EXHAUSTED", exc.RateLimitError),
    (500, "INTERNAL", exc.ServerError),
])
def test_error_bodies_are_typed(srv: ScriptedServer, status: int, kind: str, cls: type) -> None:
    srv.route("POST", GENERATE, json_reply(status, {"error": {
        "code": status, "message": f"{kind} happened", "status": kind}}))
    with pytest.raises(cls) as info:
        model(srv)("Hello")
    assert info.value.status == status and info.value.message == f"{kind} happened"
    assert KEY not in str(info.value) and KEY not in repr(info.value)


def test_rate_limit_is_retried_after_the_servers_hint(srv: ScriptedServer) -> None:
    srv.route("POST", GENERATE,
              json_reply(429, {"error": {"code": 429, "message": "quota",
                                         "status": "RESOURCE_EXHAUSTED"}},
                         {"Retry-After": "0"}),
              json_reply(503, {"error": {"code": 503, "message": "The model is overloaded.",
                                         "status": "UNAVAILABLE"}}, {"Retry-After": "0"}),
              json_reply(200, candidate([{"text": "ok"}])))
    assert model(srv, max_retries=2)("Hello").consume() == "ok"
    assert len(srv.requests) == 3


def test_overloaded_gives_up_typed(srv: ScriptedServer) -> None:
    srv.route("POST", STREAM, json_reply(503, {"error": {
        "code": 503, "message": "The model is overloaded. Please try again later.",
        "status": "UNAVAILABLE"}}, {"Retry-After": "0"}))
    with pytest.raises(exc.OverloadedError):
        list(model(srv)("Hello", stream=True).consume())


def test_non_json_error_body(srv: ScriptedServer) -> None:
    srv.route("POST", GENERATE, text_reply(502, "<html>Bad Gateway</html>",
                                           content_type="text/html"))
    with pytest.raises(exc.ServerError, match="Bad Gateway"):
        model(srv)("Hello")


def test_blocked_prompt(srv: ScriptedServer) -> None:
    srv.route("POST", GENERATE, json_reply(200, {"promptFeedback": {"blockReason": "SAFETY"}}))
    response = model(srv)("something blocked")
    assert response.consume() == "google blocked the prompt (blockReason SAFETY)."
    assert response.metadata.finish_reason == "refusal"
    assert response.metadata.refusal == response.consume()
