"""Caller input → neutral :class:`~msgflux.models.request.Message` values.

Accepts a string, a list of ChatML dicts (OpenAI message shape, which is also
what ``ChatBlock`` builds and what ``ToolCallAggregator.get_messages()``
returns) or neutral Messages. Anything else fails here, before the network,
with the position and the expected shape. The caller's objects are only read.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec

from msgflux.exceptions import MessageFormatError
from msgflux.models.dialects._media import is_http_url
from msgflux.models.request import (
    AudioPart,
    CacheHint,
    FilePart,
    ImagePart,
    Message,
    Part,
    ReasoningBlock,
    TextPart,
    ToolCall,
)

__all__ = ["cache_hint", "to_messages"]

_ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant",
          "tool": "tool"}
_encode = msgspec.json.Encoder().encode


def to_messages(messages: Any, system_prompt: str | None = None) -> tuple[Message, ...]:
    """Normalise ``messages`` and put ``system_prompt`` first.

    When the messages already open with a system message, ``system_prompt``
    is joined to it (prompt first) rather than adding a second one.
    """
    if isinstance(messages, str):
        out = [Message("user", messages)]
    elif isinstance(messages, dict):
        out = [_message(messages, 0)]
    elif isinstance(messages, Sequence) and not isinstance(messages, (bytes, bytearray)):
        out = [
            m if isinstance(m, Message) else _message(m, i) for i, m in enumerate(messages)
        ]
    else:
        raise MessageFormatError(
            f"messages must be a str or a list of message dicts, got {type(messages).__name__}. "
            'Example: [{"role": "user", "content": "Hello"}]'
        )
    if system_prompt is not None:
        if not isinstance(system_prompt, str):
            raise MessageFormatError(
                f"system_prompt must be a str, got {type(system_prompt).__name__}"
            )
        if out and out[0].role == "system" and isinstance(out[0].content, str):
            out[0] = Message("system", f"{system_prompt}\n\n{out[0].content}",
                             cache=out[0].cache)
        else:
            out.insert(0, Message("system", system_prompt))
    if not out:
        raise MessageFormatError("messages is empty: give at least one user message")
    return tuple(out)


def _message(raw: Any, index: int) -> Message:
    if not isinstance(raw, dict):
        raise MessageFormatError(
            f"messages[{index}] must be a dict like {{'role': 'user', 'content': '...'}}, "
            f"got {type(raw).__name__}"
        )
    role_value = raw.get("role")
    role = _ROLES.get(role_value) if isinstance(role_value, str) else None
    if role is None:
        raise MessageFormatError(
            f"messages[{index}] has role {raw.get('role')!r}; "
            "use 'system', 'user', 'assistant' or 'tool'"
        )
    content = raw.get("content")
    if content is not None and not isinstance(content, str):
        content = _parts(content, index)
    tool_calls = raw.get("tool_calls")
    if tool_calls and not isinstance(tool_calls, (list, tuple)):
        raise MessageFormatError(f"messages[{index}].tool_calls must be a list of tool calls")
    calls = tuple(_tool_call(c, index) for c in tool_calls) if tool_calls else ()
    if role == "tool":
        call_id = raw.get("tool_call_id")
        if not isinstance(call_id, str):
            raise MessageFormatError(f"messages[{index}] is a tool message without tool_call_id")
        name = raw.get("name")
        return Message("tool", content if content is not None else "", tool_call_id=call_id,
                       name=name if isinstance(name, str) else None,
                       cache=_hint(raw, f"messages[{index}]"))
    if content is None and not calls and role != "assistant":
        raise MessageFormatError(f"messages[{index}] ({role}) has no content")
    blocks = raw.get("thinking_blocks")
    if blocks and not isinstance(blocks, (list, tuple)):
        raise MessageFormatError(f"messages[{index}].thinking_blocks must be a list")
    name = raw.get("name")
    return Message(
        role,  # type: ignore[arg-type]
        content,
        tool_calls=calls,
        name=name if isinstance(name, str) else None,
        reasoning=tuple(_block(b, index) for b in blocks) if blocks else (),
        cache=_hint(raw, f"messages[{index}]"),
    )


def _parts(content: Any, index: int) -> tuple[Part, ...]:
    if isinstance(content, dict):
        content = [content]
    if not isinstance(content, (list, tuple)):
        raise MessageFormatError(
            f"messages[{index}].content must be a str or a list of content parts, "
            f"got {type(content).__name__}"
        )
    return tuple(_part(p, index) for p in content)


def _part(raw: Any, index: int) -> Part:
    if isinstance(raw, str):
        return TextPart(raw)
    if isinstance(raw, (TextPart, ImagePart, AudioPart, FilePart)):
        return raw
    if not isinstance(raw, dict):
        raise MessageFormatError(f"messages[{index}] has a content part of type "
                                 f"{type(raw).__name__}; parts are dicts with a 'type'")
    kind = raw.get("type")
    cache = _hint(raw, f"messages[{index}] content part")
    try:
        if kind == "text":
            return TextPart(str(raw["text"]), cache)
        if kind == "image_url":
            image = raw["image_url"]
            if isinstance(image, str):
                return ImagePart(image, cache=cache)
            return ImagePart(str(image["url"]), _opt_str(image.get("detail"), index, "detail"),
                             cache)
        if kind == "input_audio":
            audio = raw["input_audio"]
            return AudioPart(str(audio["data"]), str(audio["format"]))
        if kind == "file":
            file = raw["file"]
            data = _opt_str(file.get("file_data"), index, "file_data")
            url = _opt_str(file.get("url"), index, "url")
            if data is not None and url is None and is_http_url(data):
                url, data = data, None  # a link given as file_data is a link
            media = _media_type(file, index)
            if media is None and data is not None and data.startswith("data:"):
                media = data[5:data.find(";")] if ";" in data else None
            return FilePart(data=data,
                            file_id=_opt_str(file.get("file_id"), index, "file_id"),
                            url=url,
                            filename=_opt_str(file.get("filename"), index, "filename"),
                            media_type=media, cache=cache)
    except (KeyError, TypeError, AttributeError) as e:
        raise MessageFormatError(
            f"messages[{index}] has a malformed {kind!r} part (missing {e}); "
            "see ChatBlock for the expected shapes"
        ) from None
    raise MessageFormatError(
        f"messages[{index}] has a content part of type {kind!r}; supported: "
        "'text', 'image_url', 'input_audio', 'file'"
    )


def _media_type(file: dict[str, Any], index: int) -> str | None:
    """The caller's own media type of a file part (``media_type``, or ``mime_type``)."""
    value = file.get("media_type", file.get("mime_type"))
    if value is None:
        return None
    if not isinstance(value, str) or "/" not in value.strip("/"):
        raise MessageFormatError(
            f"messages[{index}]: a file's media_type must be a type such as 'video/mp4' or "
            f"'application/pdf', got {value!r}"
        )
    return value


def _tool_call(raw: Any, index: int) -> ToolCall:
    try:
        function = raw["function"]
        arguments = function.get("arguments")
        if arguments is None:
            arguments = "{}"
        elif not isinstance(arguments, str):
            arguments = _encode(arguments).decode()
        return ToolCall(str(raw["id"]), str(function["name"]), arguments,
                        _opt_str(raw.get("signature"), index, "signature"))
    except (KeyError, TypeError, AttributeError):
        raise MessageFormatError(
            f"messages[{index}] has a malformed tool call; expected "
            '{"id": ..., "type": "function", "function": {"name": ..., "arguments": "..."}}'
        ) from None


def _block(raw: Any, index: int) -> ReasoningBlock:
    if not isinstance(raw, dict):
        raise MessageFormatError(f"messages[{index}].thinking_blocks holds a non-dict")
    kind = raw.get("type")
    if kind == "redacted_thinking":
        return ReasoningBlock(redacted=str(raw.get("data", "")))
    if kind == "reasoning":
        return ReasoningBlock(str(raw.get("thinking", "")),
                              redacted=_opt_str(raw.get("encrypted_content"), index,
                                                "encrypted_content"),
                              id=_opt_str(raw.get("id"), index, "id"))
    return ReasoningBlock(str(raw.get("thinking", "")),
                          _opt_str(raw.get("signature"), index, "signature"))


def _opt_str(value: Any, index: int, what: str) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise MessageFormatError(
        f"messages[{index}]: {what} must be a str, got {type(value).__name__}"
    )


def _hint(raw: dict[str, Any], where: str) -> CacheHint | None:
    if "cache_control" not in raw and "cache" not in raw:
        return None
    return cache_hint(raw.get("cache_control", raw.get("cache")), where)


def cache_hint(value: Any, where: str) -> CacheHint | None:
    """A prompt-cache breakpoint as callers write it: ``cache_control={"type":
    "ephemeral", "ttl": "1h"}`` (Anthropic's and LiteLLM's spelling) or ``cache=True``
    / ``"5m"`` / ``"1h"``; ``None``/``False`` for none."""
    if value is None or value is False:
        return None
    if isinstance(value, CacheHint):
        return value
    ttl: Any = "5m"
    if isinstance(value, dict):
        ephemeral = value.get("type", "ephemeral") == "ephemeral"  # the one type there is
        ttl = value.get("ttl", "5m") if ephemeral else None
    elif value is not True:
        ttl = value
    if ttl not in ("5m", "1h"):
        raise MessageFormatError(
            f"{where}: a cache breakpoint is cache_control={{'type': 'ephemeral'}} (with "
            f"'ttl': '5m' or '1h'), or cache=True / '5m' / '1h'; got {value!r}"
        )
    return CacheHint(ttl)
