"""The anthropic dialect on recorded payloads: no I/O at all.

Payloads follow Anthropic's Messages API reference (request bodies, responses,
streaming events, errors); ``data/anthropic/llamacpp_*.sse`` are raw streams
captured from llama.cpp's ``/v1/messages``.
"""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import recorded
from msgflux import exceptions as exc
from msgflux._transport.types import SSEEvent
from msgflux.models.dialects import anthropic as dialect
from msgflux.models.dialects.base import Endpoint
from msgflux.models.request import (
    AudioPart,
    CacheHint,
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
    as_delta,
)
from msgflux.models.stream import StreamAssembler

DATA = Path(__file__).parent / "data" / "anthropic"
ENDPOINT = Endpoint("anthropic", "https://api.anthropic.com", "sk-ant-test")
WEATHER = {
    "type": "object",
    "properties": {"location": {"type": "string"}, "unit": {"type": "string",
                                                             "enum": ["celsius", "fahrenheit"]}},
    "required": ["location"],
}
EVENT_SCHEMA = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "participants": {
        "type": "array", "items": {"type": "string"}, "minItems": 2, "maxItems": 9}},
    "required": ["name", "participants"],
}
EVENT_OUTPUT = OutputSchema("CalendarEvent", EVENT_SCHEMA,
                            {**EVENT_SCHEMA, "additionalProperties": False})


def body(request: ChatRequest, endpoint: Endpoint = ENDPOINT) -> dict:
    return recorded.body(dialect, request, endpoint)


def events(name: str) -> list[SSEEvent]:
    return recorded.events(DATA / name)


def fold(evs: list[SSEEvent], request: ChatRequest | None = None
         ) -> tuple[StreamAssembler, list[Delta], dialect.StreamDecoder]:
    return recorded.fold(dialect.stream_decoder(request, "anthropic"), evs)


def sse(obj: dict) -> SSEEvent:
    return SSEEvent(msgspec.json.encode(obj), obj.get("type"))


# ---------------------------------------------------------------- requests


def test_request_body_headers_and_url_exact() -> None:
    req = ChatRequest(
        model="claude-3-5-sonnet-20241022",
        messages=(
            Message("system", "You are a helpful assistant."),
            Message("user", "Hello!"),
            Message("assistant", "Hi! How can I help?"),
            Message("user", "Tell me a joke."),
        ),
        temperature=0.7,
        top_p=0.9,
        stop=("END", "STOP"),
        seed=3,  # the Messages API has no seed: not sent
    )
    http = dialect.build_request(req, ENDPOINT)
    assert http.method == "POST"
    assert http.url == "https://api.anthropic.com/v1/messages"
    assert not http.stream
    headers = dict(http.headers)
    assert headers["x-api-key"] == "sk-ant-test"
    assert headers["anthropic-version"] == "2023-06-01"
    assert headers["content-type"] == "application/json"
    assert headers["accept"] == "application/json"
    assert "authorization" not in headers and "anthropic-beta" not in headers
    assert "sk-ant-test" not in http.url and "sk-ant-test" not in repr(http)
    assert msgspec.json.decode(http.body) == {
        "model": "claude-3-5-sonnet-20241022",
        "system": "You are a helpful assistant.",
        "messages": [
            {"role": "user", "content": "Hello!"},
            {"role": "assistant", "content": "Hi! How can I help?"},
            {"role": "user", "content": "Tell me a joke."},
        ],
        "max_tokens": dialect.DEFAULT_MAX_TOKENS,
        "temperature": 0.7,
        "top_p": 0.9,
        "stop_sequences": ["END", "STOP"],
    }


@pytest.mark.parametrize(("base", "url"), [
    ("https://api.anthropic.com", "https://api.anthropic.com/v1/messages"),
    ("https://api.anthropic.com/", "https://api.anthropic.com/v1/messages"),
    ("https://api.minimax.io/anthropic/v1", "https://api.minimax.io/anthropic/v1/messages"),
    ("http://127.0.0.1:8080/v1/", "http://127.0.0.1:8080/v1/messages"),
    ("https://proxy.example/anthropic", "https://proxy.example/anthropic/v1/messages"),
])
def test_url_rules(base: str, url: str) -> None:
    req = ChatRequest(model="m", messages=(Message("user", "x"),))
    assert dialect.build_request(req, Endpoint("anthropic", base)).url == url


def test_version_override_extra_headers_stream_and_extra_body() -> None:
    endpoint = Endpoint("anthropic", "https://api.anthropic.com", "k",
                        headers=(("anthropic-beta", "interleaved-thinking-2025-05-14"),),
                        api_version="2024-01-01")
    req = ChatRequest(model="claude-3-5-haiku-latest", messages=(Message("user", "x"),),
                      max_tokens=50, stream=True, extra={"metadata": {"user_id": "u1"},
                                                         "top_k": 5})
    http = dialect.build_request(req, endpoint)
    headers = dict(http.headers)
    assert headers["anthropic-version"] == "2024-01-01"
    assert headers["anthropic-beta"] == "interleaved-thinking-2025-05-14"
    assert headers["accept"] == "text/event-stream"
    assert http.stream
    b = msgspec.json.decode(http.body)
    assert b["stream"] is True and b["max_tokens"] == 50
    assert b["metadata"] == {"user_id": "u1"} and b["top_k"] == 5


def test_no_key_no_header() -> None:
    req = ChatRequest(model="m", messages=(Message("user", "x"),))
    headers = dict(dialect.build_request(req, Endpoint("anthropic", "http://h")).headers)
    assert "x-api-key" not in headers


def test_system_messages_anywhere_are_hoisted_and_joined() -> None:
    req = ChatRequest(model="m", messages=(
        Message("system", "First."),
        Message("user", "a"),
        Message("system", (TextPart("Second."),)),
    ))
    b = body(req)
    assert b["system"] == "First.\n\nSecond."
    assert b["messages"] == [{"role": "user", "content": "a"}]


def test_tool_loop_history_round_trip() -> None:
    """Thinking blocks and tool calls go back intact; results merge into one user turn."""
    req = ChatRequest(
        model="claude-sonnet-4-20250514",
        messages=(
            Message("user", "Weather in Paris and Tokyo?"),
            Message(
                "assistant", "I'll check both.",
                tool_calls=(ToolCall("toolu_1", "get_weather", '{"location": "Paris"}'),
                            ToolCall("toolu_2", "get_weather", '{"location":"Tokyo"}')),
                reasoning=(ReasoningBlock("Two cities.", "sig-1"),
                           ReasoningBlock(redacted="ENCRYPTED"),
                           ReasoningBlock("unsigned text from another provider")),
            ),
            Message("tool", "22C sunny", tool_call_id="toolu_1"),
            Message("tool", (TextPart("18C rain"),), tool_call_id="toolu_2"),
            Message("user", "Thanks! Which is warmer?"),
            Message("user", "Answer briefly."),
        ),
        tools=(ToolSpec("get_weather", "Get weather.", WEATHER),),
    )
    b = body(req)
    assert b["messages"] == [
        {"role": "user", "content": "Weather in Paris and Tokyo?"},
        {"role": "assistant", "content": [
            {"type": "thinking", "thinking": "Two cities.", "signature": "sig-1"},
            {"type": "redacted_thinking", "data": "ENCRYPTED"},
            {"type": "text", "text": "I'll check both."},
            {"type": "tool_use", "id": "toolu_1", "name": "get_weather",
             "input": {"location": "Paris"}},
            {"type": "tool_use", "id": "toolu_2", "name": "get_weather",
             "input": {"location": "Tokyo"}},
        ]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_1", "content": "22C sunny"},
            {"type": "tool_result", "tool_use_id": "toolu_2",
             "content": [{"type": "text", "text": "18C rain"}]},
            {"type": "text", "text": "Thanks! Which is warmer?"},
            {"type": "text", "text": "Answer briefly."},
        ]},
    ]
    assert b["tools"] == [{"name": "get_weather", "description": "Get weather.",
                           "input_schema": WEATHER}]
    assert "tool_choice" not in b


def test_openai_responses_reasoning_items_are_not_sent_to_claude() -> None:
    """A history from an OpenAI Responses model (a fallback, a switched model) carries
    encrypted reasoning items only OpenAI can read: Anthropic would refuse them."""
    req = ChatRequest(model="claude-sonnet-4-5", messages=(
        Message("user", "q"),
        Message("assistant", None, tool_calls=(ToolCall("call_1", "f", "{}"),),
                reasoning=(ReasoningBlock("summary", redacted="gAAAA-openai", id="rs_1"),)),
        Message("tool", "r", tool_call_id="call_1"),
    ))
    assert body(req)["messages"][1] == {"role": "assistant", "content": [
        {"type": "tool_use", "id": "call_1", "name": "f", "input": {}}]}


def test_tool_call_turn_without_text_and_empty_turns() -> None:
    req = ChatRequest(model="m", messages=(
        Message("user", "q"),
        Message("assistant", None, tool_calls=(ToolCall("t1", "f", ""),)),
        Message("tool", "", tool_call_id="t1"),
        Message("assistant", ""),  # says nothing: dropped
    ))
    b = body(req)
    assert b["messages"] == [
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "f",
                                           "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1"}]},
    ]
    # The guide's last call sends the tool loop without tool_schemas; the API wants the
    # called tools defined, so they are declared and no further call is asked for.
    assert b["tools"] == [{"name": "f", "description": "Called earlier in this conversation.",
                           "input_schema": {"type": "object"}}]
    assert b["tool_choice"] == {"type": "none"}


def test_history_tools_missing_from_tool_schemas_are_declared() -> None:
    req = ChatRequest(model="m", messages=(
        Message("assistant", None, tool_calls=(ToolCall("t1", "old", "{}"),
                                               ToolCall("t2", "get_weather", "{}"))),
        Message("tool", "x", tool_call_id="t1"), Message("tool", "y", tool_call_id="t2"),
    ), tools=(ToolSpec("get_weather", None, WEATHER),), tool_choice=ToolChoice("auto"))
    b = body(req)
    assert [t["name"] for t in b["tools"]] == ["get_weather", "old"]
    assert b["tool_choice"] == {"type": "auto"}


def test_tool_arguments_that_are_not_an_object_fail_before_the_call() -> None:
    req = ChatRequest(model="m", messages=(
        Message("assistant", None, tool_calls=(ToolCall("t1", "f", "[1, 2]"),)),
    ))
    with pytest.raises(exc.MessageFormatError, match="not a JSON object"):
        dialect.build_request(req, ENDPOINT)


@pytest.mark.parametrize(("choice", "wire"), [
    (ToolChoice("auto"), {"type": "auto"}),
    (ToolChoice("required"), {"type": "any"}),
    (ToolChoice("none"), {"type": "none"}),
    (ToolChoice("tool", "get_weather"), {"type": "tool", "name": "get_weather"}),
])
def test_tool_choice(choice: ToolChoice, wire: dict) -> None:
    req = ChatRequest(model="claude-3-5-sonnet-20241022", messages=(Message("user", "x"),),
                      tools=(ToolSpec("get_weather", None, None, strict=True),),
                      tool_choice=choice)
    b = body(req)
    assert b["tool_choice"] == wire
    # No parameters: an empty object schema. strict: only where structured outputs exist.
    assert b["tools"] == [{"name": "get_weather",
                           "input_schema": {"type": "object", "properties": {}}}]


def test_parallel_tool_calls_off_and_strict_tools_on_new_models() -> None:
    req = ChatRequest(model="claude-sonnet-4-5", messages=(Message("user", "x"),),
                      tools=(ToolSpec("f", None, WEATHER, strict=True),),
                      tool_choice=ToolChoice("required"), parallel_tool_calls=False)
    b = body(req)
    assert b["tool_choice"] == {"type": "any", "disable_parallel_tool_use": True}
    assert b["tools"][0]["strict"] is True
    req = ChatRequest(model="m", messages=(Message("user", "x"),),
                      tools=(ToolSpec("f"),), parallel_tool_calls=False)
    assert body(req)["tool_choice"] == {"type": "auto", "disable_parallel_tool_use": True}


def test_structured_output_as_forced_tool_on_older_models() -> None:
    req = ChatRequest(model="claude-3-5-sonnet-20241022",
                      messages=(Message("user", "Alice and Bob go to a fair on Friday."),),
                      output=EVENT_OUTPUT)
    b = body(req)
    assert b["tools"] == [{"name": "CalendarEvent",
                           "description": "Give the answer as this tool's input.",
                           "input_schema": EVENT_SCHEMA}]
    assert b["tool_choice"] == {"type": "tool", "name": "CalendarEvent"}
    assert "output_config" not in b


def test_structured_output_alongside_tools_and_thinking() -> None:
    tools = (ToolSpec("CalendarEvent", None, WEATHER), ToolSpec("get_weather", None, WEATHER))
    req = ChatRequest(model="claude-3-7-sonnet-20250219", messages=(Message("user", "x"),),
                      output=EVENT_OUTPUT, tools=tools, tool_choice=ToolChoice("auto"))
    b = body(req)
    # The answer tool keeps clear of the caller's names; either kind of call is forced.
    assert [t["name"] for t in b["tools"]] == ["CalendarEvent", "get_weather",
                                               "json_CalendarEvent"]
    assert b["tool_choice"] == {"type": "any"}
    req = ChatRequest(model="claude-3-7-sonnet-20250219", messages=(Message("user", "x"),),
                      output=EVENT_OUTPUT, reasoning_effort="low")
    b = body(req)
    assert b["tool_choice"] == {"type": "auto"}  # forcing a tool is refused with thinking
    assert b["thinking"] == {"type": "enabled", "budget_tokens": 2048}


def test_structured_output_native_on_claude_4_5() -> None:
    schema = {**EVENT_OUTPUT.strict_schema, "title": "CalendarEvent",
              "properties": {**EVENT_SCHEMA["properties"],
                             "minimum": {"type": "integer", "minimum": 3}}}
    out = OutputSchema("CalendarEvent", EVENT_SCHEMA, schema)
    req = ChatRequest(model="claude-sonnet-4-5-20250929", messages=(Message("user", "x"),),
                      output=out)
    b = body(req)
    assert "tools" not in b
    assert b["output_config"] == {"format": {"type": "json_schema", "schema": {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "participants": {"type": "array", "items": {"type": "string"},
                                 "description": "(minItems: 2, maxItems: 9)"},
            # A property named like a keyword stays; the constraint the format rejects
            # is said in the description (and enforced when decoding).
            "minimum": {"type": "integer", "description": "(minimum: 3)"},
        },
        "required": ["name", "participants"],
        "additionalProperties": False,
    }}}


def test_prefill_is_a_trailing_assistant_turn() -> None:
    req = ChatRequest(model="claude-3-5-sonnet-20241022",
                      messages=(Message("user", "What is 30 * 3 + 33?"),),
                      prefill="Let's think step by step:")
    assert body(req)["messages"] == [
        {"role": "user", "content": "What is 30 * 3 + 33?"},
        {"role": "assistant", "content": "Let's think step by step:"},
    ]
    # Trailing whitespace is refused by the API: cut, and the continuation's dropped.
    req = ChatRequest(model="m", messages=(Message("user", "q"), Message("assistant", "So")),
                      prefill="the answer is ")
    assert body(req)["messages"][-1] == {"role": "assistant", "content": [
        {"type": "text", "text": "So"}, {"type": "text", "text": "the answer is"}]}
    reply = {"content": [{"type": "text", "text": " 42."}], "stop_reason": "end_turn"}
    assert dialect.parse_response(msgspec.json.encode(reply), req).text == "42."
    asm, _, _ = fold([sse({"type": "content_block_start", "index": 0,
                           "content_block": {"type": "text", "text": ""}}),
                      sse({"type": "content_block_delta", "index": 0,
                           "delta": {"type": "text_delta", "text": " "}}),
                      sse({"type": "content_block_delta", "index": 0,
                           "delta": {"type": "text_delta", "text": " 42"}}),
                      sse({"type": "content_block_delta", "index": 0,
                           "delta": {"type": "text_delta", "text": " and more"}})], req)
    assert asm.text == "42 and more"


def test_prefill_on_claude_4_6_fails_before_the_call() -> None:
    req = ChatRequest(model="claude-sonnet-4-6", messages=(Message("user", "q"),),
                      prefill="{")
    with pytest.raises(exc.PrefillNotSupportedError, match=r"4\.6"):
        dialect.build_request(req, ENDPOINT)


def test_images_documents_and_beta_header() -> None:
    pdf = "data:application/pdf;base64,JVBERi0xLjQK"
    req = ChatRequest(model="m", messages=(Message("user", (
        TextPart("Compare"),
        ImagePart("https://example.com/image1.jpg"),
        ImagePart("data:image/png;base64,iVBORw0KGgo=", "high"),
        FilePart(data=pdf, filename="report.pdf", media_type="application/pdf"),
        FilePart(url="https://example.com/paper.pdf"),
        FilePart(url="https://example.com/photo.webp"),
        FilePart(data="data:text/plain;base64,aGVsbG8gd29ybGQ="),
        FilePart(file_id="file_011CNha8iCJcU1wXNR6q4V8w"),
        FilePart(data="data:image/gif;base64,R0lGOD"),
    )),))
    http = dialect.build_request(req, ENDPOINT)
    assert dict(http.headers)["anthropic-beta"] == "files-api-2025-04-14"
    assert msgspec.json.decode(http.body)["messages"][0]["content"] == [
        {"type": "text", "text": "Compare"},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/image1.jpg"}},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                     "data": "iVBORw0KGgo="}},
        {"type": "document", "source": {"type": "base64", "media_type": "application/pdf",
                                        "data": "JVBERi0xLjQK"}, "title": "report.pdf"},
        {"type": "document", "source": {"type": "url", "url": "https://example.com/paper.pdf"}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/photo.webp"}},
        {"type": "document", "source": {"type": "text", "media_type": "text/plain",
                                        "data": "hello world"}},
        {"type": "document", "source": {"type": "file",
                                        "file_id": "file_011CNha8iCJcU1wXNR6q4V8w"}},
        {"type": "image", "source": {"type": "base64", "media_type": "image/gif",
                                     "data": "R0lGOD"}},
    ]


def test_unusable_media_fails_before_the_call() -> None:
    audio = ChatRequest(model="m", messages=(Message("user", (AudioPart("UklGR", "wav"),)),))
    with pytest.raises(exc.CapabilityError, match="audio"):
        dialect.build_request(audio, ENDPOINT)
    local = ChatRequest(model="m", messages=(Message("user", (ImagePart("/tmp/x.png"),)),))
    with pytest.raises(exc.MessageFormatError, match="https://"):
        dialect.build_request(local, ENDPOINT)


@pytest.mark.parametrize(("model", "effort", "max_tokens", "thinking", "sent_max", "config"), [
    ("claude-3-7-sonnet-20250219", "low", None, {"type": "enabled", "budget_tokens": 2048},
     4096 + 2048, None),
    ("claude-3-7-sonnet-20250219", "high", 64000, {"type": "enabled", "budget_tokens": 16384},
     64000, None),
    # max_tokens counts thinking: the budget keeps half of it for the answer
    ("claude-sonnet-4-20250514", "high", 8000, {"type": "enabled", "budget_tokens": 4000},
     8000, None),
    # a small cap still holds the minimum budget
    ("claude-opus-4-1", "medium", 1500, {"type": "enabled", "budget_tokens": 1024}, 1500, None),
    ("claude-sonnet-4-5", "3000", 32000, {"type": "enabled", "budget_tokens": 3000}, 32000,
     None),
    ("claude-opus-4-6", "medium", 16000, {"type": "adaptive"}, 16000, {"effort": "medium"}),
    ("claude-sonnet-4-6", "max", None, {"type": "adaptive"}, 4096, {"effort": "max"}),
    ("claude-opus-4-7", "xhigh", None, {"type": "adaptive"}, 4096, {"effort": "xhigh"}),
    ("claude-3-7-sonnet-latest", "none", None, None, 4096, None),
])
def test_reasoning_effort(model: str, effort: str, max_tokens: int | None, thinking: dict | None,
                          sent_max: int, config: dict | None) -> None:
    req = ChatRequest(model=model, messages=(Message("user", "x"),), max_tokens=max_tokens,
                      reasoning_effort=effort)
    b = body(req)
    assert b.get("thinking") == thinking
    assert b["max_tokens"] == sent_max
    assert b.get("output_config") == config
    if thinking and thinking["type"] == "enabled":
        assert thinking["budget_tokens"] < b["max_tokens"]


def test_unknown_effort_fails_before_the_call() -> None:
    req = ChatRequest(model="claude-3-7-sonnet-20250219", messages=(Message("user", "x"),),
                      reasoning_effort="extreme")
    with pytest.raises(exc.InvalidParameterError, match="reasoning_effort"):
        dialect.build_request(req, ENDPOINT)


def test_claude_version() -> None:
    v = dialect.claude_version
    assert v("claude-3-5-sonnet-20241022") == (3, 5)
    assert v("claude-3-opus-20240229") == (3, 0)
    assert v("claude-sonnet-4-20250514") == (4, 0)
    assert v("claude-opus-4-1-20250805") == (4, 1)
    assert v("claude-haiku-4-5@20251001") == (4, 5)
    assert v("us.anthropic.claude-3-7-sonnet-20250219-v1:0") == (3, 7)
    assert v("MiniMax-M2") is None


# ---------------------------------------------------------------- responses

FULL_RESPONSE = {
    "id": "msg_01XFDUDYJgAACzvnptvVoYEL",
    "type": "message",
    "role": "assistant",
    "model": "claude-sonnet-4-20250514",
    "content": [
        {"type": "thinking", "thinking": "Let me think.", "signature": "WaUjzkypQ2mUEVM36O2T"},
        {"type": "redacted_thinking", "data": "EmwKAhgBEgy3va3pzix"},
        {"type": "thinking", "thinking": " More.", "signature": "sig2"},
        {"type": "text", "text": "I'll look that up.",
         "citations": [{"type": "char_location", "cited_text": "x"}]},
        {"type": "tool_use", "id": "toolu_01A09q90qw90lq917835lq9", "name": "get_weather",
         "input": {"location": "San Francisco, CA", "unit": "celsius"}},
        {"type": "tool_use", "id": "toolu_01B", "name": "get_time", "input": {}},
        {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search",
         "input": {"query": "x"}},
    ],
    "stop_reason": "tool_use",
    "stop_sequence": None,
    "usage": {"input_tokens": 2095, "output_tokens": 503, "cache_creation_input_tokens": 100,
              "cache_read_input_tokens": 1800, "service_tier": "standard",
              "cache_creation": {"ephemeral_5m_input_tokens": 100,
                                 "ephemeral_1h_input_tokens": 0}},
}


def test_parse_full_response() -> None:
    c = dialect.parse_response(msgspec.json.encode(FULL_RESPONSE), None, "anthropic")
    assert c.id == "msg_01XFDUDYJgAACzvnptvVoYEL"
    assert c.model == "claude-sonnet-4-20250514"
    assert c.text == "I'll look that up."
    assert c.reasoning == "Let me think. More."
    assert c.reasoning_blocks == (ReasoningBlock("Let me think.", "WaUjzkypQ2mUEVM36O2T"),
                                  ReasoningBlock(redacted="EmwKAhgBEgy3va3pzix"),
                                  ReasoningBlock(" More.", "sig2"))
    assert [(t.id, t.name) for t in c.tool_calls] == [
        ("toolu_01A09q90qw90lq917835lq9", "get_weather"), ("toolu_01B", "get_time")]
    assert msgspec.json.decode(c.tool_calls[0].arguments) == {
        "location": "San Francisco, CA", "unit": "celsius"}
    assert c.tool_calls[1].arguments == "{}"
    assert c.finish_reason == "tool_calls" and c.native_finish_reason == "tool_use"
    u = c.usage
    assert u is not None
    assert (u.prompt_tokens, u.completion_tokens, u.total_tokens) == (3995, 503, 4498)
    assert (u.cached_tokens, u.cache_write_tokens) == (1800, 100)


@pytest.mark.parametrize(("native", "finish"), [
    ("end_turn", "stop"), ("stop_sequence", "stop"), ("max_tokens", "length"),
    ("tool_use", "tool_calls"), ("refusal", "refusal"),
    ("model_context_window_exceeded", "length"), ("pause_turn", "pause_turn"),
])
def test_stop_reasons(native: str, finish: str) -> None:
    reply = {"id": "m", "type": "message", "content": [{"type": "text", "text": "x"}],
             "stop_reason": native, "usage": {"input_tokens": 1, "output_tokens": 1}}
    c = dialect.parse_response(msgspec.json.encode(reply))
    assert (c.finish_reason, c.native_finish_reason) == (finish, native)
    assert (c.refusal is not None) == (native == "refusal") and c.text == "x"
    assert c.usage is not None and c.usage.cached_tokens is None


def test_structured_answer_tool_comes_back_as_text() -> None:
    req = ChatRequest(model="claude-3-5-sonnet-20241022", messages=(Message("user", "x"),),
                      output=EVENT_OUTPUT)
    reply = {"id": "m", "type": "message", "stop_reason": "tool_use",
             "content": [{"type": "tool_use", "id": "toolu_x", "name": "CalendarEvent",
                          "input": {"name": "science fair", "participants": ["Alice", "Bob"]}}],
             "usage": {"input_tokens": 5, "output_tokens": 9}}
    c = dialect.parse_response(msgspec.json.encode(reply), req)
    assert c.tool_calls == ()
    assert msgspec.json.decode(c.text) == {"name": "science fair",
                                           "participants": ["Alice", "Bob"]}
    assert c.finish_reason == "stop"
    # The native path (Claude 4.5) answers with a text block.
    native = ChatRequest(model="claude-opus-4-5", messages=(Message("user", "x"),),
                         output=EVENT_OUTPUT)
    reply = {"content": [{"type": "text", "text": '{"name":"a","participants":[]}'}],
             "stop_reason": "end_turn"}
    assert dialect.parse_response(msgspec.json.encode(reply), native).text == (
        '{"name":"a","participants":[]}')


def test_bad_bodies() -> None:
    with pytest.raises(exc.ResponseError, match="not a Messages response"):
        dialect.parse_response(b"<html>bad gateway</html>")
    with pytest.raises(exc.ResponseError, match="without content"):
        dialect.parse_response(b'{"id": "x"}')
    with pytest.raises(exc.OverloadedError):
        dialect.parse_response(
            b'{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}')


# ---------------------------------------------------------------- streams


def test_stream_thinking_signature_text_and_parallel_tools() -> None:
    asm, deltas, decoder = fold(events("thinking_parallel_tools.sse"))
    assert decoder.done and deltas[-1].done
    assert asm.id == "msg_01ThinkTools" and asm.model == "claude-sonnet-4-5-20250929"
    assert asm.reasoning == ("The user wants the weather in two cities. "
                             "I can call get_weather for both at once.")
    assert asm.reasoning_blocks() == (ReasoningBlock(
        asm.reasoning, "EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds"),)
    assert asm.text == "I'll check both cities."
    agg = asm.aggregator()
    assert agg is not None
    assert agg.get_calls() == [
        {"id": "toolu_01Paris", "type": "function",
         "function": {"name": "get_weather", "arguments": {"location": "Paris, France"}}},
        {"id": "toolu_02Tokyo", "type": "function",
         "function": {"name": "get_weather",
                      "arguments": {"location": "Tokyo, Japan", "unit": "celsius"}}},
    ]
    assert asm.finish_reason == "tool_calls"
    u = asm.usage
    assert u is not None
    assert (u.prompt_tokens, u.completion_tokens, u.total_tokens) == (3544, 189, 3733)
    assert (u.cached_tokens, u.cache_write_tokens) == (2048, 1024)
    # The tool-loop messages carry the signed thinking block back.
    agg.insert_results("toolu_01Paris", "22C")
    agg.insert_results("toolu_02Tokyo", "18C")
    assistant = agg.get_messages()[0]
    assert assistant["thinking_blocks"] == [{"type": "thinking", "thinking": asm.reasoning,
                                             "signature": asm.blocks[0].signature}]


def test_stream_redacted_thinking_citations_and_cumulative_usage() -> None:
    asm, _, decoder = fold(events("redacted_and_text.sse"))
    assert decoder.done
    assert asm.text == "The answer is 123."
    assert asm.reasoning_blocks() == (
        ReasoningBlock(redacted="EmwKAhgBEgy3va3pzix/LafPsn4aDFIT2Xlxh0L5L8rLVyIwxtE3rAFBa8cr3qpPkNRj2YfWXGmKDxH4mPnZ5sQ7vB5URj"),
        ReasoningBlock("Simple arithmetic: 30 * 3 = 90, plus 33 is 123.", "sig-block-1"),
    )
    assert asm.finish_reason == "stop"
    u = asm.usage
    assert u is not None
    assert (u.prompt_tokens, u.completion_tokens, u.cached_tokens, u.cache_write_tokens) == (
        25, 64, 0, 0)


def test_stream_usage_without_a_start_count_is_the_final_one() -> None:
    # A compatible server may leave message_start without usage: the final
    # message_delta's counts stand alone, cache reads and writes added back.
    asm, _, _ = fold([
        sse({"type": "message_start", "message": {"id": "m1", "model": "c"}}),
        sse({"type": "content_block_delta", "index": 0,
             "delta": {"type": "text_delta", "text": "ok"}}),
        sse({"type": "message_delta", "delta": {"stop_reason": "end_turn"},
             "usage": {"input_tokens": 7, "output_tokens": 2, "cache_read_input_tokens": 3}}),
        sse({"type": "message_stop"}),
    ])
    u = asm.usage
    assert u is not None
    assert (u.prompt_tokens, u.completion_tokens, u.total_tokens, u.cached_tokens) == (
        10, 2, 12, 3)


def test_stream_error_event_is_typed() -> None:
    evs = events("overloaded_midstream.sse")
    decoder = dialect.stream_decoder(None, "anthropic")
    got = [decoder.feed(e) for e in evs[:-1]]
    assert as_delta(got[-1]) == Delta(text="Partial")
    with pytest.raises(exc.OverloadedError) as info:
        decoder.feed(evs[-1])
    assert info.value.status is None and info.value.error_type == "overloaded_error"
    assert info.value.retryable
    rate = sse({"type": "error", "error": {"type": "rate_limit_error", "message": "slow down"}})
    with pytest.raises(exc.RateLimitError, match="slow down"):
        decoder.feed(rate)
    # An OpenAI-shaped error from a compatible server.
    with pytest.raises(exc.ServerError):
        decoder.feed(SSEEvent(b'{"error":{"code":500,"message":"boom","type":"server_error"}}'))


def test_stream_malformed_event() -> None:
    with pytest.raises(exc.ResponseError, match="not valid JSON"):
        dialect.stream_decoder().feed(SSEEvent(b'{"type": "content_block_delta", '))


def test_stream_ping_and_unknown_events_are_ignored() -> None:
    decoder = dialect.stream_decoder()
    assert decoder.feed(SSEEvent(b'{"type": "ping"}', "ping")) is None
    assert decoder.feed(sse({"type": "brand_new_event", "x": 1})) is None
    assert decoder.feed(sse({"type": "content_block_stop", "index": 0})) is None
    assert not decoder.done


def test_stream_structured_answer_tool_streams_as_text() -> None:
    req = ChatRequest(model="claude-3-5-sonnet-20241022", messages=(Message("user", "x"),),
                      output=EVENT_OUTPUT)
    asm, _, decoder = fold([
        sse({"type": "message_start", "message": {"id": "m1", "model": "c", "usage": {
            "input_tokens": 3, "output_tokens": 1}}}),
        sse({"type": "content_block_start", "index": 0, "content_block": {
            "type": "tool_use", "id": "toolu_1", "name": "CalendarEvent", "input": {}}}),
        sse({"type": "content_block_delta", "index": 0, "delta": {
            "type": "input_json_delta", "partial_json": '{"name": "fair", '}}),
        sse({"type": "content_block_delta", "index": 0, "delta": {
            "type": "input_json_delta", "partial_json": '"participants": ["Al"]}'}}),
        sse({"type": "content_block_stop", "index": 0}),
        sse({"type": "message_delta", "delta": {"stop_reason": "tool_use"},
             "usage": {"output_tokens": 12}}),
        sse({"type": "message_stop"}),
    ], req)
    assert decoder.done
    assert asm.tools is None
    assert msgspec.json.decode(asm.text) == {"name": "fair", "participants": ["Al"]}
    assert asm.finish_reason == "stop"


def test_stream_tool_input_sent_whole_at_block_start() -> None:
    asm, _, _ = fold([sse({"type": "content_block_start", "index": 1, "content_block": {
        "type": "tool_use", "id": "t9", "name": "f", "input": {"a": 1}}})])
    agg = asm.aggregator()
    assert agg is not None and agg.get_calls()[0]["function"]["arguments"] == {"a": 1}


def test_recorded_llamacpp_text_stream() -> None:
    asm, deltas, decoder = fold(events("llamacpp_text.sse"))
    assert decoder.done
    assert asm.text and asm.tools is None
    assert asm.finish_reason in ("stop", "length")
    assert asm.usage is not None and asm.usage.completion_tokens == sum(
        1 for d in deltas if d.text)  # llama.cpp sends one token per delta
    assert asm.model == "smollm2-135m-instruct"


def test_recorded_llamacpp_tool_stream() -> None:
    asm, _, decoder = fold(events("llamacpp_tool_use.sse"))
    assert decoder.done
    agg = asm.aggregator()
    assert agg is not None
    calls = agg.get_calls()
    assert len(calls) == 1 and calls[0]["function"]["name"] == "get_weather"
    assert isinstance(calls[0]["function"]["arguments"]["location"], str)
    assert asm.finish_reason == "tool_calls"


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize(("status", "kind", "cls"), [
    (400, "invalid_request_error", exc.BadRequestError),
    (401, "authentication_error", exc.AuthenticationError),
    (403, "permission_error", exc.PermissionDeniedError),
    (404, "not_found_error", exc.NotFoundError),
    (413, "request_too_large", exc.BadRequestError),
    (429, "rate_limit_error", exc.RateLimitError),
    (500, "api_error", exc.ServerError),
    (529, "overloaded_error", exc.OverloadedError),
    (503, "overloaded_error", exc.OverloadedError),
])
def test_parse_error(status: int, kind: str, cls: type) -> None:
    raw = msgspec.json.encode({"type": "error", "error": {"type": kind, "message": "msg here"},
                               "request_id": "req_body"})
    err = dialect.parse_error(status, [("request-id", "req_011CSHoEeqs5C35K2UUqR7Fy")], raw,
                              "anthropic", retry_after=7.0)
    assert type(err) is cls
    assert err.status == status and err.error_type == kind and err.message == "msg here"
    assert err.request_id == "req_011CSHoEeqs5C35K2UUqR7Fy"
    assert err.provider == "anthropic" and err.retry_after == 7.0


def test_parse_error_other_shapes() -> None:
    err = dialect.parse_error(502, [], b"<html>Bad Gateway</html>", "anthropic")
    assert isinstance(err, exc.ServerError) and "Bad Gateway" in err.message
    err = dialect.parse_error(500, [], b'{"error":{"code":500,"message":"image input is not '
                                       b'supported","type":"server_error"}}', "anthropic")
    assert isinstance(err, exc.ServerError) and err.message.startswith("image input")
    err = dialect.parse_error(400, [], b'{"type":"error","error":{"type":"invalid_request_error",'
                                      b'"message":"bad"},"request_id":"req_9"}', "minimax")
    assert err.request_id == "req_9" and err.provider == "minimax"


# ---------------------------------------------------------------- plain conversations

_TURN = st.builds(
    Message,
    role=st.sampled_from(["system", "user", "assistant", "tool"]),
    content=st.one_of(st.sampled_from(["", "Hi", "two\nlines"]), st.none(),
                      st.just((TextPart("a part"),))),
    tool_calls=st.sampled_from([(), (ToolCall("c1", "f", "{}"),)]),
    tool_call_id=st.just("c1"),
    reasoning=st.sampled_from([(), (ReasoningBlock("t", signature="s"),)]),
    cache=st.sampled_from([None, None, None, CacheHint()]),
)


def _needs_blocks(messages: list[Message]) -> bool:
    """What the plain-text path leaves to the block path (see _plain_conversation)."""
    last = None
    for m in messages:
        if (not isinstance(m.content, str) or m.cache is not None or m.tool_calls
                or m.reasoning or m.role == "tool"):
            return True
        if m.role == "system" or (m.role == "assistant" and not m.content):
            continue
        if m.role == last:
            return True
        last = m.role
    return False


@settings(max_examples=400, deadline=None)
@given(st.lists(_TURN, max_size=6))
def test_a_plain_conversation_is_built_as_the_block_path_collapses_it(messages) -> None:
    # Plain text turns skip the blocks: the same system value and turns as building
    # blocks and collapsing them, and every other conversation still takes the blocks.
    plain = dialect._plain_conversation(tuple(messages))
    assert (plain is None) == _needs_blocks(messages)
    if plain is not None:
        system, turns, betas = dialect._conversation(ChatRequest(model="claude-x",
                                                                 messages=tuple(messages)))
        assert plain == (dialect._collapse(system, turns), turns) and not betas
