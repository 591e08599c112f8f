"""ToolCallAggregator: reassembly, parsing, results and messages."""

from __future__ import annotations

import pytest

from msgflux import exceptions as exc
from msgflux.models.request import ToolCall
from msgflux.models.tool_calls import ToolCallAggregator


def test_interleaved_fragments_and_empty_arguments() -> None:
    agg = ToolCallAggregator()
    agg.process(0, "call_a", "get_weather", '{"loc')
    agg.process(1, "call_b", "get_time", None)
    agg.process(0, None, None, 'ation": "Paris"}')
    agg.process(1, None, None, "")
    assert agg.get_calls() == [
        {"id": "call_a", "type": "function",
         "function": {"name": "get_weather", "arguments": {"location": "Paris"}}},
        {"id": "call_b", "type": "function", "function": {"name": "get_time", "arguments": {}}},
    ]


def test_invalid_json_is_typed_and_keeps_raw() -> None:
    agg = ToolCallAggregator.from_calls([ToolCall("c", "broken", '{"a": ')])
    with pytest.raises(exc.ToolCallArgumentsError) as info:
        agg.get_calls()
    assert info.value.tool_name == "broken" and info.value.raw == '{"a":'
    agg = ToolCallAggregator.from_calls([ToolCall("c", "listy", "[1]")])
    with pytest.raises(exc.ToolCallArgumentsError):
        agg.get_calls()


def test_results_and_messages() -> None:
    agg = ToolCallAggregator.from_calls(
        [ToolCall("c1", "f", '{"x": 1}'), ToolCall("c2", "g", "")]
    )
    with pytest.raises(exc.MessageFormatError, match="insert_results"):
        agg.get_messages()
    agg.insert_results("c1", "sunny")
    agg.insert_results({"c2": {"temp": 20}})
    messages = agg.get_messages()
    assert messages == [
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "f", "arguments": '{"x": 1}'}},
            {"id": "c2", "type": "function", "function": {"name": "g", "arguments": "{}"}},
        ]},
        {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
        {"role": "tool", "tool_call_id": "c2", "content": '{"temp":20}'},
    ]
    with pytest.raises(exc.MessageFormatError, match="c9"):
        agg.insert_results("c9", "x")


def test_copy_is_independent() -> None:
    agg = ToolCallAggregator.from_calls([ToolCall("c1", "f", "{}")])
    clone = agg.copy()
    clone.insert_results("c1", "done")
    with pytest.raises(exc.MessageFormatError):
        agg.get_messages()
    assert len(clone.get_messages()) == 2


def test_results_that_are_not_json_are_sent_as_text() -> None:
    class Reading:
        def __str__(self) -> str:
            return "22 C and sunny"

    agg = ToolCallAggregator.from_calls([ToolCall("c1", "f", "{}")])
    agg.insert_results("c1", Reading())
    assert agg.get_messages()[1]["content"] == "22 C and sunny"
