"""SSE framing: the decoder against a literal reading of the WHATWG algorithm."""

from __future__ import annotations

from itertools import pairwise

from hypothesis import given, settings
from hypothesis import strategies as st

from msgflux._transport.sse import SSEDecoder
from msgflux._transport.types import SSEEvent


def reference(stream: bytes) -> list[SSEEvent]:
    """The spec, line by line, deliberately naive (the oracle)."""
    text = stream.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    lines = text.split(b"\n")
    lines.pop()  # the unterminated last line is never processed
    out: list[SSEEvent] = []
    data: list[bytes] | None = None
    event: str | None = None
    for line in lines:
        if line == b"":
            if data is not None:
                out.append(SSEEvent(b"\n".join(data), event))
            data, event = None, None
        elif line.startswith(b":"):
            continue
        else:
            name, colon, value = line.partition(b":")
            if colon and value.startswith(b" "):
                value = value[1:]
            if name == b"data":
                data = [*(data or []), value]
            elif name == b"event":
                event = value.decode("utf-8", "replace") or None
    return out


def decode(*pieces: bytes) -> list[SSEEvent]:
    dec = SSEDecoder()
    out: list[SSEEvent] = []
    for piece in pieces:
        out += dec.feed(piece)
    out += dec.close()
    return out


CORPUS = [
    b'data: {"a":1}\n\ndata: {"b":2}\n\n',
    b'event: message_start\ndata: {}\n\nevent: ping\ndata: {"type":"ping"}\n\n',
    b"data: one\r\n\r\ndata: two\r\n\r\n",
    b"data: one\r\rdata: two\r\r",
    b"data: a\r\ndata: b\rdata: c\n\n",
    b": comment\n: another\ndata: x\n\n",
    b"data:no-space\n\ndata:  two-spaces\n\n",
    b"data\n\n",
    b"event: only-event\n\n",
    b"\n\n\n\ndata: after blanks\n\n\n\n",
    b"id: 7\nretry: 1500\nfoo: bar\ndata: with id\n\n",
    b"data: first\ndata: second\ndata: third\n\n",
    b"event:\ndata: empty event name\n\n",
    b"data: [DONE]\n\n",
    b"data: trailing unterminated",
    b"data: done\n\ndata: cut\n",
    # CRLF runs with a lone LF before or inside a blank line (the CRLF path must refuse them)
    b"data: l\n\r\n\r\ndata: k\r\n\r\n",
    b"data: m\r\n\n\r\ndata: k\r\n\r\n",
    b"data: w\r\r\n\r\ndata: k\r\n\r\n",
]


def test_common_shapes() -> None:
    assert decode(b'data: {"a":1}\n\n') == [SSEEvent(b'{"a":1}')]
    assert decode(b"event: ping\ndata: {}\n\n") == [SSEEvent(b"{}", "ping")]
    assert decode(b"data: a\ndata: b\n\n") == [SSEEvent(b"a\nb")]
    assert decode(b"data:x\n\n") == [SSEEvent(b"x")]
    assert decode(b"data:  x\n\n") == [SSEEvent(b" x")]  # only one space is removed


def test_line_endings() -> None:
    expected = [SSEEvent(b"1"), SSEEvent(b"2")]
    assert decode(b"data: 1\r\n\r\ndata: 2\r\n\r\n") == expected
    assert decode(b"data: 1\r\rdata: 2\r\r") == expected
    assert decode(b"data: 1\n\ndata: 2\r\n\r") == expected


def test_cr_then_lf_in_next_feed_is_one_line_ending() -> None:
    # Were the LF a second line ending, "a" would be dispatched alone.
    assert decode(b"data: a\r", b"\ndata: b\r\n\r\n") == [SSEEvent(b"a\nb")]
    assert decode(b"data: a\r", b"", b"\ndata: b\r", b"\n\r", b"\n") == [SSEEvent(b"a\nb")]


def test_comments_unknown_fields_and_no_data() -> None:
    assert decode(b": keep-alive\n\n") == []
    assert decode(b"event: x\n\n") == []  # no data: not dispatched
    assert decode(b"foo: bar\ndata: y\n\n") == [SSEEvent(b"y")]
    assert decode(b"data\n\n") == [SSEEvent(b"")]  # a data field with an empty value


def test_event_name_resets_between_events() -> None:
    assert decode(b"event: a\ndata: 1\n\ndata: 2\n\n") == [SSEEvent(b"1", "a"), SSEEvent(b"2")]
    assert decode(b"event:\ndata: 1\n\n") == [SSEEvent(b"1")]


def test_id_and_retry_are_stored() -> None:
    dec = SSEDecoder()
    assert dec.feed(b"id: 42\nretry: 3000\ndata: x\n\n") == [SSEEvent(b"x")]
    assert dec.last_event_id == b"42"
    assert dec.retry == 3000
    dec.feed(b"retry: soon\nid: a\0b\ndata: y\n\n")
    assert dec.retry == 3000 and dec.last_event_id == b"42"


def test_unterminated_event_is_discarded_and_visible_as_pending() -> None:
    dec = SSEDecoder()
    assert dec.feed(b"data: complete\n\ndata: cut sh") == [SSEEvent(b"complete")]
    assert dec.close() == []
    assert dec.pending == b"data: cut sh"
    dec = SSEDecoder()
    dec.feed(b"data: a\n\n: ping\n")
    assert dec.pending.strip() == b": ping"
    dec = SSEDecoder()
    dec.feed(b"data: a\n\n")
    assert dec.pending == b""


def test_many_events_in_one_feed_and_one_event_in_many_feeds() -> None:
    many = b"".join(b"data: %d\n\n" % i for i in range(100))
    assert [e.data for e in decode(many)] == [b"%d" % i for i in range(100)]
    big = b"data: " + b"x" * 100_000 + b"\n\n"
    pieces = [big[i : i + 7] for i in range(0, len(big), 7)]
    assert decode(*pieces) == [SSEEvent(b"x" * 100_000)]


def test_corpus_matches_reference_at_every_split() -> None:
    for stream in CORPUS:
        want = reference(stream)
        assert decode(stream) == want, stream
        assert decode(*[stream[i : i + 1] for i in range(len(stream))]) == want, stream
        for cut in range(len(stream) + 1):
            assert decode(stream[:cut], stream[cut:]) == want, (stream, cut)


_line_end = st.sampled_from([b"\n", b"\r\n", b"\r"])
_value = st.binary(max_size=12).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b""))
_line = st.one_of(
    st.builds(lambda v: b"data: " + v, _value),
    st.builds(lambda v: b"data:" + v, _value),
    st.just(b"data"),
    st.builds(lambda v: b"event: " + v, st.sampled_from([b"", b"ping", b"delta", b"x y"])),
    st.builds(lambda v: b":" + v, _value),
    st.builds(lambda v: b"id: " + v, _value),
    st.just(b"retry: 10"),
    st.just(b""),
    st.builds(lambda v: b"other: " + v, _value),
)


@st.composite
def _streams(draw: st.DrawFn) -> tuple[bytes, list[int]]:
    lines = draw(st.lists(st.tuples(_line, _line_end), max_size=25))
    stream = b"".join(text + end for text, end in lines)
    if draw(st.booleans()):
        stream += draw(_line)  # an unterminated tail
    cuts = sorted(draw(st.lists(st.integers(0, len(stream)), max_size=8)))
    return stream, cuts


@settings(max_examples=400, deadline=None)
@given(_streams())
def test_random_streams_and_splits_match_reference(case: tuple[bytes, list[int]]) -> None:
    stream, cuts = case
    bounds = [0, *cuts, len(stream)]
    pieces = [stream[a:b] for a, b in pairwise(bounds)]
    assert decode(*pieces) == reference(stream)


def _cut_runs(events: st.SearchStrategy[bytes]) -> st.SearchStrategy[tuple[bytes, list[int]]]:
    """Up to 30 events drawn from ``events`` as one stream, and up to 6 places to cut it."""
    @st.composite
    def runs(draw: st.DrawFn) -> tuple[bytes, list[int]]:
        stream = b"".join(draw(st.lists(events, max_size=30)))
        return stream, sorted(draw(st.lists(st.integers(0, len(stream)), max_size=6)))

    return runs()


# Mostly the bulk shape (one-line "data: X" events, which the decoder splits at once),
# with now and then a line of another kind that must send it the long way.
_data_runs = _cut_runs(st.one_of(
    st.builds(lambda v: b"data: " + v + b"\n\n", _value),
    st.builds(lambda v: b"data: " + v + b"\n\ndata: \n\n", _value),
    st.sampled_from([b"\n\n", b"data:x\n\n", b": c\n\n", b"data: a\ndata: b\n\n",
                     b"event: e\ndata: y\n\n", b"data: z\n\n\n"]),
))

# Mostly Anthropic's shape ("event: E" then "data: X"), read at once, with now and then
# an event of another shape.
_named_runs = _cut_runs(st.one_of(
    st.builds(lambda e, v: b"event: " + e + b"\ndata: " + v + b"\n\n",
              st.sampled_from([b"ping", b"content_block_delta", b"", b"x y"]), _value),
    st.sampled_from([b"event: a\n\ndata: b\n\n", b"event: a\ndata: b\ndata: c\n\n",
                     b"event: a\nid: 1\n\n", b"data: only\n\n", b"\n\n",
                     b"event: a\ndata:b\n\n", b"event: a\n: c\n\n"]),
))

# Mostly Gemini's shape ("data: X" ended by CRLF CRLF), read as it comes, with now and
# then a line end or an event of another kind; cuts fall between CR and LF too.
_crlf_runs = _cut_runs(st.one_of(
    st.builds(lambda v: b"data: " + v + b"\r\n\r\n", _value),
    st.sampled_from([b"\r\n\r\n", b"data: a\r\ndata: b\r\n\r\n", b"data: x\n\n",
                     b"data: y\r\r", b": c\r\n\r\n", b"event: e\r\ndata: f\r\n\r\n",
                     b"data: z\r\n\r\n\r\n", b"\r", b"\n", b"data:q\r\n\r\n",
                     b"data: w\r\r\n\r\n", b"data: l\n\r\n\r\n", b"data: m\r\n\n\r\n"]),
))


@settings(max_examples=600, deadline=None)
@given(st.one_of(_data_runs, _named_runs, _crlf_runs))
def test_runs_of_bulk_shapes_match_reference_at_any_split(case: tuple[bytes, list[int]]
                                                          ) -> None:
    stream, cuts = case
    bounds = [0, *cuts, len(stream)]
    assert decode(*[stream[a:b] for a, b in pairwise(bounds)]) == reference(stream)
