"""Inputs the fuzzers (test_fuzz_inputs.py) found raising foreign exceptions.

Each must now give one of our typed errors, before any network I/O.
"""

from __future__ import annotations

import pytest

import msgflux as mf
from msgflux import exceptions as exc

UNUSED = "http://127.0.0.1:9/v1"


def model():
    return mf.Model.chat_completion("openai/gpt-4o", base_url=UNUSED, api_key="k")


def prepare(messages, **kwargs):
    args = {"system_prompt": None, "prefilling": None, "stream": False,
            "generation_schema": None, "typed_parser": None, "tool_schemas": None,
            "tool_choice": None, "extra_body": None, "timeout": None, "max_retries": None}
    args.update(kwargs)
    return model().prepare(messages, **args)


@pytest.mark.parametrize("message", [
    {"role": {"user"}, "content": "x"},                       # unhashable role
    {"role": ["user"], "content": "x"},
    {"role": "assistant", "tool_calls": 7},                     # not a list
    {"role": "assistant", "content": "x", "thinking_blocks": 1.5},
    {"role": "user", "content": [{"type": "image_url",
                                  "image_url": {"url": "u", "detail": object()}}]},
    {"role": "user", "content": [{"type": "file", "file": {"file_id": b"x"}}]},
    {"role": "assistant", "tool_calls": [{"id": "1", "function": {"name": "f"},
                                          "signature": {"a": 1}}]},
])
def test_malformed_messages_are_message_format_errors(message) -> None:
    with pytest.raises(exc.MessageFormatError):
        prepare([message])


def test_non_str_tool_message_name_is_dropped_not_sent() -> None:
    call = prepare([{"role": "user", "content": "x"},
                    {"role": "tool", "tool_call_id": "1", "content": "r", "name": object()}])
    assert call.request.messages[1].name is None


@pytest.mark.parametrize("build", [
    lambda: mf.ChatBlock.assist_tool_calls(object()),
    lambda: mf.ChatBlock.user("look", media=1.5),
    lambda: mf.ChatBlock.user(object()),
    lambda: mf.ChatBlock.tool("call_1", {"a": object()}),
    lambda: mf.ChatBlock("assistant", object()),
])
def test_chatblock_wrong_types_are_message_format_errors(build) -> None:
    with pytest.raises(exc.MessageFormatError):
        build()


def _msgspec_names_same_named_structs() -> bool:
    """msgspec 0.23 names two same-named Structs Item / Item_2; older ones raise KeyError."""
    import msgspec

    major, minor = (int(p) for p in msgspec.__version__.split(".")[:2])
    return (major, minor) >= (0, 23)


def test_two_structs_sharing_module_and_name() -> None:
    """Two distinct Structs with one module and name are legitimate user code.

    With msgspec >= 0.23 both shapes reach the schema and the answer decodes into
    each; an older msgspec cannot describe them, and the error says how to fix it.
    """
    import msgspec

    a = msgspec.defstruct("Item", [("a", int)], module="m1")
    b = msgspec.defstruct("Item", [("b", str)], module="m1")
    outer = msgspec.defstruct("Outer", [("x", a), ("y", b)], module="m1")
    if not _msgspec_names_same_named_structs():
        with pytest.raises(exc.InvalidParameterError, match="upgrade msgspec"):
            prepare("hi", generation_schema=outer)
        return
    call = prepare("hi", generation_schema=outer)
    props = call.request.output.strict_schema["properties"]
    assert props["x"]["properties"].keys() == {"a"}
    assert props["y"]["properties"].keys() == {"b"}
    from msgflux.models.structured import decode_structured

    value = decode_structured(call.compiled, b'{"x": {"a": 1}, "y": {"b": "s"}}')
    assert value == {"x": {"a": 1}, "y": {"b": "s"}}
    with pytest.raises(exc.StructuredOutputError):
        decode_structured(call.compiled, b'{"x": {"b": "s"}, "y": {"a": 1}}')


@pytest.mark.parametrize("parser", [["typed_xml"], {"x"}, 3])
def test_typed_parser_must_be_a_name(parser) -> None:
    with pytest.raises(exc.InvalidParameterError, match="typed_parser"):
        prepare("hi", typed_parser=parser)


def test_provider_keyword_is_an_invalid_parameter() -> None:
    for path in ("openai/gpt-4o", "groq/llama-3.1-8b-instant"):
        with pytest.raises(exc.InvalidParameterError, match="provider"):
            mf.Model.chat_completion(path, provider="anthropic", api_key="k", base_url=UNUSED)


@pytest.mark.parametrize("name", ["check_capabilities", "enable_cache", "parallel_tool_calls"])
@pytest.mark.parametrize("value", [b"", "yes", 1, [True]])
def test_flags_must_be_bools(name, value) -> None:
    # Found by the fuzz suite: check_capabilities=b"" was accepted, then broke serialize().
    with pytest.raises(exc.InvalidParameterError, match=name):
        mf.Model.chat_completion("openai/gpt-4o", base_url=UNUSED, api_key="k", **{name: value})
