"""The tool loop (``run_tools=True``): proposed calls run, results go back, the model is
called again until it answers; sync, async and streamed, on every dialect."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import msgspec
import pytest

import msgflux as mf
from msgflux import exceptions as exc
from scripted_server import ScriptedServer
from wire_replies import DIALECTS, model, reply

RAN: list[Any] = []


def get_weather(city: str, days: int = 1) -> dict[str, Any]:
    """Get the weather of a city.

    Args:
        city: The city's name.
        days: How many days.
    """
    RAN.append(("get_weather", city, days))
    return {"city": city, "sky": "sunny", "days": days}


async def get_time(city: str) -> str:
    """The local time of a city."""
    RAN.append(("get_time", city))
    await asyncio.sleep(0)
    return "12:00"


def broken(x: int) -> int:
    """Always fails."""
    raise ValueError(f"no luck with {x}")


@pytest.fixture
def srv():
    RAN.clear()
    with ScriptedServer() as server:
        yield server


def run(m: Any, use_async: bool, *args: Any, **kwargs: Any) -> Any:
    if use_async:
        async def go() -> Any:
            response = await m.acall(*args, **kwargs)
            if kwargs.get("stream"):
                text = [c async for c in response.consume()]
                return response, text
            return response, None
        return asyncio.run(go())
    response = m(*args, **kwargs)
    text = list(response.consume()) if kwargs.get("stream") else None
    return response, text


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
@pytest.mark.parametrize("dialect", DIALECTS)
def test_the_loop_runs_tools_until_the_model_answers(srv, dialect, use_async, stream) -> None:
    srv.enqueue(reply(dialect, calls=[("c1", "get_weather", {"city": "Paris", "days": "2"}),
                                      ("c2", "get_time", {"city": "Paris"})], stream=stream))
    srv.enqueue(reply(dialect, text="Sunny in Paris, noon.", stream=stream))
    m = model(dialect, srv)
    response, text = run(m, use_async, "Weather and time in Paris?",
                         tool_schemas=[get_weather, get_time], run_tools=True, stream=stream)
    assert response.response_type == "text_generation"
    assert response.data == "Sunny in Paris, noon."
    if stream:
        assert len(text) > 1 and "".join(text) == "Sunny in Paris, noon."
    # The arguments were validated into the annotated types before the call.
    assert sorted(RAN) == [("get_time", "Paris"), ("get_weather", "Paris", 2)]
    meta = response.metadata
    assert meta.steps == 2
    assert meta.usage.prompt_tokens == 20 and meta.usage.completion_tokens == 10
    assert [(c.name, c.result) for c in meta.tool_calls] == [
        ("get_weather", {"city": "Paris", "sky": "sunny", "days": 2}),
        ("get_time", "12:00")]
    assert [m["role"] for m in meta.messages] == ["assistant", "tool", "tool"]
    # The second request carries the calls and their results.
    second = srv.requests[1].json()
    assert "sunny" in str(second) and "12:00" in str(second)


@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
def test_a_raising_tool_is_reported_to_the_model_and_kept(srv, use_async) -> None:
    srv.enqueue(reply("openai", calls=[("c1", "broken", {"x": 3})]))
    srv.enqueue(reply("openai", text="Sorry."))
    response, _ = run(model("openai", srv), use_async, "go", tool_schemas=[broken],
                      run_tools=True)
    assert response.data == "Sorry."
    record = response.metadata.tool_calls[0]
    assert isinstance(record.error, ValueError) and "result" not in record
    tool_message = srv.requests[1].json()["messages"][-1]
    assert tool_message == {"role": "tool", "tool_call_id": "c1",
                            "content": "Error: ValueError: no luck with 3"}


@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
def test_tool_errors_raise_keeps_the_exception(srv, use_async) -> None:
    srv.enqueue(reply("openai", calls=[("c1", "broken", {"x": 3})]))
    with pytest.raises(exc.ToolExecutionError) as info:
        run(model("openai", srv), use_async, "go", tool_schemas=[broken], run_tools=True,
            tool_errors="raise")
    assert isinstance(info.value.__cause__, ValueError)
    assert (info.value.tool_name, info.value.call_id, info.value.arguments) == (
        "broken", "c1", {"x": 3})
    assert len(srv.requests) == 1


def test_bad_arguments_and_unknown_tools_go_back_to_the_model(srv) -> None:
    srv.enqueue(reply("openai", calls=[("c1", "get_weather", {"days": 2}),
                                       ("c2", "teleport", {})]))
    srv.enqueue(reply("openai", text="ok"))
    response = model("openai", srv)("go", tool_schemas=[get_weather], run_tools=True,
                                    tool_errors="raise")  # the model's mistakes, not a tool's
    assert response.data == "ok" and RAN == []
    results = [m["content"] for m in srv.requests[1].json()["messages"][-2:]]
    assert "required field `city`" in results[0]
    assert "no tool named 'teleport'" in results[1]


def test_a_forced_choice_applies_to_the_first_call_only(srv) -> None:
    srv.enqueue(reply("openai", calls=[("c1", "get_weather", {"city": "Oslo"})]))
    srv.enqueue(reply("openai", text="ok"))
    model("openai", srv)("go", tool_schemas=[get_weather], run_tools=True,
                         tool_choice="required")
    assert [r.json()["tool_choice"] for r in srv.requests] == ["required", "auto"]


def test_the_step_limit(srv) -> None:
    for n in range(2):
        srv.enqueue(reply("openai", calls=[(f"c{n}", "get_weather", {"city": "Oslo"})]))
    with pytest.raises(exc.ToolLoopLimitError) as info:
        model("openai", srv)("go", tool_schemas=[get_weather], run_tools=True, max_steps=2)
    assert info.value.metadata.steps == 2 and info.value.metadata.usage.prompt_tokens == 20
    assert [m["role"] for m in info.value.messages] == ["assistant", "tool"] * 2
    assert len(srv.requests) == 2


def test_a_dict_tool_call_ends_the_loop_with_the_aggregator(srv) -> None:
    manual = {"type": "function", "function": {"name": "ask_user",
                                               "parameters": {"type": "object"}}}
    srv.enqueue(reply("openai", calls=[("c1", "ask_user", {})]))
    response = model("openai", srv)("go", tool_schemas=[get_weather, manual], run_tools=True)
    assert response.response_type == "tool_call"
    assert response.consume().get_calls()[0]["function"]["name"] == "ask_user"
    assert response.metadata.steps == 1


def test_loop_options_are_checked(srv) -> None:
    m = model("openai", srv)
    manual = {"type": "function", "function": {"name": "f"}}
    with pytest.raises(exc.InvalidParameterError, match="there are none"):
        m("go", tool_schemas=[manual], run_tools=True)
    with pytest.raises(exc.InvalidParameterError, match="max_steps"):
        m("go", tool_schemas=[get_weather], run_tools=True, max_steps=0)
    with pytest.raises(exc.InvalidParameterError, match="tool_errors"):
        m("go", tool_schemas=[get_weather], run_tools=True, tool_errors="ignore")
    assert srv.requests == []


def test_async_tools_of_one_turn_run_concurrently(srv) -> None:
    started: list[float] = []
    both = asyncio.Event()

    async def wait_for_both(n: int) -> int:
        """Waits until both calls are running."""
        started.append(time.monotonic())
        if len(started) == 2:
            both.set()
        await asyncio.wait_for(both.wait(), timeout=5)
        return n

    srv.enqueue(reply("openai", calls=[("a", "wait_for_both", {"n": 1}),
                                       ("b", "wait_for_both", {"n": 2})]))
    srv.enqueue(reply("openai", text="done"))
    response = asyncio.run(model("openai", srv).acall("go", tool_schemas=[wait_for_both],
                                                      run_tools=True))
    # Run one after the other, the first would wait for the second forever (timeout).
    assert [c.result for c in response.metadata.tool_calls] == [1, 2]


def test_sync_tools_run_in_worker_threads_under_acall(srv) -> None:
    threads: list[int] = []

    def where(n: int) -> int:
        """Records its thread."""
        threads.append(threading.get_ident())
        return n

    srv.enqueue(reply("openai", calls=[("a", "where", {"n": 1})]))
    srv.enqueue(reply("openai", text="done"))
    asyncio.run(model("openai", srv).acall("go", tool_schemas=[where], run_tools=True))
    assert threads and threads[0] != threading.get_ident()


class Forecast(msgspec.Struct):
    city: str
    sky: str


def test_the_loop_ends_in_a_structured_answer(srv) -> None:
    srv.enqueue(reply("openai", calls=[("c1", "get_weather", {"city": "Rome"})]))
    srv.enqueue(reply("openai", text='{"city": "Rome", "sky": "sunny"}'))
    response = model("openai", srv)("Forecast for Rome", tool_schemas=[get_weather],
                                    run_tools=True, generation_schema=Forecast)
    assert response.response_type == "structured" and response.data == {"city": "Rome",
                                                                          "sky": "sunny"}
    assert response.metadata.structured_mode == "json_schema" and response.metadata.steps == 2
    assert all("response_format" in r.json() for r in srv.requests)


def test_the_loop_on_the_real_server(llama_server) -> None:
    RAN.clear()
    m = mf.Model.chat_completion("llamacpp-server/x", base_url=llama_server.base_url,
                                 temperature=0, max_tokens=64)
    response = m("What's the weather in Paris?", tool_schemas=[get_weather], run_tools=True,
                 tool_choice="required", max_steps=3)
    # The model must call the tool first (required); the loop then runs it and asks again
    # with tool_choice back to "auto".
    assert RAN and RAN[0][0] == "get_weather"
    assert response.metadata.steps >= 2
    assert response.metadata.tool_calls[0].name == "get_weather"
    assert response.metadata.usage.prompt_tokens > 0
    assert response.response_type == "text_generation" and response.data


def test_the_streamed_loop_on_the_real_server(llama_server) -> None:
    RAN.clear()
    m = mf.Model.chat_completion("llamacpp-server/x", base_url=llama_server.base_url,
                                 temperature=0, max_tokens=48)

    async def go() -> Any:
        response = await m.acall("What's the weather in Paris?", tool_schemas=[get_weather],
                                 run_tools=True, tool_choice="required", max_steps=2,
                                 stream=True)
        return response, [c async for c in response.consume()]

    response, chunks = asyncio.run(go())
    assert RAN and response.metadata.steps == 2
    assert response.response_type == "text_generation"
    assert "".join(chunks) == response.data and response.data
