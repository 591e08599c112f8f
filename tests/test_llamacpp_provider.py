"""The embedded ``llamacpp`` provider through the public model API (real llama.cpp)."""

from __future__ import annotations

import asyncio
import urllib.request

import msgspec
import pytest

import msgflux as mf
from msgflux.models.providers.llamacpp import EngineOptions, get_engine, resolve_gguf

pytest.importorskip("xllamacpp")

WEATHER = [{"type": "function", "function": {
    "name": "get_weather", "description": "Get the current weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                   "required": ["city"]}}}]

# Options no other test uses, so this module owns (and may close) its engine.
OPTIONS = {"n_ctx": 2048, "n_parallel": 2}


@pytest.fixture(scope="module")
def engine():
    engine = get_engine(resolve_gguf("smollm2"), EngineOptions(**OPTIONS))
    yield engine
    engine.close()


def test_two_models_share_one_engine_started_lazily(engine) -> None:
    a = mf.Model.chat_completion("llamacpp/smollm2", temperature=0, max_tokens=16, **OPTIONS)
    b = mf.Model.chat_completion("llamacpp/SmolLM2-135M-Instruct", temperature=0, max_tokens=16,
                                 **OPTIONS)
    assert a("Say hi.").response_type == "text_generation"
    assert b("Say hi.").response_type == "text_generation"
    assert a._wiring.endpoint.base_url == b._wiring.endpoint.base_url == engine.base_url
    assert engine.running


def test_text_stream_async_tools_and_schema(engine) -> None:
    model = mf.Model.chat_completion("llamacpp/smollm2", temperature=0, max_tokens=96, **OPTIONS)
    chunks = list(model("Count to five.", stream=True).consume())
    assert len(chunks) > 1

    r = model("What is the weather like in Paris?", tool_schemas=WEATHER, tool_choice="required")
    assert r.response_type == "tool_call"
    assert r.consume().get_calls()[0]["function"]["name"] == "get_weather"

    class City(msgspec.Struct):
        name: str
        country: str

    r = model("Paris is in France. Extract the city.", generation_schema=City)
    assert r.response_type == "structured" and set(r.consume()) == {"name", "country"}

    async def go():
        return await model.acall("Say hi.")

    assert isinstance(asyncio.run(go()).consume(), str)
    model.close()


def test_shutdown_and_restart(engine) -> None:
    model = mf.Model.chat_completion("llamacpp/smollm2", temperature=0, max_tokens=4, **OPTIONS)
    model("Hi")
    engine.close()
    assert not engine.running
    # The next use of a fresh model starts the engine again.
    again = mf.Model.chat_completion("llamacpp/smollm2", temperature=0, max_tokens=4, **OPTIONS)
    assert again("Hi").response_type == "text_generation"
    assert engine.running


def test_missing_model_file_is_a_clear_error(tmp_path) -> None:
    model = mf.Model.chat_completion(f"llamacpp/{tmp_path}/nope.gguf")
    with pytest.raises(mf.exceptions.ConfigurationError, match=r"nope\.gguf"):
        model("hi")


def test_openai_class_constructible_directly(openai_env) -> None:
    from msgflux.models.providers.openai import OpenAIChatCompletion

    model = OpenAIChatCompletion("gpt-4o", temperature=0, max_tokens=8)
    assert model == mf.Model.chat_completion("openai/gpt-4o", temperature=0, max_tokens=8)
    assert type(mf.Model.chat_completion("openai/gpt-4o")) is OpenAIChatCompletion
    assert isinstance(model("Hello").consume(), str)


def test_concurrent_calls_share_the_default_engine_slots() -> None:
    # Default engine options: two streams open at once are decoded side by side
    # (parallel slots), not one after the other.
    model = mf.Model.chat_completion("llamacpp/smollm2", max_tokens=48)
    engine = get_engine(resolve_gguf("smollm2"), EngineOptions())
    try:
        streams = [model("Tell me a story.", stream=True) for _ in range(2)]
        firsts = [next(iter(s.consume())) for s in streams]  # both have started
        metrics = urllib.request.urlopen(engine.root_url + "/metrics", timeout=30).read()
        assert all(isinstance(f, str) for f in firsts)
        assert b"llamacpp:requests_processing 2" in metrics
        for s in streams:
            s.close()
    finally:
        model.close()
        engine.close()
