"""The google (Gemini API) dialect on recorded payloads: no I/O at all.

Payloads follow the Gemini API reference (``generateContent``,
``streamGenerateContent?alt=sse``, error bodies); the streams use ``\\r\\n``
line endings as Google's servers do.
"""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

import recorded
from msgflux import exceptions as exc
from msgflux._transport.types import SSEEvent
from msgflux.models.dialects import google as dialect
from msgflux.models.dialects.base import Endpoint
from msgflux.models.messages import to_messages
from msgflux.models.request import (
    AudioPart,
    ChatRequest,
    Delta,
    FilePart,
    ImagePart,
    Message,
    OutputSchema,
    ReasoningBlock,
    TextPart,
    ToolCall,
    ToolChoice,
    ToolSpec,
)
from msgflux.models.stream import StreamAssembler

DATA = Path(__file__).parent / "data" / "google"
ENDPOINT = Endpoint("google", "https://generativelanguage.googleapis.com", "AIza-test")
WEATHER = {
    "type": "object",
    "properties": {"location": {"type": "string", "description": "City"},
                   "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
    "required": ["location"],
    "additionalProperties": False,
}


def body(request: ChatRequest, endpoint: Endpoint = ENDPOINT) -> dict:
    return recorded.body(dialect, request, endpoint)


def events(name: str) -> list[SSEEvent]:
    return recorded.events(DATA / name)


def fold(evs: list[SSEEvent]) -> tuple[StreamAssembler, list[Delta], dialect.StreamDecoder]:
    return recorded.fold(dialect.stream_decoder(None, "google"), evs)


def reply(obj: dict) -> bytes:
    return msgspec.json.encode(obj)


# ---------------------------------------------------------------- requests


def test_request_body_headers_and_url_exact() -> None:
    req = ChatRequest(
        model="gemini-2.5-flash",
        messages=(
            Message("system", "You are a helpful assistant."),
            Message("user", "Hello!"),
            Message("assistant", "Hi! How can I help?"),
            Message("user", "Tell me a joke."),
        ),
        temperature=0.7,
        top_p=0.9,
        max_tokens=1000,
        stop=("END",),
        seed=42,
    )
    http = dialect.build_request(req, ENDPOINT)
    assert http.method == "POST"
    assert http.url == ("https://generativelanguage.googleapis.com/v1beta/models/"
                        "gemini-2.5-flash:generateContent")
    headers = dict(http.headers)
    assert headers["x-goog-api-key"] == "AIza-test"
    assert headers["content-type"] == "application/json"
    assert "authorization" not in headers
    assert "AIza-test" not in http.url and "key=" not in http.url
    assert msgspec.json.decode(http.body) == {
        "contents": [
            {"role": "user", "parts": [{"text": "Hello!"}]},
            {"role": "model", "parts": [{"text": "Hi! How can I help?"}]},
            {"role": "user", "parts": [{"text": "Tell me a joke."}]},
        ],
        "systemInstruction": {"parts": [{"text": "You are a helpful assistant."}]},
        "generationConfig": {"temperature": 0.7, "topP": 0.9, "maxOutputTokens": 1000,
                             "stopSequences": ["END"], "seed": 42},
    }


@pytest.mark.parametrize(("base", "model", "stream", "version", "url"), [
    ("https://generativelanguage.googleapis.com", "gemini-2.5-pro", True, None,
     "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-pro"
     ":streamGenerateContent?alt=sse"),
    ("https://generativelanguage.googleapis.com/v1beta/", "models/gemini-2.0-flash", False, None,
     "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.0-flash:generateContent"),
    ("https://proxy.example/google/v1", "gemini-2.5-flash", False, None,
     "https://proxy.example/google/v1/models/gemini-2.5-flash:generateContent"),
    ("https://generativelanguage.googleapis.com", "gemini-2.5-flash", False, "v1alpha",
     "https://generativelanguage.googleapis.com/v1alpha/models/gemini-2.5-flash:generateContent"),
    ("http://127.0.0.1:9/", "tunedModels/my-model-1", False, None,
     "http://127.0.0.1:9/v1beta/tunedModels/my-model-1:generateContent"),
])
def test_url_rules(base: str, model: str, stream: bool, version: str | None, url: str) -> None:
    req = ChatRequest(model=model, messages=(Message("user", "x"),), stream=stream)
    http = dialect.build_request(req, Endpoint("google", base, api_version=version))
    assert http.url == url
    assert http.stream is stream
    assert dict(http.headers)["accept"] == (
        "text/event-stream" if stream else "application/json")
    assert "x-goog-api-key" not in dict(http.headers)


def test_tool_loop_history_round_trip() -> None:
    """Signatures ride back on their parts; parallel results share one user content."""
    req = ChatRequest(
        model="gemini-3-pro-preview",
        messages=(
            Message("user", "Weather in Paris and Tokyo?"),
            Message("assistant", "Checking.", tool_calls=(
                ToolCall("call_0", "get_weather", '{"location": "Paris"}', "CiQBsig"),
                ToolCall("call_1", "get_weather", '{"location":"Tokyo"}'),
            ), reasoning=(ReasoningBlock("thought summary"),)),
            Message("tool", '{"temp": 22, "sky": "sunny"}', tool_call_id="call_0"),
            Message("tool", "18C and rain", tool_call_id="call_1"),
            Message("user", "Which is warmer?"),
        ),
        tools=(ToolSpec("get_weather", "Get weather.", WEATHER),),
    )
    b = body(req)
    assert b["contents"] == [
        {"role": "user", "parts": [{"text": "Weather in Paris and Tokyo?"}]},
        {"role": "model", "parts": [
            {"text": "Checking."},
            {"functionCall": {"id": "call_0", "name": "get_weather",
                              "args": {"location": "Paris"}}, "thoughtSignature": "CiQBsig"},
            {"functionCall": {"id": "call_1", "name": "get_weather",
                              "args": {"location": "Tokyo"}}},
        ]},
        {"role": "user", "parts": [
            {"functionResponse": {"id": "call_0", "name": "get_weather",
                                  "response": {"temp": 22, "sky": "sunny"}}},
            {"functionResponse": {"id": "call_1", "name": "get_weather",
                                  "response": {"output": "18C and rain"}}},
            {"text": "Which is warmer?"},
        ]},
    ]
    assert b["tools"] == [{"functionDeclarations": [{
        "name": "get_weather", "description": "Get weather.", "parametersJsonSchema": WEATHER}]}]
    assert "toolConfig" not in b


def test_unsigned_calls_get_the_documented_stand_in_on_gemini_3_only() -> None:
    history = (Message("user", "q"),
               Message("assistant", None, tool_calls=(ToolCall("a", "f", "{}"),
                                                      ToolCall("b", "f", "{}"))),
               Message("tool", "1", tool_call_id="a"), Message("tool", "2", tool_call_id="b"))
    parts = body(ChatRequest(model="gemini-3-flash-preview", messages=history)
                 )["contents"][1]["parts"]
    assert parts[0]["thoughtSignature"] == "skip_thought_signature_validator"
    assert "thoughtSignature" not in parts[1]
    parts = body(ChatRequest(model="gemini-2.5-flash", messages=history))["contents"][1]["parts"]
    assert all("thoughtSignature" not in p for p in parts)


def test_tool_result_needs_a_function_name() -> None:
    req = ChatRequest(model="gemini-2.5-flash", messages=(
        Message("user", "q"), Message("tool", "r", tool_call_id="nowhere")))
    with pytest.raises(exc.MessageFormatError, match="function's name"):
        dialect.build_request(req, ENDPOINT)
    req = ChatRequest(model="gemini-2.5-flash", messages=(
        Message("user", "q"), Message("tool", "r", tool_call_id="x", name="lookup")))
    assert body(req)["contents"][0]["parts"][1] == {
        "functionResponse": {"id": "x", "name": "lookup", "response": {"output": "r"}}}


@pytest.mark.parametrize(("choice", "config"), [
    (ToolChoice("auto"), {"mode": "AUTO"}),
    (ToolChoice("required"), {"mode": "ANY"}),
    (ToolChoice("none"), {"mode": "NONE"}),
    (ToolChoice("tool", "get_weather"), {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}),
])
def test_tool_choice(choice: ToolChoice, config: dict) -> None:
    req = ChatRequest(model="gemini-2.5-flash", messages=(Message("user", "x"),),
                      tools=(ToolSpec("get_weather"),), tool_choice=choice,
                      parallel_tool_calls=False)
    b = body(req)
    assert b["toolConfig"] == {"functionCallingConfig": config}
    assert b["tools"] == [{"functionDeclarations": [{"name": "get_weather"}]}]


def test_schemas_are_pruned_to_geminis_keywords() -> None:
    params = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "title": "Args",
        "properties": {
            "q": {"type": "string", "pattern": "^a", "default": "x", "minLength": 1},
            "kind": {"const": "search"},
            "default": {"type": "integer", "minimum": 0, "exclusiveMaximum": 9},
            "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 3,
                     "uniqueItems": True},
        },
        "required": ["q"],
        "additionalProperties": False,
        "examples": [{"q": "a"}],
    }
    req = ChatRequest(model="gemini-2.5-flash", messages=(Message("user", "x"),),
                      tools=(ToolSpec("search", None, params),))
    assert body(req)["tools"][0]["functionDeclarations"][0]["parametersJsonSchema"] == {
        "type": "object",
        "title": "Args",
        "properties": {
            "q": {"type": "string"},
            "kind": {"enum": ["search"]},
            "default": {"type": "integer", "minimum": 0},
            "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 3},
        },
        "required": ["q"],
        "additionalProperties": False,
    }
    assert params["properties"]["kind"] == {"const": "search"}  # the input is left alone


def test_structured_output() -> None:
    schema = {"type": "object", "properties": {"name": {"type": "string"},
              "tags": {"type": "array", "items": {"type": "string"}}},
              "required": ["name", "tags"], "$schema": "x"}
    out = OutputSchema("Event", schema, {**schema, "additionalProperties": False})
    req = ChatRequest(model="gemini-2.5-flash", messages=(Message("user", "x"),), output=out)
    assert body(req)["generationConfig"] == {
        "responseMimeType": "application/json",
        "responseJsonSchema": {"type": "object", "properties": {
            "name": {"type": "string"}, "tags": {"type": "array", "items": {"type": "string"}}},
            "required": ["name", "tags"]},
    }


def test_prefill_is_a_trailing_model_content() -> None:
    req = ChatRequest(model="gemini-2.5-flash", messages=(Message("user", "List 3 colors"),),
                      prefill="{")
    assert body(req)["contents"] == [
        {"role": "user", "parts": [{"text": "List 3 colors"}]},
        {"role": "model", "parts": [{"text": "{"}]},
    ]
    req = ChatRequest(model="gemini-2.5-flash", messages=(
        Message("user", "q"), Message("assistant", "So,")), prefill=" the answer is ")
    assert body(req)["contents"][-1] == {"role": "model", "parts": [
        {"text": "So,"}, {"text": " the answer is "}]}


def test_media_parts() -> None:
    req = ChatRequest(model="gemini-2.5-flash", messages=(Message("user", (
        TextPart("Describe"),
        ImagePart("https://example.com/image.png"),
        ImagePart("https://example.com/render?id=7"),
        ImagePart("data:image/webp;base64,UklGRg=="),
        AudioPart("SUQzBAA=", "mp3"),
        FilePart(data="data:application/pdf;base64,JVBERi0=", filename="a.pdf"),
        FilePart(data="JVBERi0=", filename="b.pdf"),
        FilePart(url="https://example.com/doc.pdf"),
        FilePart(file_id="https://generativelanguage.googleapis.com/v1beta/files/abc",
                 media_type="video/mp4"),
    )),))
    assert body(req)["contents"][0]["parts"] == [
        {"text": "Describe"},
        {"fileData": {"mimeType": "image/png", "fileUri": "https://example.com/image.png"}},
        {"fileData": {"mimeType": "image/jpeg", "fileUri": "https://example.com/render?id=7"}},
        {"inlineData": {"mimeType": "image/webp", "data": "UklGRg=="}},
        {"inlineData": {"mimeType": "audio/mpeg", "data": "SUQzBAA="}},
        {"inlineData": {"mimeType": "application/pdf", "data": "JVBERi0="}},
        {"inlineData": {"mimeType": "application/pdf", "data": "JVBERi0="}},
        {"fileData": {"mimeType": "application/pdf", "fileUri": "https://example.com/doc.pdf"}},
        {"fileData": {"mimeType": "video/mp4",
                      "fileUri": "https://generativelanguage.googleapis.com/v1beta/files/abc"}},
    ]
    with pytest.raises(exc.MessageFormatError):
        dialect.build_request(ChatRequest(model="m", messages=(
            Message("user", (ImagePart("C:/pic.png"),)),)), ENDPOINT)


@pytest.mark.parametrize(("model", "effort", "config"), [
    ("gemini-2.5-flash", "low", {"thinkingBudget": 1024, "includeThoughts": True}),
    ("gemini-2.5-pro", "high", {"thinkingBudget": 24576, "includeThoughts": True}),
    ("gemini-2.5-flash", "none", {"thinkingBudget": 0}),
    ("gemini-2.5-flash", "3000", {"thinkingBudget": 3000, "includeThoughts": True}),
    ("gemini-flash-latest", "medium", {"thinkingBudget": 8192, "includeThoughts": True}),
    ("gemini-3-pro-preview", "high", {"thinkingLevel": "high", "includeThoughts": True}),
    ("gemini-3-flash-preview", "minimal", {"thinkingLevel": "minimal", "includeThoughts": True}),
    ("gemini-3.1-pro", "xhigh", {"thinkingLevel": "high", "includeThoughts": True}),
    ("gemini-3-pro-preview", "2048", {"thinkingBudget": 2048, "includeThoughts": True}),
])
def test_reasoning_effort(model: str, effort: str, config: dict) -> None:
    req = ChatRequest(model=model, messages=(Message("user", "x"),), reasoning_effort=effort)
    assert body(req)["generationConfig"] == {"thinkingConfig": config}


def test_unknown_effort_fails_before_the_call() -> None:
    req = ChatRequest(model="gemini-2.5-flash", messages=(Message("user", "x"),),
                      reasoning_effort="turbo")
    with pytest.raises(exc.InvalidParameterError, match="reasoning_effort"):
        dialect.build_request(req, ENDPOINT)


def test_extra_body_merges_one_level_deep() -> None:
    req = ChatRequest(model="gemini-2.5-flash", messages=(Message("user", "x"),),
                      temperature=0.0, extra={
                          "generationConfig": {"topK": 5},
                          "safetySettings": [{"category": "HARM_CATEGORY_HARASSMENT",
                                              "threshold": "BLOCK_NONE"}]})
    b = body(req)
    assert b["generationConfig"] == {"temperature": 0.0, "topK": 5}
    assert b["safetySettings"][0]["threshold"] == "BLOCK_NONE"


def test_gemini_version() -> None:
    assert dialect.gemini_version("gemini-2.5-flash-lite") == (2, 5)
    assert dialect.gemini_version("models/gemini-3-pro-preview") == (3, 0)
    assert dialect.gemini_version("gemini-flash-latest") is None


# ---------------------------------------------------------------- responses


def test_parse_text_thoughts_and_usage() -> None:
    raw = reply({
        "candidates": [{
            "content": {"parts": [
                {"text": "**Plan**\nAdd the numbers.", "thought": True},
                {"text": "The answer "},
                {"text": "is 123.", "thoughtSignature": "CikBtextsig"},
            ], "role": "model"},
            "finishReason": "STOP",
            "index": 0,
            "safetyRatings": [{"category": "HARM_CATEGORY_HARASSMENT",
                               "probability": "NEGLIGIBLE"}],
        }],
        "usageMetadata": {"promptTokenCount": 100, "candidatesTokenCount": 7,
                          "thoughtsTokenCount": 40, "cachedContentTokenCount": 64,
                          "totalTokenCount": 147,
                          "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 100}]},
        "modelVersion": "gemini-2.5-flash",
        "responseId": "mAitaJ3aC4",
    })
    c = dialect.parse_response(raw, None, "google")
    assert c.text == "The answer is 123."
    assert c.reasoning == "**Plan**\nAdd the numbers."
    assert c.reasoning_blocks == (ReasoningBlock("**Plan**\nAdd the numbers."),)
    assert c.tool_calls == ()
    assert (c.finish_reason, c.native_finish_reason) == ("stop", "STOP")
    assert (c.model, c.id) == ("gemini-2.5-flash", "mAitaJ3aC4")
    u = c.usage
    assert u is not None
    assert (u.prompt_tokens, u.completion_tokens, u.total_tokens) == (100, 47, 147)
    assert (u.cached_tokens, u.reasoning_tokens, u.cache_write_tokens) == (64, 40, None)


def test_parse_function_calls_with_signature_and_ids() -> None:
    raw = reply({"candidates": [{"content": {"role": "model", "parts": [
        {"functionCall": {"name": "get_weather", "args": {"location": "Paris"}},
         "thoughtSignature": "CiQBsig"},
        {"functionCall": {"id": "fc-given", "name": "get_time", "args": {}}},
        {"functionCall": {"name": "ping"}},
    ]}, "finishReason": "STOP"}],
        "usageMetadata": {"promptTokenCount": 10, "candidatesTokenCount": 5,
                          "totalTokenCount": 15}})
    c = dialect.parse_response(raw)
    assert c.tool_calls == (
        ToolCall("call_0", "get_weather", '{"location":"Paris"}', "CiQBsig"),
        ToolCall("fc-given", "get_time", "{}"),
        ToolCall("call_2", "ping", "{}"),
    )
    assert c.finish_reason == "tool_calls" and c.text == ""
    assert c.usage is not None and c.usage.reasoning_tokens is None


@pytest.mark.parametrize(("native", "finish"), [
    ("STOP", "stop"), ("MAX_TOKENS", "length"), ("SAFETY", "refusal"),
    ("RECITATION", "refusal"), ("PROHIBITED_CONTENT", "refusal"),
    ("MALFORMED_FUNCTION_CALL", "malformed_function_call"), ("OTHER", "other"),
])
def test_finish_reasons(native: str, finish: str) -> None:
    raw = reply({"candidates": [{"content": {"parts": [{"text": "x"}]}, "finishReason": native}]})
    c = dialect.parse_response(raw)
    assert (c.finish_reason, c.native_finish_reason) == (finish, native)


def test_blocked_prompt_and_bad_bodies() -> None:
    c = dialect.parse_response(reply({"promptFeedback": {"blockReason": "SAFETY"},
                                      "usageMetadata": {"promptTokenCount": 9,
                                                        "totalTokenCount": 9}}))
    assert (c.text, c.finish_reason, c.native_finish_reason) == ("", "refusal", "SAFETY")
    assert c.refusal == "google blocked the prompt (blockReason SAFETY)."
    assert c.usage is not None and c.usage.prompt_tokens == 9
    # A candidate cut off before any content (e.g. SAFETY on the first token).
    c = dialect.parse_response(reply({"candidates": [{"finishReason": "SAFETY"}]}))
    assert (c.text, c.finish_reason) == ("", "refusal")
    assert c.refusal == "google blocked the answer (finishReason SAFETY)."
    with pytest.raises(exc.ResponseError, match="no candidates"):
        dialect.parse_response(b"{}")
    with pytest.raises(exc.ResponseError, match="not a generateContent"):
        dialect.parse_response(b"not json")
    with pytest.raises(exc.RateLimitError):
        dialect.parse_response(reply({"error": {"code": 429, "message": "quota",
                                                "status": "RESOURCE_EXHAUSTED"}}))


# ---------------------------------------------------------------- streams


def test_stream_thoughts_then_text() -> None:
    asm, deltas, decoder = fold(events("thinking_text_stream.sse"))
    assert len(deltas) == 3 and not decoder.done  # Gemini streams have no end marker
    assert asm.reasoning == "**Counting up**\n\nThe user wants numbers 1 to 5."
    assert asm.text == "1, 2, 3, 4, 5"
    assert asm.finish_reason == "stop"
    assert (asm.model, asm.id) == ("gemini-2.5-flash", "resp-think-1")
    u = asm.usage
    assert u is not None
    assert (u.prompt_tokens, u.completion_tokens, u.total_tokens) == (12, 40, 52)
    assert (u.cached_tokens, u.reasoning_tokens) == (8, 31)


def test_stream_parallel_function_calls_round_trip() -> None:
    asm, _, _ = fold(events("parallel_function_calls_stream.sse"))
    assert asm.finish_reason == "tool_calls"
    agg = asm.aggregator()
    assert agg is not None
    calls = agg.get_calls()
    assert [c["function"] for c in calls] == [
        {"name": "get_weather", "arguments": {"location": "Paris, France"}},
        {"name": "get_weather", "arguments": {"location": "Tokyo, Japan", "unit": "celsius"}},
    ]
    for call in calls:
        agg.insert_results(call["id"], {"temp": 20})
    # The guide's tool-call flow: get_messages() back through the model's input normaliser.
    history = to_messages([{"role": "user", "content": "Weather?"}, *agg.get_messages()])
    contents = body(ChatRequest(model="gemini-3-pro-preview", messages=history))["contents"]
    assert contents[1]["parts"][0]["thoughtSignature"] == "CiQBjz1rX2sigParis"
    assert "thoughtSignature" not in contents[1]["parts"][1]
    assert [p["functionResponse"]["name"] for p in contents[2]["parts"]] == [
        "get_weather", "get_weather"]
    assert contents[2]["parts"][0]["functionResponse"]["response"] == {"temp": 20}


def test_stream_error_chunk_is_typed() -> None:
    evs = events("overloaded_midstream.sse")
    decoder = dialect.stream_decoder(None, "google")
    assert decoder.feed(evs[0]) == Delta(text="Partial", model="gemini-2.5-pro")
    with pytest.raises(exc.OverloadedError) as info:
        decoder.feed(evs[1])
    assert info.value.status == 503 and info.value.retryable
    with pytest.raises(exc.RateLimitError):
        decoder.feed(SSEEvent(b'{"error":{"message":"quota","status":"RESOURCE_EXHAUSTED"}}'))


def test_stream_usage_only_and_blocked_chunks() -> None:
    decoder = dialect.stream_decoder()
    d = decoder.feed(SSEEvent(b'{"usageMetadata":{"promptTokenCount":3,"totalTokenCount":3}}'))
    assert d is not None and d.usage is not None and d.usage.prompt_tokens == 3
    assert decoder.feed(SSEEvent(b"{}")) is None
    d = decoder.feed(SSEEvent(b'{"promptFeedback":{"blockReason":"PROHIBITED_CONTENT"}}'))
    assert d is not None and d.finish_reason == "refusal"
    assert d.refusal == "google blocked the prompt (blockReason PROHIBITED_CONTENT)."
    with pytest.raises(exc.ResponseError, match="not valid JSON"):
        decoder.feed(SSEEvent(b'{"candidates": ['))


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize(("status", "kind", "message", "cls"), [
    (400, "INVALID_ARGUMENT", "Request contains an invalid argument.", exc.BadRequestError),
    (400, "FAILED_PRECONDITION", "User location is not supported", exc.BadRequestError),
    (401, "UNAUTHENTICATED", "API key not valid.", exc.AuthenticationError),
    (403, "PERMISSION_DENIED", "denied", exc.PermissionDeniedError),
    (404, "NOT_FOUND", "models/gemini-9 is not found", exc.NotFoundError),
    (429, "RESOURCE_EXHAUSTED", "You exceeded your current quota.", exc.RateLimitError),
    (500, "INTERNAL", "An internal error has occurred.", exc.ServerError),
    (503, "UNAVAILABLE", "The model is overloaded. Please try again later.",
     exc.OverloadedError),
    (503, "UNAVAILABLE", "The service is currently unavailable.", exc.ServerError),
    (504, "DEADLINE_EXCEEDED", "Deadline expired", exc.ServerError),
])
def test_parse_error(status: int, kind: str, message: str, cls: type) -> None:
    raw = reply({"error": {"code": status, "message": message, "status": kind,
                           "details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo",
                                        "retryDelay": "13s"}]}})
    err = dialect.parse_error(status, [], raw, "google", retry_after=13.0)
    assert type(err) is cls
    assert err.status == status and err.message == message and err.code == str(status)
    assert err.retry_after == 13.0 and err.provider == "google"


def test_parse_error_other_shapes() -> None:
    listed = b'[{"error": {"code": 429, "message": "quota", "status": "RESOURCE_EXHAUSTED"}}]'
    err = dialect.parse_error(429, [], listed, "google")
    assert isinstance(err, exc.RateLimitError) and err.message == "quota"
    err = dialect.parse_error(502, [], b"<html>Bad Gateway</html>", "google")
    assert isinstance(err, exc.ServerError) and "Bad Gateway" in err.message
