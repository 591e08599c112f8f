"""The OpenAI Chat Completions dialect (also every OpenAI-compatible server).

Pure translations: ChatRequest → HttpRequest, response bytes → Completion,
one SSE event → Delta, error body → typed error. Wire structs are decoded by
msgspec straight from bytes; unknown fields are ignored so servers may add
their own.

Prompt caching is automatic on OpenAI: ``request.cache`` only adds its routing
key (``prompt_cache_key``) and retention (``prompt_cache_retention``); cache
hints on messages and tools are for providers with explicit breakpoints and are
not sent. Cached prompt tokens come back in ``usage``. Only a llama.cpp server
counts tokens (``count_tokens``: its chat template, then its tokenizer).
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import msgspec

from msgflux._transport.types import HttpRequest, SSEEvent
from msgflux.exceptions import ProviderError, ResponseError
from msgflux.models.dialects import _openai_common as common
from msgflux.models.dialects.base import (
    AnswerToolDecoder,
    Endpoint,
    answer_from_calls,
    answer_stream,
    decode_wire,
    http_error,
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
    TextPart,
    ToolCall,
    ToolCallDelta,
    Usage,
    settled_finish,
)

__all__ = ["REQUIRES_MAX_TOKENS", "StreamDecoder", "build_request", "count_tokens",
           "parse_error", "parse_response", "stream_decoder"]

REQUIRES_MAX_TOKENS = False
"""The API picks an output limit when the request sets none."""

_encode = msgspec.json.Encoder().encode


# ---------------------------------------------------------------- request


def build_request(request: ChatRequest, endpoint: Endpoint) -> HttpRequest:
    quirks = endpoint.quirks
    if request.output is not None:
        request = with_answer_tool(request, quirks.strict_schema)  # (as is unless tool mode)
    messages = [_message(m) for m in request.messages]
    if request.prefill is not None:
        prefill: dict[str, Any] = {"role": "assistant", "content": request.prefill}
        if quirks.prefill_message_flag:
            prefill[quirks.prefill_message_flag] = True
        messages.append(prefill)
    body: dict[str, Any] = {"model": request.model, "messages": messages}
    if request.temperature is not None:
        body["temperature"] = request.temperature
    if request.top_p is not None:
        body["top_p"] = request.top_p
    if request.max_tokens is not None:
        body[quirks.max_tokens_field] = request.max_tokens
    if request.stop:
        body["stop"] = list(request.stop)
    if request.seed is not None:
        body["seed"] = request.seed
    if request.reasoning_effort is not None:
        if quirks.reasoning == "object":
            body["reasoning"] = {"effort": request.reasoning_effort}
        else:
            body["reasoning_effort"] = request.reasoning_effort
    choice = request.tool_choice
    if request.tools and not (
        quirks.none_drops_tools and choice is not None and choice.mode == "none"
    ):
        body["tools"] = [{"type": "function", "function": common.function_fields(t, None)}
                         for t in request.tools]
        if choice is not None:
            body["tool_choice"] = (
                {"type": "function", "function": {"name": choice.name}}
                if choice.mode == "tool"
                else choice.mode
            )
        if request.parallel_tool_calls is not None:
            body["parallel_tool_calls"] = request.parallel_tool_calls
    if request.output is not None and request.output.mode == "json_object":
        body["response_format"] = {"type": "json_object"}  # the schema is in the prompt
    elif request.output is not None:
        body["response_format"] = {"type": "json_schema",
                                   "json_schema": common.schema_fields(request.output,
                                                                       quirks.strict_schema)}
    if request.prefill is not None and quirks.prefill_fields:
        body.update(quirks.prefill_fields)
    cache = request.cache
    if cache is not None:
        if cache.key is not None:
            body["prompt_cache_key"] = cache.key
        if cache.retention is not None:
            body["prompt_cache_retention"] = cache.retention
    if request.stream:
        body["stream"] = True
        if quirks.stream_usage:
            body["stream_options"] = {"include_usage": True}
    if request.extra:
        body.update(request.extra)
    url, headers = common.route(endpoint, "/chat/completions", request.stream)
    return HttpRequest("POST", url, headers, _encode(body), request.stream)


def count_tokens(request: ChatRequest, endpoint: Endpoint
                 ) -> Generator[HttpRequest, bytes, int] | None:
    """A llama.cpp server's exact count (see :class:`~.base.TokenCounter`); ``None``
    for every other server, which has no counting endpoint."""
    if endpoint.quirks.token_count != "llamacpp":
        return None
    return _llamacpp_count(request, endpoint)


def _llamacpp_count(request: ChatRequest, endpoint: Endpoint
                    ) -> Generator[HttpRequest, bytes, int]:
    # The chat request's own body through the model's chat template (tools included),
    # then the prompt through its tokenizer, as the server does for a completion.
    chat = build_request(msgspec.structs.replace(request, stream=False), endpoint)
    base = endpoint.base_url.rstrip("/")
    root = base[:-3] if base.endswith("/v1") else base
    headers = tuple(h for h in chat.headers if h[0] != "accept")
    answer = yield HttpRequest("POST", root + "/apply-template", headers, chat.body)
    prompt = decode_wire(_template_decoder, answer,
                         f"{endpoint.provider} returned a template that is not JSON").prompt
    answer = yield HttpRequest("POST", root + "/tokenize", headers,
                               _encode({"content": prompt, "add_special": True}))
    tokens = decode_wire(_tokens_decoder, answer,
                         f"{endpoint.provider} returned tokens that are not JSON").tokens
    return len(tokens)


class _Template(msgspec.Struct):
    prompt: str = ""


class _Tokens(msgspec.Struct):
    tokens: list[Any] = []


_template_decoder = msgspec.json.Decoder(_Template)
_tokens_decoder = msgspec.json.Decoder(_Tokens)


def _message(message: Message) -> dict[str, Any]:
    out: dict[str, Any] = {"role": message.role}
    content = message.content
    if content is None or isinstance(content, str):
        out["content"] = content
    else:
        out["content"] = [_part(p) for p in content]
    if message.tool_calls:
        out["tool_calls"] = [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
            for c in message.tool_calls
        ]
    if message.tool_call_id is not None:
        out["tool_call_id"] = message.tool_call_id
    if message.name is not None:
        out["name"] = message.name
    return out


def _part(part: Part) -> dict[str, Any]:
    if isinstance(part, TextPart):
        return {"type": "text", "text": part.text}
    if isinstance(part, ImagePart):
        image: dict[str, Any] = {"url": part.url}
        if part.detail is not None:
            image["detail"] = part.detail
        return {"type": "image_url", "image_url": image}
    if isinstance(part, AudioPart):
        return {"type": "input_audio", "input_audio": {"data": part.data, "format": part.format}}
    assert isinstance(part, FilePart)
    file: dict[str, Any] = {}
    if part.file_id is not None:
        file["file_id"] = part.file_id
    if part.data is not None:
        file["file_data"] = part.data
    elif part.url is not None:
        file["file_data"] = part.url
    if part.filename is not None:
        file["filename"] = part.filename
    return {"type": "file", "file": file}


# ---------------------------------------------------------------- wire structs


class _Function(msgspec.Struct, gc=False):
    name: str | None = None
    arguments: str | dict[str, Any] | None = None  # some compatible servers send an object


class _ToolCall(msgspec.Struct, gc=False):
    index: int | None = None
    id: str | None = None
    function: _Function | None = None


class _Message(msgspec.Struct, gc=False):
    content: str | list[Any] | None = None
    reasoning_content: str | None = None
    reasoning: str | None = None
    tool_calls: list[_ToolCall] | None = None
    refusal: str | None = None


class _Choice(msgspec.Struct, gc=False):
    message: _Message | None = None
    finish_reason: str | None = None


class _PromptDetails(msgspec.Struct, gc=False):
    cached_tokens: int | None = None


class _CompletionDetails(msgspec.Struct, gc=False):
    reasoning_tokens: int | None = None


class _Usage(msgspec.Struct, gc=False):
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    total_tokens: int | None = None
    prompt_tokens_details: _PromptDetails | None = None
    completion_tokens_details: _CompletionDetails | None = None
    prompt_cache_hit_tokens: int | None = None  # DeepSeek's spelling of cached tokens


class _Response(msgspec.Struct, gc=False):
    id: str | None = None
    model: str | None = None
    choices: list[_Choice] | None = None
    usage: _Usage | None = None
    error: common.WireError | str | None = None


class _Delta(msgspec.Struct, gc=False):
    content: str | None = None
    reasoning_content: str | None = None
    reasoning: str | None = None
    tool_calls: list[_ToolCall] | None = None
    refusal: str | None = None


class _ChunkChoice(msgspec.Struct, gc=False):
    delta: _Delta | None = None
    finish_reason: str | None = None
    index: int = 0


class _Chunk(msgspec.Struct, gc=False):
    id: str | None = None
    model: str | None = None
    choices: list[_ChunkChoice] | None = None
    usage: _Usage | None = None
    error: common.WireError | str | None = None


_response_decoder = msgspec.json.Decoder(_Response)
_chunk_decoder = msgspec.json.Decoder(_Chunk)
_chunk_decode = _chunk_decoder.decode

_FINISH = {"function_call": "tool_calls", "eos": "stop", "end_turn": "stop", "max_tokens": "length"}


def _finish(reason: str | None) -> str | None:
    return _FINISH.get(reason, reason) if reason is not None else None


def _usage(u: _Usage | None) -> Usage | None:
    if u is None:
        return None
    prompt = u.prompt_tokens or 0
    completion = u.completion_tokens or 0
    cached = u.prompt_tokens_details.cached_tokens if u.prompt_tokens_details else None
    if cached is None:
        cached = u.prompt_cache_hit_tokens
    return Usage(
        prompt_tokens=prompt,
        completion_tokens=completion,
        total_tokens=u.total_tokens if u.total_tokens is not None else prompt + completion,
        cached_tokens=cached,
        reasoning_tokens=(
            u.completion_tokens_details.reasoning_tokens if u.completion_tokens_details else None
        ),
    )


def _call_deltas(calls: list[_ToolCall]) -> list[ToolCallDelta]:
    """The calls (or call fragments) of one message or delta; a loop, as it runs per chunk."""
    out = []
    for i, c in enumerate(calls):
        f = c.function
        name = arguments = None
        if f is not None:
            name = f.name
            arguments = f.arguments
            if arguments.__class__ is dict:  # sent as an object: the same call, as JSON text
                arguments = _encode(arguments).decode()
        out.append(ToolCallDelta(c.index if c.index is not None else i, c.id, name,
                                 arguments))
    return out


def _text(content: str | list[Any] | None) -> str | None:
    if content is None or isinstance(content, str):
        return content
    # Some servers answer with content parts; keep their text.
    return "".join(p.get("text", "") for p in content if isinstance(p, dict))


# ---------------------------------------------------------------- response


def parse_response(body: bytes, request: ChatRequest | None = None, provider: str = "openai"
                   ) -> Completion:
    wire = decode_wire(_response_decoder, body,
                       "returned a body that is not a chat completion", provider)
    if wire.error is not None:
        raise common.in_band_error(wire.error, provider, body)
    if not wire.choices:
        raise ResponseError(
            f"{provider} returned a chat completion with no choices",
            raw=body[:2000].decode("utf-8", "replace"),
        )
    choice = wire.choices[0]
    message = choice.message or _Message()
    calls = tuple(
        ToolCall(c.id or f"call_{i}", c.name or "", c.arguments or "")
        for i, c in enumerate(_call_deltas(message.tool_calls))
    ) if message.tool_calls else ()
    reasoning = message.reasoning_content or message.reasoning
    refusal = message.refusal or None
    completion = Completion(
        text=_text(message.content),
        refusal=refusal,
        reasoning=reasoning,
        tool_calls=calls,
        finish_reason=settled_finish(_finish(choice.finish_reason), bool(calls),
                                     refusal is not None),
        native_finish_reason=choice.finish_reason,
        usage=_usage(wire.usage),
        model=wire.model,
        id=wire.id,
    )
    if request is not None and request.output is not None:
        return answer_from_calls(completion, request)
    return completion


# ---------------------------------------------------------------- stream


class StreamDecoder:
    """OpenAI chunks → Deltas. ``[DONE]`` ends the stream.

    A chunk that only adds text, once the answer's model and id were handed on,
    comes out as the plain ``str`` (the assembler's fast path): most chunks are that.
    """

    __slots__ = ("_malformed", "_named", "done", "provider")
    has_end_marker = True

    def __init__(self, provider: str = "openai") -> None:
        self.done = False
        self.provider = provider
        self._named = False
        self._malformed = f"{provider} sent a stream chunk that is not valid JSON"

    def feed(self, event: SSEEvent) -> Delta | str | ToolCallDelta | None:
        data = event.data
        try:
            chunk = _chunk_decode(data)
        except (msgspec.DecodeError, UnicodeDecodeError):
            # The end marker is no JSON object: looked for once decoding failed, not
            # on every chunk.
            if data[:6] == b"[DONE]":
                self.done = True
                return Delta(done=True)
            chunk = decode_wire(_chunk_decoder, data, self._malformed)  # raises, typed
        choices = chunk.choices
        if choices and self._named and chunk.usage is None and chunk.error is None:
            choice = choices[0]
            d = choice.delta
            if (choice.finish_reason is None and d is not None
                    and not d.refusal and not d.reasoning_content and not d.reasoning):
                calls = d.tool_calls
                if not calls:
                    return d.content or None
                if len(calls) == 1 and not d.content:  # one fragment of one call
                    c = calls[0]
                    f = c.function
                    if f is not None and f.arguments.__class__ is not dict:
                        return ToolCallDelta(c.index if c.index is not None else 0, c.id,
                                             f.name, f.arguments)
        if chunk.error is not None:
            raise common.in_band_error(chunk.error, self.provider, data)
        usage = _usage(chunk.usage) if chunk.usage is not None else None
        if not choices:
            if usage is None:
                return None
            return Delta(usage=usage, model=chunk.model, id=chunk.id)
        self._named = True
        choice = choices[0]
        d = choice.delta
        text = reasoning = refusal = None
        calls = None
        if d is not None:
            text = d.content or None
            refusal = d.refusal or None
            reasoning = d.reasoning_content or d.reasoning or None
            if d.tool_calls:
                calls = tuple(_call_deltas(d.tool_calls))
        return Delta(
            text=text,
            refusal=refusal,
            reasoning=reasoning,
            tool_calls=calls,
            finish_reason=_finish(choice.finish_reason),
            native_finish_reason=choice.finish_reason,
            usage=usage,
            model=chunk.model,
            id=chunk.id,
        )


def stream_decoder(request: ChatRequest | None = None, provider: str = "openai"
                   ) -> StreamDecoder | AnswerToolDecoder:
    return answer_stream(StreamDecoder(provider), request)


# ---------------------------------------------------------------- errors


def parse_error(status: int, headers: list[tuple[str, str]], body: bytes, provider: str,
                retry_after: float | None = None) -> ProviderError:
    return http_error(status, headers, body, provider, retry_after)
