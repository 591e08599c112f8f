"""OpenAI's Responses API through the public model API.

Choosing the API (a data decision: the provider row, the model id, the ``api``
option), then the real llama.cpp server's ``/v1/responses`` for behaviour (text,
streams, tools, structured output), then the scripted server where exact bytes
matter (the encrypted reasoning carried through a tool loop, previous_response_id,
refusals, incomplete answers). Faults and retries are in ``test_faults_*.py``.
Structure is asserted, never the small model's wording.
"""

from __future__ import annotations

import asyncio
import json

import msgspec
import pytest

import msgflux as mf
from msgflux import exceptions as exc
from scripted_server import ScriptedServer, json_reply, sse_reply
from test_faults_support import response, responses

WEATHER = [{
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                       "required": ["city"]},
    },
}]


@pytest.fixture
def srv():
    with ScriptedServer() as s:
        yield s


def url_of(model: mf.ChatCompletionModel) -> str:
    return model.prepare("hi").http_request().url


def sent(model: mf.ChatCompletionModel, *args, **kwargs) -> dict:
    return msgspec.json.decode(model.prepare(*args, **kwargs).http_request().body)


# ---------------------------------------------------------------- choosing the API


@pytest.mark.parametrize(("model_id", "path"), [
    ("gpt-4o", "/chat/completions"),
    ("gpt-5", "/chat/completions"),  # served by both: Chat Completions stays the default
    ("gpt-5-chat-latest", "/chat/completions"),
    ("gpt-5-pro", "/responses"),
    ("o3-pro-2025-06-10", "/responses"),
    ("gpt-5.1-codex-max", "/responses"),
    ("codex-mini-latest", "/responses"),
    ("o4-mini-deep-research", "/responses"),
])
def test_models_only_the_responses_api_serves_use_it(model_id: str, path: str) -> None:
    model = mf.Model.chat_completion(f"openai/{model_id}", api_key="sk-test")
    assert url_of(model) == "https://api.openai.com/v1" + path


def test_the_api_option_chooses_explicitly_and_survives_serialize(monkeypatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    model = mf.Model.chat_completion("openai/gpt-4o", api="responses", temperature=0.2)
    assert url_of(model).endswith("/responses")
    state = model.serialize()
    assert state["provider"] == "openai" and state["state"]["api"] == "responses"
    rebuilt = mf.Model.from_serialized(json.loads(json.dumps(state)))
    assert rebuilt == model and url_of(rebuilt).endswith("/responses")
    forced = mf.Model.chat_completion("openai/gpt-5-pro", api_key="sk-test",
                                      api="chat_completions")
    assert url_of(forced).endswith("/chat/completions")
    # The automatic choice is not state: it is made again from the model id.
    assert "api" not in mf.Model.chat_completion("openai/gpt-5-pro", api_key="k").serialize()[
        "state"]


def test_encrypted_reasoning_is_asked_of_models_that_reason() -> None:
    """Models whose profile says they do not reason refuse the include (a 400)."""
    reasoning = mf.Model.chat_completion("openai/gpt-5", api_key="k", api="responses")
    plain = mf.Model.chat_completion("openai/gpt-4o", api_key="k", api="responses")
    assert sent(reasoning, "hi")["include"] == ["reasoning.encrypted_content"]
    assert "include" not in sent(plain, "hi")
    assert sent(plain, "hi")["store"] is False


def test_other_openai_compatible_providers_take_the_option(monkeypatch) -> None:
    monkeypatch.setenv("OPENROUTER_API_KEY", "sk-or-test")
    routed = mf.Model.chat_completion("openrouter/openai/gpt-5-pro")
    assert url_of(routed) == "https://openrouter.ai/api/v1/chat/completions"  # its own rule
    chosen = mf.Model.chat_completion("openrouter/openai/gpt-5-pro", api="responses")
    assert url_of(chosen) == "https://openrouter.ai/api/v1/responses"
    assert chosen.provider == "openrouter"


@pytest.mark.parametrize(("path", "api", "match"), [
    ("anthropic/claude-sonnet-4-5", "responses", "speaks its own"),
    ("google/gemini-2.5-flash", "chat_completions", "speaks its own"),
    ("openai/gpt-5", "soap", "'chat_completions' or 'responses'"),
    ("openai/gpt-5", True, "'chat_completions' or 'responses'"),
])
def test_bad_api_choices_fail_at_construction(path: str, api, match: str) -> None:
    with pytest.raises(exc.InvalidParameterError, match=match):
        mf.Model.chat_completion(path, api_key="k", api=api)


def test_what_the_api_lacks_is_refused_before_the_call(srv) -> None:
    # llama.cpp's server continues a turn over Chat Completions; over Responses it cannot.
    model = mf.Model.chat_completion("llamacpp-server/x", base_url=srv.url + "/v1",
                                     api="responses")
    with pytest.raises(exc.PrefillNotSupportedError, match="Responses API cannot continue"):
        model.prepare("Say hi", prefilling="Sure,")
    stopping = mf.Model.chat_completion("llamacpp-server/x", base_url=srv.url + "/v1",
                                        api="responses", stop=["END"])
    with pytest.raises(exc.InvalidParameterError, match="no 'stop' parameter"):
        stopping("Say hi")
    assert not srv.requests


# ---------------------------------------------------------------- the real server


@pytest.fixture
def local(llama_server):
    return mf.Model.chat_completion("llamacpp-server/smollm2", base_url=llama_server.base_url,
                                    api="responses", temperature=0, max_tokens=48)


def test_text_system_and_multi_turn(local) -> None:
    r = local("Name a colour.", system_prompt="Answer in one word.")
    assert r.response_type == "text_generation" and isinstance(r.consume(), str)
    meta = r.metadata
    assert meta.finish_reason in ("stop", "length") and meta.provider == "llamacpp-server"
    assert meta.id.startswith("resp_") and meta.usage.completion_tokens > 0
    history = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": r.consume()},
               {"role": "user", "content": "And another?"}]
    r2 = local(history)
    assert isinstance(r2.consume(), str)
    assert r2.metadata.usage.prompt_tokens > r.metadata.usage.prompt_tokens


def test_sync_stream(local) -> None:
    r = local("Count to five.", stream=True)
    chunks = list(r.consume())
    assert len(chunks) > 1 and r.data == "".join(chunks)
    assert r.response_type == "text_generation"
    assert r.metadata.usage.completion_tokens > 0 and r.metadata.id.startswith("resp_")


def test_async_stream(local) -> None:
    async def main() -> list[str]:
        r = await local.acall("Count to five.", stream=True)
        try:
            chunks = [c async for c in r.consume()]
        finally:
            await local.aclose()
        assert r.response_type == "text_generation" and r.data == "".join(chunks)
        assert r.metadata.finish_reason in ("stop", "length")
        return chunks

    assert len(asyncio.run(main())) > 1


@pytest.mark.parametrize("stream", [False, True])
def test_tool_round_trip(local, stream: bool) -> None:
    """A call (function_call item), its result (function_call_output with the call id),
    and the answer after it."""
    r = local("What is the weather like in Paris?", tool_schemas=WEATHER,
              tool_choice="get_weather", stream=stream)
    assert r.response_type == "tool_call"
    agg = r.consume()
    [call] = agg.get_calls()
    assert call["function"]["name"] == "get_weather"
    assert isinstance(call["function"]["arguments"], dict)
    assert r.metadata.finish_reason == "tool_calls"
    agg.insert_results(call["id"], {"temperature_c": 21, "sky": "clear"})
    history = [{"role": "user", "content": "What is the weather like in Paris?"},
               *agg.get_messages()]
    after = local(history, tool_schemas=WEATHER, tool_choice="none")
    assert after.response_type == "text_generation" and isinstance(after.consume(), str)


def test_async_tool_call(local) -> None:
    async def main():
        try:
            return await local.acall("What is the weather like in Paris?",
                                     tool_schemas=WEATHER, tool_choice="required")
        finally:
            await local.aclose()

    r = asyncio.run(main())
    assert r.response_type == "tool_call"
    assert r.consume().get_calls()[0]["function"]["name"] == "get_weather"


@pytest.mark.parametrize("stream", [False, True])
def test_structured_output(llama_server, stream: bool) -> None:
    class Book(msgspec.Struct):
        title: str
        year: int

    model = mf.Model.chat_completion("llamacpp-server/x", base_url=llama_server.base_url,
                                     api="responses", temperature=0, max_tokens=100)
    r = model("Describe a book as JSON.", generation_schema=Book, stream=stream)
    assert r.response_type == "structured"
    if stream:  # partial objects as the answer streams, the validated one last
        objects = list(r.consume())
        assert objects[-1] == r.data and all(set(o) <= {"title", "year"} for o in objects)
    assert set(r.data) == {"title", "year"} and isinstance(r.data.year, int)


def test_what_the_server_refuses_is_a_typed_error(local) -> None:
    # llama.cpp keeps no responses: previous_response_id is a 400 there.
    with pytest.raises(exc.BadRequestError, match="previous_response_id"):
        local("Hi", extra_body={"previous_response_id": "resp_unknown"})


# ---------------------------------------------------------------- exact bytes


REASONING_TURN = {
    "id": "resp_A", "object": "response", "status": "completed", "model": "gpt-5",
    "output": [
        {"id": "rs_A", "type": "reasoning", "encrypted_content": "gAAAA-A",
         "summary": [{"type": "summary_text", "text": "Need the weather tool."}]},
        {"id": "fc_A", "type": "function_call", "status": "completed", "call_id": "call_A",
         "name": "get_weather", "arguments": '{"city":"Paris"}'},
    ],
    "usage": {"input_tokens": 50, "output_tokens": 20, "total_tokens": 70,
              "output_tokens_details": {"reasoning_tokens": 12}},
}


@pytest.mark.parametrize("stream", [False, True])
def test_tool_loop_carries_encrypted_reasoning_statelessly(srv, stream: bool) -> None:
    if stream:
        items = REASONING_TURN["output"]
        events = [{"type": "response.output_item.done", "output_index": i, "item": item}
                  for i, item in enumerate(items)]
        events.append({"type": "response.completed", "response": REASONING_TURN})
        srv.enqueue(sse_reply(events))
    else:
        srv.enqueue(json_reply(200, REASONING_TURN))
    srv.enqueue(json_reply(200, response("Sunny, 21C.")))
    model = responses(srv, reasoning_effort="low")
    r = model("Weather in Paris?", stream=stream, tool_schemas=WEATHER)
    assert r.response_type == "tool_call" and r.reasoning == "Need the weather tool."
    assert r.consume_reasoning() == r.reasoning
    assert r.metadata.usage.reasoning_tokens == 12 and r.metadata.id == "resp_A"
    agg = r.consume()
    agg.insert_results("call_A", "21C, sunny")
    final = model([{"role": "user", "content": "Weather in Paris?"}, *agg.get_messages()],
                  tool_schemas=WEATHER)
    assert final.consume() == "Sunny, 21C."
    first, second = (req.json() for req in srv.requests)
    assert first["store"] is False and first["include"] == ["reasoning.encrypted_content"]
    assert first["reasoning"] == {"effort": "low", "summary": "auto"}
    assert second["input"] == [
        {"role": "user", "content": "Weather in Paris?"},
        {"type": "reasoning", "id": "rs_A", "encrypted_content": "gAAAA-A",
         "summary": [{"type": "summary_text", "text": "Need the weather tool."}]},
        {"type": "function_call", "call_id": "call_A", "name": "get_weather",
         "arguments": '{"city":"Paris"}'},
        {"type": "function_call_output", "call_id": "call_A", "output": "21C, sunny"},
    ]
    assert all(req.path == "/v1/responses" for req in srv.requests)


def test_previous_response_id_continues_server_side_state(srv) -> None:
    """With store on, the next call names the previous response and sends only what
    follows it; the system prompt is sent again (instructions are not carried over)."""
    srv.enqueue(json_reply(200, response("Paris.")), json_reply(200, response("2.1 million.")))
    model = responses(srv, extra_body={"store": True})
    first = model("Capital of France?", system_prompt="Be brief.")
    second = model("Its population?", system_prompt="Be brief.",
                   extra_body={"previous_response_id": first.metadata.id})
    assert second.consume() == "2.1 million."
    body = srv.requests[1].json()
    assert body["previous_response_id"] == "resp_1" and body["store"] is True
    assert body["instructions"] == "Be brief."
    assert body["input"] == [{"role": "user", "content": "Its population?"}]


def refusal_answer() -> dict:
    return {"id": "resp_R", "status": "completed", "output": [
        {"type": "message", "role": "assistant",
         "content": [{"type": "refusal", "refusal": "I can't help with that."}]}]}


def test_refusals_are_the_neutral_refusal(srv) -> None:
    srv.enqueue(json_reply(200, refusal_answer()), json_reply(200, refusal_answer()))
    model = responses(srv)
    r = model("Something bad.")
    assert r.consume() == "I can't help with that."
    assert r.metadata.refusal == "I can't help with that."
    assert r.metadata.finish_reason == "refusal"

    class Out(msgspec.Struct):
        answer: str

    with pytest.raises(exc.RefusalError, match="can't help"):
        model("Something bad.", generation_schema=Out)


def test_incomplete_structured_answer_is_truncated_not_malformed(srv) -> None:
    class Out(msgspec.Struct):
        answer: str

    cut = response('{"answer": "forty', status="incomplete")
    cut["incomplete_details"] = {"reason": "max_output_tokens"}
    srv.enqueue(json_reply(200, cut), json_reply(200, cut))
    with pytest.raises(exc.OutputTruncatedError, match="max_tokens"):
        responses(srv)("q", generation_schema=Out)
    r = responses(srv)("q")
    assert r.metadata.finish_reason == "length" and r.consume() == '{"answer": "forty'
    sent_schema = srv.requests[0].json()["text"]["format"]
    assert sent_schema["type"] == "json_schema" and sent_schema["strict"] is True
