"""Streams that break mid-way, through the public model API (sync ``for`` and ``async for``).

Dropped or reset connections, malformed SSE, truncated JSON chunks, in-band
errors after HTTP 200 (OpenAI ``{"error": ...}`` chunks, Anthropic ``event:
error``) and streams that end without ``[DONE]`` / ``message_stop``: each raises
a :class:`~msgflux.exceptions.StreamError` carrying what arrived
(``partial_text``, ``partial_tool_calls``) with the underlying error chained.
Nothing ends silently short.
"""

from __future__ import annotations

import asyncio
import json

import pytest

import msgflux as mf
from msgflux import exceptions as exc
from scripted_server import ScriptedServer, sse_reply
from test_faults_support import (
    DONE,
    anthropic,
    anthropic_events,
    chunk,
    openai,
    responses,
    responses_events,
    tool_chunk,
)

MODES = pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])


@pytest.fixture
def srv():
    with ScriptedServer() as s:
        yield s


def body_of(reply) -> bytes:
    return b"".join(s[1] for s in reply.steps if s[0] == "write")


def after(reply, marker: bytes) -> int:
    """Offset just past the SSE event (and its chunk framing) that holds ``marker``."""
    body = body_of(reply)
    return body.index(b"\n\n", body.index(marker)) + 4  # "\n\n" then the chunk's CRLF


def start(model, use_async: bool, **kwargs):
    """Open a stream (sync or async) and close the model; the response is read after."""
    if use_async:
        async def main():
            try:
                return await model.acall("hi", stream=True, **kwargs)
            finally:
                await model.aclose()
        return asyncio.run(main())
    with model:
        return model("hi", stream=True, **kwargs)


def consume(model, use_async: bool, **kwargs) -> tuple[list[str], BaseException | None, object]:
    """Read a stream to the end; returns (chunks handed out, error, response)."""
    got: list[str] = []
    holder: dict[str, object] = {}
    if use_async:
        async def main():
            try:
                r = holder["r"] = await model.acall("hi", stream=True, **kwargs)
                async for c in r.consume():
                    got.append(c)
            finally:
                await model.aclose()
        try:
            asyncio.run(main())
        except Exception as e:
            return got, e, holder.get("r")
        return got, None, holder.get("r")
    try:
        with model:
            r = holder["r"] = model("hi", stream=True, **kwargs)
            for c in r.consume():
                got.append(c)
    except Exception as e:
        return got, e, holder.get("r")
    return got, None, holder.get("r")


def openai_stream(*texts: str, done: bool = True, finish: bool = True, **kw):
    events = [chunk(role="assistant"), *[chunk(t) for t in texts]]
    if finish:
        events.append(chunk(finish="stop"))
    if done:
        events.append(DONE)
    return sse_reply(events, **kw)


def assert_broken(error, got, partial: str, cause: type | None):
    assert isinstance(error, exc.StreamError), repr(error)
    assert "".join(got) == partial == error.partial_text
    if cause is None:
        assert error.__cause__ is None
    else:
        assert isinstance(error.__cause__, cause), repr(error.__cause__)


# ---------------------------------------------------------------- connection faults


@MODES
@pytest.mark.parametrize("fault", ["drop", "reset"])
def test_connection_lost_after_text(srv, use_async, fault) -> None:
    reply = openai_stream("Hel", "lo", " there")
    cut = after(reply, b'"lo"')
    srv.enqueue(reply.drop_after(cut) if fault == "drop" else reply.reset_after(cut),
                openai_stream("unused"))
    got, error, _ = consume(openai(srv), use_async)
    assert_broken(error, got, "Hello", exc.APIConnectionError)
    assert "partial" in str(error)
    assert len(srv.requests) == 1 and srv.pending_replies == 1


@MODES
def test_close_delimited_stream_cut_after_text(srv, use_async) -> None:
    # Without chunked framing a cut is a clean end of body: only [DONE] tells.
    reply = openai_stream("Hel", "lo", chunked=False)
    srv.enqueue(reply.drop_after(after(reply, b'"lo"') - 2))
    got, error, _ = consume(openai(srv), use_async)
    assert_broken(error, got, "Hello", None)
    assert "end marker" in str(error)


@MODES
def test_close_delimited_stream_cut_before_any_text_is_retried(srv, use_async) -> None:
    reply = openai_stream("never", chunked=False)
    srv.enqueue(reply.drop_after(after(reply, b'"assistant"') - 2), openai_stream("ok"))
    got, error, _ = consume(openai(srv), use_async)
    assert error is None, repr(error)
    assert got == ["ok"] and len(srv.requests) == 2


@MODES
def test_empty_stream_without_end_marker_is_an_error_after_retries(srv, use_async) -> None:
    srv.enqueue(*[sse_reply([]) for _ in range(4)])
    got, error, _ = consume(openai(srv), use_async)
    assert isinstance(error, exc.StreamError) and got == []
    assert len(srv.requests) == 4  # retried: nothing had reached the caller


# ---------------------------------------------------------------- bad bytes


@MODES
def test_truncated_json_chunk_after_text(srv, use_async) -> None:
    srv.enqueue(sse_reply([chunk("Hi"), 'data: {"choices":[{"delta":{"content":"x"\n\n', DONE]))
    got, error, _ = consume(openai(srv), use_async)
    assert_broken(error, got, "Hi", exc.ResponseError)
    assert '"content":"x"' in error.__cause__.raw


@MODES
def test_invalid_utf8_in_a_chunk_after_text(srv, use_async) -> None:
    srv.enqueue(sse_reply([chunk("Hi"), b'data: {"choices":[{"delta":{"content":"\xff\xfe"}}]}\n\n',
                           DONE]))
    got, error, _ = consume(openai(srv), use_async)
    assert_broken(error, got, "Hi", exc.ResponseError)


@MODES
def test_non_sse_garbage_then_end_is_not_silent(srv, use_async) -> None:
    srv.enqueue(sse_reply([chunk("Hi"), "<html><body>502 Bad Gateway</body></html>\n\n",
                           "dat: {oops}\n\n"]))
    got, error, _ = consume(openai(srv), use_async)
    assert_broken(error, got, "Hi", None)


@MODES
def test_malformed_sse_field_lines_are_skipped_not_fatal(srv, use_async) -> None:
    # Per the SSE spec, unknown fields and comments are ignored; the answer is whole.
    srv.enqueue(sse_reply([": keep-alive\n\n", chunk("A"), "retry: x\nid: 7\nfoo\n\n",
                           chunk("B"), chunk(finish="stop"), DONE]))
    got, error, r = consume(openai(srv), use_async)
    assert error is None and got == ["A", "B"] and r.data == "AB"


@MODES
def test_truncated_json_before_any_text_is_a_typed_error(srv, use_async) -> None:
    srv.enqueue(sse_reply([chunk(role="assistant"), 'data: {"choices": [\n\n']))
    got, error, _ = consume(openai(srv), use_async)
    assert isinstance(error, exc.ResponseError) and got == []
    assert len(srv.requests) == 1  # a broken body is not retried


# ---------------------------------------------------------------- in-band errors


@MODES
@pytest.mark.parametrize(("kind", "cls"), [("server_error", exc.ServerError),
                                           ("rate_limit_error", exc.RateLimitError),
                                           ("invalid_request_error", exc.BadRequestError)])
def test_openai_in_band_error_after_text(srv, use_async, kind, cls) -> None:
    srv.enqueue(sse_reply([chunk("Par"), chunk("tial"),
                           {"error": {"message": "upstream died", "type": kind}}, DONE]),
                openai_stream("unused"))
    got, error, _ = consume(openai(srv), use_async)
    assert_broken(error, got, "Partial", cls)
    assert "upstream died" in str(error)
    assert len(srv.requests) == 1


@MODES
def test_anthropic_error_event_after_text(srv, use_async) -> None:
    events = anthropic_events("Hel", "lo", stop=False, message_stop=False)
    events.append('event: error\ndata: {"type": "error", "error": '
                  '{"type": "overloaded_error", "message": "Overloaded"}}\n\n')
    srv.enqueue(sse_reply(events), sse_reply(anthropic_events("unused")))
    got, error, _ = consume(anthropic(srv), use_async)
    assert_broken(error, got, "Hello", exc.OverloadedError)
    assert len(srv.requests) == 1


@MODES
def test_anthropic_error_event_before_text_is_retried(srv, use_async) -> None:
    events = anthropic_events(stop=False, message_stop=False)
    events.append('event: error\ndata: {"type": "error", "error": '
                  '{"type": "api_error", "message": "Internal"}}\n\n')
    srv.enqueue(sse_reply(events), sse_reply(anthropic_events("fine")))
    got, error, r = consume(anthropic(srv), use_async)
    assert error is None and got == ["fine"] and r.data == "fine"
    assert len(srv.requests) == 2


@MODES
@pytest.mark.parametrize(("event", "cls"), [
    ({"type": "error", "code": "server_error", "message": "upstream died"}, exc.ServerError),
    ({"type": "error", "code": "rate_limit_exceeded", "message": "upstream died"},
     exc.RateLimitError),
    ({"type": "response.failed", "response": {"id": "resp_1", "status": "failed", "error": {
        "code": "server_error", "message": "upstream died"}}}, exc.ServerError),
])
def test_responses_error_events_after_text(srv, use_async, event, cls) -> None:
    events = responses_events("Par", "tial", completed=False)
    events.append(f"event: {event['type']}\ndata: {json.dumps(event)}\n\n")
    srv.enqueue(sse_reply(events), sse_reply(responses_events("unused")))
    got, error, _ = consume(responses(srv), use_async)
    assert_broken(error, got, "Partial", cls)
    assert "upstream died" in str(error)
    assert len(srv.requests) == 1


@MODES
def test_responses_failed_before_text_is_retried(srv, use_async) -> None:
    failed = {"type": "response.failed", "response": {"id": "resp_1", "status": "failed",
                                                      "error": {"code": "server_error",
                                                                "message": "Internal"}}}
    events = responses_events(completed=False)
    events.append(f"event: response.failed\ndata: {json.dumps(failed)}\n\n")
    srv.enqueue(sse_reply(events), sse_reply(responses_events("fine")))
    got, error, r = consume(responses(srv), use_async)
    assert error is None and got == ["fine"] and r.data == "fine"
    assert len(srv.requests) == 2


# ---------------------------------------------------------------- missing end markers


@MODES
def test_openai_stream_without_done_or_finish(srv, use_async) -> None:
    srv.enqueue(openai_stream("Hel", "lo", done=False, finish=False))
    got, error, _ = consume(openai(srv), use_async)
    assert_broken(error, got, "Hello", None)


@MODES
def test_anthropic_stream_without_message_stop(srv, use_async) -> None:
    srv.enqueue(sse_reply(anthropic_events("Hel", "lo", stop=False, message_stop=False)))
    got, error, _ = consume(anthropic(srv), use_async)
    assert_broken(error, got, "Hello", None)


@MODES
def test_anthropic_stream_cut_mid_way(srv, use_async) -> None:
    reply = sse_reply(anthropic_events("Hel", "lo", " you"))
    srv.enqueue(reply.drop_after(after(reply, b'"lo"')))
    got, error, _ = consume(anthropic(srv), use_async)
    assert_broken(error, got, "Hello", exc.APIConnectionError)


@MODES
def test_responses_stream_without_completed(srv, use_async) -> None:
    srv.enqueue(sse_reply(responses_events("Hel", "lo", completed=False)))
    got, error, _ = consume(responses(srv), use_async)
    assert_broken(error, got, "Hello", None)
    assert "end marker" in str(error)


@MODES
def test_responses_stream_cut_mid_way(srv, use_async) -> None:
    reply = sse_reply(responses_events("Hel", "lo", " you"))
    srv.enqueue(reply.drop_after(after(reply, b'"lo"')), sse_reply(responses_events("unused")))
    got, error, _ = consume(responses(srv), use_async)
    assert_broken(error, got, "Hello", exc.APIConnectionError)
    assert len(srv.requests) == 1 and srv.pending_replies == 1


@MODES
def test_whole_streams_still_work(srv, use_async) -> None:
    srv.enqueue(openai_stream("a", "b"), sse_reply(anthropic_events("c", "d")))
    got, error, r = consume(openai(srv), use_async)
    assert error is None and got == ["a", "b"] and r.data == "ab"
    got, error, r = consume(anthropic(srv), use_async)
    assert error is None and got == ["c", "d"] and r.data == "cd"


# ---------------------------------------------------------------- tool calls


WEATHER = [{"type": "function", "function": {
    "name": "get_weather", "parameters": {"type": "object",
                                          "properties": {"city": {"type": "string"}}}}}]


def tool_stream(done: bool = True):
    events = [chunk(role="assistant"),
              tool_chunk(0, id="call_1", name="get_weather", arguments='{"ci'),
              tool_chunk(0, arguments='ty": "Par'),
              tool_chunk(0, arguments='is"}'),
              chunk(finish="tool_calls")]
    return sse_reply([*events, DONE] if done else events)


@MODES
def test_tool_call_stream_keeps_the_turns_text_and_reasoning(srv, use_async) -> None:
    # The text and reasoning streamed before the calls belong to the assistant turn
    # that get_messages() sends back: losing them would change the conversation.
    events = [chunk(role="assistant"), chunk(reasoning_content="Weather "),
              chunk(reasoning_content="needs a tool."), chunk("Let me "), chunk("check."),
              tool_chunk(0, id="call_1", name="get_weather", arguments='{"city": "Paris"}'),
              chunk(finish="tool_calls"), DONE]
    srv.enqueue(sse_reply(events))
    r = start(openai(srv), use_async, tool_schemas=WEATHER)
    agg = r.consume()
    assert r.response_type == "tool_call"
    assert (agg.text, agg.reasoning) == ("Let me check.", "Weather needs a tool.")
    agg.insert_results("call_1", "22 C")
    assistant, tool = agg.get_messages()
    assert assistant["content"] == "Let me check."
    assert assistant["thinking_blocks"] == [{"type": "thinking",
                                             "thinking": "Weather needs a tool."}]
    assert tool == {"role": "tool", "tool_call_id": "call_1", "content": "22 C"}


@MODES
def test_tool_call_stream_cut_mid_arguments_keeps_partial_calls(srv, use_async) -> None:
    reply = tool_stream()
    cuts = [reply.drop_after(after(reply, b'Par"')) for _ in range(4)]
    srv.enqueue(*cuts)
    _got, error, _ = consume(openai(srv), use_async, tool_schemas=WEATHER)
    assert isinstance(error, exc.StreamError), repr(error)
    assert isinstance(error.__cause__, exc.APIConnectionError)
    [call] = error.partial_tool_calls
    assert call["name"] == "get_weather" and call["id"] == "call_1"
    assert call["arguments"] == '{"city": "Par'
    assert len(srv.requests) == 4  # nothing reached the caller: retried


@MODES
def test_tool_call_stream_cut_once_is_retried_whole(srv, use_async) -> None:
    reply = tool_stream()
    srv.enqueue(reply.drop_after(after(reply, b'Par"')), tool_stream())
    r = start(openai(srv), use_async, tool_schemas=WEATHER)
    assert r.response_type == "tool_call"
    [call] = r.consume().get_calls()
    assert call["function"]["arguments"] == {"city": "Paris"}
    assert len(srv.requests) == 2


@MODES
def test_responses_tool_call_stream_cut_keeps_partial_calls(srv, use_async) -> None:
    def ev(data: dict) -> str:
        return f"event: {data['type']}\ndata: {json.dumps(data)}\n\n"

    events = [ev({"type": "response.output_item.added", "output_index": 0, "item": {
                  "id": "fc_1", "type": "function_call", "call_id": "call_1",
                  "name": "get_weather", "arguments": ""}})]
    events += [ev({"type": "response.function_call_arguments.delta", "item_id": "fc_1",
                   "output_index": 0, "delta": d}) for d in ('{"ci', 'ty": "Par', 'is"}')]
    srv.enqueue(*[sse_reply(events) for _ in range(4)])
    _got, error, _ = consume(responses(srv), use_async, tool_schemas=WEATHER)
    assert isinstance(error, exc.StreamError), repr(error)
    [call] = error.partial_tool_calls
    assert (call["id"], call["name"], call["arguments"]) == (
        "call_1", "get_weather", '{"city": "Paris"}')
    assert len(srv.requests) == 4  # nothing reached the caller: retried


@MODES
def test_tool_call_stream_without_end_is_an_error(srv, use_async) -> None:
    events = [chunk(role="assistant"),
              tool_chunk(0, id="call_1", name="get_weather", arguments='{"city": "Rome"}')]
    srv.enqueue(*[sse_reply(events) for _ in range(4)])
    _got, error, _ = consume(openai(srv), use_async, tool_schemas=WEATHER)
    assert isinstance(error, exc.StreamError), repr(error)
    assert error.partial_tool_calls[0]["arguments"] == '{"city": "Rome"}'


# ---------------------------------------------------------------- structured


class Answer(mf.dotdict):
    pass


@MODES
def test_structured_stream_cut_is_a_stream_error_not_a_schema_error(srv, use_async) -> None:
    import msgspec

    class Out(msgspec.Struct):
        answer: str

    text = json.dumps({"answer": "forty-two"})
    reply = openai_stream(text[:8], text[8:])
    srv.enqueue(reply.drop_after(after(reply, json.dumps(text[:8])[1:-1].encode())))
    _got, error, _ = consume(openai(srv), use_async, generation_schema=Out)
    assert isinstance(error, exc.StreamError), repr(error)
    assert error.partial_text == text[:8]
