"""ToolCallAggregator: reassembly, parsing, results and messages."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from msgflux import exceptions as exc
from msgflux.models.request import ToolCall, ToolCallDelta
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


# ---------------------------------------------------------------- index reuse and order


def test_a_new_id_at_a_used_index_starts_a_new_call() -> None:
    # Ollama streams each parallel call whole, every one at index 0, each with its own id.
    agg = ToolCallAggregator()
    agg.process(0, "call_paris", "get_weather", '{"city": "Paris"}')
    agg.process(0, "call_tokyo", "get_weather", '{"city": "Tokyo"}')
    agg.process(0, None, None, "")  # a fragment without an id belongs to the latest call
    assert len(agg) == 2
    assert [(c["id"], c["function"]["arguments"]) for c in agg.get_calls()] == [
        ("call_paris", {"city": "Paris"}), ("call_tokyo", {"city": "Tokyo"})]
    agg.insert_results({"call_paris": "mild", "call_tokyo": "rain"})
    assert [m.get("tool_call_id") for m in agg.get_messages()] == [
        None, "call_paris", "call_tokyo"]


def test_the_same_id_repeated_on_every_fragment_is_one_call() -> None:
    agg = ToolCallAggregator()
    agg.process(0, "call_a", "f", '{"x"')
    agg.process(0, "call_a", None, ": 1}")
    assert agg.get_calls() == [
        {"id": "call_a", "type": "function", "function": {"name": "f", "arguments": {"x": 1}}}]


def test_calls_come_back_by_index_not_by_arrival() -> None:
    agg = ToolCallAggregator()
    agg.process(1, "call_b", "second", '{"n": 2}')
    agg.process(0, "call_a", "first", '{"n": 1}')
    assert [c["id"] for c in agg.get_calls()] == ["call_a", "call_b"]
    assert [c.id for c in agg.to_tool_calls()] == ["call_a", "call_b"]
    agg.insert_results("call_b", "two")
    agg.insert_results("call_a", "one")
    assistant, *results = agg.get_messages()
    assert [c["id"] for c in assistant["tool_calls"]] == ["call_a", "call_b"]
    assert [(m["tool_call_id"], m["content"]) for m in results] == [
        ("call_a", "one"), ("call_b", "two")]


def test_signature_is_set_through_process() -> None:
    agg = ToolCallAggregator()
    agg.process(0, "c1", "f", "{}", signature="sig-1")
    agg.insert_results("c1", "ok")
    assert agg.get_messages()[0]["tool_calls"][0]["signature"] == "sig-1"
    assert agg.to_tool_calls()[0].signature == "sig-1"


def test_reasoning_blocks_of_every_kind_survive_the_message_round_trip() -> None:
    """get_messages() writes each block so that sending the messages back rebuilds it:
    Anthropic's signed and redacted blocks, and an OpenAI Responses reasoning item
    (its id, summary and encrypted content)."""
    from msgflux.models.messages import to_messages
    from msgflux.models.request import ReasoningBlock

    blocks = (ReasoningBlock("signed", "sig"), ReasoningBlock(redacted="ENC"),
              ReasoningBlock("summary", redacted="gAAAA", id="rs_1"))
    agg = ToolCallAggregator.from_calls([ToolCall("call_1", "f", "{}")])
    agg.reasoning_blocks = blocks
    agg.insert_results("call_1", "ok")
    messages = agg.get_messages()
    assert messages[0]["thinking_blocks"][2] == {
        "type": "reasoning", "id": "rs_1", "thinking": "summary", "encrypted_content": "gAAAA"}
    assert to_messages(messages)[0].reasoning == blocks


_FRAGMENTS = st.lists(st.builds(
    ToolCallDelta,
    index=st.integers(0, 2),
    id=st.sampled_from([None, "", "a", "b"]),
    name=st.sampled_from([None, "", "f", "g"]),
    arguments=st.sampled_from([None, "", "{", "1", "}"]),
    signature=st.sampled_from([None, "", "s"]),
), max_size=12)


@given(_FRAGMENTS)
def test_folding_a_fragment_is_processing_it(fragments: list[ToolCallDelta]) -> None:
    """fold() skips process()'s checks for a begun call's arguments: same calls, same order."""
    folded, processed = ToolCallAggregator(), ToolCallAggregator()
    for d in fragments:
        folded.fold(d)
        processed.process(d.index, d.id, d.name, d.arguments, d.signature)
    assert folded.tool_calls == processed.tool_calls
    assert [(c.name, c.arguments, c.signature) for c in folded.to_calls()] == [
        (c.name, c.arguments, c.signature) for c in processed.to_calls()]
