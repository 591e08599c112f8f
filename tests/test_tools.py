"""Functions as tools (schema from signature, hints and docstring; arguments validated
into the annotated types) and tool names made valid for every provider."""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import functools
import json
from typing import Annotated, Literal

import msgspec
import pytest

import msgflux as mf
from msgflux import exceptions as exc
from msgflux.models.tools import FunctionTool, parse_docstring, safe_tool_name, toolset
from scripted_server import ScriptedServer, json_reply, sse_reply

KEY = "sk-test-key-0123456789"


class Unit(enum.Enum):
    C = "celsius"
    F = "fahrenheit"


@dataclasses.dataclass
class Place:
    city: str
    country: str = "FR"


def get_weather(place: Place, days: int, unit: Unit = Unit.C,
                tags: list[str] | None = None) -> str:
    """Get the weather forecast.

    Looks the place up first.

    Args:
        place: Where to look.
        days (int): How many days,
            counting today.
        unit: The temperature unit.

    Returns:
        A summary.
    """
    return f"{place.city}/{place.country}: {days} days in {unit.value}, {tags}"


def numpy_style(query: str, limit: int = 10) -> list[str]:
    """Search the docs.

    Parameters
    ----------
    query : str
        What to look for.
    limit : int, optional
        At most this many hits.

    Returns
    -------
    list of str
    """
    return [query] * limit


def sphinx_style(a: float, b: Annotated[float, msgspec.Meta(ge=0)]) -> float:
    """Divide two numbers.

    :param a: The dividend.
    :param float b: The divisor,
        never negative.
    :returns: The quotient.
    """
    return a / b


async def lookup(key: Literal["x", "y"]) -> dict[str, str]:
    """Look a key up."""
    await asyncio.sleep(0)
    return {"key": key}


def test_a_google_docstring_makes_the_schema() -> None:
    spec = FunctionTool(get_weather).spec
    assert spec.name == "get_weather"
    assert spec.description == "Get the weather forecast.\n\nLooks the place up first."
    params = spec.parameters
    assert params["type"] == "object" and params["required"] == ["place", "days"]
    props = params["properties"]
    assert props["days"] == {"description": "How many days, counting today.", "type": "integer"}
    assert props["place"]["properties"]["city"] == {"type": "string"}
    assert props["unit"]["enum"] == ["celsius", "fahrenheit"]
    assert props["unit"]["description"] == "The temperature unit."
    assert props["unit"]["default"] == "celsius"
    assert "$ref" not in json.dumps(params)  # references resolved for every provider


def test_numpy_and_sphinx_docstrings() -> None:
    numpy = FunctionTool(numpy_style).spec
    assert numpy.description == "Search the docs."
    assert numpy.parameters["properties"]["query"]["description"] == "What to look for."
    assert numpy.parameters["properties"]["limit"]["description"] == "At most this many hits."
    assert numpy.parameters["properties"]["limit"]["default"] == 10
    sphinx = FunctionTool(sphinx_style).spec
    assert sphinx.description == "Divide two numbers."
    assert sphinx.parameters["properties"]["a"]["description"] == "The dividend."
    assert sphinx.parameters["properties"]["b"] == {
        "description": "The divisor, never negative.", "type": "number", "minimum": 0}


def test_parse_docstring_keeps_other_sections_out() -> None:
    summary, params = parse_docstring(get_weather.__doc__ or "")
    assert "Returns" not in summary and "A summary" not in summary
    assert set(params) == {"place", "days", "unit"}


def test_arguments_are_validated_into_the_annotated_types() -> None:
    tool = FunctionTool(get_weather)
    args, kwargs = tool.arguments({"place": {"city": "Paris"}, "days": "3", "unit": "fahrenheit"})
    assert args == []
    assert kwargs == {"place": Place("Paris"), "days": 3, "unit": Unit.F}  # tags: the default
    assert tool.invoke({"place": {"city": "Oslo", "country": "NO"}, "days": 1}) == \
        "Oslo/NO: 1 days in celsius, None"
    with pytest.raises(exc.ToolCallArgumentsError, match="get_weather") as info:
        tool.arguments({"place": {"city": "Paris"}, "days": "many"})
    assert "days" in str(info.value) and info.value.tool_name == "get_weather"
    with pytest.raises(exc.ToolCallArgumentsError, match="required field `days`"):
        tool.arguments({"place": {"city": "Paris"}})
    with pytest.raises(exc.ToolCallArgumentsError, match=">= 0"):
        FunctionTool(sphinx_style).arguments({"a": 1, "b": -1})


def test_async_functions_bound_methods_and_partials() -> None:
    tool = FunctionTool(lookup)
    assert tool.is_async and tool.spec.parameters["properties"]["key"]["enum"] == ["x", "y"]
    assert asyncio.run(tool.ainvoke({"key": "y"})) == {"key": "y"}
    assert tool.invoke({"key": "x"}) == {"key": "x"}  # a sync caller gets the result too

    class Shop:
        def price(self, item: str) -> float:
            """The price of an item."""
            return 2.5

    method = FunctionTool(Shop().price)
    assert method.spec.name == "price" and list(method.spec.parameters["properties"]) == ["item"]
    part = FunctionTool(functools.partial(numpy_style, limit=2))
    assert part.spec.name == "numpy_style"
    assert part.invoke({"query": "q"}) == ["q", "q"]
    named = FunctionTool(lambda x: x, name="identity", description="Returns x.")
    assert (named.spec.name, named.spec.description) == ("identity", "Returns x.")
    with pytest.raises(exc.InvalidParameterError, match="lambda"):
        FunctionTool(lambda x: x)


# ---------------------------------------------------------------- names


@pytest.mark.parametrize(("name", "expected"), [
    ("get_weather", "get_weather"),
    ("weather.get", "weather_get"),
    ("search docs", "search_docs"),
    ("1st-tool", "t_1st-tool"),
])
def test_safe_names(name: str, expected: str) -> None:
    assert safe_tool_name(name, set()) == expected


def test_long_and_clashing_names_stay_unique_and_valid() -> None:
    long_a, long_b = "x" * 70 + "a", "x" * 70 + "b"
    tools = toolset([
        {"type": "function", "function": {"name": n, "parameters": {"type": "object"}}}
        for n in (long_a, long_b, "a.b", "a_b")
    ])
    wire = [s.name for s in tools.wire_specs]
    assert wire[3] == "a_b"  # a valid name keeps its spelling
    assert len(set(wire)) == 4 and all(len(w) <= 64 for w in wire)
    assert all(w.replace("_", "a").replace("-", "a").isalnum() for w in wire)
    assert [tools.user(w) for w in wire] == [long_a, long_b, "a.b", "a_b"]


def test_names_are_mapped_both_ways_on_the_wire() -> None:
    def search_docs(q: str) -> str:
        """Search."""
        return q

    tools = [FunctionTool(search_docs, name="docs.search v2"),
             {"type": "function", "function": {"name": "weather.get",
                                               "parameters": {"type": "object"}}}]
    call_reply = {"id": "c", "model": "gpt-4o", "choices": [{"index": 0, "finish_reason":
                  "tool_calls", "message": {"role": "assistant", "tool_calls": [
                      {"id": "t1", "type": "function",
                       "function": {"name": "docs_search_v2", "arguments": '{"q": "x"}'}}]}}]}
    with ScriptedServer() as srv:
        m = mf.Model.chat_completion("openai/gpt-4o", base_url=f"{srv.url}/v1", api_key=KEY)
        srv.enqueue(json_reply(200, call_reply))
        history = [{"role": "user", "content": "hi"},
                   {"role": "assistant", "tool_calls": [{"id": "t0", "type": "function",
                    "function": {"name": "weather.get", "arguments": "{}"}}]},
                   {"role": "tool", "tool_call_id": "t0", "content": "sunny"}]
        r = m(history, tool_schemas=tools, tool_choice="docs.search v2")
        sent = srv.requests[0].json()
        assert [t["function"]["name"] for t in sent["tools"]] == ["docs_search_v2",
                                                                   "weather_get"]
        assert sent["tool_choice"]["function"]["name"] == "docs_search_v2"
        assert sent["messages"][1]["tool_calls"][0]["function"]["name"] == "weather_get"
        calls = r.consume().get_calls()
        assert calls[0]["function"]["name"] == "docs.search v2"  # the caller's name back
        # The same in a stream.
        srv.enqueue(sse_reply([
            {"id": "c", "choices": [{"index": 0, "delta": {"tool_calls": [
                {"index": 0, "id": "t1", "function": {"name": "weather_get",
                                                      "arguments": "{}"}}]}}]},
            {"id": "c", "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]},
            "data: [DONE]\n\n"]))
        streamed = m("hi", tool_schemas=tools, stream=True).consume()
        assert streamed.get_calls()[0]["function"]["name"] == "weather.get"


def test_tool_schemas_must_be_functions_or_dicts() -> None:
    m = mf.Model.chat_completion("openai/gpt-4o", base_url="http://127.0.0.1:9/v1", api_key=KEY)
    with pytest.raises(exc.InvalidParameterError, match="list of functions or tool dicts"):
        m.prepare("hi", tool_schemas=get_weather)
    with pytest.raises(exc.InvalidParameterError, match=r"tool_schemas\[1\] must be a function"):
        m.prepare("hi", tool_schemas=[get_weather, 42])
    with pytest.raises(exc.InvalidParameterError, match="two tools named"):
        m.prepare("hi", tool_schemas=[get_weather, get_weather])

    def _private(_x: int) -> int:
        return _x

    with pytest.raises(exc.InvalidParameterError, match="underscore"):
        m.prepare("hi", tool_schemas=[_private])


pydantic = pytest.importorskip("pydantic")


class Query(pydantic.BaseModel):
    text: str = pydantic.Field(min_length=2)


def search(query: Query, k: int = 3) -> str:
    """Search."""
    return f"{query.text}:{k}"


def test_pydantic_parameters() -> None:
    tool = FunctionTool(search)
    assert tool.spec.parameters["properties"]["query"]["properties"]["text"]["minLength"] == 2
    assert tool.invoke({"query": {"text": "ab"}}) == "ab:3"
    with pytest.raises(exc.ToolCallArgumentsError):
        tool.arguments({"query": {"text": "a"}})


def test_a_function_is_read_once_across_calls() -> None:
    """A model is handed the same functions on every call: each is read once."""
    first = toolset([get_weather, lookup]).functions
    again = toolset([get_weather, lookup]).functions
    assert first.keys() == again.keys()
    for name in first:
        assert first[name] is again[name]

    class Unhashable:
        __hash__ = None  # type: ignore[assignment]

        def __call__(self, city: str) -> str:
            """Weather.

            Args:
                city: where
            """
            return city

    spec = toolset([Unhashable()]).specs[0]  # read each time, still a tool
    assert spec.name == "Unhashable"
    with pytest.raises(exc.InvalidParameterError):  # a bad function fails every time
        toolset([lambda x: x])
    with pytest.raises(exc.InvalidParameterError):
        toolset([lambda x: x])
