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

Speed: the common shape ``data: {...}\\n\\n`` costs one ``split`` plus a
``startswith`` and a ``find`` per event; the general line parser runs only for
other shapes. Bytes are kept unparsed until a blank line arrives, so a large
event fed in small pieces is joined once, not re-scanned per piece.
"""

from __future__ import annotations

from msgflux._transport.types import SSEEvent

__all__ = ["SSEDecoder"]

_LF = b"\n"
_BLANK = b"\n\n"
_DATA = b"data: "
_EVENT = b"event: "


class SSEDecoder:
    """Incremental SSE parser: ``feed(bytes) -> list[SSEEvent]``, then ``close()``."""

    __slots__ = ("_parts", "_skip_lf", "last_event_id", "retry")

    def __init__(self) -> None:
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
        if b"\r" in data:
            self._skip_lf = data[-1] == 13
            data = data.replace(b"\r\n", _LF).replace(b"\r", _LF)
        if not data:
            return []
        parts = self._parts
        if parts:
            # Only join when this piece completes an event: a blank line lies
            # inside it, or it opens with LF right after a piece ending in LF.
            if _BLANK not in data and not (data[0] == 10 and parts[-1][-1] == 10):
                parts.append(data)
                return []
            parts.append(data)
            data = b"".join(parts)
            parts.clear()
        end = data.rfind(_BLANK)
        if end < 0:
            parts.append(data)
            return []
        if end + 2 < len(data):
            parts.append(data[end + 2 :])
        out: list[SSEEvent] = []
        for block in data[:end].split(_BLANK):
            # Fast paths for the two shapes LLM APIs send: "data: X" (OpenAI,
            # Gemini, local engines) and "event: E\ndata: X" (Anthropic).
            if block.startswith(_DATA):
                if block.find(_LF) < 0:
                    out.append(SSEEvent(block[6:]))
                    continue
            elif block.startswith(_EVENT):
                nl = block.find(_LF)
                if nl > 7 and block.startswith(_DATA, nl + 1) and block.find(_LF, nl + 1) < 0:
                    out.append(SSEEvent(block[nl + 7 :], block[7:nl].decode("utf-8", "replace")))
                    continue
            if block:
                self._parse_block(block, out)
        return out

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
