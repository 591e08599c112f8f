"""The Google Gemini dialect (Gemini API ``generateContent``).

Pure translations, like the openai dialect: ChatRequest → HttpRequest,
response bytes → Completion, one SSE event (``streamGenerateContent?alt=sse``)
→ Delta, error body → typed error.

How the neutral request maps onto ``generateContent``:

- system messages become ``systemInstruction``; assistant turns are ``model``
  contents; tool results are ``functionResponse`` parts in a user content
  (named after the call they answer, as Gemini matches results by name), and
  consecutive contents of one role are merged so parallel results travel together;
- tools are ``functionDeclarations`` with ``parametersJsonSchema``, and
  structured output is ``responseMimeType: application/json`` plus
  ``responseJsonSchema``: both take JSON Schema, pruned to the keywords Gemini
  documents;
- a function call's ``thoughtSignature`` rides on ``ToolCall.signature`` and is
  sent back on the same part, which Gemini 3 requires in a tool loop;
- ``reasoning_effort`` becomes ``thinkingConfig`` (a ``thinkingLevel`` on
  Gemini 3 and later, a ``thinkingBudget`` before), with thought summaries on;
- a prefill is a trailing ``model`` content, which Gemini continues;
- media become ``inlineData`` or ``fileData`` with the type the caller gave, or
  the one the data URL, the URL (YouTube links are video) or the file name
  names; a file whose type nothing names is refused before the call.

A safety block (a candidate's ``finishReason`` such as SAFETY, or the prompt's
``promptFeedback.blockReason`` with no candidates) is a refusal whose text names
the reason and the harm categories that blocked.

The stream has no end marker: it ends when the body does, after the chunk that
carries ``finishReason``.

Gemini caches repeated prompt prefixes implicitly; the cached part comes back as
``cachedContentTokenCount`` (``usage.cached_tokens``, priced at the cache-read
rate). ``count_tokens`` asks ``:countTokens`` for the prompt's exact size.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Generator
from typing import Any
from urllib.parse import quote

import msgspec

from msgflux._transport.types import HttpRequest, SSEEvent
from msgflux.exceptions import (
    InvalidParameterError,
    MessageFormatError,
    ProviderError,
    ResponseError,
)
from msgflux.models.dialects._media import (
    audio_media_type,
    guess_media_type,
    is_http_url,
    split_data_url,
)
from msgflux.models.dialects._schema import per_schema, prune_schema
from msgflux.models.dialects.base import (
    USER_AGENT,
    AnswerToolDecoder,
    Endpoint,
    answer_from_calls,
    answer_stream,
    decode_wire,
    derived,
    error_from_status,
    schema_json,
    with_answer_tool,
)
from msgflux.models.request import (
    AudioPart,
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

__all__ = [
    "API_VERSION",
    "REQUIRES_MAX_TOKENS",
    "StreamDecoder",
    "build_request",
    "count_tokens",
    "gemini_version",
    "parse_error",
    "parse_response",
    "stream_decoder",
]

API_VERSION = "v1beta"
"""The path version used unless ``Endpoint.api_version`` or the base URL names one
(``parametersJsonSchema`` and ``responseJsonSchema`` need ``v1beta``)."""

REQUIRES_MAX_TOKENS = False
"""``maxOutputTokens`` is optional: the model's own limit applies without it."""

# reasoning_effort → thinkingBudget (Gemini 2.5; 24576 is the Flash ceiling).
_BUDGETS = {"none": 0, "minimal": 512, "low": 1024, "medium": 8192, "high": 24576,
            "xhigh": 24576, "max": 24576}
# reasoning_effort → thinkingLevel (Gemini 3 and later).
_LEVELS = {"none": "minimal", "minimal": "minimal", "low": "low", "medium": "medium",
           "high": "high", "xhigh": "high", "max": "high"}

# Gemini 3 rejects an unsigned function call in the current tool loop; this value is
# Google's documented stand-in for calls that came from another model's history.
_SKIP_SIGNATURE = "skip_thought_signature_validator"

_encode = msgspec.json.Encoder().encode
_VERSIONED = re.compile(r"/v\d+(?:alpha\d*|beta\d*)?$")
_GEMINI = re.compile(r"gemini-(\d+)(?:\.(\d+))?")


@functools.lru_cache(maxsize=256)
def gemini_version(model: str) -> tuple[int, int] | None:
    """``(major, minor)`` of a Gemini model id (``gemini-2.5-flash`` → (2, 5)), else ``None``."""
    m = _GEMINI.search(model.lower())
    if m is None:
        return None
    return (int(m.group(1)), int(m.group(2) or 0))


# ---------------------------------------------------------------- request


def build_request(request: ChatRequest, endpoint: Endpoint) -> HttpRequest:
    stream = request.stream
    url, headers = derived(endpoint, (request.model, stream),
                           lambda: (_url(endpoint, request.model, stream),
                                    _headers(stream, endpoint)))
    return HttpRequest("POST", url, headers, _encode(_body(request)), stream)


def count_tokens(request: ChatRequest, endpoint: Endpoint
                 ) -> Generator[HttpRequest, bytes, int]:
    """The ``:countTokens`` exchange (see :class:`~.base.TokenCounter`): the whole
    request goes as ``generateContentRequest``, so the system instruction and the
    tools are counted too."""
    body = _body(request)
    body.pop("generationConfig", None)  # changes nothing about the prompt's size
    name = request.model if request.model.startswith(("models/", "tunedModels/")) \
        else f"models/{request.model}"
    url = _url(endpoint, request.model, False).replace(":generateContent", ":countTokens")
    answer = yield HttpRequest("POST", url, _headers(False, endpoint),
                               _encode({"generateContentRequest": {"model": name, **body}}))
    count = decode_wire(_count_decoder, answer,
                        f"{endpoint.provider} returned a token count that is not JSON")
    if count.total_tokens is None:
        raise ResponseError(f"{endpoint.provider} returned no totalTokens",
                            raw=answer[:2000].decode("utf-8", "replace"))
    return count.total_tokens


def _headers(stream: bool, endpoint: Endpoint) -> tuple[tuple[str, str], ...]:
    headers = [
        ("content-type", "application/json"),
        ("accept", "text/event-stream" if stream else "application/json"),
        ("user-agent", USER_AGENT),
    ]
    if endpoint.api_key:
        headers.append(("x-goog-api-key", endpoint.api_key))  # never in the URL
    headers.extend(endpoint.headers)
    return tuple(headers)


def _body(request: ChatRequest) -> dict[str, Any]:
    request = with_answer_tool(request, strict=False)  # (as it is unless tool mode)
    version = gemini_version(request.model)
    system, contents = _contents(request, version)
    body: dict[str, Any] = {"contents": contents}
    if system:
        body["systemInstruction"] = {"parts": system}
    if request.tools:
        body["tools"] = [{"functionDeclarations": [_declaration(t) for t in request.tools]}]
        if request.tool_choice is not None:
            body["toolConfig"] = {"functionCallingConfig": _calling_config(request)}
        # parallel_tool_calls: Gemini has no switch for it.
    config: dict[str, Any] = {}
    if request.temperature is not None:
        config["temperature"] = request.temperature
    if request.top_p is not None:
        config["topP"] = request.top_p
    if request.max_tokens is not None:
        config["maxOutputTokens"] = request.max_tokens
    if request.stop:
        config["stopSequences"] = list(request.stop)
    if request.seed is not None:
        config["seed"] = request.seed
    if request.output is not None:
        config["responseMimeType"] = "application/json"
        if request.output.mode == "json_schema":  # json_object: the schema is in the prompt
            config["responseJsonSchema"] = schema_json(request.output.schema, "google",
                                                       gemini_schema)
    if request.reasoning_effort is not None:
        config["thinkingConfig"] = _thinking(request.reasoning_effort, version)
    if config:
        body["generationConfig"] = config
    if request.extra:
        # One level deep, so extra_body={"generationConfig": {"topK": 5}} adds to ours.
        for key, value in request.extra.items():
            mine = body.get(key)
            body[key] = {**mine, **value} if isinstance(mine, dict) and isinstance(
                value, dict) else value
    return body


def _url(endpoint: Endpoint, model: str, stream: bool) -> str:
    base = endpoint.base_url.rstrip("/")
    if not _VERSIONED.search(base):
        base = f"{base}/{endpoint.api_version or API_VERSION}"
    name = model if model.startswith(("models/", "tunedModels/")) else f"models/{model}"
    method = ":streamGenerateContent?alt=sse" if stream else ":generateContent"
    return f"{base}/{quote(name, safe='/')}{method}"


def _thinking(effort: str, version: tuple[int, int] | None) -> dict[str, Any]:
    if version is not None and version >= (3, 0) and not effort.isdigit():
        level = _LEVELS.get(effort)
        if level is not None:
            return {"thinkingLevel": level, "includeThoughts": True}
    budget = int(effort) if effort.isdigit() else _BUDGETS.get(effort)
    if budget is None:
        raise InvalidParameterError(
            f"reasoning_effort {effort!r} is not understood for Gemini: use 'none', "
            "'minimal', 'low', 'medium', 'high' or a thinking budget in tokens such as '2048'."
        )
    if budget == 0:
        return {"thinkingBudget": 0}  # thought summaries exist only while thinking is on
    return {"thinkingBudget": budget, "includeThoughts": True}


def _declaration(tool: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"name": tool.name}
    if tool.description is not None:
        out["description"] = tool.description
    if tool.parameters is not None:
        out["parametersJsonSchema"] = gemini_schema(tool.parameters)
    return out


def _calling_config(request: ChatRequest) -> dict[str, Any]:
    choice = request.tool_choice
    assert choice is not None
    if choice.mode == "tool":
        return {"mode": "ANY", "allowedFunctionNames": [choice.name]}
    return {"mode": {"auto": "AUTO", "required": "ANY", "none": "NONE"}[choice.mode]}


# The JSON Schema keywords Gemini's responseJsonSchema documents; the rest are dropped
# (msgflux validates the answer against the full schema afterwards anyway).
_KEYWORDS = frozenset({
    "$id", "$defs", "$ref", "$anchor", "type", "format", "title", "description", "enum",
    "items", "prefixItems", "minItems", "maxItems", "minimum", "maximum", "anyOf", "oneOf",
    "properties", "additionalProperties", "required", "propertyOrdering",
})


def _respell(node: dict[str, Any]) -> dict[str, Any]:
    # Gemini has no ``const``; a one-value enum says the same.
    if "const" in node and "enum" not in node:
        node = {**node, "enum": [node["const"]]}
    # A tuple (``prefixItems``, which Gemini documents) closed by the boolean schema
    # ``items: false``, which its keyword list does not name: maxItems closes it too.
    if node.get("items") is False and "prefixItems" in node:
        node = {k: v for k, v in node.items() if k != "items"}
    return node


@per_schema
def gemini_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` pruned to the JSON Schema keywords the Gemini API accepts."""
    return prune_schema(schema, lambda key, _value: key in _KEYWORDS, _respell)


# ---------------------------------------------------------------- contents


def _contents(request: ChatRequest, version: tuple[int, int] | None
              ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``(systemInstruction parts, contents)``."""
    system: list[dict[str, Any]] = []
    contents: list[dict[str, Any]] = []
    names: dict[str, str] = {}  # tool call id → function name, for the results
    for index, message in enumerate(request.messages):
        role = message.role
        if role == "system":
            system.extend(p for p in _parts(message.content, index) if p.get("text"))
            continue
        if role == "assistant":
            wire_role = "model"
            parts = _model_parts(message, index, names, version)
            if not parts:
                continue  # an empty model turn says nothing and the API rejects it
        elif role == "tool":
            wire_role = "user"
            parts = [_function_response(message, index, names)]
        else:
            wire_role = "user"
            parts = _parts(message.content, index)
        if contents and contents[-1]["role"] == wire_role:
            contents[-1]["parts"].extend(parts)
        else:
            contents.append({"role": wire_role, "parts": parts})
    if request.prefill:
        part = {"text": request.prefill}
        if contents and contents[-1]["role"] == "model":
            contents[-1]["parts"].append(part)
        else:
            contents.append({"role": "model", "parts": [part]})
    return system, contents


def _parts(content: str | tuple[Part, ...] | None, index: int) -> list[dict[str, Any]]:
    if content is None:
        return []
    if isinstance(content, str):
        return [{"text": content}]
    return [_part(p, index) for p in content]


def _part(part: Part, index: int) -> dict[str, Any]:
    if isinstance(part, TextPart):
        return {"text": part.text}
    if isinstance(part, ImagePart):
        return _media(part.url, None, "image/jpeg", index)
    if isinstance(part, AudioPart):
        return {"inlineData": {"mimeType": audio_media_type(part.format), "data": part.data}}
    assert isinstance(part, FilePart)
    if part.data is not None:
        data = split_data_url(part.data)
        found, payload = data if data is not None else (None, part.data)  # bare base64
        return {"inlineData": {"mimeType": _file_type(part, found, "inline data", index),
                               "data": payload}}
    uri = part.url or part.file_id
    if uri is None:
        raise MessageFormatError(f"messages[{index}] has a file part with no data, url or id")
    return {"fileData": {"mimeType": _file_type(part, guess_media_type(uri, ""), uri, index),
                         "fileUri": uri}}


def _file_type(part: FilePart, found: str | None, where: str, index: int) -> str:
    """The caller's media type, else the one the data URL or URL names, else the file name's.

    Gemini needs the real type (a video sent as a PDF is refused or misread), so
    a file whose type nothing names is an error here, not a guess.
    """
    for media in (part.media_type, found, guess_media_type(part.filename, "")):
        if media and media != "application/octet-stream":
            return media
    shown = where.split("?", 1)[0][:60]  # a signed URL's query is nobody's business
    raise MessageFormatError(
        f"messages[{index}] has a file ({shown}) whose media type cannot be told from its "
        "URL, data or file name; give it as media_type, e.g. {'type': 'file', 'file': "
        "{'url': ..., 'media_type': 'video/mp4'}} or ChatBlock.file(url, "
        "media_type='video/mp4')"
    )


def _media(url: str, media_type: str | None, default: str, index: int) -> dict[str, Any]:
    data = split_data_url(url)
    if data is not None:
        return {"inlineData": {"mimeType": data[0], "data": data[1]}}
    if is_http_url(url):
        return {"fileData": {"mimeType": media_type or guess_media_type(url, default),
                             "fileUri": url}}
    raise MessageFormatError(
        f"messages[{index}] has media at {url[:40]!r}: give an https:// URL or a "
        "data:<type>;base64,... URL"
    )


def _model_parts(message: Message, index: int, names: dict[str, str],
                 version: tuple[int, int] | None) -> list[dict[str, Any]]:
    # Thought summaries are not sent back: Gemini keeps its reasoning context in the
    # signatures, which travel on the parts they came with.
    parts: list[dict[str, Any]] = []
    content = message.content
    if isinstance(content, str):
        if content:
            parts.append({"text": content})
    elif content:
        parts.extend({"text": p.text} for p in content if isinstance(p, TextPart) and p.text)
    calls = message.tool_calls
    unsigned = version is not None and version >= (3, 0) and not any(c.signature for c in calls)
    for i, call in enumerate(calls):
        names[call.id] = call.name
        part: dict[str, Any] = {"functionCall": {"id": call.id, "name": call.name,
                                                 "args": msgspec.Raw(_object_json(call, index))}}
        signature = call.signature or (_SKIP_SIGNATURE if unsigned and i == 0 else None)
        if signature:
            part["thoughtSignature"] = signature
        parts.append(part)
    return parts


def _object_json(call: ToolCall, index: int) -> bytes:
    """The call's arguments as JSON object bytes (``functionCall.args`` is an object)."""
    raw = call.arguments.strip().encode() or b"{}"
    try:
        value = msgspec.json.decode(raw)
    except msgspec.DecodeError:
        value = None
    if not isinstance(value, dict):
        raise MessageFormatError(
            f"messages[{index}]: the arguments of tool call {call.name!r} are not a JSON "
            f"object ({call.arguments[:100]!r}); Gemini needs an object as function args"
        )
    return raw


def _function_response(message: Message, index: int, names: dict[str, str]) -> dict[str, Any]:
    call_id = message.tool_call_id or ""
    name = names.get(call_id) or message.name
    if not name:
        raise MessageFormatError(
            f"messages[{index}] is a tool result for call {call_id!r}, which no earlier "
            "assistant message made; Gemini needs the function's name (keep the assistant "
            "turn from get_messages(), or set 'name' on the tool message)"
        )
    content = message.content
    if not isinstance(content, str):
        content = "".join(p.text for p in content or () if isinstance(p, TextPart))
    # ``response`` must be an object: a JSON object result goes as is, anything else
    # under "output", the key Gemini documents for a function's output.
    response: Any = None
    if content.startswith("{"):
        try:
            response = msgspec.json.decode(content)
        except msgspec.DecodeError:
            response = None
    if not isinstance(response, dict):
        response = {"output": content}
    return {"functionResponse": {"id": call_id, "name": name, "response": response}}


# ---------------------------------------------------------------- wire structs


class _FunctionCall(msgspec.Struct, gc=False):
    name: str | None = None
    args: msgspec.Raw = msgspec.Raw()  # kept as the JSON text the model wrote
    id: str | None = None


class _Part(msgspec.Struct, gc=False, rename="camel"):
    text: str | None = None
    thought: bool = False
    thought_signature: str | None = None
    function_call: _FunctionCall | None = None


class _Content(msgspec.Struct, gc=False):
    parts: list[_Part] | None = None
    role: str | None = None


class _Candidate(msgspec.Struct, gc=False, rename="camel"):
    content: _Content | None = None
    finish_reason: str | None = None
    finish_message: str | None = None
    safety_ratings: msgspec.Raw = msgspec.Raw()  # read only when the answer was blocked


class _UsageMetadata(msgspec.Struct, gc=False, rename="camel"):
    prompt_token_count: int | None = None
    candidates_token_count: int | None = None
    total_token_count: int | None = None
    thoughts_token_count: int | None = None
    cached_content_token_count: int | None = None
    tool_use_prompt_token_count: int | None = None


class _PromptFeedback(msgspec.Struct, gc=False, rename="camel"):
    block_reason: str | None = None
    block_reason_message: str | None = None
    safety_ratings: msgspec.Raw = msgspec.Raw()


class _SafetyRating(msgspec.Struct, gc=False):
    category: str | None = None
    probability: str | None = None
    blocked: bool = False


class _Error(msgspec.Struct, gc=False):
    code: int | None = None
    message: str | None = None
    status: str | None = None
    details: Any = None  # google.rpc detail objects of several shapes; see _error_type


class _Response(msgspec.Struct, gc=False, rename="camel"):
    candidates: list[_Candidate] | None = None
    usage_metadata: _UsageMetadata | None = None
    prompt_feedback: _PromptFeedback | None = None
    model_version: str | None = None
    response_id: str | None = None
    error: _Error | None = None


class _Count(msgspec.Struct, gc=False, rename="camel"):
    total_tokens: int | None = None


_response_decoder = msgspec.json.Decoder(_Response)


class _Chunk(_Response, gc=False, rename="camel"):
    """A streamed response: Gemini repeats ``usageMetadata`` on every chunk, so it is
    kept raw and decoded only when its bytes changed."""

    usage_metadata: msgspec.Raw = msgspec.Raw()  # type: ignore[assignment]


_chunk_decoder = msgspec.json.Decoder(_Chunk)
_chunk_decode = _chunk_decoder.decode
_usage_decoder = msgspec.json.Decoder(_UsageMetadata)
_NULL = msgspec.Raw(b"null")
_count_decoder = msgspec.json.Decoder(_Count)
_list_decoder = msgspec.json.Decoder(list[_Response])
_ratings_decoder = msgspec.json.Decoder(list[_SafetyRating])

_FILTERED = frozenset({"SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII",
                       "IMAGE_SAFETY", "IMAGE_PROHIBITED_CONTENT", "IMAGE_RECITATION"})


def _finish(reason: str | None, calls: bool) -> str | None:
    if reason is None:
        return None
    if reason == "STOP":
        return "tool_calls" if calls else "stop"
    if reason == "MAX_TOKENS":
        return "length"
    if reason in _FILTERED:
        return "refusal"
    return reason.lower()  # MALFORMED_FUNCTION_CALL, OTHER…: named, not disguised as stop


def _blocked(what: str, field: str, reason: str, ratings: msgspec.Raw, message: str | None,
             provider: str) -> str:
    """The refusal's text for a safety block: what was blocked, why, by which categories."""
    text = f"{provider} blocked the {what} ({field} {reason}"
    categories = _categories(ratings)
    if categories:
        text += ": " + ", ".join(categories)
    text += ")"
    return f"{text}: {message}" if message else text + "."


def _categories(ratings: msgspec.Raw) -> list[str]:
    """The harm categories that blocked (else those rated likely), from ``safetyRatings``."""
    if not ratings:
        return []
    try:
        rated = _ratings_decoder.decode(ratings)
    except (msgspec.DecodeError, UnicodeDecodeError):
        return []  # a rating in an unknown shape must not hide the refusal itself
    named = [r.category for r in rated if r.blocked and r.category]
    return named or [r.category for r in rated
                     if r.category and r.probability in ("MEDIUM", "HIGH")]


def _usage(u: _UsageMetadata) -> Usage:
    """``candidatesTokenCount`` excludes thoughts; ``promptTokenCount`` includes the cache."""
    prompt = (u.prompt_token_count or 0) + (u.tool_use_prompt_token_count or 0)
    thoughts = u.thoughts_token_count
    completion = (u.candidates_token_count or 0) + (thoughts or 0)
    return Usage(
        prompt_tokens=prompt,
        completion_tokens=completion,
        total_tokens=u.total_token_count if u.total_token_count else prompt + completion,
        cached_tokens=u.cached_content_token_count,
        reasoning_tokens=thoughts,
    )


class _Parts:
    """What the parts of one candidate (or one stream chunk) say."""

    __slots__ = ("blocks", "calls", "reasoning", "text")

    def __init__(self, parts: list[_Part], first_call: int) -> None:
        text: list[str] = []
        reasoning: list[str] = []
        self.blocks: list[ReasoningBlock] = []
        self.calls: list[ToolCall] = []
        for part in parts:
            call = part.function_call
            if call is not None:
                n = first_call + len(self.calls)
                self.calls.append(ToolCall(
                    call.id or f"call_{n}",
                    call.name or "",
                    bytes(call.args).decode() or "{}",
                    part.thought_signature,
                ))
            elif part.thought:
                if part.text:
                    reasoning.append(part.text)
                    # Unsigned on purpose: Gemini's context lives in the signatures of the
                    # call parts, and a signed block would be sent to Anthropic by a fallback.
                    self.blocks.append(ReasoningBlock(part.text))
            elif part.text:
                text.append(part.text)
        self.text = "".join(text)
        self.reasoning = "".join(reasoning)


def _prompt_refusal(feedback: _PromptFeedback, provider: str) -> str:
    return _blocked("prompt", "blockReason", feedback.block_reason or "", feedback.safety_ratings,
                    feedback.block_reason_message, provider)


def _answer_refusal(candidate: _Candidate, provider: str) -> str:
    return _blocked("answer", "finishReason", candidate.finish_reason or "",
                    candidate.safety_ratings, candidate.finish_message, provider)


# ---------------------------------------------------------------- response


def parse_response(body: bytes, request: ChatRequest | None = None, provider: str = "google"
                   ) -> Completion:
    wire = decode_wire(_response_decoder, body,
                       "returned a body that is not a generateContent response", provider)
    if wire.error is not None:
        raise _in_band_error(wire.error, provider, body)
    usage = _usage(wire.usage_metadata) if wire.usage_metadata is not None else None
    if not wire.candidates:
        feedback = wire.prompt_feedback
        if feedback is None or feedback.block_reason is None:
            raise ResponseError(f"{provider} returned no candidates",
                                raw=body[:2000].decode("utf-8", "replace"))
        # The prompt itself was blocked: no answer, a refusal that says why.
        return Completion(text="", refusal=_prompt_refusal(feedback, provider),
                          finish_reason="refusal", native_finish_reason=feedback.block_reason,
                          usage=usage, model=wire.model_version, id=wire.response_id)
    candidate = wire.candidates[0]
    parts = _Parts(candidate.content.parts or [] if candidate.content else [], 0)
    finish = _finish(candidate.finish_reason, bool(parts.calls))
    completion = Completion(
        text=parts.text,
        refusal=_answer_refusal(candidate, provider) if finish == "refusal" else None,
        reasoning=parts.reasoning or None,
        reasoning_blocks=tuple(parts.blocks),
        tool_calls=tuple(parts.calls),
        finish_reason=finish,
        native_finish_reason=candidate.finish_reason,
        usage=usage,
        model=wire.model_version,
        id=wire.response_id,
    )
    return answer_from_calls(completion, request)


# ---------------------------------------------------------------- stream


class StreamDecoder:
    """``streamGenerateContent?alt=sse`` chunks → Deltas.

    Every chunk is a whole ``GenerateContentResponse``; function calls arrive
    complete, each in one part. There is no end marker, so ``done`` stays
    False and the stream ends with the body; the last chunk carries
    ``finishReason`` (which is how a complete stream is told from a cut one).

    Gemini repeats ``usageMetadata`` on every chunk: it is handed on when it
    changed, so a chunk of text only (once model and id are known) comes out as
    the plain ``str``, the assembler's fast path.
    """

    __slots__ = ("_calls", "_last_usage", "_malformed", "_named", "done", "provider")
    has_end_marker = False

    def __init__(self, provider: str = "google") -> None:
        self.done = False
        self.provider = provider
        self._malformed = f"{provider} sent a stream chunk that is not valid JSON"
        self._calls = 0
        self._named = False
        self._last_usage: msgspec.Raw | None = None  # the last usage's bytes

    def feed(self, event: SSEEvent) -> Delta | str | None:
        data = event.data
        try:
            chunk = _chunk_decode(data)
        except (msgspec.DecodeError, UnicodeDecodeError):
            chunk = decode_wire(_chunk_decoder, data, self._malformed)  # raises, typed
        if chunk.error is not None:
            raise _in_band_error(chunk.error, self.provider, data)
        seen = chunk.usage_metadata  # (an empty Raw: none sent)
        usage = None
        if seen and seen != self._last_usage and seen != _NULL:
            self._last_usage = seen
            try:
                meta = _usage_decoder.decode(seen)
            except msgspec.DecodeError:
                decode_wire(_response_decoder, data, self._malformed)  # raises, typed
                raise
            usage = _usage(meta)
        if not chunk.candidates:
            feedback = chunk.prompt_feedback
            if feedback is not None and feedback.block_reason is not None:
                return Delta(refusal=_prompt_refusal(feedback, self.provider),
                             finish_reason="refusal", native_finish_reason=feedback.block_reason,
                             usage=usage, model=chunk.model_version, id=chunk.response_id)
            if usage is None:
                return None
            return Delta(usage=usage, model=chunk.model_version, id=chunk.response_id)
        candidate = chunk.candidates[0]
        content = candidate.content
        raw = content.parts if content is not None else None
        if raw is not None and len(raw) == 1:
            only = raw[0]
            if only.function_call is None and not only.thought:  # the common chunk: text
                if self._named and usage is None and candidate.finish_reason is None:
                    return only.text or None
                self._named = True
                finish = _finish(candidate.finish_reason, self._calls > 0)
                return Delta(
                    text=only.text or None,
                    refusal=(_answer_refusal(candidate, self.provider)
                             if finish == "refusal" else None),
                    finish_reason=finish,
                    native_finish_reason=candidate.finish_reason,
                    usage=usage,
                    model=chunk.model_version,
                    id=chunk.response_id,
                )
        self._named = True
        parts = _Parts(raw or [], self._calls)
        calls = None
        if parts.calls:
            calls = tuple(ToolCallDelta(self._calls + i, id=c.id, name=c.name,
                                        arguments=c.arguments, signature=c.signature)
                          for i, c in enumerate(parts.calls))
            self._calls += len(parts.calls)
        finish = _finish(candidate.finish_reason, self._calls > 0)
        return Delta(
            text=parts.text or None,
            refusal=_answer_refusal(candidate, self.provider) if finish == "refusal" else None,
            reasoning=parts.reasoning or None,
            tool_calls=calls,
            finish_reason=finish,
            native_finish_reason=candidate.finish_reason,
            usage=usage,
            model=chunk.model_version,
            id=chunk.response_id,
        )


def stream_decoder(request: ChatRequest | None = None, provider: str = "google"
                   ) -> StreamDecoder | AnswerToolDecoder:
    return answer_stream(StreamDecoder(provider), request)


# ---------------------------------------------------------------- errors

# google.rpc status → HTTP status, for errors that arrive without one.
_STATUS = {
    "INVALID_ARGUMENT": 400,
    "FAILED_PRECONDITION": 400,
    "OUT_OF_RANGE": 400,
    "UNAUTHENTICATED": 401,
    "PERMISSION_DENIED": 403,
    "NOT_FOUND": 404,
    "ABORTED": 409,
    "ALREADY_EXISTS": 409,
    "RESOURCE_EXHAUSTED": 429,
    "CANCELLED": 499,
    "INTERNAL": 500,
    "UNKNOWN": 500,
    "UNAVAILABLE": 503,
    "DEADLINE_EXCEEDED": 504,
}


class _ErrorBody(msgspec.Struct, gc=False):
    error: _Error | str | None = None


def parse_error(status: int, headers: list[tuple[str, str]], body: bytes, provider: str,
                retry_after: float | None = None) -> ProviderError:
    """``{"error": {"code": 429, "message": …, "status": "RESOURCE_EXHAUSTED"}}`` → typed error.

    Some proxies answer with a one-element list around that object; it is read too.
    """
    error: _Error | str | None = None
    try:
        error = msgspec.json.decode(body, type=_ErrorBody).error
    except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError):
        try:
            listed = _list_decoder.decode(body)
            error = listed[0].error if listed else None
        except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError):
            error = None
    text = body.decode("utf-8", "replace")
    message = kind = None
    if isinstance(error, _Error):
        message, kind = error.message, _error_type(error)
    elif isinstance(error, str):
        message = error
    request_id = next((v for k, v in headers if k in ("x-request-id", "x-goog-request-id")),
                      None)
    return error_from_status(
        status,
        message or text[:500] or f"HTTP {status}",
        provider=provider,
        code=str(error.code) if isinstance(error, _Error) and error.code is not None else None,
        error_type=kind,
        body=text[:4000],
        request_id=request_id,
        retry_after=retry_after,
    )


# google.rpc.ErrorInfo reasons that name the failure better than the status does. A bad
# key is HTTP 400 INVALID_ARGUMENT with reason API_KEY_INVALID (the error body the Gemini
# API documents for it): the reason makes it an AuthenticationError, not a bad request.
_REASONS = frozenset({"API_KEY_INVALID"})


def _error_type(error: _Error) -> str | None:
    details = error.details if isinstance(error.details, list) else ()
    for detail in details:
        reason = detail.get("reason") if isinstance(detail, dict) else None
        if reason in _REASONS:
            return reason
    # Gemini says "The model is overloaded" with a plain 503 UNAVAILABLE; name it so
    # the error is an OverloadedError like Anthropic's 529.
    if error.status == "UNAVAILABLE" and error.message and "overloaded" in error.message.lower():
        return "overloaded"
    return error.status


def _in_band_error(error: _Error, provider: str, raw: bytes) -> ProviderError:
    status = error.code or _STATUS.get(error.status or "")
    return error_from_status(
        status,
        error.message or error.status or "error",
        provider=provider,
        code=str(error.code) if error.code is not None else None,
        error_type=_error_type(error),
        body=raw.decode("utf-8", "replace")[:4000],
    )
