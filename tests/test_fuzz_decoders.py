"""Fuzzing what reads provider bytes: the SSE decoder, the stream assembler, the
tool-call aggregator, every dialect's stream decoder, answer and error parsers,
and the typed-XML parser. Random and truncated input gives a value or one of
our typed errors (:class:`~msgflux.exceptions.MsgfluxError`), never a foreign
exception.
"""

from __future__ import annotations

import contextlib
import json
import string

import msgspec
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from msgflux._transport.sse import SSEDecoder
from msgflux._transport.types import SSEEvent
from msgflux.exceptions import (
    MessageFormatError,
    MsgfluxError,
    ProviderError,
    ResponseError,
    ToolCallArgumentsError,
    TypedParserError,
)
from msgflux.models.dialects import get_dialect
from msgflux.models.messages import to_messages
from msgflux.models.request import (
    ChatRequest,
    Delta,
    Message,
    ReasoningBlock,
    ToolCallDelta,
    Usage,
)
from msgflux.models.stream import StreamAssembler, SyncSource
from msgflux.models.tool_calls import ToolCallAggregator

FUZZ = settings(max_examples=100, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
DIALECTS = ["openai", "openai_responses", "anthropic", "google"]

json_scalars = st.none() | st.booleans() | st.integers(-(2**70), 2**70) | \
    st.floats(allow_nan=False) | st.text(max_size=12)
json_values = st.recursive(json_scalars, lambda kids: st.lists(kids, max_size=4)
                           | st.dictionaries(st.text(max_size=8), kids, max_size=4),
                           max_leaves=12)

# Keys providers use, so random objects often hit real code paths.
KEYS = ["choices", "delta", "content", "text", "role", "finish_reason", "tool_calls", "index",
        "id", "function", "name", "arguments", "usage", "prompt_tokens", "completion_tokens",
        "error", "message", "type", "code", "model", "reasoning_content", "reasoning",
        "content_block", "input", "partial_json", "stop_reason", "thinking", "signature",
        "candidates", "parts", "functionCall", "args", "finishReason", "usageMetadata",
        "thought", "thoughtSignature", "promptTokenCount", "data", "input_tokens",
        "output_tokens", "refusal", "status", "detail", "item", "item_id", "output_index",
        "output", "summary", "summary_index", "encrypted_content", "call_id", "response",
        "incomplete_details", "reason"]
EVENT_TYPES = ["message_start", "content_block_start", "content_block_delta",
               "content_block_stop", "message_delta", "message_stop", "ping", "error",
               "text_delta", "input_json_delta", "thinking_delta", "signature_delta",
               "tool_use", "text", "thinking", "redacted_thinking",
               "response.output_text.delta", "response.function_call_arguments.delta",
               "response.reasoning_summary_text.delta", "response.refusal.delta",
               "response.output_item.added", "response.output_item.done",
               "response.completed", "response.incomplete", "response.failed",
               "response.created", "message", "reasoning", "function_call", "output_text",
               "incomplete", "completed"]
provider_values = st.recursive(
    json_scalars | st.sampled_from(EVENT_TYPES),
    lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.sampled_from(KEYS), kids,
                                                              max_size=5),
    max_leaves=20)


def provider_json() -> st.SearchStrategy[bytes]:
    return provider_values.map(lambda v: json.dumps(v).encode())


def noisy_bytes() -> st.SearchStrategy[bytes]:
    """JSON-ish bytes, possibly truncated, with invalid UTF-8 and control bytes mixed in."""
    cut = st.tuples(provider_json(), st.integers(0, 400)).map(lambda t: t[0][: t[1]])
    return st.one_of(st.binary(max_size=80), cut, provider_json(),
                     st.tuples(provider_json(), st.binary(max_size=4), st.integers(0, 200))
                     .map(lambda t: t[0][: t[2]] + t[1] + t[0][t[2]:]))


REQUEST = ChatRequest(model="m", messages=(Message("user", "hi"),), stream=True)


# ---------------------------------------------------------------- SSE framing


@FUZZ
@given(st.binary(max_size=300), st.lists(st.integers(1, 40), max_size=20))
@example(b"data: x\r", [7])
@example(b"data: a\r\n\r\ndata: b\n\n", [6, 1, 1])
def test_sse_decoder_never_raises_and_ignores_how_bytes_are_split(data, cuts) -> None:
    whole = SSEDecoder()
    expected = whole.feed(data) + whole.close()
    pieces, pos = [], 0
    for n in cuts:
        pieces.append(data[pos:pos + n])
        pos += n
    pieces.append(data[pos:])
    split = SSEDecoder()
    got = [ev for piece in pieces for ev in split.feed(piece)] + split.close()
    assert got == expected
    assert all(isinstance(ev, SSEEvent) and isinstance(ev.data, bytes) for ev in got)


# ---------------------------------------------------------------- dialect decoders


class _Events(list):
    """A transport stream stand-in: iterable SSE events, closable."""

    closed = False

    def close(self) -> None:
        self.closed = True


def _check_decoder(dialect: str, events: list[SSEEvent]) -> None:
    """Through SyncSource, as the model reads a stream."""
    decoder = get_dialect(dialect).stream_decoder(REQUEST, dialect)
    stream = _Events(events)
    source = SyncSource(stream, decoder, "sk-secret-key-123")
    asm = StreamAssembler()
    try:
        for delta in source.deltas:
            assert isinstance(delta, (Delta, str))  # a str: a text-only Delta
            asm.add(delta)
    except (ResponseError, ProviderError) as error:
        source.failed(error)
        assert stream.closed and "sk-secret-key-123" not in str(error)
        return
    source.close()
    assert stream.closed
    agg = asm.aggregator()
    if agg is not None:
        with contextlib.suppress(ToolCallArgumentsError):
            assert isinstance(agg.get_calls(), list)


@pytest.mark.parametrize("dialect", DIALECTS)
@FUZZ
@given(events=st.lists(st.tuples(noisy_bytes(), st.none() | st.sampled_from(EVENT_TYPES)),
                       max_size=8))
@example(events=[(b'{"choices":[{"delta":{"content":"\xff"}}]}', None),
                 (b'{"type":"content_block_delta","index":0,"delta":{"type":"text_delta",'
                  b'"text":"\xfe"}}', "content_block_delta"),
                 (b'{"candidates":[{"content":{"parts":[{"text":"\xfd"}]}}]}', None)])
def test_stream_decoders_give_deltas_or_typed_errors(dialect, events) -> None:
    _check_decoder(dialect, [SSEEvent(data, name) for data, name in events])


@pytest.mark.parametrize("dialect", DIALECTS)
@FUZZ
@given(body=noisy_bytes())
def test_answer_parsers_give_completions_or_typed_errors(dialect, body) -> None:
    d = get_dialect(dialect)
    try:
        d.parse_response(body, REQUEST, dialect)
    except (ResponseError, ProviderError):
        pass
    except UnicodeDecodeError:
        pass  # the model turns this one into ResponseError (see test_faults_utf8.py)


@pytest.mark.parametrize("dialect", DIALECTS)
@FUZZ
@given(body=noisy_bytes(), status=st.integers(100, 999),
       headers=st.lists(st.tuples(st.sampled_from(["retry-after", "x-request-id",
                                                   "request-id", "content-type"]),
                                  st.text(max_size=20)), max_size=3))
def test_error_parsers_always_give_a_provider_error(dialect, body, status, headers) -> None:
    d = get_dialect(dialect)
    try:
        error = d.parse_error(status, headers, body, dialect)
    except UnicodeDecodeError:
        return  # the model re-reads such bodies with replacement characters
    assert isinstance(error, ProviderError)
    str(error)


# ---------------------------------------------------------------- assembler and aggregator


small_text = st.text(max_size=6)
tool_deltas = st.builds(ToolCallDelta, index=st.integers(0, 3), id=st.none() | small_text,
                        name=st.none() | small_text,
                        arguments=st.none() | st.sampled_from(
                            ['{"a"', ": 1", "}", "[", "null", '"x"', "{}", "", "\\u12", "\xff"])
                        | small_text,
                        signature=st.none() | small_text)
deltas = st.builds(
    Delta, text=st.none() | small_text, reasoning=st.none() | small_text,
    reasoning_signature=st.none() | small_text,
    reasoning_block=st.none() | st.builds(ReasoningBlock, text=small_text, redacted=small_text,
                                          id=st.none() | small_text),
    tool_calls=st.none() | st.lists(tool_deltas, max_size=3).map(tuple),
    finish_reason=st.none() | st.sampled_from(["stop", "length", "tool_calls", "x"]),
    usage=st.none() | st.builds(Usage, st.integers(0, 99), st.integers(0, 99)),
    model=st.none() | small_text, id=st.none() | small_text, done=st.booleans())


@FUZZ
@given(st.lists(deltas, max_size=25))
def test_stream_assembler_folds_any_delta_sequence(seq) -> None:
    asm = StreamAssembler()
    handed = [t for d in seq if (t := asm.add(d))]
    assert asm.text == "".join(handed)
    assert asm.reasoning == ("".join(d.reasoning for d in seq if d.reasoning) or None)
    blocks = asm.reasoning_blocks()
    assert all(b.signature is not None or b.redacted is not None for b in blocks[:-1])
    broken = asm.broken("cut")
    assert broken.partial_text == asm.text
    agg = asm.aggregator()
    if agg is None:
        assert not broken.partial_tool_calls
        return
    assert len(broken.partial_tool_calls) == len(agg)
    try:
        calls = agg.get_calls()
    except ToolCallArgumentsError as e:
        assert isinstance(e.raw, str)
        return
    assert all(isinstance(c["function"]["arguments"], dict) for c in calls)


fragments = st.lists(st.tuples(st.integers(0, 4), st.none() | small_text, st.none() | small_text,
                               st.none() | st.sampled_from(['{"k": ', '"v"', "}", "1", "[]",
                                                            "{", '{"a": {"b": [1, 2]}}', ""])),
                     max_size=20)


@FUZZ
@given(fragments, json_values)
def test_tool_call_aggregator_random_fragments(frags, result) -> None:
    agg = ToolCallAggregator()
    for index, tool_id, name, arguments in frags:
        agg.process(index, tool_id, name, arguments)
    try:
        calls = agg.get_calls()
    except ToolCallArgumentsError as e:
        assert e.raw is not None
        return
    assert [c["id"] for c in calls] == [c.id for c in agg.to_tool_calls()]
    ids = [c["id"] for c in calls]
    if len(set(ids)) != len(ids):
        return  # duplicate ids from the model: results cannot be told apart
    copy = agg.copy()
    if calls:
        with pytest.raises(MessageFormatError):
            agg.get_messages()
    for call in calls:
        agg.insert_results(call["id"], result)
    messages = agg.get_messages()
    assert len(messages) == len(calls) + 1
    # What the aggregator writes is valid input for the next call, and JSON.
    to_messages(messages)
    msgspec.json.encode(messages)
    with pytest.raises(MessageFormatError):
        agg.insert_results("no-such-id-" + string.ascii_letters, 1)
    if calls:  # the copy is independent
        with pytest.raises(MessageFormatError):
            copy.get_messages()


# ---------------------------------------------------------------- typed XML


def _typed_xml():
    pytest.importorskip("defusedxml")
    from msgflux.dsl.typed_parsers import typed_parser_registry

    return typed_parser_registry["typed_xml"]


DTYPES = ["int", "float", "bool", "str", "list", "dict", "json", "null", "None", "date", "x"]
xml_nodes = st.recursive(
    st.text(alphabet=string.ascii_letters + string.digits + " <>&;'\"=/", max_size=10),
    lambda kids: st.tuples(st.sampled_from(["a", "b", "item", "x_1", "ns:y", "1bad"]),
                           st.none() | st.sampled_from(DTYPES), st.lists(kids, max_size=3))
    .map(lambda t: f"<{t[0]}{f' dtype={chr(34)}{t[1]}{chr(34)}' if t[1] else ''}>"
                   f"{''.join(t[2])}</{t[0]}>"),
    max_leaves=10)


@FUZZ
@given(xml_nodes, st.integers(0, 300), st.sampled_from(["", "```xml\n", "Sure! "]))
def test_typed_xml_random_and_truncated(doc, cut, lead) -> None:
    parser = _typed_xml()
    for text in (lead + doc, (lead + doc)[:cut]):
        try:
            value = parser.decode(text)
        except TypedParserError:
            continue
        assert isinstance(value, dict)


@FUZZ
@given(st.text(max_size=200))
def test_typed_xml_arbitrary_text(text) -> None:
    parser = _typed_xml()
    with contextlib.suppress(TypedParserError):
        assert isinstance(parser.decode(text), dict)


@FUZZ
@given(st.dictionaries(st.from_regex(r"[a-z][a-z0-9_]{0,6}", fullmatch=True), json_values,
                       min_size=1, max_size=4), st.data())
def test_typed_xml_round_trip_survives_truncation(document, data) -> None:
    parser = _typed_xml()
    try:
        text = parser.encode(document)
    except MsgfluxError:
        return
    cut = data.draw(st.integers(0, len(text)))
    with contextlib.suppress(TypedParserError):
        assert isinstance(parser.decode(text[:cut]), dict)
