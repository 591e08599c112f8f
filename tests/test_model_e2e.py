"""The chat model end to end: the real llama.cpp server for behaviour, the scripted
server where exact bytes matter (images, protocol shapes, FastAPI timing).

Structure is asserted, never the small model's wording.
"""

from __future__ import annotations

import asyncio
import base64
import http.client
import json
import socket
import threading
import time
import warnings

import msgspec
import pytest

import msgflux as mf
from msgflux import exceptions as exc
from scripted_server import ScriptedServer, json_reply, sse_reply

WEATHER = [{
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                       "required": ["city"]},
    },
}]


def completion(text: str = "ok", **extra) -> dict:
    return {"id": "c1", "model": "m", "choices": [{"index": 0, "message": {
        "role": "assistant", "content": text, **extra}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6}}


def chunk(content: str | None = None, finish: str | None = None, **delta) -> dict:
    if content is not None:
        delta["content"] = content
    return {"id": "s1", "model": "m",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


# ---------------------------------------------------------------- real server


@pytest.fixture
def local(llama_server):
    return mf.Model.chat_completion("llamacpp-server/smollm2", base_url=llama_server.base_url,
                                    temperature=0, max_tokens=96)


def test_text_system_and_multi_turn(local, prompt_tokens) -> None:
    r = local("Name a colour.", system_prompt="Answer in one word.")
    assert r.response_type == "text_generation" and isinstance(r.consume(), str)
    # The server was prompted with the system prompt and the question, nothing less.
    assert r.metadata.usage.prompt_tokens == prompt_tokens([
        {"role": "system", "content": "Answer in one word."},
        {"role": "user", "content": "Name a colour."}])
    history = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": r.consume()},
               {"role": "user", "content": "And another?"}]
    r2 = local(history)
    assert isinstance(r2.consume(), str)
    # Every earlier turn reached the server: the last question alone makes a shorter prompt.
    assert r2.metadata.usage.prompt_tokens == prompt_tokens(history)
    assert prompt_tokens(history) > prompt_tokens(history[-1:])


def test_async_stream_with_async_for(local) -> None:
    async def main() -> list[str]:
        r = await local.acall("Count to five.", stream=True)
        chunks = [c async for c in r.consume()]
        assert r.response_type == "text_generation" and r.data == "".join(chunks)
        assert r.metadata.usage.completion_tokens > 0
        return chunks

    assert len(asyncio.run(main())) > 1


def test_acall_stream_cannot_block_its_own_loop(local) -> None:
    async def main() -> None:
        r = await local.acall("Count to five.", stream=True)
        with pytest.raises(exc.StreamUsageError, match="async for"):
            list(r.consume())
        await r.aclose()

    asyncio.run(main())


def test_sync_stream_read_with_async_for_after_a_sync_start(local) -> None:
    r = local("Count to five.", stream=True)  # opened here: no loop is running

    async def main() -> list[str]:
        return [c async for c in r.consume()]

    chunks = asyncio.run(main())
    assert chunks and r.data == "".join(chunks)


@pytest.mark.parametrize("choice", ["required", "get_weather"])
@pytest.mark.parametrize("stream", [False, True])
def test_tools_required_and_named(local, choice: str, stream: bool) -> None:
    r = local("What is the weather like in Paris?", tool_schemas=WEATHER, tool_choice=choice,
              stream=stream)
    assert r.response_type == "tool_call"
    calls = r.consume().get_calls()
    assert calls[0]["function"]["name"] == "get_weather"
    assert isinstance(calls[0]["function"]["arguments"], dict)


def test_async_tool_stream_is_complete_when_acall_returns(local) -> None:
    async def main():
        return await local.acall("What is the weather like in Paris?", tool_schemas=WEATHER,
                                 tool_choice="required", stream=True)

    r = asyncio.run(main())
    assert r.response_type == "tool_call"
    assert r.consume().get_calls()[0]["function"]["name"] == "get_weather"
    assert r.metadata.finish_reason == "tool_calls"


def test_tool_choice_none_gives_text(local) -> None:
    r = local("What is the weather like in Paris?", tool_schemas=WEATHER, tool_choice="none")
    assert r.response_type == "text_generation"
    assert "<tool_call>" not in r.consume()  # the server got no tools to write calls for


def test_structured_stream_validates_at_the_end(llama_server) -> None:
    class Book(msgspec.Struct):
        title: str
        year: int

    model = mf.Model.chat_completion("llamacpp-server/x", base_url=llama_server.base_url,
                                     temperature=0, max_tokens=100)
    r = model("Describe a book as JSON.", generation_schema=Book, stream=True)
    assert r.response_type == "structured"
    objects = list(r.consume())  # partial objects, then the validated answer
    assert objects[-1] is r.data and set(r.data) == {"title", "year"}
    assert isinstance(r.data.year, int)


def test_structured_cut_off_is_an_error(llama_server) -> None:
    class Essay(msgspec.Struct):
        title: str
        body: str

    model = mf.Model.chat_completion("llamacpp-server/x", base_url=llama_server.base_url,
                                     temperature=0, max_tokens=3)
    with pytest.raises(exc.OutputTruncatedError) as info:
        model("Write a long essay as JSON.", generation_schema=Essay)
    assert info.value.raw is not None


@pytest.mark.parametrize("stream", [False, True])
def test_prefill_appears_exactly_once(local, stream: bool) -> None:
    prefix = "Let's think step by step:"
    r = local("What is 30 * 3 + 33?", prefilling=prefix, stream=stream)
    text = "".join(r.consume()) if stream else r.consume()
    assert text.startswith(prefix) and text.count(prefix) == 1
    assert len(text) > len(prefix)


def test_prefill_refused_where_unsupported(openai_env) -> None:
    model = mf.Model.chat_completion("openai/gpt-4o")
    with pytest.raises(exc.PrefillNotSupportedError):
        model("hi", prefilling="{")


def test_fifty_concurrent_async_calls(llama_server) -> None:
    model = mf.Model.chat_completion("llamacpp-server/x", base_url=llama_server.base_url,
                                     temperature=0, max_tokens=8)

    async def main():
        prompts = [f"Say the number {i}." for i in range(50)]
        results = await asyncio.gather(*(model.acall(p) for p in prompts))
        await model.aclose()
        return results

    results = asyncio.run(main())
    assert len(results) == 50
    assert all(r.response_type == "text_generation" for r in results)
    assert all(r.metadata.usage.prompt_tokens > 0 for r in results)


def test_planning_schemas_filled_by_the_real_server(llama_server) -> None:
    # A 135M model decoding greedily loops inside long lists; the instructions a user would
    # give plus llama.cpp's repeat_penalty (a provider field, through extra_body) stop that.
    model = mf.Model.chat_completion("llamacpp-server/x", base_url=llama_server.base_url,
                                     temperature=0, max_tokens=400,
                                     extra_body={"repeat_penalty": 1.3})
    plan = mf.generation.plan
    cases = [
        (plan.ChainOfThoughts, "Think step by step, briefly."),
        (plan.ReAct, "You have no tools: leave actions empty and give the final answer."),
        (plan.SelfConsistency, "Give exactly three short attempts."),
        (plan.TreeOfThoughts, "Use at most three short thoughts."),
    ]
    for schema, instructions in cases:
        r = model("What is 25 * 4 + 17?", generation_schema=schema, system_prompt=instructions)
        assert r.response_type == "structured"
        assert set(r.consume()) == set(schema.__struct_fields__)
        assert isinstance(r.consume().final_answer, str)
        msgspec.convert(r.consume(), schema)  # the dict is a valid instance of the schema


def test_guide_planning_example(openai_env) -> None:
    import msgflux as mf

    # Access built-in planning schemas
    ChainOfThoughts = mf.generation.plan.ChainOfThoughts  # noqa: N806 - the guide's spelling

    model = mf.Model.chat_completion("openai/gpt-4o", max_tokens=300)

    # Use Chain of Thoughts
    response = model(
        messages="What is 25 * 4 + 17?",
        generation_schema=ChainOfThoughts
    )

    result = response.consume()
    print(result)
    assert isinstance(result.reasoning, str) and isinstance(result.final_answer, str)


def test_guide_typed_xml_example(openai_env) -> None:
    import msgflux as mf  # noqa: I001 - the guide's code, as written
    from jinja2 import Template

    # Get typed XML parser
    typed_xml = mf.dsl.typed_parsers.typed_parser_registry["typed_xml"]

    # Define instructions
    instructions = """Extract the event information:
name: str
date: str
participants: list[str]
"""

    # Create system prompt
    template = Template(typed_xml.template)
    system_prompt = template.render({"instructions": instructions}).strip()

    # Generate with XML output
    model = mf.Model.chat_completion("openai/gpt-4o", temperature=0, max_tokens=200)

    try:
        response = model(
            messages="Alice and Bob are going to a science fair on Friday.",
            system_prompt=system_prompt,
            typed_parser="typed_xml"
        )
    except exc.TypedParserError as e:  # a 135M model may not write XML: typed error, raw kept
        assert e.raw is not None
        return

    # Automatically parsed to dict
    result = response.consume()
    print(result)
    assert response.response_type == "structured" and isinstance(result, dict)


# ---------------------------------------------------------------- scripted server


@pytest.fixture
def scripted(monkeypatch):
    with ScriptedServer() as srv:
        monkeypatch.setenv("OPENAI_BASE_URL", f"{srv.url}/v1")
        monkeypatch.setenv("OPENAI_API_KEY", "sk-scripted")
        yield srv


def test_guide_image_examples_send_openai_parts(scripted, tmp_path, monkeypatch) -> None:
    for _ in range(3):
        scripted.enqueue(json_reply(200, completion("A cat.")))
    import msgflux as mf

    model = mf.Model.chat_completion("openai/gpt-4o")

    messages = [{
        "role": "user",
        "content": [
            {"type": "text", "text": "What's in this image?"},
            {
                "type": "image_url",
                "image_url": {
                    "url": "https://example.com/image.jpg"
                }
            }
        ]
    }]

    response = model(messages=messages)
    print(response.consume())

    messages = [
        mf.ChatBlock.user(
            "Describe this image",
            media=mf.ChatBlock.image("https://example.com/image.jpg")
        )
    ]

    response = model(messages=messages)
    print(response.consume())

    monkeypatch.chdir(tmp_path)
    (tmp_path / "image.jpg").write_bytes(b"\xff\xd8\xff\xe0jpeg")
    # Read and encode image
    with open("image.jpg", "rb") as f:
        image_data = base64.b64encode(f.read()).decode()

    messages = [{
        "role": "user",
        "content": [
            {"type": "text", "text": "What's in this image?"},
            {
                "type": "image_url",
                "image_url": {
                    "url": f"data:image/jpeg;base64,{image_data}"
                }
            }
        ]
    }]

    model = mf.Model.chat_completion("openai/gpt-4o")
    response = model(messages=messages)

    sent = [r.json()["messages"][0]["content"] for r in scripted.requests]
    assert sent[0][1] == {"type": "image_url", "image_url": {"url": "https://example.com/image.jpg"}}
    assert sent[1] == [{"type": "text", "text": "Describe this image"},
                       {"type": "image_url",
                        "image_url": {"url": "https://example.com/image.jpg"}}]
    assert sent[2][1]["image_url"]["url"] == f"data:image/jpeg;base64,{image_data}"
    assert scripted.requests[0].headers["authorization"] == "Bearer sk-scripted"
    assert response.consume() == "A cat."


def test_wire_body_of_sampling_parameters(scripted) -> None:
    scripted.enqueue(json_reply(200, completion()))
    model = mf.Model.chat_completion("openai/gpt-4o", temperature=0, max_tokens=10, top_p=0.5,
                                     seed=3, stop=["x"], reasoning_effort="low",
                                     extra_body={"logprobs": True})
    model("hi")
    body = scripted.requests[0].json()
    assert body["temperature"] == 0  # zero is sent, not dropped
    assert body["max_completion_tokens"] == 10 and "max_tokens" not in body
    assert (body["top_p"], body["seed"], body["stop"]) == (0.5, 3, ["x"])
    assert body["reasoning_effort"] == "low" and body["logprobs"] is True
    assert scripted.requests[0].path == "/v1/chat/completions"


def test_reasoning_content_and_usage_details(scripted) -> None:
    scripted.enqueue(json_reply(200, {
        "choices": [{"message": {"content": "4", "reasoning_content": "2+2"},
                     "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15,
                  "prompt_tokens_details": {"cached_tokens": 8},
                  "completion_tokens_details": {"reasoning_tokens": 3}}}))
    r = mf.Model.chat_completion("openai/gpt-4o")("2+2?")
    assert (r.consume(), r.reasoning) == ("4", "2+2")
    assert r.metadata.usage.cached_tokens == 8 and r.metadata.usage.reasoning_tokens == 3
    # OPENAI_BASE_URL points at another server: gpt-4o's list price does not apply there.
    assert r.metadata.cost is None


def test_stream_reasoning_usage_on_final_choice_chunk(scripted) -> None:
    final = chunk("!", finish="stop")
    final["usage"] = {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
    scripted.enqueue(sse_reply([chunk(reasoning_content="hmm"), chunk("Hi"), final,
                                "data: [DONE]\n\n"]))
    r = mf.Model.chat_completion("openai/gpt-4o")("hi", stream=True)
    assert list(r.consume()) == ["Hi", "!"]
    assert r.reasoning == "hmm" and r.metadata.usage.total_tokens == 5
    assert r.metadata.finish_reason == "stop"
    assert scripted.requests[0].json()["stream_options"] == {"include_usage": True}


@pytest.mark.parametrize("stream", [False, True])
def test_an_answer_cut_at_a_limit_the_caller_did_not_set_warns(scripted, stream) -> None:
    cut = completion("Once upon a")
    cut["choices"][0]["finish_reason"] = "length"
    cut["usage"]["completion_tokens"] = 3
    final = chunk(" a", finish="length")
    final["usage"] = {"prompt_tokens": 3, "completion_tokens": 3, "total_tokens": 6}
    reply = (lambda: sse_reply([chunk("Once upon"), final, "data: [DONE]\n\n"])) if stream \
        else (lambda: json_reply(200, cut))
    scripted.enqueue(reply(), reply())

    def ask(model) -> object:
        r = model("Tell me a story.", stream=stream)
        if stream:
            assert "".join(r.consume()) == "Once upon a"
        return r

    model = mf.Model.chat_completion("openai/gpt-4o")
    with pytest.warns(exc.OutputTruncatedWarning, match=r"max_tokens") as caught:
        r = ask(model)
    assert r.metadata.finish_reason == "length"
    [warning] = [w for w in caught if w.category is exc.OutputTruncatedWarning]
    assert warning.filename == __file__  # the caller's line, not msgflux's
    model.close()
    # A limit the caller chose is no surprise: no warning.
    model = mf.Model.chat_completion("openai/gpt-4o", max_tokens=3)
    with warnings.catch_warnings():
        warnings.simplefilter("error", exc.OutputTruncatedWarning)
        assert ask(model).metadata.finish_reason == "length"
    model.close()


def test_parallel_tool_call_deltas_through_the_model(scripted) -> None:
    scripted.enqueue(sse_reply([
        chunk(tool_calls=[
            {"index": 0, "id": "call_a", "type": "function",
             "function": {"name": "get_weather", "arguments": ""}},
            {"index": 1, "id": "call_b", "type": "function",
             "function": {"name": "get_weather", "arguments": '{"city"'}}]),
        chunk(tool_calls=[{"index": 0, "function": {"arguments": '{"city": "Paris"}'}},
                          {"index": 1, "function": {"arguments": ': "Rome"}'}}]),
        chunk(finish="tool_calls"),
        "data: [DONE]\n\n",
    ], chunk_split=7))
    r = mf.Model.chat_completion("openai/gpt-4o")("weather?", tool_schemas=WEATHER, stream=True)
    calls = r.consume().get_calls()
    assert [c["function"]["arguments"] for c in calls] == [{"city": "Paris"}, {"city": "Rome"}]
    assert [c["id"] for c in calls] == ["call_a", "call_b"]


@pytest.mark.parametrize(("status", "body", "cls"), [
    (401, {"error": {"message": "Incorrect API key provided", "type": "invalid_request_error"}},
     exc.AuthenticationError),
    (400, {"error": {"message": "bad", "type": "invalid_request_error"}}, exc.BadRequestError),
    (404, {"error": {"message": "The model does not exist"}}, exc.NotFoundError),
])
def test_provider_error_bodies_are_typed(scripted, status, body, cls) -> None:
    scripted.enqueue(json_reply(status, body))
    model = mf.Model.chat_completion("openai/gpt-4o")
    with pytest.raises(cls) as info:
        model("hi")
    assert info.value.status == status and info.value.provider == "openai"
    assert body["error"]["message"] in str(info.value)
    assert len(scripted.requests) == 1  # never retried
    assert "sk-scripted" not in str(info.value)


def test_groq_style_quirks_and_provider_env(monkeypatch) -> None:
    with ScriptedServer() as srv:
        srv.enqueue(json_reply(200, completion()))
        monkeypatch.setenv("GROQ_BASE_URL", f"{srv.url}/openai/v1")
        monkeypatch.setenv("GROQ_API_KEY", "gsk-test")
        mf.Model.chat_completion("groq/llama-3.1-8b-instant", max_tokens=5)("hi")
        req = srv.requests[0]
    assert req.path == "/openai/v1/chat/completions"
    assert req.json()["max_completion_tokens"] == 5
    assert req.headers["authorization"] == "Bearer gsk-test"


def test_openrouter_model_path_splits_once(scripted, monkeypatch) -> None:
    monkeypatch.setenv("OPENROUTER_BASE_URL", f"{scripted.url}/api/v1")
    monkeypatch.setenv("OPENROUTER_API_KEY", "or-key")
    scripted.enqueue(json_reply(200, completion()))
    model = mf.Model.chat_completion("openrouter/openai/gpt-4o")
    assert model.model_id == "openai/gpt-4o"
    model("hi")
    assert scripted.requests[0].json()["model"] == "openai/gpt-4o"


def test_cache_hit_is_an_independent_copy_of_a_tool_call(scripted) -> None:
    scripted.enqueue(json_reply(200, completion(None, tool_calls=[
        {"id": "c1", "type": "function", "function": {"name": "get_weather",
                                                     "arguments": '{"city":"Oslo"}'}}])))
    model = mf.Model.chat_completion("openai/gpt-4o", enable_cache=True)
    model("weather?", tool_schemas=WEATHER).consume().insert_results("c1", "cold")  # the miss
    hit = model("weather?", tool_schemas=WEATHER)
    assert hit.response_type == "tool_call" and len(scripted.requests) == 1
    hit.consume().insert_results("c1", "warm")  # a caller changes what a hit gave it
    again = model("weather?", tool_schemas=WEATHER)
    assert len(scripted.requests) == 1 and model._response_cache.cache_info()["hits"] == 2
    with pytest.raises(exc.MessageFormatError):
        again.consume().get_messages()  # neither earlier caller's result leaked in
    assert again.consume() is not hit.consume()


# ---------------------------------------------------------------- FastAPI under uvicorn


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_guide_fastapi_streams_without_blocking_the_loop(scripted) -> None:
    uvicorn = pytest.importorskip("uvicorn")
    events = [chunk(f"tok{i} ") for i in range(8)] + [chunk(finish="stop"), "data: [DONE]\n\n"]
    reply = sse_reply(events)
    head = reply.steps[0][1]
    first_event = reply.steps[1][1]
    # The provider sends its first token, then holds the rest until the test lets it go:
    # what the client has by then came token by token, and a loop blocked on the
    # provider's socket could not answer anyone while the gate is shut.
    gate = threading.Event()
    scripted.enqueue(reply.hold_after(len(head) + len(first_event), gate, timeout=90))

    from fastapi import FastAPI  # noqa: I001 - the guide's code, as written
    from fastapi.responses import StreamingResponse
    import msgflux as mf

    app = FastAPI()
    model = mf.Model.chat_completion("openai/gpt-4o")

    @app.get("/chat")
    async def chat(query: str):
        response = model(
            messages=[{"role": "user", "content": query}],
            stream=True
        )

        return StreamingResponse(
            response.consume(),
            media_type="text/plain"
        )

    @app.get("/ping")
    async def ping():
        return {"ok": True}

    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.02)
        assert server.started
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.request("GET", "/chat?query=hi")
        resp = conn.getresponse()
        first = resp.read1(65536)
        # While the stream is held open upstream, the loop answers other requests: a
        # blocked loop would answer only once the hold ends (90 s), after this timeout.
        ping = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        ping.request("GET", "/ping")
        assert json.loads(ping.getresponse().read()) == {"ok": True}
        gate.set()
        rest = resp.read()
        ping.close()
        conn.close()
    finally:
        gate.set()
        server.should_exit = True
        thread.join(timeout=30)
    assert first == b"tok0 "  # sent on before the provider sent the rest
    assert (first + rest).decode() == "".join(f"tok{i} " for i in range(8))


def test_stream_with_finish_but_no_done_marker_is_cut_short(scripted) -> None:
    # OpenAI always ends a stream with [DONE]; without it the usage chunk may be lost.
    scripted.enqueue(sse_reply([chunk("Hi"), chunk(finish="stop")], chunked=False))
    r = mf.Model.chat_completion("openai/gpt-4o", max_retries=0)("hi", stream=True)
    with pytest.raises(exc.StreamError) as info:
        list(r.consume())
    assert info.value.partial_text == "Hi"
