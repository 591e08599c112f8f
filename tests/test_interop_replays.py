"""Interoperability: replayed traffic of real provider APIs and OpenAI-compatible servers.

Each case replays the exact payload shape a server was seen to send, straight
into the dialect (no I/O) and end to end through ``mf.Model.chat_completion``
against the scripted loopback server: sync and async, stream and whole reply.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import msgspec
import pytest

import msgflux as mf
from msgflux import exceptions as exc
from msgflux._transport.types import SSEEvent
from msgflux.models.dialects import anthropic as anthropic_dialect
from msgflux.models.dialects import google as google_dialect
from msgflux.models.dialects import openai as openai_dialect
from msgflux.models.stream import StreamAssembler
from scripted_server import ScriptedServer, json_reply, sse_reply
from test_faults_support import DONE, FAST, anthropic, chunk, completion, openai

MODES = pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
STREAMS = pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])

WEATHER = [{
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                       "required": ["city"]},
    },
}]


class Answer(msgspec.Struct):
    city: str


@pytest.fixture
def srv():
    with ScriptedServer() as s:
        yield s


def gemini(srv: ScriptedServer, **kwargs: Any) -> Any:
    kwargs.setdefault("max_retries", FAST)
    return mf.Model.chat_completion("google/gemini-2.5-flash", base_url=srv.url,
                                    api_key="AIza-test", **kwargs)


def run(model: Any, use_async: bool, stream: bool, **kwargs: Any) -> tuple[Any, list[str] | None]:
    """One call through the public API; a text stream is read to its end.

    Returns the response and the chunks handed to the caller (``None`` when
    nothing was iterated: a whole reply, or a tool-call stream).
    """
    async def amain() -> tuple[Any, list[str] | None]:
        try:
            r = await model.acall("hi", stream=stream, **kwargs)
            chunks = None
            if stream and r.response_type != "tool_call":
                chunks = [c async for c in r.consume()]
            return r, chunks
        finally:
            await model.aclose()

    if use_async:
        return asyncio.run(amain())
    with model:
        r = model("hi", stream=stream, **kwargs)
        chunks = None
        if stream and r.response_type != "tool_call":
            chunks = list(r.consume())
        return r, chunks


def sse(events: list[Any]) -> Any:
    return sse_reply([e if isinstance(e, str) else f"data: {json.dumps(e)}\n\n" for e in events])


def fold(decoder: Any, payloads: list[bytes]) -> StreamAssembler:
    asm = StreamAssembler()
    for data in payloads:
        delta = decoder.feed(SSEEvent(data))
        if delta is not None:
            asm.add(delta)
    return asm


# ---------------------------------------------------------------- 1. parallel calls at index 0


def ollama_call(call_id: str, city: str) -> dict:
    """One Ollama chunk: a whole call, always at index 0, with its own id."""
    return {"id": "chatcmpl-650", "object": "chat.completion.chunk", "created": 1,
            "model": "qwen3:8b", "system_fingerprint": "fp_ollama",
            "choices": [{"index": 0, "delta": {"role": "assistant", "content": "", "tool_calls": [
                {"id": call_id, "index": 0, "type": "function", "function": {
                    "name": "get_weather", "arguments": json.dumps({"city": city})}}]},
                "finish_reason": None}]}


OLLAMA_STREAM = [
    ollama_call("call_k2x9", "Paris"),
    ollama_call("call_p7q1", "Tokyo"),
    {"id": "chatcmpl-650", "object": "chat.completion.chunk", "created": 1, "model": "qwen3:8b",
     "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""},
                  "finish_reason": "tool_calls"}]},
    DONE,
]


def test_ollama_parallel_calls_at_index_0_fold_apart() -> None:
    payloads = [json.dumps(e).encode() if isinstance(e, dict) else b"[DONE]"
                for e in OLLAMA_STREAM]
    agg = fold(openai_dialect.stream_decoder(None, "ollama"), payloads).aggregator()
    assert agg is not None
    assert [(c["id"], c["function"]["arguments"]) for c in agg.get_calls()] == [
        ("call_k2x9", {"city": "Paris"}), ("call_p7q1", {"city": "Tokyo"})]


@MODES
@STREAMS
def test_ollama_parallel_calls_end_to_end(srv, use_async, stream) -> None:
    if stream:
        srv.enqueue(sse(OLLAMA_STREAM))
    else:
        srv.enqueue(json_reply(200, completion(None, tool_calls=[
            {"id": "call_k2x9", "index": 0, "type": "function", "function": {
                "name": "get_weather", "arguments": '{"city": "Paris"}'}},
            {"id": "call_p7q1", "index": 0, "type": "function", "function": {
                "name": "get_weather", "arguments": '{"city": "Tokyo"}'}}])))
    r, _ = run(openai(srv), use_async, stream, tool_schemas=WEATHER)
    assert r.response_type == "tool_call"
    calls = r.data.get_calls()
    assert [(c["id"], c["function"]["arguments"]) for c in calls] == [
        ("call_k2x9", {"city": "Paris"}), ("call_p7q1", {"city": "Tokyo"})]
    assert r.metadata.finish_reason == "tool_calls"


# ---------------------------------------------------------------- 2. arguments as a JSON object


def test_object_arguments_are_read_as_the_same_dict() -> None:
    body = json.dumps(completion(None, tool_calls=[{"id": "c1", "type": "function", "function": {
        "name": "get_weather", "arguments": {"city": "Paris", "days": [1, 2]}}}])).encode()
    c = openai_dialect.parse_response(body)
    assert msgspec.json.decode(c.tool_calls[0].arguments) == {"city": "Paris", "days": [1, 2]}
    event = json.dumps(chunk(tool_calls=[{"index": 0, "id": "c1", "type": "function",
                                          "function": {"name": "get_weather",
                                                       "arguments": {"city": "Paris"}}}]))
    d = openai_dialect.stream_decoder().feed(SSEEvent(event.encode()))
    assert d is not None and d.tool_calls is not None
    assert msgspec.json.decode(d.tool_calls[0].arguments) == {"city": "Paris"}


@MODES
@STREAMS
def test_object_arguments_end_to_end(srv, use_async, stream) -> None:
    call = {"index": 0, "id": "call_obj", "type": "function",
            "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}
    if stream:
        srv.enqueue(sse([chunk(role="assistant", tool_calls=[call]),
                         chunk(finish="tool_calls"), DONE]))
    else:
        srv.enqueue(json_reply(200, completion(None, tool_calls=[call])))
    r, _ = run(openai(srv), use_async, stream, tool_schemas=WEATHER)
    assert r.response_type == "tool_call"
    assert r.data.get_calls() == [{"id": "call_obj", "type": "function", "function": {
        "name": "get_weather", "arguments": {"city": "Paris"}}}]
    r.data.insert_results("call_obj", "sunny")
    assert msgspec.json.decode(r.data.get_messages()[0]["tool_calls"][0]["function"][
        "arguments"]) == {"city": "Paris"}


# ---------------------------------------------------------------- 3. forced tool ends with "stop"


@MODES
@STREAMS
def test_forced_tool_ending_with_stop_is_tool_calls_on_both_paths(srv, use_async,
                                                                   stream) -> None:
    # OpenAI ends a turn forced onto a named function with finish_reason "stop".
    if stream:
        srv.enqueue(sse([
            chunk(role="assistant", content=None, tool_calls=[{
                "index": 0, "id": "call_f1", "type": "function",
                "function": {"name": "get_weather", "arguments": ""}}]),
            chunk(tool_calls=[{"index": 0, "function": {"arguments": '{"city":'}}]),
            chunk(tool_calls=[{"index": 0, "function": {"arguments": '"Oslo"}'}}]),
            chunk(finish="stop"),
            DONE,
        ]))
    else:
        body = completion(None, tool_calls=[{"id": "call_f1", "type": "function", "function": {
            "name": "get_weather", "arguments": '{"city":"Oslo"}'}}])
        assert body["choices"][0]["finish_reason"] == "stop"
        srv.enqueue(json_reply(200, body))
    r, _ = run(openai(srv), use_async, stream, tool_schemas=WEATHER, tool_choice="get_weather")
    assert r.response_type == "tool_call"
    assert r.metadata.finish_reason == "tool_calls"
    assert r.data.get_calls()[0]["function"]["arguments"] == {"city": "Oslo"}


# ---------------------------------------------------------------- 4. refusals: OpenAI

REFUSAL = "I'm sorry, I cannot assist with that request."


def openai_refusal(stream: bool) -> Any:
    if not stream:
        return json_reply(200, completion(None, refusal=REFUSAL))
    return sse([
        chunk(role="assistant", content=None, refusal=""),
        chunk(refusal="I'm sorry, I cannot "),
        chunk(refusal="assist with that request."),
        chunk(finish="stop"),
        DONE,
    ])


def test_openai_refusal_in_the_dialect() -> None:
    c = openai_dialect.parse_response(json.dumps(completion(None, refusal=REFUSAL)).encode())
    assert (c.text, c.refusal) == (None, REFUSAL)
    assert (c.finish_reason, c.native_finish_reason) == ("refusal", "stop")
    d = openai_dialect.stream_decoder().feed(SSEEvent(json.dumps(chunk(refusal="No.")).encode()))
    assert d is not None and (d.text, d.refusal) == (None, "No.")


@MODES
@STREAMS
def test_openai_refusal_of_a_text_call(srv, use_async, stream) -> None:
    srv.enqueue(openai_refusal(stream))
    r, chunks = run(openai(srv), use_async, stream)
    assert r.response_type == "text_generation"
    assert r.data == REFUSAL and r.metadata.refusal == REFUSAL
    assert r.metadata.finish_reason == "refusal"
    if stream:
        assert "".join(chunks) == REFUSAL  # the refusal is streamed like text
    else:
        assert r.consume() == REFUSAL


@MODES
@STREAMS
@pytest.mark.parametrize("kind", ["schema", "typed_parser"])
def test_openai_refusal_of_a_structured_call(srv, use_async, stream, kind) -> None:
    srv.enqueue(openai_refusal(stream))
    kwargs: dict[str, Any] = (
        {"generation_schema": Answer} if kind == "schema" else {"typed_parser": "typed_xml"})
    with pytest.raises(exc.RefusalError) as info:
        run(openai(srv), use_async, stream, **kwargs)
    error = info.value
    assert isinstance(error, exc.StructuredOutputError)  # old handlers still catch it
    assert error.refusal == REFUSAL and error.raw == REFUSAL
    assert REFUSAL in str(error)


def test_a_normal_answer_has_no_refusal(srv) -> None:
    srv.enqueue(json_reply(200, completion("fine")))
    r, _ = run(openai(srv), False, False)
    assert r.metadata.refusal is None and r.metadata.finish_reason == "stop"


# ---------------------------------------------------------------- 4. refusals: Anthropic


def claude_message(text: str) -> dict:
    content = [{"type": "text", "text": text}] if text else []
    return {"id": "msg_01", "type": "message", "role": "assistant", "model": "claude-x",
            "content": content, "stop_reason": "refusal", "stop_sequence": None,
            "usage": {"input_tokens": 12, "output_tokens": 4}}


def claude_stream(text: str) -> Any:
    def ev(name: str, data: dict) -> str:
        return f"event: {name}\ndata: {json.dumps(data)}\n\n"

    events = [ev("message_start", {"type": "message_start", "message": {
        "id": "msg_01", "type": "message", "role": "assistant", "model": "claude-x",
        "content": [], "stop_reason": None, "usage": {"input_tokens": 12, "output_tokens": 1}}})]
    if text:
        events += [
            ev("content_block_start", {"type": "content_block_start", "index": 0,
                                       "content_block": {"type": "text", "text": ""}}),
            ev("content_block_delta", {"type": "content_block_delta", "index": 0,
                                       "delta": {"type": "text_delta", "text": text}}),
            ev("content_block_stop", {"type": "content_block_stop", "index": 0}),
        ]
    events += [
        ev("message_delta", {"type": "message_delta", "delta": {
            "stop_reason": "refusal", "stop_sequence": None}, "usage": {"output_tokens": 4}}),
        ev("message_stop", {"type": "message_stop"}),
    ]
    return sse_reply(events)


def test_anthropic_refusal_in_the_dialect() -> None:
    c = anthropic_dialect.parse_response(json.dumps(claude_message("Here is")).encode())
    assert (c.finish_reason, c.native_finish_reason) == ("refusal", "refusal")
    assert c.text == "Here is" and c.refusal and "refusal" in c.refusal


@MODES
@STREAMS
@pytest.mark.parametrize("text", ["", "Here is how"], ids=["empty", "partial"])
def test_anthropic_refusal_of_a_text_call(srv, use_async, stream, text) -> None:
    srv.enqueue(claude_stream(text) if stream else json_reply(200, claude_message(text)))
    r, chunks = run(anthropic(srv), use_async, stream)
    meta = r.metadata
    assert meta.finish_reason == "refusal"
    assert isinstance(meta.refusal, str) and "refusal" in meta.refusal
    assert r.data.startswith(text) and r.data.endswith(meta.refusal)  # the text is kept
    if stream:
        assert "".join(chunks) == r.data


@MODES
@STREAMS
def test_anthropic_refusal_of_a_structured_call(srv, use_async, stream) -> None:
    srv.enqueue(claude_stream("") if stream else json_reply(200, claude_message("")))
    with pytest.raises(exc.RefusalError) as info:
        run(anthropic(srv), use_async, stream, generation_schema=Answer)
    assert "refusal" in info.value.refusal


# ---------------------------------------------------------------- 4. refusals: Gemini

RATINGS = [
    {"category": "HARM_CATEGORY_HATE_SPEECH", "probability": "NEGLIGIBLE"},
    {"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "HIGH", "blocked": True},
    {"category": "HARM_CATEGORY_HARASSMENT", "probability": "NEGLIGIBLE"},
]
USAGE = {"promptTokenCount": 9, "totalTokenCount": 9}


def blocked_candidate(reason: str) -> dict:
    return {"candidates": [{"finishReason": reason, "index": 0, "safetyRatings": RATINGS}],
            "usageMetadata": USAGE, "modelVersion": "gemini-2.5-flash", "responseId": "r1"}


BLOCKED_PROMPT = {"promptFeedback": {"blockReason": "SAFETY", "safetyRatings": RATINGS},
                  "usageMetadata": USAGE, "modelVersion": "gemini-2.5-flash", "responseId": "r2"}


@pytest.mark.parametrize("reason", ["SAFETY", "PROHIBITED_CONTENT", "BLOCKLIST", "SPII",
                                    "RECITATION"])
def test_gemini_blocked_candidate_is_a_refusal_naming_why(reason) -> None:
    c = google_dialect.parse_response(json.dumps(blocked_candidate(reason)).encode())
    assert (c.finish_reason, c.native_finish_reason) == ("refusal", reason)
    assert c.refusal is not None and reason in c.refusal
    assert "HARM_CATEGORY_DANGEROUS_CONTENT" in c.refusal
    assert "HARASSMENT" not in c.refusal  # only the categories that blocked
    d = google_dialect.stream_decoder().feed(
        SSEEvent(json.dumps(blocked_candidate(reason)).encode()))
    assert d is not None and (d.finish_reason, d.refusal) == ("refusal", c.refusal)


def test_gemini_blocked_prompt_is_a_refusal_naming_why() -> None:
    c = google_dialect.parse_response(json.dumps(BLOCKED_PROMPT).encode())
    assert (c.finish_reason, c.native_finish_reason) == ("refusal", "SAFETY")
    assert c.refusal is not None and "prompt" in c.refusal and "SAFETY" in c.refusal
    assert "HARM_CATEGORY_DANGEROUS_CONTENT" in c.refusal
    assert c.usage is not None and c.usage.prompt_tokens == 9
    bare = google_dialect.parse_response(b'{"promptFeedback": {"blockReason": "OTHER"}}')
    assert bare.finish_reason == "refusal" and "OTHER" in (bare.refusal or "")
    d = google_dialect.stream_decoder().feed(SSEEvent(json.dumps(BLOCKED_PROMPT).encode()))
    assert d is not None and (d.finish_reason, d.refusal) == ("refusal", c.refusal)


def gemini_reply(payload: dict, stream: bool) -> Any:
    if stream:
        return sse_reply([f"data: {json.dumps(payload)}\r\n\r\n"])
    return json_reply(200, payload)


@MODES
@STREAMS
@pytest.mark.parametrize("where", ["candidate", "prompt"])
def test_gemini_block_of_a_text_call(srv, use_async, stream, where) -> None:
    payload = blocked_candidate("SAFETY") if where == "candidate" else BLOCKED_PROMPT
    srv.enqueue(gemini_reply(payload, stream))
    r, chunks = run(gemini(srv), use_async, stream)
    meta = r.metadata
    assert meta.finish_reason == "refusal"
    assert "SAFETY" in meta.refusal and "HARM_CATEGORY_DANGEROUS_CONTENT" in meta.refusal
    assert r.data == meta.refusal
    if stream:
        assert "".join(chunks) == meta.refusal


@MODES
@STREAMS
@pytest.mark.parametrize("where", ["candidate", "prompt"])
def test_gemini_block_of_a_structured_call(srv, use_async, stream, where) -> None:
    payload = blocked_candidate("PROHIBITED_CONTENT") if where == "candidate" else BLOCKED_PROMPT
    srv.enqueue(gemini_reply(payload, stream))
    with pytest.raises(exc.RefusalError) as info:
        run(gemini(srv), use_async, stream, generation_schema=Answer)
    assert "HARM_CATEGORY_DANGEROUS_CONTENT" in info.value.refusal


# ---------------------------------------------------------------- 5. mutation killers


def gemini_call_chunk(name: str, args: dict, finish: str | None = None) -> dict:
    candidate: dict[str, Any] = {"content": {"role": "model", "parts": [
        {"functionCall": {"name": name, "args": args}}]}, "index": 0}
    if finish is not None:
        candidate["finishReason"] = finish
    return {"candidates": [candidate], "modelVersion": "gemini-2.5-flash", "responseId": "r3"}


GEMINI_SPLIT_CALLS = [
    gemini_call_chunk("get_weather", {"city": "Paris"}),
    gemini_call_chunk("get_weather", {"city": "Tokyo"}, finish="STOP"),
]


def test_gemini_calls_in_separate_chunks_stay_apart() -> None:
    asm = fold(google_dialect.stream_decoder(), [json.dumps(c).encode()
                                                 for c in GEMINI_SPLIT_CALLS])
    agg = asm.aggregator()
    assert agg is not None and asm.finish_reason == "tool_calls"
    assert [c["function"]["arguments"] for c in agg.get_calls()] == [
        {"city": "Paris"}, {"city": "Tokyo"}]
    assert len({c["id"] for c in agg.get_calls()}) == 2


@MODES
def test_gemini_calls_in_separate_chunks_end_to_end(srv, use_async) -> None:
    srv.enqueue(sse_reply([f"data: {json.dumps(c)}\r\n\r\n" for c in GEMINI_SPLIT_CALLS]))
    r, _ = run(gemini(srv), use_async, True, tool_schemas=WEATHER)
    assert r.response_type == "tool_call"
    assert [c["function"]["arguments"] for c in r.data.get_calls()] == [
        {"city": "Paris"}, {"city": "Tokyo"}]


@MODES
def test_text_after_done_is_never_handed_out(srv, use_async) -> None:
    srv.enqueue(sse([chunk(role="assistant"), chunk("Hel"), chunk("lo", finish="stop"), DONE,
                     chunk(" LEAKED"), DONE]))
    r, chunks = run(openai(srv), use_async, True)
    assert chunks == ["Hel", "lo"] and r.data == "Hello"


@MODES
def test_text_after_done_is_never_handed_out_of_a_tool_stream(srv, use_async) -> None:
    srv.enqueue(sse([*OLLAMA_STREAM, ollama_call("call_late", "Lima"), DONE]))
    r, _ = run(openai(srv), use_async, True, tool_schemas=WEATHER)
    assert [c["id"] for c in r.data.get_calls()] == ["call_k2x9", "call_p7q1"]
