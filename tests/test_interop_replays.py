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
from msgflux._transport.types import SSEEvent
from msgflux.models.dialects import openai as openai_dialect
from msgflux.models.stream import StreamAssembler
from scripted_server import ScriptedServer, json_reply, sse_reply
from test_faults_support import DONE, FAST, chunk, completion, openai

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
