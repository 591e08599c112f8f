"""The openai dialect on recorded payloads: no I/O at all."""

from __future__ import annotations

import msgspec
import pytest

from msgflux import exceptions as exc
from msgflux._transport.types import SSEEvent
from msgflux.models.dialects import openai as dialect
from msgflux.models.dialects.base import Endpoint, Quirks
from msgflux.models.request import (
    ChatRequest,
    ImagePart,
    Message,
    OutputSchema,
    TextPart,
    ToolCall,
    ToolChoice,
    ToolSpec,
)

ENDPOINT = Endpoint("openai", "https://api.openai.com/v1", "sk-test",
                    quirks=Quirks(max_tokens_field="max_completion_tokens"))


def body(request: ChatRequest, endpoint: Endpoint = ENDPOINT) -> dict:
    return msgspec.json.decode(dialect.build_request(request, endpoint).body)


def test_request_body_exact() -> None:
    req = ChatRequest(
        model="gpt-4o",
        messages=(Message("system", "Be brief."), Message("user", "Hi")),
        temperature=0.0,
        top_p=0.9,
        max_tokens=100,
        stop=("END",),
        seed=7,
    )
    http = dialect.build_request(req, ENDPOINT)
    assert http.method == "POST"
    assert http.url == "https://api.openai.com/v1/chat/completions"
    headers = dict(http.headers)
    assert headers["authorization"] == "Bearer sk-test"
    assert headers["content-type"] == "application/json"
    assert msgspec.json.decode(http.body) == {
        "model": "gpt-4o",
        "messages": [{"role": "system", "content": "Be brief."},
                     {"role": "user", "content": "Hi"}],
        "temperature": 0.0,
        "top_p": 0.9,
        "max_completion_tokens": 100,
        "stop": ["END"],
        "seed": 7,
    }
    assert "sk-test" not in repr(http)


def test_tools_choice_schema_stream_and_parts() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "string"}}}
    req = ChatRequest(
        model="m",
        messages=(
            Message("user", (TextPart("look"), ImagePart("https://x/y.png", "low"))),
            Message("assistant", None, tool_calls=(ToolCall("c1", "f", '{"a":"1"}'),)),
            Message("tool", "ok", tool_call_id="c1"),
        ),
        tools=(ToolSpec("f", "does f", schema),),
        tool_choice=ToolChoice("tool", "f"),
        parallel_tool_calls=False,
        output=OutputSchema("out", schema, {**schema, "additionalProperties": False}),
        stream=True,
        extra={"logprobs": True},
    )
    b = body(req, Endpoint("x", "http://h/v1"))
    assert b["messages"][0]["content"] == [
        {"type": "text", "text": "look"},
        {"type": "image_url", "image_url": {"url": "https://x/y.png", "detail": "low"}},
    ]
    assert b["messages"][1] == {"role": "assistant", "content": None, "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "f", "arguments": '{"a":"1"}'}}]}
    assert b["messages"][2] == {"role": "tool", "content": "ok", "tool_call_id": "c1"}
    assert b["tools"] == [{"type": "function", "function": {
        "name": "f", "description": "does f", "parameters": schema}}]
    assert b["tool_choice"] == {"type": "function", "function": {"name": "f"}}
    assert b["parallel_tool_calls"] is False
    assert b["response_format"] == {"type": "json_schema", "json_schema": {
        "name": "out", "schema": {**schema, "additionalProperties": False}, "strict": True}}
    assert b["stream"] is True and b["stream_options"] == {"include_usage": True}
    assert b["logprobs"] is True


def test_prefill_quirks() -> None:
    req = ChatRequest(model="m", messages=(Message("user", "q"),), prefill="Let's")
    vllm = Quirks(prefill_fields={"continue_final_message": True, "add_generation_prompt": False})
    b = body(req, Endpoint("vllm", "http://h/v1", quirks=vllm))
    assert b["messages"][-1] == {"role": "assistant", "content": "Let's"}
    assert b["continue_final_message"] is True and b["add_generation_prompt"] is False
    b = body(req, Endpoint("mistral", "http://h/v1", quirks=Quirks(prefill_message_flag="prefix")))
    assert b["messages"][-1] == {"role": "assistant", "content": "Let's", "prefix": True}


def test_openrouter_reasoning_object() -> None:
    req = ChatRequest(model="m", messages=(Message("user", "q"),), reasoning_effort="high")
    assert body(req)["reasoning_effort"] == "high"
    b = body(req, Endpoint("openrouter", "http://h", quirks=Quirks(reasoning="object")))
    assert b["reasoning"] == {"effort": "high"} and "reasoning_effort" not in b


RESPONSE = b"""{
  "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-4o-2024-08-06",
  "choices": [{"index": 0, "message": {"role": "assistant", "content": null,
     "tool_calls": [
       {"id": "call_a", "type": "function", "function": {"name": "get_weather",
        "arguments": "{\\"location\\": \\"Paris\\"}"}},
       {"id": "call_b", "type": "function", "function": {"name": "get_time", "arguments": ""}}]},
     "logprobs": null, "finish_reason": "tool_calls"}],
  "usage": {"prompt_tokens": 80, "completion_tokens": 20, "total_tokens": 100,
     "prompt_tokens_details": {"cached_tokens": 64, "audio_tokens": 0},
     "completion_tokens_details": {"reasoning_tokens": 5}},
  "system_fingerprint": "fp_x"
}"""


def test_parse_response_tool_calls_and_usage() -> None:
    c = dialect.parse_response(RESPONSE)
    assert c.text is None
    assert [t.name for t in c.tool_calls] == ["get_weather", "get_time"]
    assert c.tool_calls[0].arguments == '{"location": "Paris"}'
    assert c.finish_reason == "tool_calls"
    assert c.usage.prompt_tokens == 80 and c.usage.cached_tokens == 64
    assert c.usage.reasoning_tokens == 5 and c.model == "gpt-4o-2024-08-06"


def test_parse_response_reasoning_content() -> None:
    raw = (b'{"choices":[{"message":{"content":"42","reasoning_content":"think"},'
           b'"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":2,'
           b'"total_tokens":3,"prompt_cache_hit_tokens":1}}')
    c = dialect.parse_response(raw)
    assert (c.text, c.reasoning, c.usage.cached_tokens) == ("42", "think", 1)


def test_parse_response_garbage_is_typed() -> None:
    with pytest.raises(exc.ResponseError):
        dialect.parse_response(b"<html>bad gateway</html>")
    with pytest.raises(exc.ResponseError):
        dialect.parse_response(b'{"choices": []}')
    with pytest.raises(exc.ServerError):
        dialect.parse_response(b'{"error": {"message": "boom", "type": "server_error"}}')


def ev(data: str) -> SSEEvent:
    return SSEEvent(data.encode())


def test_stream_parallel_tool_call_deltas() -> None:
    dec = dialect.stream_decoder()
    chunks = [
        '{"id":"1","model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":null,'
        '"tool_calls":[{"index":0,"id":"call_a","type":"function","function":{"name":"a",'
        '"arguments":""}},{"index":1,"id":"call_b","type":"function","function":{"name":"b",'
        '"arguments":"{\\"x\\""}}]}}]}',
        '{"choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"function":{"arguments":":1}"}},'
        '{"index":0,"function":{"arguments":"{}"}}]}}]}',
        '{"choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}',
        '{"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7}}',
        "[DONE]",
    ]
    deltas = [d for d in (dec.feed(ev(c)) for c in chunks) if d is not None]
    assert deltas[0].tool_calls[1].name == "b" and deltas[0].tool_calls[1].arguments == '{"x"'
    assert [t.index for t in deltas[1].tool_calls] == [1, 0]
    assert deltas[2].finish_reason == "tool_calls"
    assert deltas[3].usage.total_tokens == 7
    assert deltas[4].done and dec.done


def test_stream_usage_on_final_choice_chunk_and_errors() -> None:
    dec = dialect.stream_decoder()
    d = dec.feed(ev('{"choices":[{"index":0,"delta":{"content":"hi"},"finish_reason":"stop"}],'
                    '"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}'))
    assert d.text == "hi" and d.finish_reason == "stop" and d.usage.total_tokens == 2
    with pytest.raises(exc.RateLimitError):
        dec.feed(ev('{"error":{"message":"slow down","type":"rate_limit_error"}}'))
    with pytest.raises(exc.ResponseError):
        dec.feed(ev('{"choices":[{"delta":{"content":"x"'))


@pytest.mark.parametrize(
    ("status", "body", "cls"),
    [
        (400, b'{"error":{"message":"bad","type":"invalid_request_error","code":"x"}}',
         exc.BadRequestError),
        (401, b'{"error":{"message":"Incorrect API key"}}', exc.AuthenticationError),
        (403, b'{"error":"forbidden"}', exc.PermissionDeniedError),
        (404, b'{"message":"no such model"}', exc.NotFoundError),
        (409, b"", exc.ConflictError),
        (422, b'{"detail":[{"msg":"field required"}]}', exc.UnprocessableEntityError),
        (429, b'{"error":{"message":"Rate limit reached"}}', exc.RateLimitError),
        (500, b"oops", exc.ServerError),
        (503, b'{"error":{"message":"overloaded","type":"overloaded_error"}}',
         exc.OverloadedError),
        (529, b"{}", exc.OverloadedError),
        (418, b"teapot", exc.APIStatusError),
    ],
)
def test_error_mapping(status: int, body: bytes, cls: type) -> None:
    err = dialect.parse_error(status, [("x-request-id", "req_1")], body, "openai",
                              retry_after=2.0)
    assert type(err) is cls
    assert err.status == status and err.provider == "openai" and err.request_id == "req_1"
    assert err.retryable == (status in (409, 429, 500, 503, 529))
    assert err.retry_after == 2.0
    assert str(status) in str(err)


def test_tool_choice_none_quirk_drops_tools() -> None:
    req = ChatRequest(model="m", messages=(Message("user", "q"),),
                      tools=(ToolSpec("f"),), tool_choice=ToolChoice("none"))
    assert body(req)["tool_choice"] == "none" and "tools" in body(req)
    dropped = body(req, Endpoint("llamacpp", "http://h/v1", quirks=Quirks(none_drops_tools=True)))
    assert "tools" not in dropped and "tool_choice" not in dropped
