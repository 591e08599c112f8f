"""The OpenAI Responses dialect (``POST /v1/responses``).

Pure translations, like the other dialects: ChatRequest → HttpRequest, response
bytes → Completion, one SSE event → Delta, error body → typed error.

How the neutral request maps onto Responses:

- leading system messages become ``instructions``; every other turn is an input
  item: user and system messages with ``input_*`` parts, an assistant's text as
  an output ``message`` item and its calls as ``function_call`` items, a tool
  result as a ``function_call_output`` (call ids link the two);
- stateless by default: ``store: false``, and ``include:
  ["reasoning.encrypted_content"]`` for models that reason, so the reasoning
  items come back encrypted. They ride on ``Message.reasoning`` (a
  :class:`~msgflux.models.request.ReasoningBlock` with the item's ``id``) and are
  sent back ahead of their turn's calls; other providers' reasoning is not sent.
  Server-side state (``store: true``, ``previous_response_id``) goes in ``extra_body``;
- ``reasoning_effort`` becomes ``reasoning.effort`` with ``summary: "auto"``
  (the summaries are the reasoning text a response hands out); function tools
  are sent with ``strict: false`` unless they say otherwise, as the API's
  default is strict; structured output is ``text.format`` (``json_schema``, or
  ``json_object`` with the schema in the prompt) or the forced answer tool;
- the API has no stop sequences, no seed and cannot continue an assistant turn:
  ``stop``, ``seed`` and prefilling fail before the call.

Answers: ``status: completed`` finishes with "stop" ("tool_calls" with calls,
"refusal" with a refusal part), ``incomplete`` with its reason
(``max_output_tokens`` → "length", ``content_filter``); a ``failed`` response,
and the stream's ``response.failed`` and ``error`` events, raise typed errors.
A stream ends with ``response.completed`` (or ``response.incomplete``).
"""

from __future__ import annotations

from typing import Any

import msgspec

from msgflux._transport.types import HttpRequest, SSEEvent
from msgflux.exceptions import (
    InvalidParameterError,
    PrefillNotSupportedError,
    ProviderError,
    ResponseError,
)
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
    ReasoningBlock,
    TextPart,
    ToolCall,
    ToolCallDelta,
    Usage,
    settled_finish,
)

__all__ = ["PREFILL_REFUSED", "REQUIRES_MAX_TOKENS", "StreamDecoder", "build_request",
           "parse_error", "parse_response", "stream_decoder"]

REQUIRES_MAX_TOKENS = False
"""The API picks an output limit when the request sets none."""

PREFILL_REFUSED = (
    "The OpenAI Responses API cannot continue an assistant turn, so prefilling cannot work "
    "there. Drop prefilling=, or build the model with api='chat_completions' on a provider "
    "that continues one (anthropic, mistral, vllm, llamacpp, llamacpp-server, ...)."
)

_encode = msgspec.json.Encoder().encode
_ENCRYPTED = ["reasoning.encrypted_content"]
_BREAK = "\n\n"  # between reasoning summaries, as one text


# ---------------------------------------------------------------- request


def build_request(request: ChatRequest, endpoint: Endpoint) -> HttpRequest:
    _refuse_what_the_api_lacks(request)
    quirks = endpoint.quirks
    request = with_answer_tool(request, quirks.strict_schema)  # (as it is unless tool mode)
    instructions, items = _input(request.messages)
    body: dict[str, Any] = {"model": request.model, "input": items}
    if instructions is not None:
        body["instructions"] = instructions
    if request.temperature is not None:
        body["temperature"] = request.temperature
    if request.top_p is not None:
        body["top_p"] = request.top_p
    if request.max_tokens is not None:
        body["max_output_tokens"] = request.max_tokens
    effort = request.reasoning_effort
    if effort is not None:
        body["reasoning"] = {"effort": effort} if effort == "none" else {
            "effort": effort, "summary": "auto"}
    choice = request.tool_choice
    if request.tools and not (
        quirks.none_drops_tools and choice is not None and choice.mode == "none"
    ):
        body["tools"] = [{"type": "function", **common.function_fields(t, False)}
                         for t in request.tools]
        if choice is not None:
            body["tool_choice"] = (
                {"type": "function", "name": choice.name} if choice.mode == "tool"
                else choice.mode
            )
        if request.parallel_tool_calls is not None:
            body["parallel_tool_calls"] = request.parallel_tool_calls
    output = request.output
    if output is not None and output.mode == "json_object":  # the schema is in the prompt
        if quirks.responses_schema == "response_format":
            body["response_format"] = {"type": "json_object"}
        else:
            body["text"] = {"format": {"type": "json_object"}}
    elif output is not None:
        fields = common.schema_fields(output, quirks.strict_schema)
        if quirks.responses_schema == "response_format":
            body["response_format"] = {"type": "json_schema", "json_schema": fields}
        else:
            body["text"] = {"format": {"type": "json_schema", **fields}}
    body["store"] = False
    if quirks.encrypted_reasoning:
        body["include"] = _ENCRYPTED
    if request.stream:
        body["stream"] = True
    if request.extra:
        body.update(request.extra)
    url, headers = common.route(endpoint, "/responses", request.stream)
    return HttpRequest("POST", url, headers, _encode(body), request.stream)


def _refuse_what_the_api_lacks(request: ChatRequest) -> None:
    if request.prefill is not None:
        raise PrefillNotSupportedError(PREFILL_REFUSED)
    if request.stop is not None:
        raise _missing("stop")
    if request.seed is not None:
        raise _missing("seed")


def _missing(name: str) -> InvalidParameterError:
    return InvalidParameterError(
        f"The OpenAI Responses API has no {name!r} parameter. Drop {name}=, use "
        f"api='chat_completions', or send it with extra_body={{{name!r}: ...}} to a "
        "compatible server that takes it."
    )


def _input(messages: tuple[Message, ...]) -> tuple[str | None, list[dict[str, Any]]]:
    """``(instructions, input items)``: the leading system text, then every turn."""
    instructions: str | None = None
    items: list[dict[str, Any]] = []
    for message in messages:
        role = message.role
        content = message.content
        if role == "user" or role == "system":
            if content.__class__ is str:
                if role == "system" and not items:  # leads the conversation
                    instructions = content if instructions is None else (
                        instructions + _BREAK + content)  # type: ignore[operator]
                    continue
                items.append({"role": role, "content": content})
            else:
                items.append({"role": role, "content": [_part(p) for p in content or ()]})
        elif role == "assistant":
            items.extend(_assistant_items(message))
        else:
            output: Any = content if content.__class__ is str else (
                [_part(p) for p in content] if content else "")  # type: ignore[union-attr]
            items.append({"type": "function_call_output", "call_id": message.tool_call_id,
                          "output": output})
    return instructions, items


def _assistant_items(message: Message) -> list[dict[str, Any]]:
    """A past assistant turn: its reasoning items, its text, its calls, in output order."""
    items: list[dict[str, Any]] = []
    for block in message.reasoning:
        # Only this API's items (an id) that came back encrypted can be sent back while
        # nothing is stored; Anthropic's signed text and Gemini's summaries cannot.
        if block.id is not None and block.redacted:
            summary = [{"type": "summary_text", "text": block.text}] if block.text else []
            items.append({"type": "reasoning", "id": block.id, "summary": summary,
                          "encrypted_content": block.redacted})
    content = message.content
    text = content if isinstance(content, str) or content is None else "".join(
        p.text for p in content if isinstance(p, TextPart))
    if text:
        # The output shape (llama.cpp's server takes an assistant's text only so).
        items.append({"type": "message", "role": "assistant", "content": [
            {"type": "output_text", "text": text, "annotations": []}]})
    for call in message.tool_calls:
        items.append({"type": "function_call", "call_id": call.id, "name": call.name,
                      "arguments": call.arguments or "{}"})
    return items


def _part(part: Part) -> dict[str, Any]:
    if isinstance(part, TextPart):
        return {"type": "input_text", "text": part.text}
    if isinstance(part, ImagePart):
        return {"type": "input_image", "image_url": part.url, "detail": part.detail or "auto"}
    if isinstance(part, AudioPart):
        return {"type": "input_audio", "input_audio": {"data": part.data, "format": part.format}}
    assert isinstance(part, FilePart)
    file: dict[str, Any] = {"type": "input_file"}
    if part.file_id is not None:
        file["file_id"] = part.file_id
    elif part.data is not None:
        file["file_data"] = part.data
    elif part.url is not None:
        file["file_url"] = part.url
    if part.filename is not None:
        file["filename"] = part.filename
    return file


# ---------------------------------------------------------------- wire structs


class _Part(msgspec.Struct, gc=False):
    """A content or summary part: ``output_text``, ``refusal``, ``summary_text``,
    ``reasoning_text``…"""

    type: str = ""
    text: str | None = None
    refusal: str | None = None


class _Item(msgspec.Struct, gc=False):
    """An output item: ``message``, ``reasoning``, ``function_call`` (others are skipped)."""

    type: str = ""
    id: str | None = None
    content: list[_Part] | None = None
    summary: list[_Part] | None = None
    encrypted_content: str | None = None
    call_id: str | None = None
    name: str | None = None
    arguments: str | dict[str, Any] | None = None  # some compatible servers send an object


class _InputDetails(msgspec.Struct, gc=False):
    cached_tokens: int | None = None


class _OutputDetails(msgspec.Struct, gc=False):
    reasoning_tokens: int | None = None


class _Usage(msgspec.Struct, gc=False):
    input_tokens: int | None = None
    output_tokens: int | None = None
    total_tokens: int | None = None
    input_tokens_details: _InputDetails | None = None
    output_tokens_details: _OutputDetails | None = None


class _Incomplete(msgspec.Struct, gc=False):
    reason: str | None = None


class _Status(msgspec.Struct, gc=False):
    """A response without its output: what a stream's lifecycle events need (the
    output already came as deltas, so the final event's copy is not decoded)."""

    id: str | None = None
    model: str | None = None
    status: str | None = None
    usage: _Usage | None = None
    error: common.WireError | str | None = None
    incomplete_details: _Incomplete | None = None


class _Response(_Status):
    output: list[_Item] | None = None


class _Event(msgspec.Struct, gc=False):
    """One stream event; which fields are set depends on ``type``.

    ``delta`` is decoded as any value: a few event types carry an object there,
    and an event this dialect skips must not break the stream.
    """

    type: str = ""
    delta: Any = None
    item_id: str | None = None
    output_index: int | None = None
    summary_index: int | None = None
    content_index: int | None = None
    item: _Item | None = None
    response: _Status | None = None
    error: common.WireError | str | None = None  # the ``error`` event, nested
    message: str | None = None  # the ``error`` event, flat (as OpenAI documents it)
    code: str | int | None = None


_response_decoder = msgspec.json.Decoder(_Response)
_event_decoder = msgspec.json.Decoder(_Event)

_INCOMPLETE = {"max_output_tokens": "length", "content_filter": "content_filter"}


def _finish(response: _Status, status: str | None) -> tuple[str | None, str | None]:
    """``(finish_reason, native_finish_reason)`` of a response that ended with ``status``."""
    if status == "incomplete":
        details = response.incomplete_details
        reason = details.reason if details is not None else None
        return _INCOMPLETE.get(reason or "", reason or "length"), reason or status
    return ("stop" if status == "completed" else status), status


def _usage(u: _Usage | None) -> Usage | None:
    if u is None:
        return None
    prompt = u.input_tokens or 0
    completion = u.output_tokens or 0
    return Usage(
        prompt_tokens=prompt,
        completion_tokens=completion,
        total_tokens=u.total_tokens if u.total_tokens is not None else prompt + completion,
        cached_tokens=u.input_tokens_details.cached_tokens if u.input_tokens_details else None,
        reasoning_tokens=(
            u.output_tokens_details.reasoning_tokens if u.output_tokens_details else None
        ),
    )


def _arguments(arguments: str | dict[str, Any] | None) -> str:
    if arguments.__class__ is dict:  # sent as an object: the same call, as JSON text
        return _encode(arguments).decode()
    return arguments or ""  # type: ignore[return-value]


def _reasoning_text(item: _Item) -> str:
    """A reasoning item's text: its summaries, else its raw reasoning (open models)."""
    parts = item.summary or item.content or ()
    return _BREAK.join(p.text for p in parts if p.text)


def _block(item: _Item) -> ReasoningBlock | None:
    """The item as a block to send back, when it came encrypted (llama.cpp sends "")."""
    if not item.encrypted_content:
        return None
    return ReasoningBlock(_reasoning_text(item), redacted=item.encrypted_content, id=item.id)


def _failure(error: common.WireError | str | None, provider: str, raw: bytes) -> ProviderError:
    """The typed error of a failed response or an ``error`` event. Responses names the
    kind in ``code`` (``server_error``, ``rate_limit_exceeded``) where Chat Completions
    has ``type``."""
    if error is None:
        error = "the response failed without saying why"
    elif isinstance(error, common.WireError) and error.type is None and \
            isinstance(error.code, str):
        error = common.WireError(error.message, error.code, error.code)
    return common.in_band_error(error, provider, raw)


# ---------------------------------------------------------------- response


def parse_response(body: bytes, request: ChatRequest | None = None,
                   provider: str = "openai") -> Completion:
    wire = decode_wire(_response_decoder, body,
                       "returned a body that is not a Responses answer", provider)
    if wire.error is not None or wire.status == "failed":
        raise _failure(wire.error, provider, body)
    if wire.output is None:
        raise ResponseError(
            f"{provider} returned a Responses answer with no output",
            raw=body[:2000].decode("utf-8", "replace"),
        )
    texts: list[str] = []
    refusals: list[str] = []
    reasoning: list[str] = []
    blocks: list[ReasoningBlock] = []
    calls: list[ToolCall] = []
    for item in wire.output:
        kind = item.type
        if kind == "message":
            for part in item.content or ():
                if part.type == "refusal":
                    if part.refusal:
                        refusals.append(part.refusal)
                elif part.text:
                    texts.append(part.text)
        elif kind == "function_call":
            calls.append(ToolCall(item.call_id or item.id or f"call_{len(calls)}",
                                  item.name or "", _arguments(item.arguments)))
        elif kind == "reasoning":
            text = _reasoning_text(item)
            if text:
                reasoning.append(text)
            block = _block(item)
            if block is not None:
                blocks.append(block)
    refusal = "".join(refusals) or None
    finish, native = _finish(wire, wire.status)
    completion = Completion(
        text="".join(texts) or None,
        refusal=refusal,
        reasoning=_BREAK.join(reasoning) or None,
        reasoning_blocks=tuple(blocks),
        tool_calls=tuple(calls),
        finish_reason=settled_finish(finish, bool(calls), refusal is not None),
        native_finish_reason=native,
        usage=_usage(wire.usage),
        model=wire.model,
        id=wire.id,
    )
    return answer_from_calls(completion, request)


# ---------------------------------------------------------------- stream


class StreamDecoder:
    """Responses events → Deltas. ``response.completed`` / ``response.incomplete`` end
    the stream.

    Function calls are numbered in the order they start and found again by item
    id (or output index: servers differ in which they send with a fragment);
    reasoning text gets a blank line wherever a new summary starts.
    """

    __slots__ = ("_calls", "_count", "_malformed", "_reasoning_at", "_streamed", "done",
                 "provider")
    has_end_marker = True

    def __init__(self, provider: str = "openai") -> None:
        self.done = False
        self.provider = provider
        self._malformed = f"{provider} sent a stream event that is not valid JSON"
        self._calls: dict[str | int, int] = {}  # item id, call id or output index → call
        self._count = 0
        self._streamed: set[int] = set()  # calls whose arguments came in fragments
        self._reasoning_at: tuple[Any, ...] | None = None  # the summary now streaming

    def feed(self, event: SSEEvent) -> Delta | str | None:
        data = event.data
        if self.done or data[:6] == b"[DONE]":  # after the answer's end; [DONE]: not
            return None                         # part of the protocol, some servers add it
        ev = decode_wire(_event_decoder, data, self._malformed)
        kind = ev.type
        if kind == "response.output_text.delta":
            return self._text(ev, data) if ev.delta else None  # text only: the fast path
        if kind == "response.function_call_arguments.delta":
            index = self._call(ev.item_id, ev.output_index)
            self._streamed.add(index)
            return Delta(tool_calls=(ToolCallDelta(index, arguments=self._text(ev, data)),))
        if kind in ("response.reasoning_summary_text.delta", "response.reasoning_text.delta"):
            return self._reasoning(ev, data)
        if kind == "response.refusal.delta":
            return Delta(refusal=self._text(ev, data)) if ev.delta else None
        if kind == "response.output_item.added":
            return self._item_added(ev)
        if kind == "response.output_item.done":
            return self._item_done(ev)
        if kind in ("response.completed", "response.incomplete"):
            self.done = True
            response = ev.response or _Status()
            # A terminal event without a status says it by its name: "response.<status>".
            finish, native = _finish(response, response.status or kind[9:])
            # The answer's end: ``done`` is set, but the Delta is not the bare end
            # marker (it carries the finish), so it is handed on like any other.
            return Delta(finish_reason=finish, native_finish_reason=native,
                         usage=_usage(response.usage), model=response.model, id=response.id)
        if kind == "response.created":
            response = ev.response
            return Delta(model=response.model, id=response.id) if response else None
        if kind == "response.failed":
            raise _failure(ev.response.error if ev.response else None, self.provider, data)
        if kind == "error":
            error = ev.error if ev.error is not None else common.WireError(
                ev.message, None, ev.code)
            raise _failure(error, self.provider, data)
        return None

    def _text(self, ev: _Event, data: bytes) -> str:
        delta = ev.delta
        if delta.__class__ is not str:
            raise ResponseError(f"{self.provider} sent a {ev.type} event whose delta is not "
                                "text", raw=data[:2000].decode("utf-8", "replace"))
        return delta  # type: ignore[no-any-return]

    def _call(self, item_id: str | None, output_index: int | None) -> int:
        """The number of the call an event is about (a new one if it is not known)."""
        calls = self._calls
        index = calls.get(item_id) if item_id is not None else None
        if index is None and output_index is not None:
            index = calls.get(output_index)
        if index is None:
            index = self._count
            self._count += 1
            for key in (item_id, output_index):
                if key is not None:
                    calls[key] = index
        return index

    def _item_added(self, ev: _Event) -> Delta | None:
        item = ev.item
        if item is None or item.type != "function_call":
            return None
        index = self._call(item.id, ev.output_index)
        if item.call_id is not None:  # older llama.cpp names fragments by the call id
            self._calls[item.call_id] = index
        arguments = _arguments(item.arguments) or None
        if arguments is not None:
            self._streamed.add(index)
        return Delta(tool_calls=(ToolCallDelta(index, item.call_id, item.name, arguments),))

    def _item_done(self, ev: _Event) -> Delta | None:
        item = ev.item
        if item is None:
            return None
        if item.type == "function_call":
            # The whole call: new only to servers that sent no fragments of it.
            index = self._call(item.id or item.call_id, ev.output_index)
            if index in self._streamed:
                return None
            self._streamed.add(index)
            return Delta(tool_calls=(ToolCallDelta(index, item.call_id, item.name,
                                                   _arguments(item.arguments) or None),))
        if item.type == "reasoning":
            block = _block(item)
            at = self._reasoning_at
            # Text streamed for this item came just before; else it comes whole, here.
            text = "" if at is not None and at[0] == item.id else _reasoning_text(item)
            if text:
                return Delta(reasoning=self._reasoning_lead((item.id, None)) + text,
                             reasoning_block=block)
            return Delta(reasoning_block=block) if block is not None else None
        return None

    def _reasoning(self, ev: _Event, data: bytes) -> Delta | None:
        text = self._text(ev, data)
        if not text:
            return None
        index = ev.summary_index if ev.summary_index is not None else ev.content_index
        return Delta(reasoning=self._reasoning_lead((ev.item_id, index)) + text)

    def _reasoning_lead(self, at: tuple[Any, ...]) -> str:
        """A blank line when reasoning text of a new summary follows earlier text."""
        before = self._reasoning_at
        self._reasoning_at = at
        return _BREAK if before is not None and before != at else ""


def stream_decoder(request: ChatRequest | None = None, provider: str = "openai"
                   ) -> StreamDecoder | AnswerToolDecoder:
    return answer_stream(StreamDecoder(provider), request)


# ---------------------------------------------------------------- errors


def parse_error(status: int, headers: list[tuple[str, str]], body: bytes, provider: str,
                retry_after: float | None = None) -> ProviderError:
    return http_error(status, headers, body, provider, retry_after)
