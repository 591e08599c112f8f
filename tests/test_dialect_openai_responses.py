"""The openai_responses dialect on recorded payloads: no I/O at all.

Requests are compared with the bodies OpenAI's Responses API reference documents
(``POST /v1/responses``: input items, ``function_call_output``, ``text.format``,
``include: ["reasoning.encrypted_content"]``); answers and streams follow its
response object and streaming events. ``data/openai_responses/llamacpp_*.sse``
are raw streams captured from llama.cpp's ``/v1/responses``; the other ``.sse``
files are written from the documented event schemas.
"""

from __future__ import annotations

import json
from pathlib import Path

import msgspec
import pytest

import recorded
from msgflux import exceptions as exc
from msgflux._transport.types import SSEEvent
from msgflux.models.dialects import openai_responses as dialect
from msgflux.models.dialects.base import Endpoint, Quirks
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

DATA = Path(__file__).parent / "data" / "openai_responses"
ENDPOINT = Endpoint("openai", "https://api.openai.com/v1", "sk-test")
WEATHER = {"type": "object", "properties": {"location": {"type": "string"}},
           "required": ["location"]}


def body(request: ChatRequest, endpoint: Endpoint = ENDPOINT) -> dict:
    return recorded.body(dialect, request, endpoint)


def events(name: str) -> list[SSEEvent]:
    return recorded.events(DATA / name)


def fold(evs: list[SSEEvent]) -> tuple[StreamAssembler, list[Delta], dialect.StreamDecoder]:
    return recorded.fold(dialect.stream_decoder(None, "openai"), evs)


def event(obj: dict) -> SSEEvent:
    return SSEEvent(data=json.dumps(obj).encode(), event=obj.get("type"))


# ---------------------------------------------------------------- requests


def test_request_body_headers_and_url_exact() -> None:
    req = ChatRequest(
        model="gpt-5",
        messages=(Message("system", "Be brief."), Message("user", "Hi"),
                  Message("assistant", "Hello! How can I help?"),
                  Message("user", "Name a colour.")),
        temperature=0.5,
        top_p=0.9,
        max_tokens=100,
    )
    http = dialect.build_request(req, ENDPOINT)
    assert http.method == "POST"
    assert http.url == "https://api.openai.com/v1/responses"
    headers = dict(http.headers)
    assert headers["authorization"] == "Bearer sk-test"
    assert headers["content-type"] == "application/json"
    assert headers["accept"] == "application/json"
    assert msgspec.json.decode(http.body) == {
        "model": "gpt-5",
        "instructions": "Be brief.",
        "input": [
            {"role": "user", "content": "Hi"},
            {"type": "message", "role": "assistant", "content": [
                {"type": "output_text", "text": "Hello! How can I help?", "annotations": []}]},
            {"role": "user", "content": "Name a colour."},
        ],
        "temperature": 0.5,
        "top_p": 0.9,
        "max_output_tokens": 100,
        "store": False,
        "include": ["reasoning.encrypted_content"],
    }
    assert not http.stream and "sk-test" not in repr(http)


def test_stream_flag_accept_header_and_extra_body_wins() -> None:
    """Server-side state is the caller's choice: extra_body sets store and
    previous_response_id (the input is then only what follows that response)."""
    req = ChatRequest(model="gpt-5", messages=(Message("user", "And then?"),), stream=True,
                      extra={"store": True, "previous_response_id": "resp_123"})
    http = dialect.build_request(req, ENDPOINT)
    assert http.stream and dict(http.headers)["accept"] == "text/event-stream"
    b = msgspec.json.decode(http.body)
    assert b["stream"] is True and b["store"] is True
    assert b["previous_response_id"] == "resp_123"
    assert b["input"] == [{"role": "user", "content": "And then?"}]


def test_models_without_reasoning_are_not_asked_for_encrypted_reasoning() -> None:
    req = ChatRequest(model="gpt-4o", messages=(Message("user", "hi"),))
    b = body(req, Endpoint("openai", "https://api.openai.com/v1",
                           quirks=Quirks(encrypted_reasoning=False)))
    assert "include" not in b and b["store"] is False


def test_system_messages_after_the_first_turn_stay_in_place() -> None:
    req = ChatRequest(model="m", messages=(
        Message("system", "One."), Message("system", "Two."), Message("user", "q"),
        Message("system", "Later note."),
        Message("system", (TextPart("parts"),)),
    ))
    b = body(req)
    assert b["instructions"] == "One.\n\nTwo."
    assert b["input"] == [
        {"role": "user", "content": "q"},
        {"role": "system", "content": "Later note."},
        {"role": "system", "content": [{"type": "input_text", "text": "parts"}]},
    ]


def test_tool_loop_history_with_reasoning_items() -> None:
    """The reasoning item goes back first, with its id, summary and encrypted content;
    reasoning this API cannot take (Anthropic's signed text, unsigned text, a redacted
    block without an id) is left out. Calls and results pair by call id."""
    req = ChatRequest(
        model="gpt-5",
        messages=(
            Message("user", "Weather in Paris and Tokyo?"),
            Message(
                "assistant", "Checking both.",
                tool_calls=(ToolCall("call_1", "get_weather", '{"location":"Paris"}'),
                            ToolCall("call_2", "get_weather", "")),
                reasoning=(ReasoningBlock("Two cities.", redacted="gAAAA-enc", id="rs_1"),
                           ReasoningBlock("signed by Claude", "sig"),
                           ReasoningBlock(redacted="claude-redacted"),
                           ReasoningBlock("unsigned")),
            ),
            Message("tool", "22C sunny", tool_call_id="call_1"),
            Message("tool", (TextPart("18C"), ImagePart("https://x/radar.png")),
                    tool_call_id="call_2"),
        ),
        tools=(ToolSpec("get_weather", "Get weather.", WEATHER),
               ToolSpec("strict_one", None, WEATHER, strict=True)),
        tool_choice=ToolChoice("tool", "get_weather"),
        parallel_tool_calls=False,
    )
    b = body(req)
    assert b["input"] == [
        {"role": "user", "content": "Weather in Paris and Tokyo?"},
        {"type": "reasoning", "id": "rs_1",
         "summary": [{"type": "summary_text", "text": "Two cities."}],
         "encrypted_content": "gAAAA-enc"},
        {"type": "message", "role": "assistant",
         "content": [{"type": "output_text", "text": "Checking both.", "annotations": []}]},
        {"type": "function_call", "call_id": "call_1", "name": "get_weather",
         "arguments": '{"location":"Paris"}'},
        {"type": "function_call", "call_id": "call_2", "name": "get_weather",
         "arguments": "{}"},
        {"type": "function_call_output", "call_id": "call_1", "output": "22C sunny"},
        {"type": "function_call_output", "call_id": "call_2", "output": [
            {"type": "input_text", "text": "18C"},
            {"type": "input_image", "image_url": "https://x/radar.png", "detail": "auto"}]},
    ]
    # Flat function tools; strict is false unless the tool says so (the API's default
    # is strict, which most hand-written schemas do not satisfy).
    assert b["tools"] == [
        {"type": "function", "name": "get_weather", "description": "Get weather.",
         "parameters": WEATHER, "strict": False},
        {"type": "function", "name": "strict_one", "parameters": WEATHER, "strict": True},
    ]
    assert b["tool_choice"] == {"type": "function", "name": "get_weather"}
    assert b["parallel_tool_calls"] is False


@pytest.mark.parametrize(("choice", "wire"), [
    (ToolChoice("auto"), "auto"),
    (ToolChoice("required"), "required"),
    (ToolChoice("none"), "none"),
])
def test_tool_choice(choice: ToolChoice, wire: str) -> None:
    req = ChatRequest(model="m", messages=(Message("user", "q"),),
                      tools=(ToolSpec("f", None, None),), tool_choice=choice)
    b = body(req)
    assert b["tool_choice"] == wire
    assert b["tools"] == [{"type": "function", "name": "f",
                           "parameters": {"type": "object", "properties": {}}, "strict": False}]


def test_tool_choice_none_drops_tools_where_the_server_ignores_it() -> None:
    req = ChatRequest(model="m", messages=(Message("user", "q"),),
                      tools=(ToolSpec("f"),), tool_choice=ToolChoice("none"))
    b = body(req, Endpoint("llamacpp-server", "http://h/v1",
                           quirks=Quirks(none_drops_tools=True)))
    assert "tools" not in b and "tool_choice" not in b


def test_structured_output_is_text_format() -> None:
    logical = {"type": "object", "properties": {"a": {"type": "string"}}}
    strict = {**logical, "required": ["a"], "additionalProperties": False}
    req = ChatRequest(model="m", messages=(Message("user", "q"),),
                      output=OutputSchema("Answer", logical, strict, "The answer."))
    assert body(req)["text"] == {"format": {
        "type": "json_schema", "name": "Answer", "description": "The answer.",
        "schema": strict, "strict": True}}
    loose = body(req, Endpoint("x", "http://h/v1", quirks=Quirks(strict_schema=False)))
    assert loose["text"] == {"format": {"type": "json_schema", "name": "Answer",
                                        "description": "The answer.", "schema": logical}}
    # llama.cpp's server ignores text.format; it passes response_format through.
    llama = body(req, Endpoint("llamacpp-server", "http://h/v1",
                               quirks=Quirks(responses_schema="response_format")))
    assert "text" not in llama
    assert llama["response_format"] == {"type": "json_schema", "json_schema": {
        "name": "Answer", "description": "The answer.", "schema": strict, "strict": True}}


@pytest.mark.parametrize(("effort", "reasoning"), [
    ("high", {"effort": "high", "summary": "auto"}),
    ("minimal", {"effort": "minimal", "summary": "auto"}),
    ("none", {"effort": "none"}),
])
def test_reasoning_effort_asks_for_summaries(effort: str, reasoning: dict) -> None:
    req = ChatRequest(model="gpt-5", messages=(Message("user", "q"),), reasoning_effort=effort)
    assert body(req)["reasoning"] == reasoning


def test_images_files_and_audio() -> None:
    req = ChatRequest(model="m", messages=(Message("user", (
        TextPart("look"),
        ImagePart("data:image/png;base64,iVBOR", "high"),
        FilePart(data="data:application/pdf;base64,JVBER", filename="a.pdf"),
        FilePart(file_id="file-abc"),
        FilePart(url="https://x/doc.pdf"),
        AudioPart("UklGR", "wav"),
    )),))
    assert body(req)["input"][0]["content"] == [
        {"type": "input_text", "text": "look"},
        {"type": "input_image", "image_url": "data:image/png;base64,iVBOR", "detail": "high"},
        {"type": "input_file", "file_data": "data:application/pdf;base64,JVBER",
         "filename": "a.pdf"},
        {"type": "input_file", "file_id": "file-abc"},
        {"type": "input_file", "file_url": "https://x/doc.pdf"},
        {"type": "input_audio", "input_audio": {"data": "UklGR", "format": "wav"}},
    ]


@pytest.mark.parametrize(("field", "value", "cls", "match"), [
    ("prefill", "Sure,", exc.PrefillNotSupportedError, "cannot continue an assistant turn"),
    ("stop", ("END",), exc.InvalidParameterError, "no 'stop' parameter"),
    ("seed", 7, exc.InvalidParameterError, "no 'seed' parameter"),
])
def test_what_the_api_lacks_fails_before_the_call(field, value, cls, match) -> None:
    req = ChatRequest(model="m", messages=(Message("user", "q"),), **{field: value})
    with pytest.raises(cls, match=match):
        dialect.build_request(req, ENDPOINT)


# ---------------------------------------------------------------- whole answers


def test_parse_full_response_with_reasoning_text_and_calls() -> None:
    wire = {
        "id": "resp_1", "object": "response", "status": "completed", "model": "gpt-5-2025-08-07",
        "error": None, "incomplete_details": None,
        "output": [
            {"id": "rs_1", "type": "reasoning", "encrypted_content": "gAAAA-1",
             "summary": [{"type": "summary_text", "text": "First."},
                         {"type": "summary_text", "text": "Second."}]},
            {"id": "msg_1", "type": "message", "status": "completed", "role": "assistant",
             "content": [{"type": "output_text", "text": "Checking.", "annotations": []}]},
            {"id": "fc_1", "type": "function_call", "status": "completed", "call_id": "call_A",
             "name": "get_weather", "arguments": '{"location":"Paris"}'},
            {"id": "fc_2", "type": "function_call", "status": "completed", "call_id": "call_B",
             "name": "get_weather", "arguments": {"location": "Tokyo"}},
            {"id": "ws_1", "type": "web_search_call", "status": "completed"},
        ],
        "usage": {"input_tokens": 100, "input_tokens_details": {"cached_tokens": 64},
                  "output_tokens": 50, "output_tokens_details": {"reasoning_tokens": 30},
                  "total_tokens": 150},
    }
    c = dialect.parse_response(json.dumps(wire).encode())
    assert c.text == "Checking."
    assert c.reasoning == "First.\n\nSecond."
    assert c.reasoning_blocks == (ReasoningBlock("First.\n\nSecond.", redacted="gAAAA-1",
                                                 id="rs_1"),)
    assert c.tool_calls == (ToolCall("call_A", "get_weather", '{"location":"Paris"}'),
                            ToolCall("call_B", "get_weather", '{"location":"Tokyo"}'))
    assert (c.finish_reason, c.native_finish_reason) == ("tool_calls", "completed")
    assert (c.id, c.model) == ("resp_1", "gpt-5-2025-08-07")
    u = c.usage
    assert u is not None
    assert (u.prompt_tokens, u.completion_tokens, u.total_tokens) == (100, 50, 150)
    assert (u.cached_tokens, u.reasoning_tokens) == (64, 30)


def test_parse_refusal_and_raw_reasoning_without_encryption() -> None:
    wire = {"id": "r", "status": "completed", "output": [
        {"id": "rs_x", "type": "reasoning", "summary": [], "encrypted_content": "",
         "content": [{"type": "reasoning_text", "text": "thinking aloud"}]},
        {"type": "message", "role": "assistant",
         "content": [{"type": "refusal", "refusal": "I can't help with that."}]}],
        "usage": {"input_tokens": 3, "output_tokens": 2}}
    c = dialect.parse_response(json.dumps(wire).encode())
    assert c.refusal == "I can't help with that." and c.text is None
    assert c.finish_reason == "refusal"
    # llama.cpp's reasoning: readable, but nothing encrypted to send back.
    assert c.reasoning == "thinking aloud" and c.reasoning_blocks == ()
    assert c.usage is not None and c.usage.total_tokens == 5


@pytest.mark.parametrize(("details", "finish", "native"), [
    ({"reason": "max_output_tokens"}, "length", "max_output_tokens"),
    ({"reason": "content_filter"}, "content_filter", "content_filter"),
    (None, "length", "incomplete"),
])
def test_incomplete_responses_map_to_the_finish_reason(details, finish, native) -> None:
    wire = {"id": "r", "status": "incomplete", "incomplete_details": details, "output": [
        {"type": "message", "role": "assistant", "status": "incomplete",
         "content": [{"type": "output_text", "text": "Once upon"}]}]}
    c = dialect.parse_response(json.dumps(wire).encode())
    assert (c.text, c.finish_reason, c.native_finish_reason) == ("Once upon", finish, native)


@pytest.mark.parametrize(("error", "cls"), [
    ({"code": "server_error", "message": "The model failed."}, exc.ServerError),
    ({"code": "rate_limit_exceeded", "message": "Slow down."}, exc.RateLimitError),
    ({"code": "invalid_prompt", "message": "Flagged."}, exc.APIStatusError),
    (None, exc.APIStatusError),
])
def test_failed_response_is_a_typed_error(error, cls) -> None:
    wire = {"id": "r", "status": "failed", "error": error, "output": []}
    with pytest.raises(cls) as info:
        dialect.parse_response(json.dumps(wire).encode(), None, "openai")
    assert info.value.provider == "openai"
    if error is not None:
        assert error["message"] in str(info.value) and info.value.code == error["code"]


@pytest.mark.parametrize("raw", [b"not json", b'{"id": "r"}', b"[1, 2]",
                                 b'{"output": [{"type": 3}]}'])
def test_bad_bodies_are_response_errors(raw: bytes) -> None:
    with pytest.raises(exc.ResponseError):
        dialect.parse_response(raw)


# ---------------------------------------------------------------- streams


def test_stream_reasoning_summaries_parallel_calls_and_the_round_trip() -> None:
    asm, deltas, decoder = fold(events("reasoning_parallel_tools.sse"))
    assert decoder.done and deltas[-1].finish_reason is not None
    assert asm.id == "resp_68af4030592c81938ec0a5fbab4a3e9f05438e46b5f69a3b"
    assert asm.model == "gpt-5-2025-08-07"
    summary_1 = "**Planning weather lookups**\n\nThe user wants the weather in two cities."
    summary_2 = "**Calling tools in parallel**\n\nI can call get_weather for both at once."
    assert asm.reasoning == summary_1 + "\n\n" + summary_2
    block = ReasoningBlock(asm.reasoning,
                           redacted="gAAAAABor0A2Q1hV3Jm9p0Xz_encrypted_reasoning_blob_Zk4q==",
                           id="rs_68af4030baa48193b0b43b4c2a176a1a05438e46b5f69a3b")
    assert asm.reasoning_blocks() == (block,)
    assert asm.text == "" and asm.finish_reason == "tool_calls"
    assert asm.native_finish_reason == "completed"
    agg = asm.aggregator()
    assert agg is not None
    assert agg.get_calls() == [
        {"id": "call_Paris1", "type": "function",
         "function": {"name": "get_weather", "arguments": {"location": "Paris, France"}}},
        {"id": "call_Tokyo2", "type": "function",
         "function": {"name": "get_weather", "arguments": {"location": "Tokyo, Japan"}}},
    ]
    u = asm.usage
    assert u is not None
    assert (u.prompt_tokens, u.completion_tokens, u.total_tokens) == (2310, 412, 2722)
    assert (u.cached_tokens, u.reasoning_tokens) == (1024, 320)
    # The tool loop sends the encrypted reasoning item back, then the calls and results.
    agg.insert_results("call_Paris1", "22C")
    agg.insert_results("call_Tokyo2", "18C")
    history = [{"role": "user", "content": "Weather in Paris and Tokyo?"},
               *agg.get_messages()]
    sent = body(ChatRequest(model="gpt-5", messages=to_messages(history)))["input"]
    assert sent[1] == {"type": "reasoning", "id": block.id,
                       "summary": [{"type": "summary_text", "text": asm.reasoning}],
                       "encrypted_content": block.redacted}
    assert [(i["type"], i.get("call_id")) for i in sent[2:]] == [
        ("function_call", "call_Paris1"), ("function_call", "call_Tokyo2"),
        ("function_call_output", "call_Paris1"), ("function_call_output", "call_Tokyo2")]


def test_stream_incomplete_ends_with_its_reason() -> None:
    asm, deltas, decoder = fold(events("incomplete_text.sse"))
    assert decoder.done and deltas[-1].finish_reason is not None
    assert asm.text == "Once upon a time"
    assert (asm.finish_reason, asm.native_finish_reason) == ("length", "max_output_tokens")
    assert asm.usage is not None and asm.usage.total_tokens == 17


def test_stream_refusal() -> None:
    asm, _, decoder = fold(events("refusal.sse"))
    assert decoder.done
    assert asm.refusal == "I'm sorry, I can't help with that."
    assert asm.finish_reason == "refusal"


def test_stream_failed_after_text_raises_a_typed_error() -> None:
    decoder = dialect.stream_decoder(None, "openai")
    asm = StreamAssembler()
    with pytest.raises(exc.ServerError, match="failed to generate") as info:
        for ev in events("failed_midstream.sse"):
            d = decoder.feed(ev)
            if d is not None:
                asm.add(d)
    assert asm.text == "Partial" and not decoder.done
    assert info.value.code == "server_error"


@pytest.mark.parametrize(("payload", "cls"), [
    # As OpenAI's reference documents the error event: code and message at the top.
    ({"type": "error", "code": "rate_limit_exceeded", "message": "Slow down.", "param": None},
     exc.RateLimitError),
    ({"type": "error", "error": {"type": "server_error", "code": "server_error",
                                 "message": "Internal."}}, exc.ServerError),
    ({"type": "error", "message": "Unknown."}, exc.APIStatusError),
])
def test_stream_error_event_is_typed(payload: dict, cls: type) -> None:
    decoder = dialect.stream_decoder(None, "openai")
    with pytest.raises(cls):
        decoder.feed(event(payload))


def test_recorded_llamacpp_text_stream() -> None:
    asm, deltas, decoder = fold(events("llamacpp_text.sse"))
    assert decoder.done and deltas[-1].finish_reason is not None
    assert asm.text == "Hi! I'm here to"
    assert asm.id == "resp_6JmMJJUXKqg51y29xwZ4DfLltx8zMSN7"
    assert asm.model == "SmolLM2-135M-Instruct.Q4_1"
    assert asm.finish_reason == "stop"
    assert asm.usage is not None and (asm.usage.prompt_tokens, asm.usage.cached_tokens) == (21, 3)


def test_recorded_llamacpp_tool_stream() -> None:
    """llama.cpp names argument fragments by item id only (no output index)."""
    asm, _, decoder = fold(events("llamacpp_tool_call.sse"))
    assert decoder.done and asm.finish_reason == "tool_calls"
    agg = asm.aggregator()
    assert agg is not None
    [call] = agg.get_calls()
    assert call["function"] == {"name": "get_weather", "arguments": {"city": "Paris"}}
    assert call["id"].startswith("call_")


def test_stream_fragments_by_output_index_and_calls_sent_whole() -> None:
    """Servers differ: fragments may name their call by output index only, and a call
    may come whole in output_item.done (never twice when it was also streamed)."""
    evs = [
        {"type": "response.output_item.added", "output_index": 0,
         "item": {"type": "function_call", "call_id": "call_1", "name": "f", "arguments": ""}},
        {"type": "response.function_call_arguments.delta", "output_index": 0, "delta": '{"a":'},
        {"type": "response.function_call_arguments.delta", "output_index": 0, "delta": " 1}"},
        {"type": "response.output_item.done", "output_index": 0,
         "item": {"type": "function_call", "call_id": "call_1", "name": "f",
                  "arguments": '{"a": 1}'}},
        {"type": "response.output_item.done", "output_index": 1,
         "item": {"id": "fc_2", "type": "function_call", "call_id": "call_2", "name": "g",
                  "arguments": {"b": 2}}},
        {"type": "response.completed", "response": {"status": "completed"}},
    ]
    asm, _, _ = fold([event(e) for e in evs])
    agg = asm.aggregator()
    assert agg is not None
    assert [(c["id"], c["function"]["arguments"]) for c in agg.get_calls()] == [
        ("call_1", {"a": 1}), ("call_2", {"b": 2})]


def test_stream_reasoning_that_comes_only_whole() -> None:
    evs = [
        {"type": "response.output_item.done", "output_index": 0,
         "item": {"id": "rs_9", "type": "reasoning", "encrypted_content": "gAAAA-9",
                  "summary": [{"type": "summary_text", "text": "Whole."}]}},
        {"type": "response.output_item.done", "output_index": 1,
         "item": {"id": "rs_10", "type": "reasoning", "summary": [],
                  "content": [{"type": "reasoning_text", "text": "Raw."}]}},
        {"type": "response.completed", "response": {"status": "completed"}},
    ]
    asm, _, _ = fold([event(e) for e in evs])
    assert asm.reasoning == "Whole.\n\nRaw."
    # Only the encrypted item is a block to send back.
    assert asm.blocks == [ReasoningBlock("Whole.", redacted="gAAAA-9", id="rs_9")]


def test_stream_skips_events_it_does_not_need() -> None:
    decoder = dialect.stream_decoder(None, "openai")
    skipped = [
        {"type": "response.in_progress", "response": {"id": "r", "status": "in_progress"}},
        {"type": "response.content_part.added", "item_id": "m", "part": {"type": "output_text"}},
        {"type": "response.output_text.annotation.added", "annotation": {"type": "url"}},
        {"type": "response.reasoning_summary.delta", "delta": {"text": "an object"}},
        {"type": "response.output_item.added", "item": {"type": "message", "id": "m"}},
        {"type": "response.output_text.delta", "delta": ""},
        {"type": "response.web_search_call.searching", "item_id": "ws"},
    ]
    assert [decoder.feed(event(e)) for e in skipped] == [None] * len(skipped)
    assert decoder.feed(SSEEvent(data=b"[DONE]")) is None
    assert not decoder.done


@pytest.mark.parametrize("data", [
    b'{"type": "response.output_text.delta", "delta": 5}',
    b'{"type": "response.output_text.delta", "delta": "x"',
    b'{"type": 7}',
])
def test_stream_malformed_events_are_response_errors(data: bytes) -> None:
    with pytest.raises(exc.ResponseError):
        dialect.stream_decoder(None, "openai").feed(SSEEvent(data=data))


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize(("status", "kind", "cls"), [
    (400, "invalid_request_error", exc.BadRequestError),
    (401, "invalid_request_error", exc.AuthenticationError),
    (404, "invalid_request_error", exc.NotFoundError),
    (429, "requests", exc.RateLimitError),
    (500, "server_error", exc.ServerError),
])
def test_parse_error(status: int, kind: str, cls: type) -> None:
    raw = json.dumps({"error": {"message": "Encrypted content is not supported with this "
                                "model.", "type": kind, "param": "include", "code": None}})
    error = dialect.parse_error(status, [("x-request-id", "req_1")], raw.encode(), "openai", 2.0)
    assert isinstance(error, cls)
    assert (error.status, error.request_id, error.retry_after) == (status, "req_1", 2.0)
    assert "Encrypted content" in str(error)
