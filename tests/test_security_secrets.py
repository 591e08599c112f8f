"""A canary API key never leaves: repr/str, serialize(), requests, responses, logs,
warnings, exception messages (whole chains, formatted tracebacks), gateway
metadata and cache keys — for every dialect and every failure kind.
"""

from __future__ import annotations

import asyncio
import json
import logging
import traceback
import warnings

import pytest

import msgflux as mf
from msgflux import exceptions as exc
from msgflux.models.cache import cache_key
from scripted_server import ScriptedServer, json_reply, sse_reply, stall
from test_faults_support import (
    DONE,
    anthropic_events,
    chain,
    chunk,
    completion,
    free_port,
)

CANARY = "sk-CANARY-7f3a9c1e2d5b"
PATHS = {"openai": "openai/gpt-4o", "anthropic": "anthropic/claude-x",
         "google": "google/gemini-2.0-flash"}
FAST = mf.RetryPolicy(max_retries=1, backoff_base=0.001, backoff_max=0.001)


def build(dialect: str, base_url: str, **kwargs):
    kwargs.setdefault("max_retries", FAST)
    if dialect == "anthropic":
        kwargs.setdefault("max_tokens", 16)
    if dialect == "openai":
        base_url += "/v1"
    return mf.Model.chat_completion(PATHS[dialect], base_url=base_url, api_key=CANARY,
                                    **kwargs)


def texts_of_exception(e: BaseException) -> list[str]:
    out = ["".join(traceback.format_exception(e))]
    for link in chain(e):
        out += [str(link), repr(link), repr(getattr(link, "args", ()))]
        for attr in ("message", "body", "url", "raw", "partial_text"):
            value = getattr(link, attr, None)
            if value is not None:
                out.append(str(value))
        for name, sub in getattr(link, "errors", []) or []:
            out += [name, str(sub), "".join(traceback.format_exception(sub))]
    return out


def assert_clean(*texts: object) -> None:
    for text in texts:
        assert CANARY not in str(text), f"the API key leaked into: {str(text)[:300]}"


def ok_reply(dialect: str):
    if dialect == "openai":
        return json_reply(200, completion("fine"))
    if dialect == "anthropic":
        return json_reply(200, {"id": "m", "type": "message", "role": "assistant",
                                "model": "claude-x", "content": [{"type": "text",
                                                                  "text": "fine"}],
                                "stop_reason": "end_turn",
                                "usage": {"input_tokens": 1, "output_tokens": 1}})
    return json_reply(200, {"candidates": [{"content": {"role": "model", "parts": [
        {"text": "fine"}]}, "finishReason": "STOP"}]})


def stream_reply(dialect: str):
    if dialect == "openai":
        return sse_reply([chunk("fi"), chunk("ne"), chunk(finish="stop"), DONE])
    if dialect == "anthropic":
        return sse_reply(anthropic_events("fi", "ne"))
    return sse_reply([{"candidates": [{"content": {"role": "model", "parts": [
        {"text": "fine"}]}, "finishReason": "STOP"}]}])


def echo_key_error(status: int):
    """A provider that quotes the key back (some proxies and self-hosted servers do)."""
    return json_reply(status, {"error": {
        "message": f"Incorrect API key provided: {CANARY}. Check {CANARY[:6]}...",
        "type": "authentication_error", "code": "invalid_api_key"},
        "key": CANARY}, headers={"x-echo": CANARY})


DIALECTS = pytest.mark.parametrize("dialect", list(PATHS))


@pytest.fixture
def srv():
    with ScriptedServer() as s:
        yield s


# ---------------------------------------------------------------- objects


@DIALECTS
def test_model_endpoint_request_and_responses_never_show_the_key(srv, dialect) -> None:
    model = build(dialect, srv.url, extra_headers={"Authorization": f"Bearer {CANARY}",
                                                   "X-Api-Key": CANARY, "X-Trace": "t1"})
    state = model.serialize()
    endpoint = model._wiring.endpoint
    assert_clean(repr(model), str(model), json.dumps(state), repr(endpoint),
                 str(endpoint), model.get_model_info(), model.sampling_params)
    assert state["state"]["extra_headers"] == {"X-Trace": "t1"}
    call = model.prepare("hi")
    http = call.http_request()
    assert any(CANARY in v for _, v in http.headers)  # it is sent...
    assert_clean(repr(http), str(http), repr(call.request), str(call))  # ...never shown
    srv.enqueue(ok_reply(dialect), stream_reply(dialect))
    with model:
        r = model("hi")
        s = model("hi", stream=True)
        chunks = list(s.consume())
    assert r.consume() == "fine" and "".join(chunks) == "fine"
    assert_clean(repr(r), r.metadata, repr(s), s.metadata, repr(model._wiring.transport()))
    received = srv.requests[0]
    assert CANARY in json.dumps(received.headers)  # the server did get it


def test_from_serialized_needs_the_key_again(srv, monkeypatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    state = build("openai", srv.url).serialize()
    with pytest.raises(exc.MissingAPIKeyError) as info:
        mf.Model.from_serialized(state)
    assert_clean(*texts_of_exception(info.value))


# ---------------------------------------------------------------- failures


@DIALECTS
@pytest.mark.parametrize("status", [401, 403, 400, 500])
def test_provider_errors_quoting_the_key_are_redacted(srv, dialect, status) -> None:
    srv.enqueue(*[echo_key_error(status) for _ in range(2)])
    model = build(dialect, srv.url)
    with model, pytest.raises(exc.ProviderError) as info:
        model("hi")
    assert info.value.status == status
    assert "Incorrect API key provided" in str(info.value)  # the message itself stays
    assert_clean(*texts_of_exception(info.value))


@DIALECTS
def test_async_and_stream_errors_quoting_the_key_are_redacted(srv, dialect) -> None:
    srv.enqueue(echo_key_error(401), echo_key_error(401))
    model = build(dialect, srv.url)

    async def main(stream: bool):
        try:
            await model.acall("hi", stream=stream)
        finally:
            await model.aclose()

    for stream in (False, True):
        with pytest.raises(exc.AuthenticationError) as info:
            asyncio.run(main(stream))
        assert_clean(*texts_of_exception(info.value))


@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
def test_in_band_stream_error_quoting_the_key_is_redacted(srv, use_async) -> None:
    srv.enqueue(sse_reply([chunk("Hi"), {"error": {"message": f"bad key {CANARY}",
                                                   "type": "server_error"}}]))
    model = build("openai", srv.url)
    if use_async:
        async def main() -> None:
            try:
                r = await model.acall("hi", stream=True)
                [c async for c in r.consume()]
            finally:
                await model.aclose()

        with pytest.raises(exc.StreamError) as info:
            asyncio.run(main())
    else:
        with model, pytest.raises(exc.StreamError) as info:
            list(model("hi", stream=True).consume())
    assert info.value.partial_text == "Hi"
    assert_clean(*texts_of_exception(info.value))


@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
def test_connection_and_timeout_errors_never_show_the_key(srv, use_async) -> None:
    refused = build("openai", f"http://127.0.0.1:{free_port()}")
    srv.enqueue(stall(5), stall(5))
    slow = build("openai", srv.url, timeout={"first_byte": 0.1})
    for model, cls in ((refused, exc.APIConnectionError), (slow, exc.FirstByteTimeoutError)):
        if use_async:
            async def main(model=model):
                try:
                    await model.acall("hi")
                finally:
                    await model.aclose()
            with pytest.raises(cls) as info:
                asyncio.run(main())
        else:
            with model, pytest.raises(cls) as info:
                model("hi")
        assert_clean(*texts_of_exception(info.value))


def test_gateway_metadata_and_errors_never_show_the_key(srv) -> None:
    srv.enqueue(echo_key_error(401), ok_reply("openai"), echo_key_error(401), echo_key_error(401))
    gw = mf.ModelGateway([build("openai", srv.url), build("openai", srv.url)])
    r = gw("hi")
    assert r.consume() == "fine"
    assert_clean(json.dumps(r.metadata), repr(gw))
    with pytest.raises(exc.ModelGatewayError) as info:
        gw("hi")
    gw.close()
    assert_clean(*texts_of_exception(info.value))


# ---------------------------------------------------------------- logs and warnings


def test_nothing_logged_or_warned_holds_the_key(srv, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    logging.getLogger("msgflux").setLevel(logging.DEBUG)
    srv.enqueue(ok_reply("openai"), echo_key_error(401), stream_reply("openai"),
                echo_key_error(503), echo_key_error(503))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = build("openai", srv.url, enable_cache=True)
        with model:
            model("hi")
            model("hi")  # cache hit
            with pytest.raises(exc.AuthenticationError):
                model("other")
            list(model("hi", stream=True).consume())  # played back from the cache
            list(model("streamed", stream=True).consume())
            with pytest.raises(exc.ServerError):
                model("third")
        asyncio.run(_async_calls(model))
    for record in caplog.records:
        formatted = logging.Formatter("%(message)s %(args)s").format(record)
        assert_clean(record.getMessage(), formatted, record.args)
    assert_clean(*[str(w.message) for w in caught])


async def _async_calls(model) -> None:
    try:
        await model.acall("hi")  # cached
    finally:
        await model.aclose()


# ---------------------------------------------------------------- cache keys


@DIALECTS
def test_cache_keys_and_entries_never_hold_the_key(srv, dialect) -> None:
    model = build(dialect, srv.url, enable_cache=True)
    call = model.prepare("hi")
    key = cache_key(model.provider, model._wiring.endpoint.base_url, call.request, None)
    assert CANARY.encode() not in key and CANARY not in key.hex()
    srv.enqueue(ok_reply(dialect))
    with model:
        model("hi")
        assert model("hi").consume() == "fine"
    cache = model._response_cache
    assert cache.cache_info()["hits"] == 1
    for k, (_expires, v) in cache._data.items():
        assert CANARY.encode() not in k and CANARY.encode() not in v
        assert_clean(repr(cache))


def test_cache_key_does_not_depend_on_the_key(srv) -> None:
    a = build("openai", srv.url)
    b = mf.Model.chat_completion("openai/gpt-4o", base_url=srv.url + "/v1", api_key="other")
    keys = []
    for m in (a, b):
        call = m.prepare("hi")
        keys.append(cache_key(m.provider, m._wiring.endpoint.base_url, call.request, None))
    assert keys[0] == keys[1]


# ---------------------------------------------------------------- header injection


@pytest.mark.parametrize("bad", ["sk-a\r\nX-Evil: 1", "sk-a\nX-Evil: 1", "sk-\x00a"])
def test_keys_and_headers_cannot_inject_header_lines(srv, bad) -> None:
    srv.enqueue(ok_reply("openai"), ok_reply("openai"))
    for kwargs in ({"api_key": bad}, {"api_key": "k", "extra_headers": {"X-Tag": bad}},
                   {"api_key": "k", "extra_headers": {f"X-{bad}": "v"}}):
        try:
            model = mf.Model.chat_completion("openai/gpt-4o", base_url=srv.url + "/v1",
                                             max_retries=0, **kwargs)
            with model:
                model("hi")
        except exc.MsgfluxError as e:
            assert isinstance(e, exc.ConfigurationError), repr(e)
            assert "X-Evil" not in str(e) or "header" in str(e).lower()
    for received in srv.requests:
        assert "x-evil" not in received.headers
