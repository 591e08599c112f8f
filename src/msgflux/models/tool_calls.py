"""``ToolCallAggregator``: tool calls as the model proposed them, and their results.

It reassembles calls from stream fragments (several calls per delta, fragments
interleaved, ``id``/``name`` only on the first one, or a new call at an index
already used), hands them out in OpenAI shape with parsed arguments, in index
order, collects results, and writes the messages that continue the conversation.
"""

from __future__ import annotations

from collections.abc import Callable
from operator import attrgetter
from typing import Any

import msgspec

from msgflux.exceptions import MessageFormatError, ToolCallArgumentsError
from msgflux.models.request import ReasoningBlock, ToolCall, ToolCallDelta

__all__ = ["ToolCallAggregator"]

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.decode
_MISSING = object()
_by_index = attrgetter("index")


class _Entry:
    __slots__ = ("arguments", "id", "index", "name", "result", "signature")

    def __init__(self, index: int, id: str | None, name: str | None) -> None:
        self.index = index
        self.id = id
        self.name = name
        self.arguments: list[str] = []
        self.result: Any = _MISSING
        self.signature: str | None = None


class ToolCallAggregator:
    """Tool calls of one assistant turn.

    ``get_calls()`` → ``[{"id", "type": "function", "function": {"name", "arguments": dict}}]``;
    ``insert_results(call_id, result)`` (or one dict ``{call_id: result}``);
    ``get_messages()`` → the assistant message with ``tool_calls`` plus one
    ``tool`` message per call. ``text`` and ``reasoning`` keep what the model
    said alongside the calls.
    """

    __slots__ = ("_current", "_entries", "reasoning", "reasoning_blocks", "text")

    def __init__(self, reasoning: str | None = None) -> None:
        self._entries: list[_Entry] = []  # every call, in arrival order
        self._current: dict[int, _Entry] = {}  # stream index -> the call it now feeds
        self.text: str | None = None
        self.reasoning = reasoning
        self.reasoning_blocks: tuple[ReasoningBlock, ...] = ()

    @classmethod
    def from_calls(cls, calls: tuple[ToolCall, ...] | list[ToolCall]) -> ToolCallAggregator:
        agg = cls()
        for i, call in enumerate(calls):
            agg.process(i, call.id, call.name, call.arguments, call.signature)
        return agg

    def to_calls(self) -> tuple[ToolCall, ...]:
        """The calls as neutral :class:`ToolCall` values, in index order (raw arguments)."""
        return tuple(ToolCall(self._call_id(e), e.name or "", "".join(e.arguments), e.signature)
                     for e in self._ordered())

    # -------------------------------------------------------------- assembling

    def process(self, call_index: int, tool_id: str | None = None, name: str | None = None,
                arguments: str | None = None, signature: str | None = None) -> None:
        """Add one fragment of call ``call_index`` (``signature``: the provider's opaque token).

        A fragment bringing a new id to an index whose call already has another
        starts a new call there: some servers (Ollama) send every parallel call
        whole at index 0, each with its own id.
        """
        entry = self._current.get(call_index)
        if entry is None or (tool_id and entry.id and tool_id != entry.id):
            entry = self._current[call_index] = _Entry(call_index, tool_id or None, name or None)
            self._entries.append(entry)
        else:
            if tool_id and not entry.id:
                entry.id = tool_id
            if name and not entry.name:
                entry.name = name
        if arguments:
            entry.arguments.append(arguments)
        if signature is not None:
            entry.signature = signature

    def fold(self, delta: ToolCallDelta) -> None:
        """:meth:`process` of one fragment; arguments alone for a call begun (the bulk
        of a tool stream) are appended without the checks a call's first one needs."""
        entry = self._current.get(delta.index)
        if (entry is not None and delta.id is None and delta.name is None
                and delta.signature is None):
            if delta.arguments:
                entry.arguments.append(delta.arguments)
            return
        self.process(delta.index, delta.id, delta.name, delta.arguments, delta.signature)

    def rename(self, name: Callable[[str], str]) -> None:
        """Give every call the name ``name(its name)`` (tool names as the caller gave them)."""
        for entry in self._entries:
            if entry.name:
                entry.name = name(entry.name)

    @property
    def tool_calls(self) -> dict[int, dict[str, Any]]:
        """Position → ``{"id", "name", "arguments"}`` with the raw argument text (0.5.1 shape)."""
        return {
            i: {"id": e.id, "name": e.name, "arguments": "".join(e.arguments)}
            for i, e in enumerate(self._ordered())
        }

    def __len__(self) -> int:
        return len(self._entries)

    def __bool__(self) -> bool:
        return True

    def __repr__(self) -> str:
        names = [e.name for e in self._ordered()]
        return f"ToolCallAggregator(calls={names!r})"

    # -------------------------------------------------------------- reading

    def _ordered(self) -> list[_Entry]:
        """By stream index; calls sharing one index in the order they came (a stable sort)."""
        return sorted(self._entries, key=_by_index)

    @staticmethod
    def _call_id(entry: _Entry) -> str:
        return entry.id or f"call_{entry.index}"

    def get_calls(self) -> list[dict[str, Any]]:
        """The calls with their arguments parsed into dicts (empty arguments → ``{}``)."""
        calls = []
        for entry in self._ordered():
            calls.append({
                "id": self._call_id(entry),
                "type": "function",
                "function": {"name": entry.name or "", "arguments": self._arguments(entry)},
            })
        return calls

    def _arguments(self, entry: _Entry) -> dict[str, Any]:
        raw = "".join(entry.arguments).strip()
        if not raw:
            return {}
        try:
            value = _decode(raw)
        except msgspec.DecodeError as e:
            raise ToolCallArgumentsError(
                f"The arguments of tool call {entry.name!r} are not valid JSON ({e}); "
                "the raw text is in .raw",
                raw=raw, tool_name=entry.name, call_id=entry.id,
            ) from None
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise ToolCallArgumentsError(
                f"The arguments of tool call {entry.name!r} are JSON but not an object: "
                f"{raw[:200]}",
                raw=raw, tool_name=entry.name, call_id=entry.id,
            )
        return value

    def to_tool_calls(self) -> tuple[ToolCall, ...]:
        """The calls as neutral :class:`ToolCall` values (raw argument text)."""
        return tuple(
            ToolCall(self._call_id(e), e.name or "", "".join(e.arguments) or "{}", e.signature)
            for e in self._ordered()
        )

    # -------------------------------------------------------------- results

    def insert_results(self, call_id: str | dict[str, Any], result: Any = _MISSING) -> None:
        """Record the result of call ``call_id`` (or of each id in one dict)."""
        if isinstance(call_id, dict):
            if result is not _MISSING:
                raise TypeError("insert_results takes (call_id, result) or one dict, not both")
            for key, value in call_id.items():
                self.insert_results(key, value)
            return
        if result is _MISSING:
            raise TypeError("insert_results(call_id, result): the result is missing")
        for entry in self._entries:
            if self._call_id(entry) == call_id:
                entry.result = result
                return
        known = [self._call_id(e) for e in self._ordered()]
        raise MessageFormatError(f"No tool call with id {call_id!r}; the calls are {known!r}")

    def get_messages(self) -> list[dict[str, Any]]:
        """The assistant turn that made the calls, then one ``tool`` message per result."""
        ordered = self._ordered()
        missing = [e.name or self._call_id(e) for e in ordered if e.result is _MISSING]
        if missing:
            raise MessageFormatError(
                f"No result for tool call(s) {missing!r}: providers reject a tool-call turn "
                "without every result. Call insert_results(call['id'], result) for each call."
            )
        assistant: dict[str, Any] = {"role": "assistant", "content": self.text or None}
        calls = []
        for entry in ordered:
            call: dict[str, Any] = {
                "id": self._call_id(entry),
                "type": "function",
                "function": {"name": entry.name or "",
                             "arguments": "".join(entry.arguments) or "{}"},
            }
            if entry.signature is not None:
                call["signature"] = entry.signature
            calls.append(call)
        assistant["tool_calls"] = calls
        if self.reasoning_blocks:
            assistant["thinking_blocks"] = [_block_dict(b) for b in self.reasoning_blocks]
        messages = [assistant]
        for entry in ordered:
            result = entry.result
            content = result if isinstance(result, str) else _result_text(result)
            messages.append(
                {"role": "tool", "tool_call_id": self._call_id(entry), "content": content}
            )
        return messages

    def copy(self) -> ToolCallAggregator:
        """An independent copy (results included)."""
        other = ToolCallAggregator(self.reasoning)
        other.text = self.text
        other.reasoning_blocks = self.reasoning_blocks
        for entry in self._entries:
            clone = _Entry(entry.index, entry.id, entry.name)
            clone.arguments = list(entry.arguments)
            clone.result = entry.result
            clone.signature = entry.signature
            other._entries.append(clone)
            other._current[clone.index] = clone  # the latest call of each index, as here
        return other


def _result_text(result: Any) -> str:
    """A tool result as message text: JSON when it encodes, else its ``str()``."""
    try:
        return _encode(result).decode()
    except (TypeError, ValueError):
        return str(result)


def _block_dict(block: ReasoningBlock) -> dict[str, Any]:
    if block.id is not None:  # an OpenAI Responses reasoning item, as the API names its parts
        item: dict[str, Any] = {"type": "reasoning", "id": block.id, "thinking": block.text}
        if block.redacted is not None:
            item["encrypted_content"] = block.redacted
        return item
    if block.redacted is not None:
        return {"type": "redacted_thinking", "data": block.redacted}
    out: dict[str, Any] = {"type": "thinking", "thinking": block.text}
    if block.signature is not None:
        out["signature"] = block.signature
    return out
