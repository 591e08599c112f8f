"""``model.count_tokens`` / ``acount_tokens``: the provider's own count where it has
one (Anthropic ``count_tokens`` and Gemini ``countTokens`` on the scripted server with
their documented payloads, llama.cpp's template + tokenizer on the real server), an
estimate marked as one elsewhere."""

from __future__ import annotations

import asyncio

import msgspec
import pytest

import msgflux as mf
from msgflux import exceptions as exc
from scripted_server import ScriptedServer, json_reply
from test_faults_support import anthropic, error_body, openai

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Weather of a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                   "required": ["city"]}}}
MESSAGES = [{"role": "system", "content": "You are a scientist"},
            {"role": "user", "content": "Hello, Claude"}]


class Answer(msgspec.Struct):
    value: int


@pytest.fixture
def srv():
    with ScriptedServer() as s:
        yield s


def test_anthropic_counts_with_its_endpoint(srv) -> None:
    srv.route("POST", "/v1/messages/count_tokens", json_reply(200, {"input_tokens": 14}))
    srv.route("POST", "/v1/messages/count_tokens", json_reply(200, {"input_tokens": 403}))
    with anthropic(srv, temperature=0.2) as model:
        plain = model.count_tokens(MESSAGES)
        tools = asyncio.run(model.acount_tokens(MESSAGES, tool_schemas=[WEATHER]))
    assert plain == mf.TokenCount(14, True, "anthropic token count") and int(plain) == 14
    assert tools.tokens == 403 and tools.exact
    first, second = (r.json() for r in srv.requests)
    assert first == {"model": "claude-x", "system": "You are a scientist",
                     "messages": [{"role": "user", "content": "Hello, Claude"}]}
    assert second["tools"][0]["name"] == "get_weather"
    assert "max_tokens" not in second and "temperature" not in second
    assert srv.requests[0].headers["x-api-key"] == "sk-ant-test"


def test_gemini_counts_the_whole_request(srv) -> None:
    srv.route("POST", "/v1beta/models/gemini-2.5-flash:countTokens", json_reply(200, {
        "totalTokens": 31,
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 31}]}))
    model = mf.Model.chat_completion("google/gemini-2.5-flash", base_url=srv.url,
                                     api_key="g-test")
    with model:
        count = model.count_tokens(MESSAGES, tool_schemas=[WEATHER],
                                   generation_schema=Answer)
    assert count.tokens == 31 and count.exact
    request = srv.requests[0]
    body = request.json()["generateContentRequest"]
    assert body["model"] == "models/gemini-2.5-flash"
    assert body["systemInstruction"] == {"parts": [{"text": "You are a scientist"}]}
    assert body["contents"] == [{"role": "user", "parts": [{"text": "Hello, Claude"}]}]
    assert body["tools"][0]["functionDeclarations"][0]["name"] == "get_weather"
    assert request.headers["x-goog-api-key"] == "g-test" and "key=" not in request.target


def test_a_server_without_the_endpoint_gets_an_estimate(srv) -> None:
    srv.route("POST", "/v1/messages/count_tokens", json_reply(404, error_body(404)))
    with anthropic(srv) as model:
        count = model.count_tokens(MESSAGES)
    assert not count.exact and count.source == "estimate" and count.tokens > 0


def test_other_errors_are_raised(srv) -> None:
    srv.route("POST", "/v1/messages/count_tokens", json_reply(401, error_body(401)))
    with anthropic(srv) as model, pytest.raises(exc.AuthenticationError):
        model.count_tokens(MESSAGES)


def test_openai_estimates_and_says_so(srv) -> None:
    with openai(srv) as model:
        bare = model.count_tokens("Hello there, how are you today?")
        more = model.count_tokens("Hello there, how are you today?", tool_schemas=[WEATHER],
                                  generation_schema=Answer, system_prompt="Be brief.")
        awaited = asyncio.run(model.acount_tokens("Hello there, how are you today?"))
    assert (bare.exact, bare.source) == (False, "estimate")
    assert 5 <= bare.tokens <= 20 and more.tokens > bare.tokens
    assert awaited == bare
    assert srv.requests == []  # an estimate costs no request


def test_counting_checks_its_input_before_the_network(srv) -> None:
    with anthropic(srv) as model:
        with pytest.raises(exc.MessageFormatError):
            model.count_tokens([{"role": "wizard", "content": "x"}])
        with pytest.raises(exc.InvalidParameterError):
            model.count_tokens("x", tool_schemas="not a list")
    assert srv.requests == []


def test_an_oversized_prompt_is_counted_not_refused(srv) -> None:
    srv.route("POST", "/v1/messages/count_tokens", json_reply(200, {"input_tokens": 250_000}))
    model = mf.Model.chat_completion("anthropic/claude-3-5-haiku-20241022", base_url=srv.url,
                                     api_key="sk-ant-test", max_tokens=10)
    huge = "word " * 1_300_000
    with model:
        with pytest.raises(exc.ContextWindowExceededError):
            model(huge)  # the local lower bound already exceeds the 200k window
        assert model.count_tokens(huge).tokens == 250_000


# ---------------------------------------------------------------- llama.cpp, for real


def test_llamacpp_counts_as_the_server_bills(llama_server) -> None:
    model = mf.Model.chat_completion("llamacpp-server/smollm2",
                                     base_url=llama_server.base_url, max_tokens=1)
    with model:
        for tools in (None, [WEATHER]):
            count = model.count_tokens(MESSAGES, tool_schemas=tools)
            billed = model(MESSAGES, tool_schemas=tools).metadata.usage.prompt_tokens
            assert count.exact and count.tokens == billed
        awaited = asyncio.run(model.acount_tokens(MESSAGES))
    assert awaited.exact and awaited.tokens == model.count_tokens(MESSAGES).tokens
