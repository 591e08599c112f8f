"""The Anthropic Messages dialect (``POST /v1/messages``).

Pure translations, like the openai dialect: ChatRequest → HttpRequest,
response bytes → Completion, one SSE event → Delta, error body → typed error.

How the neutral request maps onto Messages:

- system messages, wherever they stand, become the top-level ``system``;
- tool results become ``tool_result`` blocks in a user turn, and consecutive
  turns of one role are merged (the API wants user and assistant to alternate);
- assistant turns carry their signed thinking blocks first, so a tool loop
  sends Claude's reasoning back intact; unsigned reasoning and blocks with an
  id (another provider's) are dropped because Anthropic cannot verify them;
- ``max_tokens`` is required: :data:`DEFAULT_MAX_TOKENS` when the request has none;
- structured output uses ``output_config.format`` on models that have it
  (Claude 4.5 and later) and otherwise a forced tool whose input is the answer;
  either way the answer comes back as ``text``, never as a tool call;
- ``reasoning_effort`` becomes ``thinking`` (a token budget, or adaptive
  thinking with an effort level on Claude 4.6 and later): a level or budget the
  API accepts is sent as given, one it would refuse is adjusted with a warning,
  and one nothing can satisfy fails before the call (see ``_thinking``);
- prompt caching: a ``cache`` hint on a tool, a message or a content part becomes
  ``cache_control`` on that tool or block (a message's last block); the automatic
  policy (``request.cache.auto``) adds breakpoints on the tools, the system prompt
  and, once there is history, the conversation so far — never beyond the API's
  :data:`MAX_CACHE_BREAKPOINTS`, and never a 1-hour one after a 5-minute one (the
  API refuses both); cache reads and writes come back in ``usage``.

``count_tokens`` asks ``/v1/messages/count_tokens`` for the prompt's exact size.
"""

from __future__ import annotations

import functools
import re
import warnings
from collections.abc import Generator
from operator import attrgetter
from typing import Any

import msgspec

from msgflux._transport.types import HttpRequest, SSEEvent
from msgflux.exceptions import (
    CapabilityError,
    InvalidParameterError,
    MessageFormatError,
    PrefillNotSupportedError,
    ProviderError,
    ResponseError,
)
from msgflux.models.dialects._media import guess_media_type, is_http_url, split_data_url
from msgflux.models.dialects._schema import per_schema, prune_schema
from msgflux.models.dialects.base import (
    USER_AGENT,
    Endpoint,
    decode_wire,
    derived,
    error_from_status,
    http_error,
    join_url,
    schema_json,
    unique_tool_name,
)
from msgflux.models.request import (
    AudioPart,
    CacheHint,
    ChatRequest,
    Completion,
    Delta,
    FilePart,
    ImagePart,
    Message,
    Part,
    ReasoningBlock,
    TextPart,
    ToolCall,
    ToolCallDelta,
    Usage,
)
from msgflux.models.schema import STRICT_FORMATS, constraint_note, inline_refs

__all__ = [
    "API_VERSION",
    "DEFAULT_MAX_TOKENS",
    "MAX_CACHE_BREAKPOINTS",
    "REQUIRES_MAX_TOKENS",
    "StreamDecoder",
    "build_request",
    "claude_version",
    "count_tokens",
    "native_output",
    "parse_error",
    "parse_response",
    "stream_decoder",
]

API_VERSION = "2023-06-01"
"""The ``anthropic-version`` header sent unless ``Endpoint.api_version`` says otherwise."""

DEFAULT_MAX_TOKENS = 4096
"""``max_tokens`` when the request has none (the API requires the field; the model
layer normally fills it from the model profile's output limit first)."""

REQUIRES_MAX_TOKENS = True
"""Tells the model layer to fill ``max_tokens`` from the model profile's output limit."""

# What the API accepts for thinking, from Anthropic's docs ("Building with extended
# thinking", "Adaptive thinking", "Effort"; platform.claude.com/docs/en/build-with-claude):
# - budget_tokens is at least 1024 and below max_tokens, which counts the thinking too;
# - Claude 4.6 takes adaptive thinking with output_config.effort and still takes a budget
#   (deprecated there); Claude Opus 4.7 and later refuse a budget with a 400;
# - effort levels are low, medium, high and max on the 4.6 models; xhigh, between high
#   and max, exists from Claude Opus 4.7 on ("xhigh is newer; some models that support
#   max do not support xhigh yet").
MIN_THINKING_BUDGET = 1024  # the smallest budget_tokens the API accepts

# reasoning_effort → budget_tokens (manual thinking, Claude 3.7 to 4.5).
_BUDGETS = {"minimal": 1024, "low": 2048, "medium": 8192, "high": 16384, "xhigh": 32000,
            "max": 32000}
# reasoning_effort → output_config.effort (adaptive thinking, Claude 4.6 and later).
# "minimal" is OpenAI's word; Anthropic's lowest level is "low".
_EFFORTS = {"minimal": "low", "low": "low", "medium": "medium", "high": "high",
            "xhigh": "xhigh", "max": "max"}

_FILES_BETA = "files-api-2025-04-14"  # documents referenced by file_id (Files API)
_HOUR_CACHE_BETA = "extended-cache-ttl-2025-04-11"  # cache_control with ttl "1h"

MAX_CACHE_BREAKPOINTS = 4
"""The most ``cache_control`` breakpoints one request may carry (more is a 400)."""
_encode = msgspec.json.Encoder().encode


# ---------------------------------------------------------------- models


_CLAUDE = re.compile(
    r"claude-(?:(\d+)(?:[-.](\d{1,2}))?-(?:opus|sonnet|haiku|instant)"
    r"|(?:opus|sonnet|haiku)-(\d+)(?:[-.](\d{1,2}))?)(?=$|[-@:_])"
)


@functools.lru_cache(maxsize=256)
@functools.lru_cache(maxsize=256)  # a model sends its id on every call
def claude_version(model: str) -> tuple[int, int] | None:
    """``(major, minor)`` of a Claude model id in either naming scheme, else ``None``.

    ``claude-3-5-sonnet-20241022`` → (3, 5); ``claude-sonnet-4-20250514`` → (4, 0);
    ``claude-opus-4-1`` → (4, 1). Ids of other models served over this dialect
    (MiniMax, Kimi…) give ``None`` and get the most widely accepted request shape.
    """
    m = _CLAUDE.search(model.lower())
    if m is None:
        return None
    major = m.group(1) or m.group(3)
    minor = m.group(2) or m.group(4)
    return (int(major), int(minor or 0))


def _native_output(version: tuple[int, int] | None) -> bool:
    # output_config.format (and strict tools) are generally available from Claude 4.5 on.
    return version is not None and version >= (4, 5)


def native_output(model: str) -> bool:
    """Does ``model`` take ``output_config.format`` (else a forced tool carries the answer)?"""
    return _native_output(claude_version(model))


def _adaptive(version: tuple[int, int] | None) -> bool:
    # Claude 4.6 brings adaptive thinking with an effort level (deprecating budgets) and
    # refuses a prefilled final assistant turn.
    return version is not None and version >= (4, 6)


def _takes_budget(version: tuple[int, int] | None) -> bool:
    # Manual thinking (budget_tokens) is refused from Claude Opus 4.7 on.
    return version is None or version < (4, 7)


def _takes_xhigh(version: tuple[int, int] | None) -> bool:
    return version is not None and version >= (4, 7)


# ---------------------------------------------------------------- request


def build_request(request: ChatRequest, endpoint: Endpoint) -> HttpRequest:
    body, betas = _body(request)
    stream = request.stream
    url, headers = derived(endpoint, (stream, *sorted(betas)) if betas else stream,
                           lambda: (_url(endpoint.base_url),
                                    _headers(request, endpoint, betas)))
    return HttpRequest("POST", url, headers, _encode(body), stream)


# What /v1/messages/count_tokens takes of a Messages body (it refuses the rest).
_COUNTED = ("model", "system", "messages", "thinking", "tools", "tool_choice",
            "output_config")


def count_tokens(request: ChatRequest, endpoint: Endpoint
                 ) -> Generator[HttpRequest, bytes, int]:
    """The exchange that counts ``request``'s input tokens: yields the
    ``count_tokens`` request, receives its response body, returns the count."""
    body, betas = _body(msgspec.structs.replace(request, stream=False))
    kept = {k: body[k] for k in _COUNTED if k in body}
    url = _url(endpoint.base_url) + "/count_tokens"
    answer = yield HttpRequest("POST", url, _headers(request, endpoint, betas, stream=False),
                               _encode(kept))
    count = decode_wire(_count_decoder, answer,
                        f"{endpoint.provider} returned a token count that is not JSON")
    if count.input_tokens is None:
        raise ResponseError(f"{endpoint.provider} returned no input_tokens",
                            raw=answer[:2000].decode("utf-8", "replace"))
    return count.input_tokens


def _headers(request: ChatRequest, endpoint: Endpoint, betas: set[str],
             stream: bool | None = None) -> tuple[tuple[str, str], ...]:
    stream = request.stream if stream is None else stream
    headers = [
        ("content-type", "application/json"),
        ("accept", "text/event-stream" if stream else "application/json"),
        ("user-agent", USER_AGENT),
        ("anthropic-version", endpoint.api_version or API_VERSION),
    ]
    if endpoint.api_key:
        headers.append(("x-api-key", endpoint.api_key))
    if betas:
        headers.append(("anthropic-beta", ",".join(sorted(betas))))
    headers.extend(endpoint.headers)
    return tuple(headers)


def _body(request: ChatRequest) -> tuple[dict[str, Any], set[str]]:
    """The Messages body of ``request`` and the beta features it needs."""
    version = claude_version(request.model)
    if request.prefill is not None and _adaptive(version):
        raise PrefillNotSupportedError(
            f"{request.model} does not continue a prefilled assistant message: Anthropic "
            "removed prefilling from Claude 4.6 on (the API answers 400). Ask for the format "
            "in the prompt, or use generation_schema for JSON."
        )
    native = _native_output(version)
    policy = request.cache
    plain = (_plain_conversation(request.messages)
             if request.prefill is None and (policy is None or not policy.auto) else None)
    if plain is None:
        system, messages, betas = _conversation(request)
    else:
        system_text, messages = plain
        betas = set()
    max_tokens = request.max_tokens
    thinking, effort, max_tokens = _thinking(request.reasoning_effort, request.model, version,
                                             max_tokens)
    fields: dict[str, Any] = {"max_tokens": max_tokens}
    if thinking is not None:
        fields["thinking"] = thinking
    if request.temperature is not None:
        fields["temperature"] = request.temperature
    if request.top_p is not None:
        fields["top_p"] = request.top_p
    if request.stop:
        fields["stop_sequences"] = list(request.stop)
    # seed: the Messages API has none; there is nothing to map it to.
    output_config: dict[str, Any] = {}
    if effort is not None:
        output_config["effort"] = effort
    tools = [_tool(t, native) for t in request.tools] if request.tools else []
    choice = _tool_choice(request) if request.tools or request.tool_choice is not None else None
    if plain is None:
        # The API refuses tool_use/tool_result blocks in a request that defines no tools,
        # and the guide's tool loop ends with a call without tool_schemas: the tools the
        # history called are declared by name, with an open schema, and no further call
        # is asked for.
        defined = {t.name for t in request.tools}
        called = [name for name in _called_tools(request) if name not in defined]
        if called:
            tools.extend({"name": name, "description": "Called earlier in this conversation.",
                          "input_schema": {"type": "object"}} for name in called)
            if not request.tools:
                choice = {"type": "none"}
    out = request.output
    if out is not None and out.mode != "json_object":  # no JSON mode: the prompt asks
        if native and out.mode == "json_schema":
            output_config["format"] = {"type": "json_schema",
                                       "schema": schema_json(out.strict_schema, "anthropic",
                                                             _native_schema)}
        else:
            name = _answer_tool(request)
            tools.append({
                "name": name,
                "description": out.description or "Give the answer as this tool's input.",
                "input_schema": schema_json(out.schema),
            })
            choice = _answer_choice(request, name, thinking is not None)
    if plain is None:
        if _caching(request, tools, system, messages):
            betas.add(_HOUR_CACHE_BETA)
        system_value = _collapse(system, messages)
    else:  # only the tools can carry breakpoints
        if tools and _caching(request, tools, [], []):
            betas.add(_HOUR_CACHE_BETA)
        system_value = system_text
    body: dict[str, Any] = {"model": request.model}
    if system_value is not None:
        body["system"] = system_value
    body["messages"] = messages
    body.update(fields)
    if tools:
        body["tools"] = tools
        if choice is not None:
            body["tool_choice"] = choice
    if output_config:
        body["output_config"] = output_config
    if request.stream:
        body["stream"] = True
    if request.extra:
        body.update(request.extra)
    return body, betas


def _url(base: str) -> str:
    # models.dev rows for Anthropic-compatible services already end in /v1.
    base = base.rstrip("/")
    return join_url(base, "/messages" if base.endswith("/v1") else "/v1/messages")


def _thinking(effort: str | None, model: str, version: tuple[int, int] | None,
              max_tokens: int | None) -> tuple[dict[str, Any] | None, str | None, int]:
    """``(thinking, output effort, max_tokens)`` for ``reasoning_effort``.

    What the caller asked is sent whenever the API accepts it. What the API would
    refuse is adjusted with a warning naming both values when a close request
    exists (a level the model lacks, a budget below the minimum, a budget on a
    model that takes none); a request nothing can satisfy fails here.
    """
    budget = int(effort) if effort is not None and effort.isdigit() else None
    if effort is None or effort == "none" or budget == 0:
        return None, None, max_tokens if max_tokens is not None else DEFAULT_MAX_TOKENS
    if budget is None and effort not in _BUDGETS:
        raise InvalidParameterError(
            f"reasoning_effort {effort!r} is not understood for Anthropic: use 'none', "
            "'minimal', 'low', 'medium', 'high', 'xhigh', 'max' or a thinking budget in "
            "tokens such as '4096'."
        )
    if _adaptive(version) and (budget is None or not _takes_budget(version)):
        if budget is not None:
            level = "low" if budget <= 2048 else "medium" if budget <= 8192 else "high"
            _adjusted(f"reasoning_effort {effort!r} (a thinking budget)", repr(level),
                      f"{model} takes no thinking budget, only an effort level")
        else:
            level = _EFFORTS[effort]
            if level == "xhigh" and not _takes_xhigh(version):
                # Rounded down: "max" would spend without limit where "xhigh" was asked.
                level = "high"
                _adjusted("reasoning_effort 'xhigh'", "'high'",
                          f"{model} has no 'xhigh' effort level")
        return {"type": "adaptive"}, level, (
            max_tokens if max_tokens is not None else DEFAULT_MAX_TOKENS)
    if budget is not None:
        if budget < MIN_THINKING_BUDGET:
            _adjusted(f"thinking budget {budget}", str(MIN_THINKING_BUDGET),
                      "the smallest budget_tokens the API accepts")
            budget = MIN_THINKING_BUDGET
        if max_tokens is None:
            # Nothing capped the answer: give it the default room on top of the thinking.
            max_tokens = DEFAULT_MAX_TOKENS + budget
        elif budget >= max_tokens:
            raise InvalidParameterError(
                f"reasoning_effort {effort!r} asks for a thinking budget of {budget} tokens, "
                f"but max_tokens={max_tokens} counts the thinking too and the API needs the "
                f"budget below it: raise max_tokens above {budget} or ask for a smaller budget."
            )
        return {"type": "enabled", "budget_tokens": budget}, None, max_tokens
    budget = _BUDGETS[effort]
    if max_tokens is None:
        max_tokens = DEFAULT_MAX_TOKENS + budget
    elif max_tokens <= MIN_THINKING_BUDGET:
        raise InvalidParameterError(
            f"max_tokens={max_tokens} leaves no room for thinking: the API needs a thinking "
            f"budget of at least {MIN_THINKING_BUDGET} tokens below max_tokens. Raise "
            "max_tokens or set reasoning_effort='none'."
        )
    else:
        # A named level's budget is ours to fit: keep at least half of max_tokens (which
        # counts thinking, like OpenAI's reasoning tokens) for the answer.
        budget = max(min(budget, max_tokens // 2), MIN_THINKING_BUDGET)
    return {"type": "enabled", "budget_tokens": budget}, None, max_tokens


def _adjusted(what: str, sent: str, why: str) -> None:
    # stacklevel: past _thinking, build_request and the model's call, to the caller's line.
    warnings.warn(f"Anthropic: {what} was sent as {sent}: {why}.", UserWarning, stacklevel=5)


def _tool(tool: Any, native: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"name": tool.name}
    if tool.description is not None:
        out["description"] = tool.description
    out["input_schema"] = (tool.parameters if tool.parameters is not None
                           else {"type": "object", "properties": {}})
    if tool.strict and native:
        out["strict"] = True  # strict tools exist only where structured outputs do
    if tool.cache is not None:
        _mark(out, tool.cache)
    return out


def _tool_choice(request: ChatRequest) -> dict[str, Any] | None:
    choice = request.tool_choice
    wire: dict[str, Any] | None = None
    if choice is not None:
        if choice.mode == "tool":
            wire = {"type": "tool", "name": choice.name}
        else:
            wire = {"type": {"auto": "auto", "required": "any", "none": "none"}[choice.mode]}
    if request.parallel_tool_calls is False and request.tools and (
            wire is None or wire["type"] != "none"):
        wire = wire or {"type": "auto"}
        wire["disable_parallel_tool_use"] = True
    return wire


def _called_tools(request: ChatRequest) -> list[str]:
    """Names of the tools the conversation's assistant turns called, first call first."""
    names: dict[str, None] = {}
    for message in request.messages:
        for call in message.tool_calls:
            names[call.name] = None
    return list(names)


def _answer_tool(request: ChatRequest) -> str:
    """The forced tool's name: the schema's name, kept apart from the caller's tools."""
    assert request.output is not None
    return unique_tool_name(request.output.name, request)


def _answer_choice(request: ChatRequest, name: str, thinking: bool) -> dict[str, Any]:
    if thinking:
        # Forcing a tool is refused while extended thinking is on; the tool stays offered.
        return {"type": "auto"}
    choice = request.tool_choice
    if not request.tools or choice is None or choice.mode == "none":
        return {"type": "tool", "name": name}
    if choice.mode == "tool":
        return {"type": "tool", "name": choice.name}
    return {"type": "any"}  # one of the caller's tools, or the answer


# What output_config.format rejects ("JSON Schema limitations"); the decoder validates
# these client-side anyway, and the constraints are written into the description.
_CONSTRAINTS = frozenset({"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum",
                          "multipleOf", "minLength", "maxLength", "maxItems", "uniqueItems",
                          "minProperties", "maxProperties"})
_UNSUPPORTED = _CONSTRAINTS | {"title", "default", "examples"}
_FORMATS = STRICT_FORMATS | {"uri"}


@per_schema
def _native_schema(schema: dict[str, Any]) -> dict[str, Any]:
    # Recursive schemas are not supported: references are expanded to a fixed depth.
    return prune_schema(inline_refs(schema), _native_keyword, _note_removed)


def _native_keyword(key: str, value: Any) -> bool:
    if key == "minItems":
        return isinstance(value, int) and value <= 1
    if key == "format":
        return value in _FORMATS
    return key not in _UNSUPPORTED


def _note_removed(node: dict[str, Any]) -> dict[str, Any]:
    removed = {k: v for k, v in node.items()
               if k in ("minItems", "format", *_CONSTRAINTS) and not _native_keyword(k, v)}
    if not removed:
        return node
    note = constraint_note(removed)
    text = node.get("description")
    return {**node, "description": f"{text}\n{note}" if isinstance(text, str) and text else note}


# ---------------------------------------------------------------- messages


def _conversation(request: ChatRequest
                  ) -> tuple[list[dict[str, Any]], list[dict[str, Any]], set[str]]:
    """``(system blocks, messages, beta features needed)``; :func:`_collapse` turns
    plain blocks into strings once the cache breakpoints are placed."""
    system: list[dict[str, Any]] = []
    turns: list[dict[str, Any]] = []
    betas: set[str] = set()
    for index, message in enumerate(request.messages):
        role = message.role
        if role == "system":
            blocks = [b for b in _blocks(message.content, index, betas) if b.get("text")]
            if message.cache is not None and blocks:
                _mark(blocks[-1], message.cache)
            system.extend(blocks)
            continue
        if role == "tool":
            wire_role = "user"
            blocks = [_tool_result(message, index, betas)]
        elif role == "user":
            wire_role = "user"
            blocks = _blocks(message.content, index, betas)
        else:
            wire_role = "assistant"
            blocks = _assistant_blocks(message, index)
            if not blocks:
                continue  # an empty assistant turn says nothing and the API rejects it
        if message.cache is not None:
            _mark_last(blocks, message.cache, index)
        if turns and turns[-1]["role"] == wire_role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": wire_role, "content": blocks})
    prefill = request.prefill
    if prefill is not None:
        # The API refuses a final assistant turn ending in whitespace; the decoders
        # drop the whitespace the continuation then starts with.
        text = prefill.rstrip()
        if text:
            block = {"type": "text", "text": text}
            if turns and turns[-1]["role"] == "assistant":
                turns[-1]["content"].append(block)
            else:
                turns.append({"role": "assistant", "content": [block]})
    return system, turns, betas


def _plain_conversation(messages: tuple[Message, ...]
                        ) -> tuple[str | None, list[dict[str, Any]]] | None:
    """``(system text, turns)`` of a conversation of plain text turns (most calls), built
    as strings straight away: what :func:`_conversation` then :func:`_collapse` make of
    it. ``None`` when a turn needs blocks: parts, tool calls or results, reasoning, a
    cache breakpoint, or two turns of one role in a row (they merge into blocks)."""
    system: list[str] = []
    turns: list[dict[str, Any]] = []
    last = None
    for message in messages:
        content = message.content
        if (type(content) is not str or message.cache is not None or message.tool_calls
                or message.reasoning):
            return None
        role = message.role
        if role == "system":
            if content:
                system.append(content)
            continue
        if role == "assistant":
            if not content:
                continue  # an empty assistant turn says nothing and the API rejects it
        elif role != "user":
            return None
        if role == last:
            return None
        turns.append({"role": role, "content": content})
        last = role
    return ("\n\n".join(system) if system else None), turns


_PLAIN = frozenset(("type", "text"))  # the keys of a plain text block


def _collapse(system: list[dict[str, Any]], turns: list[dict[str, Any]]
              ) -> str | list[dict[str, Any]] | None:
    """Plain text as strings (the shortest body): a turn of one plain text block, and a
    system prompt of plain text blocks. Returns the ``system`` value."""
    for turn in turns:
        content = turn["content"]
        if len(content) == 1 and content[0].keys() == _PLAIN and content[0]["type"] == "text":
            turn["content"] = content[0]["text"]
    if not system:
        return None
    if all(b.keys() == _PLAIN for b in system):
        return "\n\n".join(b["text"] for b in system)
    return system


# ---------------------------------------------------------------- prompt caching


def _mark(block: dict[str, Any], hint: CacheHint) -> None:
    control: dict[str, Any] = {"type": "ephemeral"}
    if hint.ttl != "5m":  # the default is left out, for servers that predate ttl
        control["ttl"] = hint.ttl
    block["cache_control"] = control


def _mark_last(blocks: list[dict[str, Any]], hint: CacheHint, index: int) -> None:
    """A message's breakpoint goes on its last block that can carry one."""
    for block in reversed(blocks):
        if block["type"] not in ("thinking", "redacted_thinking"):
            _mark(block, hint)
            return
    raise MessageFormatError(f"messages[{index}] has a cache breakpoint but no block that "
                             "can carry one (thinking blocks cannot)")


def _caching(request: ChatRequest, tools: list[dict[str, Any]], system: list[dict[str, Any]],
             turns: list[dict[str, Any]]) -> bool:
    """Place the automatic breakpoints and check them all; True when one lasts an hour.

    The prompt is read tools → system → messages; the API takes at most
    MAX_CACHE_BREAKPOINTS, and a 1-hour breakpoint may not follow a 5-minute one.
    """
    blocks = tools + system
    for turn in turns:
        blocks += turn["content"]
    marked = [b for b in blocks if "cache_control" in b]
    policy = request.cache
    if not marked and (policy is None or not policy.auto):
        return False  # no breakpoint, none to place
    if policy is not None and policy.auto:
        hint = CacheHint(policy.ttl)
        wanted = []
        if tools and not any("cache_control" in t for t in tools):
            wanted.append(tools[-1])
        if system and not any("cache_control" in b for b in system):
            wanted.append(system[-1])
        if len(turns) > 1:  # history: cache the conversation so far for the next turn
            last = [b for b in turns[-1]["content"]
                    if b["type"] not in ("thinking", "redacted_thinking")]
            if last and "cache_control" not in last[-1]:
                wanted.append(last[-1])
        for block in wanted:
            if len(marked) >= MAX_CACHE_BREAKPOINTS:
                break
            if hint.ttl == "1h" and any(_ttl(b) == "5m" for b in blocks[:blocks.index(block)]
                                        if "cache_control" in b):
                continue
            _mark(block, hint)
            marked.append(block)
    if len(marked) > MAX_CACHE_BREAKPOINTS:
        raise InvalidParameterError(
            f"The request marks {len(marked)} prompt-cache breakpoints; Anthropic takes at "
            f"most {MAX_CACHE_BREAKPOINTS} (cache_control on tools, system prompt and "
            "messages). Keep the ones before the longest stable parts."
        )
    seen_short = False
    for block in blocks:
        ttl = _ttl(block)
        if ttl == "5m":
            seen_short = True
        elif ttl == "1h" and seen_short:
            raise InvalidParameterError(
                "A 1-hour prompt-cache breakpoint follows a 5-minute one; Anthropic needs "
                "the longer ones first (the prompt reads tools, system prompt, messages)."
            )
    return any(_ttl(b) == "1h" for b in blocks)


def _ttl(block: dict[str, Any]) -> str | None:
    control = block.get("cache_control")
    return None if control is None else control.get("ttl", "5m")


def _blocks(content: str | tuple[Part, ...] | None, index: int, betas: set[str]
            ) -> list[dict[str, Any]]:
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    return [_part(p, index, betas) for p in content]


def _part(part: Part, index: int, betas: set[str]) -> dict[str, Any]:
    block = _part_block(part, index, betas)
    cache = getattr(part, "cache", None)
    if cache is not None:
        _mark(block, cache)
    return block


def _part_block(part: Part, index: int, betas: set[str]) -> dict[str, Any]:
    if isinstance(part, TextPart):
        return {"type": "text", "text": part.text}
    if isinstance(part, ImagePart):
        return {"type": "image", "source": _source(part.url, index)}
    if isinstance(part, FilePart):
        return _document(part, index, betas)
    assert isinstance(part, AudioPart)
    raise CapabilityError(
        f"messages[{index}] holds audio, and Anthropic's Messages API takes no audio input; "
        "transcribe it first or use a provider with audio input (openai, google)."
    )


def _source(url: str, index: int) -> dict[str, Any]:
    data = split_data_url(url)
    if data is not None:
        return {"type": "base64", "media_type": data[0], "data": data[1]}
    if is_http_url(url):
        return {"type": "url", "url": url}
    raise MessageFormatError(
        f"messages[{index}] has media at {url[:40]!r}: give an https:// URL or a "
        "data:<type>;base64,... URL"
    )


def _document(part: FilePart, index: int, betas: set[str]) -> dict[str, Any]:
    media = part.media_type
    block: dict[str, Any]
    if part.file_id is not None:
        betas.add(_FILES_BETA)
        kind = "image" if (media or "").startswith("image/") else "document"
        block = {"type": kind, "source": {"type": "file", "file_id": part.file_id}}
    elif part.data is not None:
        data = split_data_url(part.data)
        media, payload = data if data is not None else (
            media or guess_media_type(part.filename, "application/pdf"), part.data)
        if media.startswith("image/"):
            return {"type": "image",
                    "source": {"type": "base64", "media_type": media, "data": payload}}
        if media == "text/plain":
            import base64  # plain text documents travel as text, not base64

            text = base64.b64decode(payload).decode("utf-8", "replace")
            block = {"type": "document",
                     "source": {"type": "text", "media_type": "text/plain", "data": text}}
        else:
            block = {"type": "document",
                     "source": {"type": "base64", "media_type": media, "data": payload}}
    elif part.url is not None:
        if (media or guess_media_type(part.url, "")).startswith("image/"):
            return {"type": "image", "source": _source(part.url, index)}
        block = {"type": "document", "source": _source(part.url, index)}
    else:
        raise MessageFormatError(f"messages[{index}] has a file part with no data, url or id")
    if part.filename:
        block["title"] = part.filename
    return block


def _tool_result(message: Message, index: int, betas: set[str]) -> dict[str, Any]:
    block: dict[str, Any] = {"type": "tool_result", "tool_use_id": message.tool_call_id}
    content = message.content
    if isinstance(content, str):
        if content:
            block["content"] = content
    elif content:
        block["content"] = [_part(p, index, betas) for p in content]
    return block


def _assistant_blocks(message: Message, index: int) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    for r in message.reasoning:
        if r.id is not None:
            continue  # an OpenAI Responses reasoning item: encrypted for OpenAI only
        if r.redacted is not None:
            blocks.append({"type": "redacted_thinking", "data": r.redacted})
        elif r.signature:
            blocks.append({"type": "thinking", "thinking": r.text, "signature": r.signature})
    content = message.content
    if isinstance(content, str):
        if content:
            blocks.append({"type": "text", "text": content})
    elif content:
        blocks.extend({"type": "text", "text": p.text} for p in content
                      if isinstance(p, TextPart) and p.text)
    for call in message.tool_calls:
        blocks.append({"type": "tool_use", "id": call.id, "name": call.name,
                       "input": msgspec.Raw(_object_json(call, index))})
    return blocks


def _object_json(call: ToolCall, index: int) -> bytes:
    """The call's arguments as JSON object bytes (``tool_use.input`` must be an object)."""
    raw = call.arguments.strip().encode() or b"{}"
    try:
        value = msgspec.json.decode(raw)
    except msgspec.DecodeError:
        value = None
    if not isinstance(value, dict):
        raise MessageFormatError(
            f"messages[{index}]: the arguments of tool call {call.name!r} are not a JSON "
            f"object ({call.arguments[:100]!r}); Anthropic needs an object as tool input"
        )
    return raw


# ---------------------------------------------------------------- wire structs


class _Block(msgspec.Struct, gc=False):
    type: str = ""
    text: str | None = None
    thinking: str | None = None
    signature: str | None = None
    data: str | None = None
    id: str | None = None
    name: str | None = None
    input: msgspec.Raw = msgspec.Raw()  # tool input kept as the JSON text the model wrote


class _CacheCreation(msgspec.Struct, gc=False):
    ephemeral_5m_input_tokens: int | None = None
    ephemeral_1h_input_tokens: int | None = None


class _Usage(msgspec.Struct, gc=False):
    input_tokens: int | None = None
    output_tokens: int | None = None
    cache_creation_input_tokens: int | None = None
    cache_read_input_tokens: int | None = None
    cache_creation: _CacheCreation | None = None  # the writes by TTL


class _Count(msgspec.Struct, gc=False):
    input_tokens: int | None = None


class _Error(msgspec.Struct, gc=False):
    type: str | None = None
    message: str | None = None
    code: int | str | None = None  # OpenAI-style errors from compatible servers


class _Message(msgspec.Struct, gc=False):
    type: str | None = None
    id: str | None = None
    model: str | None = None
    content: list[_Block] | None = None
    stop_reason: str | None = None
    usage: _Usage | None = None
    error: _Error | str | None = None


class _EventDelta(msgspec.Struct, gc=False):
    type: str | None = None
    text: str | None = None
    thinking: str | None = None
    signature: str | None = None
    partial_json: str | None = None
    stop_reason: str | None = None


class _Event(msgspec.Struct, gc=False):
    type: str = ""
    index: int = 0
    message: _Message | None = None
    content_block: _Block | None = None
    delta: _EventDelta | None = None
    usage: _Usage | None = None
    error: _Error | str | None = None


_message_decoder = msgspec.json.Decoder(_Message)
_event_decoder = msgspec.json.Decoder(_Event)
_event_decode = _event_decoder.decode
_count_decoder = msgspec.json.Decoder(_Count)

_FINISH = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "refusal",
}


def _finish(reason: str | None) -> str | None:
    return _FINISH.get(reason, reason) if reason is not None else None


def _refusal(reason: str | None, provider: str) -> str | None:
    """The refusal's text: Anthropic only says, by its stop reason, that the model
    refused (any text written before stays the answer's text)."""
    if reason != "refusal":
        return None
    return f"{provider} refused to continue this answer (stop_reason 'refusal')."


_COUNTS = attrgetter("input_tokens", "output_tokens", "cache_read_input_tokens",
                     "cache_creation_input_tokens", "cache_creation")


def _usage(start: _Usage | None, end: _Usage | None = None) -> Usage:
    """Anthropic's ``input_tokens`` excludes cache reads and writes: add them back.

    A stream's counts are its ``message_delta``'s (``end``), each one missing there
    taken from its ``message_start``'s (``start``).
    """
    if end is None:
        counts = _COUNTS(start) if start is not None else (None,) * 5
    elif start is None:
        counts = _COUNTS(end)
    else:
        counts = tuple(s if e is None else e for e, s in zip(_COUNTS(end), _COUNTS(start),
                                                              strict=True))
    given, completion, read, write, by_ttl = counts
    prompt = (given or 0) + (read or 0) + (write or 0)
    completion = completion or 0
    hour = by_ttl.ephemeral_1h_input_tokens if by_ttl is not None else None
    return Usage(prompt_tokens=prompt, completion_tokens=completion,
                 total_tokens=prompt + completion, cached_tokens=read, cache_write_tokens=write,
                 cache_write_1h_tokens=hour or None)


def _lead_whitespace(request: ChatRequest | None) -> bool:
    """Was whitespace cut off the prefill (so the continuation's leading one is dropped)?"""
    prefill = request.prefill if request is not None else None
    return bool(prefill) and prefill != prefill.rstrip()  # type: ignore[union-attr]


def _answer_name(request: ChatRequest | None) -> str | None:
    """The forced tool carrying a structured answer, when the request used one: in tool
    mode, and in json_schema mode on models without a native format."""
    out = request.output if request is not None else None
    if out is None or out.mode == "json_object" or (
            out.mode == "json_schema" and _native_output(claude_version(request.model))):
        return None
    return _answer_tool(request)


# ---------------------------------------------------------------- response


def parse_response(body: bytes, request: ChatRequest | None = None, provider: str = "anthropic"
                   ) -> Completion:
    wire = decode_wire(_message_decoder, body,
                       "returned a body that is not a Messages response", provider)
    if wire.error is not None or wire.type == "error":
        raise _in_band_error(wire.error, provider, body)
    if wire.content is None:
        raise ResponseError(f"{provider} returned a message without content",
                            raw=body[:2000].decode("utf-8", "replace"))
    answer_name = _answer_name(request)
    texts: list[str] = []
    thoughts: list[str] = []
    blocks: list[ReasoningBlock] = []
    calls: list[ToolCall] = []
    answer: str | None = None
    for block in wire.content:
        kind = block.type
        if kind == "text":
            if block.text:
                texts.append(block.text)
        elif kind == "thinking":
            thoughts.append(block.thinking or "")
            blocks.append(ReasoningBlock(block.thinking or "", block.signature))
        elif kind == "redacted_thinking":
            blocks.append(ReasoningBlock(redacted=block.data or ""))
        elif kind == "tool_use":
            arguments = bytes(block.input).decode() or "{}"
            if block.name == answer_name:
                answer = arguments
            else:
                calls.append(ToolCall(block.id or f"toolu_{len(calls)}", block.name or "",
                                      arguments))
    text = "".join(texts)
    if _lead_whitespace(request):
        text = text.lstrip()
    finish = _finish(wire.stop_reason)
    if answer is not None:
        text = answer
        if finish == "tool_calls" and not calls:
            finish = "stop"  # the forced answer tool is the answer, not a call to make
    reasoning = "".join(thoughts) if thoughts else None
    return Completion(
        text=text,
        refusal=_refusal(wire.stop_reason, provider),
        reasoning=reasoning,
        reasoning_blocks=tuple(blocks),
        tool_calls=tuple(calls),
        finish_reason=finish,
        native_finish_reason=wire.stop_reason,
        usage=_usage(wire.usage) if wire.usage is not None else None,
        model=wire.model,
        id=wire.id,
    )


# ---------------------------------------------------------------- stream


class StreamDecoder:
    """Messages stream events → Deltas. ``message_stop`` ends the stream.

    Content blocks are numbered across text, thinking and tool use; tool calls
    are renumbered 0, 1, … in the order they start. The forced answer tool of a
    structured request streams its input as text.
    """

    __slots__ = ("_answer_index", "_answer_name", "_calls", "_lead", "_malformed", "_start",
                 "done", "provider")

    has_end_marker = True

    def __init__(self, request: ChatRequest | None = None, provider: str = "anthropic") -> None:
        self.done = False
        self.provider = provider
        self._malformed = f"{provider} sent a stream event that is not valid JSON"
        self._calls: dict[int, int] = {}  # content block index → tool call index
        self._answer_name = _answer_name(request)
        self._answer_index = -1
        self._lead = _lead_whitespace(request)
        self._start: _Usage | None = None

    def feed(self, event: SSEEvent) -> Delta | str | ToolCallDelta | None:
        data = event.data
        try:
            ev = _event_decode(data)
        except (msgspec.DecodeError, UnicodeDecodeError):
            ev = decode_wire(_event_decoder, data, self._malformed)  # raises, typed
        kind = ev.type
        if kind == "content_block_delta":
            d = ev.delta
            if d is None:
                return None
            dk = d.type
            if dk == "text_delta":
                text = d.text
                if text and not self._lead:
                    return text  # the bulk of a stream: no frame for _text
                return self._text(text)
            if dk == "input_json_delta":
                if not d.partial_json:
                    return None
                if ev.index == self._answer_index:
                    return d.partial_json
                slot = self._calls.get(ev.index)
                if slot is None:
                    return None
                return ToolCallDelta(slot, arguments=d.partial_json)  # stands for a Delta
            if dk == "thinking_delta":
                return Delta(reasoning=d.thinking) if d.thinking else None
            if dk == "signature_delta":
                return Delta(reasoning_signature=d.signature or "")
            return None  # citations and future delta kinds carry no text
        if kind == "content_block_start":
            return self._block_start(ev.index, ev.content_block)
        if kind == "message_delta":
            reason = ev.delta.stop_reason if ev.delta is not None else None
            finish = _finish(reason)
            if finish == "tool_calls" and not self._calls and self._answer_index >= 0:
                finish = "stop"
            return Delta(refusal=_refusal(reason, self.provider), finish_reason=finish,
                         native_finish_reason=reason, usage=_usage(self._start, ev.usage))
        if kind == "message_start":
            message = ev.message
            if message is None:
                return None
            self._start = message.usage
            # The prompt's usage is known now: a stream that breaks later was billed for it.
            usage = _usage(message.usage) if message.usage is not None else None
            return Delta(model=message.model, id=message.id, usage=usage)
        if kind == "message_stop":
            self.done = True
            return Delta(done=True)
        if kind == "error" or ev.error is not None:
            raise _in_band_error(ev.error, self.provider, data)
        return None  # ping, content_block_stop, and event types added later

    def _text(self, text: str | None) -> str | None:
        """Text only: the plain ``str`` (the assembler's fast path)."""
        if not text:
            return None
        if self._lead:
            text = text.lstrip()
            if not text:
                return None
            self._lead = False
        return text

    def _block_start(self, index: int, block: _Block | None) -> Delta | None:
        if block is None:
            return None
        kind = block.type
        if kind == "text":
            return self._text(block.text)
        if kind == "tool_use":
            # Input normally streams as input_json_delta after an empty {} here;
            # a server that sends it whole up front is honoured too.
            raw = bytes(block.input)
            arguments = raw.decode() if raw.strip() not in (b"", b"{}") else None
            if block.name is not None and block.name == self._answer_name:
                self._answer_index = index
                return Delta(text=arguments) if arguments else None
            slot = self._calls[index] = len(self._calls)
            return Delta(tool_calls=(ToolCallDelta(slot, id=block.id, name=block.name,
                                                   arguments=arguments),))
        if kind == "thinking":
            return Delta(reasoning=block.thinking) if block.thinking else None
        if kind == "redacted_thinking":
            return Delta(reasoning_block=ReasoningBlock(redacted=block.data or ""))
        return None


def stream_decoder(request: ChatRequest | None = None, provider: str = "anthropic"
                   ) -> StreamDecoder:
    return StreamDecoder(request, provider)


# ---------------------------------------------------------------- errors


def parse_error(status: int, headers: list[tuple[str, str]], body: bytes, provider: str,
                retry_after: float | None = None) -> ProviderError:
    """``{"type": "error", "error": {"type": "overloaded_error", "message": …}}`` → typed error.

    OpenAI-shaped bodies (compatible servers) are read too.
    """
    return http_error(status, headers, body, provider, retry_after)


def _in_band_error(error: _Error | str | None, provider: str, raw: bytes) -> ProviderError:
    text = raw.decode("utf-8", "replace")[:4000]
    if not isinstance(error, _Error):
        return error_from_status(None, error or "error", provider=provider, body=text)
    status = error.code if isinstance(error.code, int) else None
    return error_from_status(
        status,
        error.message or error.type or "error",
        provider=provider,
        code=str(error.code) if error.code is not None else None,
        error_type=error.type,
        body=text,
    )
