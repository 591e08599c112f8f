"""Provider-neutral request and response vocabulary.

Everything above the dialects speaks only these types; each dialect translates
them to and from one wire protocol. They are frozen msgspec Structs: cheap to
build, hashable where it matters (the cache key is their msgpack encoding), and
never shaped after one provider — a field exists because several protocols
have the concept.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

__all__ = [
    "REFUSAL_BREAK",
    "AudioPart",
    "CacheHint",
    "ChatRequest",
    "Completion",
    "Delta",
    "FilePart",
    "ImagePart",
    "Message",
    "OutputMode",
    "OutputSchema",
    "Part",
    "PromptCache",
    "ReasoningBlock",
    "TextPart",
    "ToolCall",
    "ToolCallDelta",
    "ToolChoice",
    "ToolSpec",
    "Usage",
    "as_delta",
    "settled_finish",
    "with_refusal",
]

Role = Literal["system", "user", "assistant", "tool"]


# ---------------------------------------------------------------- prompt caching


class CacheHint(msgspec.Struct, frozen=True):
    """Cache the prompt up to and including what carries this hint (a breakpoint).

    ``ttl``: how long the provider should keep it, ``"5m"`` or ``"1h"``. A dialect
    whose provider takes explicit breakpoints (Anthropic's ``cache_control``)
    lowers it; the others cache prefixes on their own and ignore it.
    """

    ttl: Literal["5m", "1h"] = "5m"


class PromptCache(msgspec.Struct, frozen=True):
    """How a request uses the provider's prompt cache.

    ``auto``: place breakpoints for the caller — the tools, the system prompt and
    the stable prefix of the history (everything before the last user turn) —
    within the provider's limit on breakpoints, with ``ttl``. ``key``: a routing
    key that groups requests sharing a long prefix (OpenAI's
    ``prompt_cache_key``). ``retention``: how long the provider keeps cached
    prefixes where it lets the caller choose (OpenAI's ``"in_memory"``/``"24h"``).
    """

    auto: bool = False
    ttl: Literal["5m", "1h"] = "5m"
    key: str | None = None
    retention: str | None = None


# ---------------------------------------------------------------- content


class TextPart(msgspec.Struct, frozen=True, tag="text"):
    text: str
    cache: CacheHint | None = None


class ImagePart(msgspec.Struct, frozen=True, tag="image"):
    """An image by URL: ``https://…`` or a ``data:<media type>;base64,…`` URL."""

    url: str
    detail: str | None = None
    cache: CacheHint | None = None


class AudioPart(msgspec.Struct, frozen=True, tag="audio"):
    """Base64 audio ``data`` in ``format`` (``wav``, ``mp3``…)."""

    data: str
    format: str


class FilePart(msgspec.Struct, frozen=True, tag="file"):
    """A document: inline ``data`` (a base64 data URL), a provider ``file_id`` or a ``url``."""

    data: str | None = None
    file_id: str | None = None
    url: str | None = None
    filename: str | None = None
    media_type: str | None = None
    cache: CacheHint | None = None


Part = TextPart | ImagePart | AudioPart | FilePart


class ToolCall(msgspec.Struct, frozen=True):
    """A complete tool call; ``arguments`` is the raw JSON text the model wrote."""

    id: str
    name: str
    arguments: str
    signature: str | None = None  # opaque provider token that must travel back (Gemini)


class ReasoningBlock(msgspec.Struct, frozen=True):
    """One block of model reasoning, kept intact so it can be sent back in a tool loop.

    ``signature`` authenticates the text (Anthropic); ``redacted`` holds an
    encrypted block whose text is withheld. ``id`` names a block the provider
    gave an id (an OpenAI Responses reasoning item: ``redacted`` is then its
    encrypted content and ``text`` its summary); only that provider takes it back.
    """

    text: str = ""
    signature: str | None = None
    redacted: str | None = None
    id: str | None = None


class Message(msgspec.Struct, frozen=True):
    """One turn. ``cache`` marks the prompt up to the end of this turn as worth caching."""

    role: Role
    content: str | tuple[Part, ...] | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None
    name: str | None = None
    reasoning: tuple[ReasoningBlock, ...] = ()
    cache: CacheHint | None = None


# ---------------------------------------------------------------- request


class ToolSpec(msgspec.Struct, frozen=True):
    """A function the model may call; ``parameters`` is a JSON Schema object."""

    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None
    cache: CacheHint | None = None  # cache the tool definitions up to this one


class ToolChoice(msgspec.Struct, frozen=True):
    """``mode`` is ``auto``, ``required``, ``none`` or ``tool`` (then ``name`` is set)."""

    mode: Literal["auto", "required", "none", "tool"]
    name: str | None = None


OutputMode = Literal["json_schema", "tool", "json_object"]


class OutputSchema(msgspec.Struct, frozen=True):
    """The JSON shape asked of the model.

    ``schema`` is the logical JSON Schema (local references resolved, recursive
    ones under ``$defs``); ``strict_schema`` the same shape lowered to what strict
    modes accept (every object closed, every property required, maps as entry
    lists). A dialect sends whichever its provider takes; decoding restores
    either shape.

    ``mode`` says how it is asked for: ``json_schema`` (the provider's native
    schema-constrained output), ``tool`` (a tool named ``name`` whose input is
    the answer, forced; the dialect hands its arguments back as the answer's
    text) or ``json_object`` (the provider's JSON mode, with the schema in the
    prompt).
    """

    name: str
    schema: dict[str, Any]
    strict_schema: dict[str, Any]
    description: str | None = None
    mode: OutputMode = "json_schema"


class ChatRequest(msgspec.Struct, frozen=True):
    """One chat completion request, independent of any provider."""

    model: str
    messages: tuple[Message, ...]
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    stop: tuple[str, ...] | None = None
    seed: int | None = None
    reasoning_effort: str | None = None
    tools: tuple[ToolSpec, ...] = ()
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    output: OutputSchema | None = None
    prefill: str | None = None
    stream: bool = False
    extra: dict[str, Any] | None = None  # provider-specific body fields, passed through
    cache: PromptCache | None = None


# ---------------------------------------------------------------- response


class Usage(msgspec.Struct, gc=False):
    """Token counts. ``prompt_tokens`` includes ``cached_tokens`` (read from cache)
    and ``cache_write_tokens`` (written to cache), which includes
    ``cache_write_1h_tokens`` (written for an hour, a dearer write where the
    provider offers it); ``completion_tokens`` includes ``reasoning_tokens``."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    cached_tokens: int | None = None
    cache_write_tokens: int | None = None
    reasoning_tokens: int | None = None
    cache_write_1h_tokens: int | None = None

    def plus(self, other: Usage | None) -> Usage:
        """The tokens of both (for several requests of one answer); ``None`` counts as
        absent, and a detail neither side reported stays ``None``."""
        if other is None:
            return self
        summed = {}
        for name in self.__struct_fields__:
            a, b = getattr(self, name), getattr(other, name)
            summed[name] = b if a is None else a if b is None else a + b
        return Usage(**summed)


# What a refusal means here: the provider declined to answer (OpenAI's ``refusal``,
# Anthropic's ``stop_reason: "refusal"``, a Gemini safety block). Its text travels in
# ``refusal``, apart from ``text``; the neutral finish reason is "refusal" and the
# provider's own stays in ``native_finish_reason``.
REFUSAL_BREAK = "\n"


def settled_finish(reason: str | None, tool_calls: bool, refused: bool) -> str | None:
    """The neutral finish of a turn its provider ended with a plain "stop".

    "tool_calls" when the turn carries calls (OpenAI says "stop" when a named
    tool was forced), "refusal" when it was refused; any other reason as is.
    """
    if reason == "stop":
        if tool_calls:
            return "tool_calls"
        if refused:
            return "refusal"
    return reason


def with_refusal(text: str, refusal: str) -> str:
    """The answer of a refused text call: any text, then the refusal's on a new line."""
    return text + REFUSAL_BREAK + refusal if text else refusal


class Completion(msgspec.Struct, gc=False):
    """A finished (non-streamed) answer; ``refusal`` is set when the provider refused."""

    text: str | None = None
    refusal: str | None = None
    reasoning: str | None = None
    reasoning_blocks: tuple[ReasoningBlock, ...] = ()
    tool_calls: tuple[ToolCall, ...] = ()
    finish_reason: str | None = None
    native_finish_reason: str | None = None
    usage: Usage | None = None
    model: str | None = None
    id: str | None = None


class ToolCallDelta(msgspec.Struct, gc=False):
    """A fragment of tool call ``index``; ``id``/``name`` usually come only first."""

    index: int
    id: str | None = None
    name: str | None = None
    arguments: str | None = None
    signature: str | None = None


def as_delta(value: Delta | str | ToolCallDelta) -> Delta:
    """A stream decoder's output as a Delta: a plain ``str`` stands for text only, a
    lone :class:`ToolCallDelta` for one fragment of one call."""
    if value.__class__ is str:
        return Delta(text=value)  # type: ignore[arg-type]
    if value.__class__ is ToolCallDelta:
        return Delta(tool_calls=(value,))  # type: ignore[arg-type]
    return value  # type: ignore[return-value]


class Delta(msgspec.Struct, gc=False):
    """What one stream event adds. ``done`` marks the protocol's own end marker.

    ``refusal`` is a fragment of a refusal's text; ``reasoning_signature``
    closes the current reasoning block; ``reasoning_block`` is a whole block
    (redacted, or an item with an id) that replaces the reasoning text streamed
    for it since the last block closed.
    """

    text: str | None = None
    refusal: str | None = None
    reasoning: str | None = None
    reasoning_signature: str | None = None
    reasoning_block: ReasoningBlock | None = None
    tool_calls: tuple[ToolCallDelta, ...] | None = None
    finish_reason: str | None = None
    native_finish_reason: str | None = None
    usage: Usage | None = None
    model: str | None = None
    id: str | None = None
    done: bool = False
