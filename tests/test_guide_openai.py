"""The guide's examples for OpenAI-compatible providers, run as written.

``openai/gpt-4o`` is pointed at the real llama.cpp server (SmolLM2-135M) through
``OPENAI_BASE_URL`` by the ``openai_env`` fixture, so each code block below is
the guide's own code. The small model's wording is never asserted: only types,
keys and response types.
"""

# No `from __future__ import annotations`: the guide defines nested Structs inside
# functions here, and msgspec must see their annotations as real types.
import asyncio

import pytest

pytestmark = pytest.mark.usefixtures("openai_env")

# The guide's `tools` (from "Defining Tools"), shared by the later blocks that use it.
tools = [{
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get current weather for a location.",
        "parameters": {
            "type": "object",
            "properties": {
                "location": {
                    "type": "string",
                    "description": "City and country, e.g. Paris, France"
                },
                "unit": {
                    "type": "string",
                    "enum": ["celsius", "fahrenheit"],
                    "description": "Temperature unit"
                }
            },
            "required": ["location"],
            "additionalProperties": False
        }
    }
}]


def test_quick_start(capsys) -> None:
    import msgflux as mf

    # Create model
    model = mf.Model.chat_completion("openai/gpt-4o")

    # Simple completion
    response = model(messages=[{"role": "user", "content": "Hello!"}])
    print(response.consume())  # "Hello! How can I help you today?"

    # With system prompt
    response = model(
        messages=[{"role": "user", "content": "What is AI?"}],
        system_prompt="You are a helpful assistant."
    )
    print(response.consume())

    assert response.response_type == "text_generation"
    assert isinstance(response.consume(), str) and response.consume()
    assert capsys.readouterr().out.strip()


def test_basic_parameters_and_model_information() -> None:
    import msgflux as mf

    model = mf.Model.chat_completion(
        "openai/gpt-4o",
        temperature=0.7,        # Randomness (0-2)
        max_tokens=1000,        # Maximum output tokens
        top_p=0.9,              # Nucleus sampling
        enable_cache=True,      # Enable response caching
        cache_size=128          # Cache size
    )
    # Get model metadata
    print(model.get_model_info())
    # {'model_id': 'gpt-4o', 'provider': 'openai'}

    print(model.instance_type())
    # {'model_type': 'chat_completion'}

    # Serialize model state
    state = model.serialize()
    print(state)

    assert model.get_model_info() == {"model_id": "gpt-4o", "provider": "openai"}
    assert model.instance_type() == {"model_type": "chat_completion"}
    assert state["msgflux_type"] == "model" and state["provider"] == "openai"
    assert state["model_type"] == "chat_completion" and isinstance(state["state"], dict)
    assert mf.Model.from_serialized(state) == model
    assert mf.Model.from_serialized("openai", "chat_completion", state["state"]) == model


def test_response_caching() -> None:
    import msgflux as mf

    # Enable cache on initialization
    model = mf.Model.chat_completion(
        "openai/gpt-4o",
        enable_cache=True,   # Enable caching
        cache_size=128       # Cache up to 128 responses
    )

    # First call - hits API
    response1 = model(messages=[{"role": "user", "content": "Hello"}])
    print(response1.consume())

    # Second identical call - returns cached response (no API call)
    response2 = model(messages=[{"role": "user", "content": "Hello"}])
    print(response2.consume())

    # Different call - hits API again
    response3 = model(messages=[{"role": "user", "content": "Hi"}])
    print(response3.consume())

    assert response2.consume() == response1.consume()
    assert response2 is not response1
    assert model._response_cache.cache_info() == {
        "hits": 1, "misses": 2, "maxsize": 128, "currsize": 2}


def test_cache_statistics(capsys) -> None:
    import msgflux as mf

    model = mf.Model.chat_completion(
        "openai/gpt-4o",
        enable_cache=True,
        cache_size=128
    )

    # Make some calls
    model(messages=[{"role": "user", "content": "Test 1"}])
    model(messages=[{"role": "user", "content": "Test 1"}])  # Cache hit
    model(messages=[{"role": "user", "content": "Test 2"}])

    # Check cache stats
    if model._response_cache:
        stats = model._response_cache.cache_info()
        print(stats)
        # {
        #     'hits': 1,
        #     'misses': 2,
        #     'maxsize': 128,
        #     'currsize': 2
        # }

        # Clear cache
        model._response_cache.cache_clear()

    assert "{'hits': 1, 'misses': 2, 'maxsize': 128, 'currsize': 2}" in capsys.readouterr().out
    assert model._response_cache.cache_info()["currsize"] == 0


def test_monitor_cache_performance(capsys) -> None:
    import msgflux as mf

    model = mf.Model.chat_completion("openai/gpt-4o", enable_cache=True)
    model(messages=[{"role": "user", "content": "Hello"}])
    model(messages=[{"role": "user", "content": "Hello"}])

    # Periodically check cache stats
    if model._response_cache:
        stats = model._response_cache.cache_info()
        hit_rate = stats['hits'] / (stats['hits'] + stats['misses'])
        print(f"Cache hit rate: {hit_rate:.2%}")

        # Clear if hit rate is too low
        if hit_rate < 0.1:
            model._response_cache.cache_clear()

    assert "Cache hit rate: 50.00%" in capsys.readouterr().out


def test_message_formats() -> None:
    import msgflux as mf

    model = mf.Model.chat_completion("openai/gpt-4o")
    response = model(
        messages="What is Python?",
        system_prompt="You are a programming expert."
    )
    assert isinstance(response.consume(), str)

    messages = [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "Hello!"},
        {"role": "assistant", "content": "Hi! How can I help?"},
        {"role": "user", "content": "Tell me a joke."}
    ]
    before = [dict(m) for m in messages]
    response = model(messages=messages)
    assert isinstance(response.consume(), str)
    assert messages == before

    # Text only
    messages = [
        mf.ChatBlock.user("What's in this image?")
    ]
    response = model(messages=messages)
    assert response.response_type == "text_generation"


def test_stateless_multi_turn(prompt_tokens) -> None:
    import msgflux as mf

    model = mf.Model.chat_completion("openai/gpt-4o", max_tokens=32)
    prompt = "What is Deep Learning?"
    response = model(prompt)

    assistant = response.consume()
    print(assistant)

    prompt_2 = "What are the most impactful architectures?"

    messages = [
        {"role": "user", "content": prompt},
        {"role": "assistant", "content": assistant},
        {"role": "user", "content": prompt_2},
    ]

    response = model(messages)
    print(response.consume())
    assert isinstance(response.consume(), str)
    # The whole conversation reached the server, not only the last question.
    assert response.metadata.usage.prompt_tokens == prompt_tokens(messages)


def test_basic_streaming_async_for(capsys) -> None:
    import msgflux as mf

    model = mf.Model.chat_completion("openai/gpt-4o")

    async def main() -> None:
        response = model(
            messages=[{"role": "user", "content": "Count to 10"}],
            stream=True
        )

        # Consume stream
        async for chunk in response.consume():
            print(chunk, end="", flush=True)

        assert response.response_type == "text_generation"
        assert response.metadata.usage.completion_tokens > 1
        assert response.metadata.finish_reason in ("stop", "length")
        assert isinstance(response.data, str)

    asyncio.run(main())
    assert capsys.readouterr().out


def test_basic_streaming_sync_for() -> None:
    import msgflux as mf

    model = mf.Model.chat_completion("openai/gpt-4o")
    response = model(messages=[{"role": "user", "content": "Count to 10"}], stream=True)
    chunks = list(response.consume())
    assert len(chunks) > 1 and all(isinstance(c, str) for c in chunks)
    assert response.data == "".join(chunks)
    assert response.metadata.usage.total_tokens > 0
    # A finished stream can be read again.
    assert list(response.consume()) == chunks


def test_async_support(capsys) -> None:
    import msgflux as mf

    model = mf.Model.chat_completion("openai/gpt-4o")

    async def get_completion(prompt):
        response = await model.acall(messages=[{"role": "user", "content": prompt}])
        return response.consume()

    # Run multiple completions concurrently
    async def main():
        results = await asyncio.gather(
            get_completion("What is AI?"),
            get_completion("What is ML?"),
            get_completion("What is DL?")
        )
        for result in results:
            print(result)
        return results

    results = asyncio.run(main())
    assert len(results) == 3 and all(isinstance(r, str) for r in results)


def test_use_async_for_concurrent_requests() -> None:
    import msgflux as mf

    async def process_queries(queries):
        model = mf.Model.chat_completion("openai/gpt-4o")

        tasks = [
            model.acall(messages=[{"role": "user", "content": q}])
            for q in queries
        ]

        responses = await asyncio.gather(*tasks)
        return [r.consume() for r in responses]

    results = asyncio.run(process_queries(["a", "b"]))
    assert len(results) == 2 and all(isinstance(r, str) for r in results)


def test_structured_generation_basic() -> None:
    import msgflux as mf
    from msgspec import Struct

    class CalendarEvent(Struct):
        name: str
        date: str
        participants: list[str]

    model = mf.Model.chat_completion("openai/gpt-4o")

    response = model(
        messages="Alice and Bob are going to a science fair on Friday.",
        system_prompt="Extract the event information.",
        generation_schema=CalendarEvent
    )

    event = response.consume()
    print(event)
    assert response.response_type == "structured"
    assert set(event) == {"name", "date", "participants"}
    assert isinstance(event.name, str) and isinstance(event.participants, list)


def test_structured_generation_nested() -> None:
    import msgflux as mf
    from msgspec import Struct

    class Address(Struct):
        street: str
        city: str
        country: str

    class Person(Struct):
        name: str
        age: int
        address: Address

    model = mf.Model.chat_completion("openai/gpt-4o")

    response = model(
        messages="John Doe, 30 years old, lives at 123 Main St, New York, USA.",
        system_prompt="Extract person information.",
        generation_schema=Person
    )

    person = response.consume()
    print(person)
    assert isinstance(person.age, int)
    assert set(person.address) == {"street", "city", "country"}


def test_defining_tools(capsys) -> None:
    import msgflux as mf

    model = mf.Model.chat_completion("openai/gpt-4o")

    response = model(
        messages=[{"role": "user", "content": "What's the weather in Paris?"}],
        tool_schemas=tools
    )

    # Get tool calls
    tool_call_agg = response.consume()
    calls = tool_call_agg.get_calls()

    for call in calls:
        print(f"Tool: {call['function']['name']}")
        print(f"Arguments: {call['function']['arguments']}")

    assert response.response_type == "tool_call"
    assert calls and calls[0]["function"]["name"] == "get_weather"
    assert isinstance(calls[0]["function"]["arguments"], dict)
    assert "Tool: get_weather" in capsys.readouterr().out


def test_tool_choice() -> None:
    import msgflux as mf

    model = mf.Model.chat_completion("openai/gpt-4o")

    # Auto - model decides
    response = model(
        messages=[{"role": "user", "content": "What's the weather?"}],
        tool_schemas=tools,
        tool_choice="auto"  # Default
    )
    assert response.response_type in ("tool_call", "text_generation")

    # Required - must call at least one tool
    response = model(
        messages=[{"role": "user", "content": "What's the weather?"}],
        tool_schemas=tools,
        tool_choice="required"
    )
    assert response.response_type == "tool_call"

    # Specific function - must call this exact function
    response = model(
        messages=[{"role": "user", "content": "Paris weather"}],
        tool_schemas=tools,
        tool_choice="get_weather"
    )
    assert response.response_type == "tool_call"
    assert response.consume().get_calls()[0]["function"]["name"] == "get_weather"


def test_tool_call_flow() -> None:
    import msgflux as mf

    def get_weather(location, unit="celsius"):
        """Simulate weather API call."""
        return f"The weather in {location} is 22°{unit[0].upper()}"

    tools = [{
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Get weather for a location.",
            "parameters": {
                "type": "object",
                "properties": {
                    "location": {"type": "string"},
                    "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}
                },
                "required": ["location"]
            }
        }
    }]

    model = mf.Model.chat_completion("openai/gpt-4o")

    # Initial request
    messages = [{"role": "user", "content": "What's the weather in Paris?"}]

    response = model(messages=messages, tool_schemas=tools)
    tool_call_agg = response.consume()

    # Execute tool calls
    tool_functions = {"get_weather": get_weather}
    calls = tool_call_agg.get_calls()

    for call in calls:
        func_name = call['function']['name']
        func_args = call['function']['arguments']

        # Execute function
        result = tool_functions[func_name](**func_args)

        # Add result to aggregator
        tool_call_agg.insert_results(call['id'], result)

    # Get messages with tool results
    tool_messages = tool_call_agg.get_messages()
    messages.extend(tool_messages)

    # Final response with tool results
    final_response = model(messages=messages)
    print(final_response.consume())

    assert [m["role"] for m in messages] == ["user", "assistant", "tool"]
    assert messages[2]["content"].startswith("The weather in")
    assert final_response.response_type == "text_generation"
    assert isinstance(final_response.consume(), str)


def test_streaming_with_tools() -> None:
    import msgflux as mf

    model = mf.Model.chat_completion("openai/gpt-4o")

    response = model(
        messages=[{"role": "user", "content": "What's the weather in Tokyo?"}],
        tool_schemas=tools,
        stream=True
    )

    # Tool calls are aggregated during streaming
    tool_call_agg = response.consume()

    # After stream completes, get calls
    calls = tool_call_agg.get_calls()
    print(calls)
    assert response.response_type == "tool_call"
    assert calls[0]["function"]["name"] == "get_weather"
    assert isinstance(calls[0]["function"]["arguments"], dict)
    assert calls[0]["id"]


def test_response_metadata() -> None:
    import msgflux as mf

    model = mf.Model.chat_completion("openai/gpt-4o")

    response = model(messages=[{"role": "user", "content": "Hello"}])

    # Access metadata
    print(response.metadata)
    usage = response.metadata.usage
    assert usage.prompt_tokens > 0 and usage.completion_tokens > 0
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert response.metadata.finish_reason in ("stop", "length")
    assert response.metadata.provider == "openai"


def test_error_handling(capsys) -> None:
    import msgflux as mf

    model = mf.Model.chat_completion("openai/gpt-4o")

    try:
        response = model(messages=[{"role": "user", "content": "Hello"}])
        result = response.consume()
    except ImportError:
        print("Provider not installed")
    except ValueError as e:
        print(f"Invalid parameters: {e}")
    except Exception as e:
        print(f"API error: {e}")
    assert isinstance(result, str)

    # Invalid parameters are ValueErrors, raised before any network call.
    try:
        mf.Model.chat_completion("openai/gpt-4o", temprature=0.5)
    except ValueError as e:
        print(f"Invalid parameters: {e}")
    assert "Invalid parameters: Unknown parameter(s) 'temprature'" in capsys.readouterr().out


def test_reuse_model_instances() -> None:
    import msgflux as mf

    queries = ["one", "two"]
    results = []
    # Good - Create once, use many times
    model = mf.Model.chat_completion("openai/gpt-4o")

    for query in queries:
        response = model(messages=[{"role": "user", "content": query}])
        results.append(response.consume())
    assert len(results) == 2
