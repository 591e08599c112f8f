"""Server-sent events framing, sans-I/O (WHATWG HTML, "Parsing an event stream").

:class:`SSEDecoder` turns body bytes, fed in arbitrary pieces, into
:class:`~msgflux._transport.types.SSEEvent` values. Rules implemented:

- lines end with ``\\n``, ``\\r\\n`` or ``\\r`` (a ``\\r`` ending one feed and a
  ``\\n`` starting the next are one line ending);
- a blank line dispatches the event; an event with no ``data`` line is dropped;
- ``:`` starts a comment line; a line without ``:`` is a field with empty value;
- one optional space after the colon is removed;
- ``data`` lines are joined with ``\\n``; ``event`` names the event;
  ``id`` is remembered in :attr:`SSEDecoder.last_event_id` (unless it holds
  NUL), ``retry`` in :attr:`SSEDecoder.retry` when all digits; other fields are ignored;
- an event not terminated by a blank line at end of stream is discarded
  (:meth:`SSEDecoder.close`); :attr:`SSEDecoder.pending` shows what was cut off.

``data`` stays ``bytes`` (msgspec decodes bytes directly); ``[DONE]`` means
nothing here. A leading UTF-8 BOM is not stripped (LLM APIs never send one).

Speed: a run of one-line ``data: {...}`` events (most streams) is recognised by
counting bytes in C and split at once, a slice per event (in CRLF too, as Gemini
sends it, without rewriting the line ends first); Anthropic's
``event: x\\ndata: {...}\\n\\n`` costs a ``startswith``, a ``find`` and a slice per
event; the general line parser runs only for other shapes. Bytes
are kept unparsed until a blank line arrives, so a large event fed in small
pieces is joined once, not re-scanned per piece.
"""

from __future__ import annotations

from itertools import repeat
from operator import itemgetter

from msgflux._transport.errors import too_large
from msgflux._transport.types import SSEEvent
from msgflux.exceptions import TransportError

__all__ = ["SSEDecoder"]

_LF = b"\n"
_BLANK = b"\n\n"
_CRLF = b"\r\n"
_CRLF_BLANK = b"\r\n\r\n"
_DATA = b"data: "
_LINE_DATA = b"\ndata: "
_EVENT = b"event: "


# Event names repeat (content_block_delta, ...): each "event: E" line is decoded once.
# An empty name is no name.
_NAMES: dict[bytes, str | None] = {_EVENT: None}
_UNSEEN = object()  # not in _NAMES yet (None is a name: the empty one)
_head, _found, _tail = itemgetter(0), itemgetter(1), itemgetter(2)


def _event_name(line: bytes) -> str | None:
    """The name on an ``event: E`` line."""
    name = _NAMES.get(line, _UNSEEN)
    if name is _UNSEEN:
        name = line[7:].decode("utf-8", "replace")
        if len(_NAMES) < 256:
            _NAMES[line] = name
    return name  # type: ignore[return-value]


def _named_events(blocks: list[bytes]) -> list[SSEEvent] | None:
    """Blocks of two lines, each opening with ``event: `` (the caller checked), as
    their events; ``None`` when a second line is not ``data: X``. The names are looked
    up in C; a run with a name not seen yet decodes it first."""
    heads = list(map(bytes.partition, blocks, repeat(_LINE_DATA)))
    if not all(map(_found, heads)):
        return None
    names = list(map(_NAMES.get, map(_head, heads), repeat(_UNSEEN)))
    if _UNSEEN in names:
        names = list(map(_event_name, map(_head, heads)))
    return list(map(SSEEvent, map(_tail, heads), names))


def _crlf_run(data: bytes) -> tuple[list[SSEEvent], bytes] | None:
    """A run of one-line ``data: X`` events in CRLF (Gemini), read as it came, and what
    follows it: split at the blank lines without rewriting the line ends first, when
    every CR and LF up to the last blank line is one of the two CRLFs that end each
    event (counted in C) and what follows holds no line end. ``None``: another shape,
    for the normalising path (two ``replace`` passes over the whole read)."""
    end = data.rfind(_CRLF_BLANK)
    if end <= 0 or not data.startswith(_DATA):
        return None
    stop = end + 4
    tail = data[stop:]
    if 13 in tail or 10 in tail:  # more than the start of one line: normalise it all
        return None
    blocks = data[:end].split(_CRLF_BLANK)
    pairs = data.count(_CRLF, 0, stop)
    if (pairs != 2 * len(blocks) or data.count(13, 0, stop) != pairs
            or data.count(10, 0, stop) != pairs
            or not all(map(bytes.startswith, blocks, repeat(_DATA)))):
        return None
    return [SSEEvent(p[6:]) for p in blocks], tail


class SSEDecoder:
    """Incremental SSE parser: ``feed(bytes) -> list[SSEEvent]``, then ``close()``.

    ``max_event_bytes`` bounds the bytes of one unfinished event (a server that
    never ends an event would otherwise grow it without limit): past it,
    :meth:`feed` raises :class:`~msgflux.exceptions.TransportError`.
    """

    __slots__ = ("_held", "_max", "_parts", "_skip_lf", "last_event_id", "retry")

    def __init__(self, max_event_bytes: int | None = None) -> None:
        self._max = max_event_bytes
        self._held = 0  # bytes in _parts
        # Raw, line-normalised (LF only) bytes of the unfinished event, if any.
        # Invariant: they always start at the beginning of an event, so no
        # per-field state survives between feeds.
        self._parts: list[bytes] = []
        # The previous feed ended in CR: a LF opening the next one belongs to it.
        self._skip_lf = False
        self.last_event_id: bytes = b""
        self.retry: int | None = None

    @property
    def pending(self) -> bytes:
        """Bytes received but not yet dispatched (an unterminated event, if not blank)."""
        return b"".join(self._parts)

    def feed(self, data: bytes) -> list[SSEEvent]:
        """Add body bytes; return the events they complete (possibly none)."""
        if self._skip_lf and data:
            self._skip_lf = False
            if data[0] == 10:
                data = data[1:]
        # "13 in data" is a memchr; b"\r" in data would be a slower substring search.
        if 13 in data:
            parts = self._parts
            # What an earlier read left is the start of one line (no line end in it):
            # with this read it may be a run of CRLF events still.
            if not parts or (len(parts) == 1 and 10 not in parts[0]):
                run = _crlf_run(parts[0] + data if parts else data)
                if run is not None:
                    events, tail = run
                    parts.clear()
                    self._held = 0
                    if tail:  # the start of the next event's line: wait for more
                        parts.append(tail)
                        self._hold(len(tail))
                    return events
            self._skip_lf = data[-1] == 13
            data = data.replace(b"\r\n", _LF).replace(b"\r", _LF)
        if not data:
            return []
        parts = self._parts
        if parts:
            # Only join when this piece completes an event: a blank line lies
            # inside it, or it opens with LF right after a piece ending in LF.
            if data.find(_BLANK) < 0 and not (data[0] == 10 and parts[-1][-1] == 10):
                parts.append(data)
                self._hold(len(data))
                return []
            parts.append(data)
            data = b"".join(parts)
            parts.clear()
            self._held = 0
        # The bulk shapes, a run of one-line "data: X" events (OpenAI, Gemini, local
        # engines) or of Anthropic's "event: E" + "data: X" pairs, are recognised in C
        # (a split, a count, a prefix test per event) and read at once; anything else
        # (and a run with other lines in it) takes the loop below.
        end = data.rfind(_BLANK)
        if end > 0 and (data.startswith(_DATA) or data.startswith(_EVENT)):
            stop = end + 2
            blocks = data[:end].split(_BLANK)
            events = len(blocks)
            lines = data.count(10, 0, stop)  # blank lines included: 2 per event
            if lines == 2 * events and all(map(bytes.startswith, blocks, repeat(_DATA))):
                if stop < len(data):
                    parts.append(data[stop:])  # an unfinished event: wait for more
                    self._hold(len(data) - stop)
                return [SSEEvent(p[6:]) for p in blocks]
            # With one LF per event besides the blank lines, every event opening with
            # "event: " and holding "\ndata: " is exactly those two lines (each event is
            # checked: the counts alone cannot tell 3 + 1 lines from 2 + 2).
            if lines == 3 * events and all(map(bytes.startswith, blocks, repeat(_EVENT))):
                named = _named_events(blocks)
                if named is not None:
                    if stop < len(data):
                        parts.append(data[stop:])
                        self._hold(len(data) - stop)
                    return named
        out: list[SSEEvent] = []
        n = len(data)
        pos = 0
        while pos < n:
            # Fast paths for the two shapes LLM APIs send, found with
            # positions instead of slices: "data: X" (OpenAI, Gemini, local
            # engines) and "event: E\ndata: X" (Anthropic), each followed by
            # a blank line.
            first = data[pos]
            if first == 100 and data.startswith(_DATA, pos):  # "d"
                nl = data.find(10, pos)
                if 0 < nl < n - 1 and data[nl + 1] == 10:
                    out.append(SSEEvent(data[pos + 6 : nl]))
                    pos = nl + 2
                    continue
            elif first == 101 and data.startswith(_EVENT, pos):  # "e"
                nl = data.find(10, pos)
                if nl > pos + 7 and data.startswith(_DATA, nl + 1):
                    end = data.find(10, nl + 1)
                    if 0 < end < n - 1 and data[end + 1] == 10:
                        out.append(SSEEvent(data[nl + 7 : end], _event_name(data[pos:nl])))
                        pos = end + 2
                        continue
            end = data.find(_BLANK, pos)
            if end < 0:
                parts.append(data[pos:])  # an unfinished event: wait for more
                self._hold(n - pos)
                break
            if end > pos:
                self._parse_block(data[pos:end], out)
            pos = end + 2
        return out

    def _hold(self, n: int) -> None:
        held = self._held = self._held + n
        limit = self._max
        if limit is not None and held > limit:
            self._parts.clear()
            self._held = 0
            raise TransportError(
                "the server sent an unfinished event: " + too_large("one event", limit))

    def close(self) -> list[SSEEvent]:
        """Signal end of stream; per the spec an unterminated event is discarded.

        Always returns ``[]``; :attr:`pending` keeps the discarded bytes (check
        ``pending.strip()`` to tell a truncated event from trailing whitespace).
        """
        self._skip_lf = False
        return []

    def _parse_block(self, block: bytes, out: list[SSEEvent]) -> None:
        """The general line parser for one blank-line-terminated block."""
        data: list[bytes] | None = None
        event: str | None = None
        for line in block.split(_LF):
            if not line:
                # A blank line inside the block (from LF LF LF runs): dispatch.
                if data is not None:
                    out.append(SSEEvent(_LF.join(data), event))
                data = None
                event = None
                continue
            colon = line.find(b":")
            if colon == 0:
                continue  # comment
            if colon < 0:
                name, value = line, b""
            else:
                name = line[:colon]
                skip = 2 if line[colon + 1 : colon + 2] == b" " else 1
                value = line[colon + skip :]
            if name == b"data":
                if data is None:
                    data = [value]
                else:
                    data.append(value)
            elif name == b"event":
                event = value.decode("utf-8", "replace") or None
            elif name == b"id":
                if b"\0" not in value:
                    self.last_event_id = value
            elif name == b"retry" and value.isdigit():
                self.retry = int(value)
        if data is not None:
            out.append(SSEEvent(_LF.join(data), event))


SSEDecoder.__module__ = "msgflux.transport"  # public there
