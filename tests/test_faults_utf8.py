"""Invalid UTF-8 from a provider is a typed error, never a bare UnicodeDecodeError.

msgspec raises ``UnicodeDecodeError`` (not ``msgspec.DecodeError``) for invalid
UTF-8 inside a JSON string, so every dialect's ``except msgspec.DecodeError``
let it through: in answers, error bodies (which then were not retried either)
and stream events.
"""

from __future__ import annotations

import asyncio

import pytest

import msgflux as mf
from msgflux import exceptions as exc
from scripted_server import ScriptedServer, sse_reply, text_reply
from test_faults_support import DONE, anthropic, anthropic_events, chunk, completion, openai

BAD_ANSWER = {
    "openai": b'{"choices":[{"message":{"role":"assistant","content":"\xff\xfe"}}]}',
    "anthropic": b'{"type":"message","role":"assistant","content":[{"type":"text",'
                 b'"text":"\xff"}],"stop_reason":"end_turn"}',
    "google": b'{"candidates":[{"content":{"role":"model","parts":[{"text":"\xff"}]},'
              b'"finishReason":"STOP"}]}',
}
BAD_ERROR = b'{"error":{"message":"bad \xff bytes","type":"server_error"}}'


def build(dialect: str, srv: ScriptedServer, **kwargs):
    if dialect == "openai":
        return openai(srv, **kwargs)
    if dialect == "anthropic":
        return anthropic(srv, **kwargs)
    kwargs.setdefault("max_retries", 0)
    return mf.Model.chat_completion("google/gemini-2.0-flash", base_url=srv.url, api_key="k",
                                    **kwargs)


def run(model, use_async: bool, **kwargs):
    if use_async:
        async def main():
            try:
                return await model.acall("hi", **kwargs)
            finally:
                await model.aclose()
        return asyncio.run(main())
    with model:
        return model("hi", **kwargs)


MODES = pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
DIALECTS = pytest.mark.parametrize("dialect", ["openai", "anthropic", "google"])


@MODES
@DIALECTS
def test_answer_with_invalid_utf8_is_a_response_error(dialect, use_async) -> None:
    with ScriptedServer() as srv:
        srv.enqueue(text_reply(200, BAD_ANSWER[dialect], content_type="application/json"))
        with pytest.raises(exc.ResponseError):
            run(build(dialect, srv, max_retries=0), use_async)


@MODES
@DIALECTS
def test_error_body_with_invalid_utf8_keeps_its_status_and_is_retried(dialect, use_async) -> None:
    with ScriptedServer() as srv:
        good = {"openai": completion("fine"), "anthropic": None, "google": None}[dialect]
        srv.enqueue(text_reply(500, BAD_ERROR, content_type="application/json"))
        if good is None:
            srv.enqueue(text_reply(500, BAD_ERROR, content_type="application/json"))
            with pytest.raises(exc.ServerError) as info:
                run(build(dialect, srv, max_retries=1), use_async)
            assert info.value.status == 500 and "bad" in info.value.message
            assert len(srv.requests) == 2
        else:
            import json

            srv.enqueue(text_reply(200, json.dumps(good), content_type="application/json"))
            assert run(build(dialect, srv), use_async).consume() == "fine"
            assert len(srv.requests) == 2


@MODES
def test_stream_event_with_invalid_utf8_is_a_stream_error(use_async) -> None:
    with ScriptedServer() as srv:
        srv.enqueue(sse_reply([chunk("Hi"), b'data: {"choices":[{"delta":{"content":"\xff"}}]}\n\n',
                               DONE]))
        events = anthropic_events("Hi", stop=False, message_stop=False)
        events.append(b'event: content_block_delta\ndata: {"type":"content_block_delta",'
                      b'"index":0,"delta":{"type":"text_delta","text":"\xff"}}\n\n')
        srv.route("POST", "/v1/messages", sse_reply(events))
        for model in (openai(srv), anthropic(srv)):
            with pytest.raises(exc.StreamError) as info:
                if use_async:
                    async def main(model=model):
                        try:
                            r = await model.acall("hi", stream=True)
                            return [c async for c in r.consume()]
                        finally:
                            await model.aclose()
                    asyncio.run(main())
                else:
                    with model:
                        list(model("hi", stream=True).consume())
            assert info.value.partial_text == "Hi"
            assert isinstance(info.value.__cause__, exc.ResponseError)


@pytest.mark.parametrize("name", ["openai", "anthropic", "google"])
def test_dialects_called_directly_turn_invalid_utf8_into_response_errors(name) -> None:
    from msgflux._transport.types import SSEEvent
    from msgflux.exceptions import ResponseError
    from msgflux.models.dialects import get_dialect

    module = get_dialect(name)
    # msgspec skips unknown fields unread, so the bad bytes sit in fields each dialect reads.
    bad = (b'{"type": "\xff", "id": "\xff", "model": "\xff", "modelVersion": "\xff", '
           b'"responseId": "\xff", "choices": [], "candidates": []}')
    with pytest.raises(ResponseError) as info:
        module.parse_response(bad, None, name)
    assert info.value.raw is not None
    with pytest.raises(ResponseError):
        module.stream_decoder(None, name).feed(SSEEvent(bad))
    error = module.parse_error(500, [], b'{"error": {"message": "\xff"}}', name)
    assert error.status == 500 and error.retryable
