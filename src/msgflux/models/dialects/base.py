"""What every dialect shares: the Dialect protocol, the endpoint, the error mapping."""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Any, Literal, Protocol, TypeVar

import msgspec

from msgflux import exceptions as exc
from msgflux._transport.types import HttpRequest, SSEEvent
from msgflux._version import __version__
from msgflux.models.request import (
    ChatRequest,
    Completion,
    Delta,
    ToolCallDelta,
    ToolChoice,
    ToolSpec,
)

T = TypeVar("T")

USER_AGENT = f"msgflux/{__version__}"

__all__ = ["USER_AGENT", "AnswerToolDecoder", "Dialect", "Endpoint", "Quirks", "StreamDecoder",
           "TokenCounter", "answer_from_calls", "answer_stream", "answer_tool_name", "decode_wire",
           "error_from_status", "http_error", "join_url", "with_answer_tool"]


class Quirks(msgspec.Struct, frozen=True):
    """How one provider (or one of its models) departs from its dialect's reference behaviour.

    ``max_tokens_field``: the body field for the output limit.
    ``strict_schema``: accepts ``json_schema`` with ``strict: true``.
    ``stream_usage``: accepts ``stream_options.include_usage``.
    ``prefill``: ``continue`` (a trailing assistant turn is continued) or
    ``unsupported``.
    ``prefill_echo``: when the reply repeats the prefix — ``never`` (only the
    continuation comes back), ``always``, or ``non-stream`` (llama.cpp's server
    echoes it in whole replies but streams only the continuation).
    ``prefill_fields``: extra body fields that make the server continue the turn.
    ``reasoning``: where ``reasoning_effort`` goes (``top`` level or OpenRouter's
    ``reasoning`` object).
    ``none_drops_tools``: ``tool_choice: "none"`` is not honoured (llama.cpp still
    renders the tools and the model writes calls as text), so the tools are left out.
    ``encrypted_reasoning`` (Responses): ask for the reasoning encrypted, to carry it
    through a tool loop without server-side state; models that do not reason refuse it.
    ``responses_schema`` (Responses): where the output schema goes — ``text``
    (``text.format``, the API's own) or ``response_format`` (llama.cpp's server
    ignores ``text.format`` and passes Chat Completions' field through).
    ``token_count``: how the server counts a prompt's tokens — not at all
    (``none``), or llama.cpp's ``/apply-template`` then ``/tokenize`` (``llamacpp``).
    """

    max_tokens_field: str = "max_tokens"
    strict_schema: bool = True
    stream_usage: bool = True
    prefill: Literal["continue", "unsupported"] = "continue"
    prefill_echo: Literal["never", "always", "non-stream"] = "never"
    prefill_fields: dict[str, Any] | None = None
    prefill_message_flag: str | None = None
    reasoning: Literal["top", "object"] = "top"
    none_drops_tools: bool = False
    encrypted_reasoning: bool = True
    responses_schema: Literal["text", "response_format"] = "text"
    token_count: Literal["none", "llamacpp"] = "none"

    def prefill_echoed(self, stream: bool) -> bool:
        """Does the server's reply already start with the prefilled text?"""
        echo = self.prefill_echo
        return echo == "always" or (echo == "non-stream" and not stream)


class Endpoint(msgspec.Struct, frozen=True):
    """Where and how to reach one provider: base URL, key, extra headers, quirks."""

    provider: str
    base_url: str
    api_key: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    quirks: Quirks = Quirks()
    api_version: str | None = None
    # What a dialect derives from the endpoint alone (URLs, headers), kept per kind of
    # call: a model repeats them on every call, and an endpoint never changes.
    memo: dict[Any, Any] = msgspec.field(default_factory=dict)

    def __repr__(self) -> str:  # never show the key
        key = "set" if self.api_key else "unset"
        return f"Endpoint(provider={self.provider!r}, base_url={self.base_url!r}, api_key={key})"


class StreamDecoder(Protocol):
    """Turns SSE events of one stream into Deltas; ``done`` once the end marker came.

    ``has_end_marker``: the protocol ends every complete stream with a marker
    (``[DONE]``, ``message_stop``), so a stream without it was cut short. Gemini
    has none: there a stream is complete when its finish reason arrived.
    """

    done: bool
    has_end_marker: bool

    def feed(self, event: SSEEvent) -> Delta | str | ToolCallDelta | None:
        """The Delta of one event (``None``: nothing to fold); a ``str`` stands for a
        Delta with only that text, a lone ``ToolCallDelta`` for a Delta with only that
        fragment of one call: the cheapest paths for the bulk of a stream. The
        protocol's end marker is ``Delta(done=True)`` carrying nothing else: readers
        stop there, so whatever a server sends after it never reaches the caller."""
        ...


class Dialect(Protocol):
    """One wire protocol, sans-I/O. Each module of :mod:`msgflux.models.dialects`
    satisfies it with module-level names (``tests/test_dialect_protocol.py``
    checks that).

    ``REQUIRES_MAX_TOKENS``: the API refuses a request without an output limit,
    so the model layer fills one in (from the model's profile).
    """

    REQUIRES_MAX_TOKENS: bool

    def build_request(self, request: ChatRequest, endpoint: Endpoint) -> HttpRequest:
        """The HTTP request for ``request`` (URL, headers with the key, body)."""
        ...

    def parse_response(self, body: bytes, request: ChatRequest | None = None,
                       provider: str = ...) -> Completion:
        """A whole (non-streamed) answer; ResponseError when the bytes are not one."""
        ...

    def stream_decoder(self, request: ChatRequest | None = None, provider: str = ...
                       ) -> StreamDecoder:
        """A fresh decoder for one streamed answer."""
        ...

    def parse_error(self, status: int, headers: list[tuple[str, str]], body: bytes,
                    provider: str, retry_after: float | None = None) -> exc.ProviderError:
        """The typed error for a non-2xx response."""
        ...


class TokenCounter(Protocol):
    """What a dialect whose provider counts tokens adds to :class:`Dialect` (optional:
    the model layer estimates for a dialect without it).

    ``count_tokens`` returns the exchange that counts ``request``'s input tokens,
    sans-I/O: a generator that yields each HTTP request, is sent each response's
    body (a 2xx one; the caller raises the typed error of any other), and returns
    the count. ``None`` when this endpoint cannot count.
    """

    def count_tokens(self, request: ChatRequest, endpoint: Endpoint
                     ) -> Generator[HttpRequest, bytes, int] | None:
        ...


# ---------------------------------------------------------------- the forced answer tool
#
# A structured answer in ``tool`` mode (OutputSchema.mode) is asked as a call of one
# tool whose input is the answer, and handed back as the answer's text, never as a
# call: the caller asked for an answer, not for a tool to run. Dialects whose
# protocol has plain function tools (openai, google) build the request through
# with_answer_tool and read the reply through answer_from_calls / answer_stream; all
# three leave a request that asks for no tool-mode answer as it is.


def answer_tool_name(request: ChatRequest | None) -> str | None:
    """The answer tool's name when ``request`` asks for a tool-mode answer: the schema's
    name, kept apart from the caller's tools and from those the history called."""
    out = request.output if request is not None else None
    if out is None or out.mode != "tool":
        return None
    return unique_tool_name(out.name, request)  # type: ignore[arg-type]


def unique_tool_name(name: str, request: ChatRequest) -> str:
    taken = {t.name for t in request.tools}
    taken.update(c.name for m in request.messages for c in m.tool_calls)
    while name in taken:
        name = f"json_{name}"
    return name[:64]


def with_answer_tool(request: ChatRequest, strict: bool) -> ChatRequest:
    """``request`` with the answer offered as a tool and a call forced (a request that
    asks for no tool-mode answer comes back as it is).

    ``strict``: send the strict shape with ``strict: true`` (OpenAI strict function
    calling); otherwise the logical shape. With the caller's own tools on offer the
    model must call one of them or the answer (``required``), unless the caller
    named one; with ``tool_choice="none"`` only the answer is offered.
    """
    out = request.output
    if out is None or out.mode != "tool":
        return request
    name = unique_tool_name(out.name, request)
    spec = ToolSpec(name, out.description or "Give the answer as this tool's input.",
                    out.strict_schema if strict else out.schema, True if strict else None)
    choice = request.tool_choice
    tools = (*request.tools, spec)
    if not request.tools or (choice is not None and choice.mode == "none"):
        # The answer alone: "required" forces it as surely as naming it does, and more
        # servers honour it (llama.cpp constrains to a call only for "required").
        tools, choice = (spec,), ToolChoice("required")
    elif choice is None or choice.mode != "tool":
        choice = ToolChoice("required")  # one of the caller's tools, or the answer
    return msgspec.structs.replace(request, tools=tools, tool_choice=choice, output=None)


def answer_from_calls(completion: Completion, request: ChatRequest | None) -> Completion:
    """``completion`` with the answer tool's call turned into its text (when ``request``
    asked for a tool-mode answer)."""
    name = answer_tool_name(request)
    if name is None:
        return completion
    answer = next((c for c in completion.tool_calls if c.name == name), None)
    if answer is None:
        return completion
    calls = tuple(c for c in completion.tool_calls if c is not answer)
    finish = completion.finish_reason
    if finish == "tool_calls" and not calls:
        finish = "stop"  # the forced answer tool is the answer, not a call to make
    text = answer.arguments if not completion.text else completion.text + answer.arguments
    return msgspec.structs.replace(completion, text=text, tool_calls=calls, finish_reason=finish)


def answer_stream(decoder: StreamDecoder, request: ChatRequest | None
                  ) -> StreamDecoder | AnswerToolDecoder:
    """``decoder``, wrapped so a tool-mode answer streams as text when ``request`` asks
    for one."""
    name = answer_tool_name(request)
    return AnswerToolDecoder(decoder, name) if name is not None else decoder


class AnswerToolDecoder:
    """Wraps a stream decoder so the answer tool's argument fragments stream as text."""

    __slots__ = ("_answer", "_calls", "_inner", "_name")

    def __init__(self, inner: Any, name: str) -> None:
        self._inner = inner
        self._name = name
        self._answer: int | None = None  # the answer call's stream index
        self._calls: dict[int, int] = {}  # other calls' stream index -> their new index

    @property
    def done(self) -> bool:
        return self._inner.done

    @property
    def has_end_marker(self) -> bool:
        return self._inner.has_end_marker

    def feed(self, event: SSEEvent) -> Delta | str | None:
        delta: Any = self._inner.feed(event)
        if delta is None or delta.__class__ is str:  # nothing, or text only
            return delta
        if delta.__class__ is ToolCallDelta:
            delta = Delta(tool_calls=(delta,))
        if delta.tool_calls:
            text: list[str] = []
            calls = []
            for call in delta.tool_calls:
                if call.name == self._name and call.index not in self._calls:
                    self._answer = call.index
                if call.index == self._answer:
                    if call.arguments:
                        text.append(call.arguments)
                    continue
                slot = self._calls.setdefault(call.index, len(self._calls))
                calls.append(ToolCallDelta(slot, call.id, call.name, call.arguments,
                                           call.signature))
            delta.tool_calls = tuple(calls) or None
            if text:
                delta.text = (delta.text or "") + "".join(text)
        if delta.finish_reason == "tool_calls" and not self._calls and self._answer is not None:
            delta.finish_reason = "stop"
        return delta


def derived(endpoint: Endpoint, key: Any, make: Callable[[], T]) -> T:
    """What a dialect derives from ``endpoint`` alone (a URL, headers), made once per
    ``key`` and kept on the endpoint: a model repeats it on every call."""
    found = endpoint.memo.get(key)
    if found is None:
        found = endpoint.memo[key] = make()
    return found


_SCHEMA_JSON: dict[tuple[int, Any], tuple[object, msgspec.Raw]] = {}


def schema_json(schema: dict[str, Any], key: Any = None,
                make: Callable[[dict[str, Any]], Any] | None = None) -> msgspec.Raw:
    """An output schema as its JSON (``make(schema)``'s, when a dialect reshapes it),
    encoded once per schema and ``key``. The schemas of a structured call are its
    compiled type's, which msgflux never changes, and a model sends the same one on
    every call. An entry holds its schema, so no other object takes its id."""
    found = _SCHEMA_JSON.get((id(schema), key))
    if found is None:
        if len(_SCHEMA_JSON) >= 1024:  # more schemas than any program cycles through
            _SCHEMA_JSON.clear()
        raw = msgspec.Raw(msgspec.json.encode(schema if make is None else make(schema)))
        found = _SCHEMA_JSON[(id(schema), key)] = (schema, raw)
    return found[1]


def join_url(base: str, path: str) -> str:
    return base.rstrip("/") + path


def decode_wire(decoder: msgspec.json.Decoder[T], data: bytes, what: str,
                provider: str | None = None) -> T:
    """Decode provider bytes, or raise ResponseError quoting them.

    ``what`` is the message, e.g. "openai sent a stream chunk that is not valid JSON";
    with ``provider``, the message is "<provider> <what>" (made only on failure).
    msgspec raises UnicodeDecodeError (not DecodeError) for invalid UTF-8 inside a
    JSON string, so both are caught here, once for every dialect.
    """
    try:
        return decoder.decode(data)
    except (msgspec.DecodeError, UnicodeDecodeError) as e:
        if provider is not None:
            what = f"{provider} {what}"
        raise exc.ResponseError(
            f"{what} ({e})", raw=data[:2000].decode("utf-8", "replace")
        ) from None


_STATUS_ERRORS: dict[int, type[exc.ProviderError]] = {
    400: exc.BadRequestError,
    401: exc.AuthenticationError,
    403: exc.PermissionDeniedError,
    404: exc.NotFoundError,
    408: exc.ServerError,
    409: exc.ConflictError,
    413: exc.BadRequestError,
    422: exc.UnprocessableEntityError,
    429: exc.RateLimitError,
    529: exc.OverloadedError,
}


def error_from_status(
    status: int | None,
    message: str,
    *,
    provider: str,
    code: str | None = None,
    error_type: str | None = None,
    body: str | None = None,
    request_id: str | None = None,
    retry_after: float | None = None,
) -> exc.ProviderError:
    """The typed error for an HTTP status (or an in-band error type when status is None)."""
    kind = (error_type or "").lower()
    if "overloaded" in kind:
        cls: type[exc.ProviderError] = exc.OverloadedError
    elif kind in _DECISIVE_ERRORS:
        cls = _DECISIVE_ERRORS[kind]
    elif status is None:
        cls = _IN_BAND_ERRORS.get(kind, exc.APIStatusError)
    elif status in _STATUS_ERRORS:
        cls = _STATUS_ERRORS[status]
    elif status >= 500:
        cls = exc.ServerError
    else:
        cls = exc.APIStatusError
    return cls(
        message or f"HTTP {status}",
        status=status,
        provider=provider,
        code=code,
        error_type=error_type,
        body=body,
        request_id=request_id,
        retry_after=retry_after,
    )


# Error types that say more than any status: they decide the class whatever the status.
# Gemini answers a bad API key with 400 INVALID_ARGUMENT and reason API_KEY_INVALID.
_DECISIVE_ERRORS: dict[str, type[exc.ProviderError]] = {
    "api_key_invalid": exc.AuthenticationError,
}

# Error types that arrive inside a 200 stream (no status to go by).
_IN_BAND_ERRORS: dict[str, type[exc.ProviderError]] = {
    "rate_limit_error": exc.RateLimitError,
    "rate_limit_exceeded": exc.RateLimitError,
    "api_error": exc.ServerError,
    "server_error": exc.ServerError,
    "internal_server_error": exc.ServerError,
    "invalid_request_error": exc.BadRequestError,
    "authentication_error": exc.AuthenticationError,
    "permission_error": exc.PermissionDeniedError,
    "not_found_error": exc.NotFoundError,
}


class _WireError(msgspec.Struct, gc=False):
    message: str | None = None
    type: str | None = None
    code: str | int | None = None


class _ErrorBody(msgspec.Struct, gc=False):
    error: _WireError | str | None = None
    message: str | None = None
    detail: Any = None
    request_id: str | None = None


def http_error(status: int, headers: list[tuple[str, str]], body: bytes, provider: str,
               retry_after: float | None = None) -> exc.ProviderError:
    """The typed error for an HTTP error body in the shapes providers use.

    ``{"error": {"message", "type", "code"}}`` (OpenAI, Anthropic — whose
    ``type: "error"`` wrapper carries the same object — and compatible servers),
    ``{"error": "..."}``, ``{"message": ...}`` and ``{"detail": ...}``. A body in
    none of them is quoted as text.
    """
    message = code = kind = request_id = None
    try:
        wire = msgspec.json.decode(body, type=_ErrorBody)
    except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError):
        wire = None
    if wire is not None:
        if isinstance(wire.error, _WireError):
            message, kind = wire.error.message, wire.error.type
            code = str(wire.error.code) if wire.error.code is not None else None
        elif isinstance(wire.error, str):
            message = wire.error
        message = message or wire.message or (str(wire.detail) if wire.detail else None)
        request_id = wire.request_id
    text = body.decode("utf-8", "replace")
    request_id = next((v for k, v in headers if k in ("x-request-id", "request-id")),
                      request_id)
    return error_from_status(
        status,
        message or text[:500] or f"HTTP {status}",
        provider=provider,
        code=code,
        error_type=kind,
        body=text[:4000],
        request_id=request_id,
        retry_after=retry_after,
    )
