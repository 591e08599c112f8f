"""The one error hierarchy of msgflux.

Everything msgflux raises on purpose derives from :class:`MsgfluxError`. Errors
found before the network (bad input, unknown provider, missing key) are also
``ValueError``s; a missing optional package is also an ``ImportError``; timeouts
are also the builtin ``TimeoutError``. Provider HTTP errors carry ``status``,
``provider`` and the provider's own message. ``retryable`` tells the retry
driver whether another attempt is safe; ``retry_after`` is the server's hint in
seconds, when it gave one.

Messages never contain API keys: providers' bodies are quoted, request headers
never are.
"""

from __future__ import annotations

import builtins
from typing import Any

__all__ = [
    "APIConnectionError",
    "APIStatusError",
    "APITimeoutError",
    "AuthenticationError",
    "BadRequestError",
    "CapabilityError",
    "ConfigurationError",
    "ConflictError",
    "ConnectTimeoutError",
    "ContextWindowExceededError",
    "FirstByteTimeoutError",
    "IdleTimeoutError",
    "InvalidParameterError",
    "MessageFormatError",
    "MissingAPIKeyError",
    "MissingDependencyError",
    "ModelGatewayError",
    "MsgfluxError",
    "NotFoundError",
    "OutputTruncatedError",
    "OutputTruncatedWarning",
    "OverloadedError",
    "PermissionDeniedError",
    "PrefillNotSupportedError",
    "ProviderError",
    "RateLimitError",
    "RefusalError",
    "ResponseError",
    "ServerError",
    "StreamError",
    "StreamUsageError",
    "StructuredOutputError",
    "ToolCallArgumentsError",
    "ToolExecutionError",
    "ToolLoopLimitError",
    "TotalTimeoutError",
    "TransportError",
    "TypedParserError",
    "TypedParserNotFoundError",
    "UnknownProviderError",
    "UnprocessableEntityError",
]


class MsgfluxError(Exception):
    """Base class of every error msgflux raises on purpose.

    ``attempts``: how many attempts the call that raised it made, when it came out of
    a call (``None`` otherwise).
    """

    retryable: bool = False
    retry_after: float | None = None
    attempts: int | None = None


# ---------------------------------------------------------------- bad input


class ConfigurationError(MsgfluxError, ValueError):
    """Something the caller passed cannot work; raised before any network call."""


class InvalidParameterError(ConfigurationError):
    """A constructor or call argument is unknown, of the wrong type or out of range."""


class UnknownProviderError(ConfigurationError):
    """The ``provider/`` part of a model path names no known provider."""


class MissingAPIKeyError(ConfigurationError):
    """No API key was given and the provider's key variable is not set."""


class MessageFormatError(ConfigurationError):
    """``messages`` (or a ChatBlock) is not in a shape msgflux understands."""


class CapabilityError(ConfigurationError):
    """The request asks the model for something its profile says it cannot do."""


class ContextWindowExceededError(ConfigurationError):
    """The request is longer than the model's known context window."""


class PrefillNotSupportedError(ConfigurationError):
    """``prefilling`` was given for a provider that cannot continue an assistant turn."""


class TypedParserNotFoundError(ConfigurationError):
    """``typed_parser`` names no registered parser."""


class MissingDependencyError(MsgfluxError, ImportError):
    """An optional package is needed; the message names the extra to install."""


# ---------------------------------------------------------------- transport


class TransportError(MsgfluxError):
    """The HTTP exchange itself failed (no usable response)."""

    def __init__(self, message: str, *, url: str | None = None) -> None:
        super().__init__(message)
        self.url = url


class APIConnectionError(TransportError):
    """Could not connect, or the connection broke before a response arrived."""

    retryable = True


class APITimeoutError(TransportError, builtins.TimeoutError):
    """A timeout expired; the subclass says which one."""

    retryable = True


class ConnectTimeoutError(APITimeoutError):
    """Connecting (TCP and TLS) took longer than ``timeouts.connect``."""


class FirstByteTimeoutError(APITimeoutError):
    """The server sent nothing for ``timeouts.first_byte`` after the request."""


class IdleTimeoutError(APITimeoutError):
    """The server went silent mid-response for longer than ``timeouts.idle``."""


class TotalTimeoutError(APITimeoutError):
    """The whole call took longer than ``timeouts.total``."""


# ---------------------------------------------------------------- provider HTTP errors


class ProviderError(MsgfluxError):
    """The provider answered with an error.

    ``status`` is the HTTP status (``None`` for an error sent inside a stream),
    ``provider`` the provider id, ``message`` the provider's own message,
    ``code``/``error_type`` its machine-readable fields when given, ``body``
    the raw error body (text), ``request_id`` the provider's request id.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        provider: str | None = None,
        code: str | None = None,
        error_type: str | None = None,
        body: str | None = None,
        request_id: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.message = message
        self.status = status
        self.provider = provider
        self.code = code
        self.error_type = error_type
        self.body = body
        self.request_id = request_id
        if retry_after is not None:
            self.retry_after = retry_after
        where = f"{provider} " if provider else ""
        head = f"{where}HTTP {status}" if status is not None else f"{where}error"
        super().__init__(f"{head}: {message}{self._hint()}")

    def _hint(self) -> str:
        return ""


class APIStatusError(ProviderError):
    """An HTTP error status not covered by a more precise subclass."""


class BadRequestError(ProviderError, ValueError):
    """400: the provider rejected the request as malformed. Not retried."""


class UnprocessableEntityError(BadRequestError):
    """422: the provider could not process the request. Not retried."""


class AuthenticationError(ProviderError):
    """401: the API key is missing, wrong or revoked."""

    def _hint(self) -> str:
        return " (check the API key: pass api_key= or set the provider's key variable)"


class PermissionDeniedError(ProviderError):
    """403: the key is valid but not allowed to use this model or endpoint."""


class NotFoundError(ProviderError):
    """404: the model or endpoint does not exist at this base URL."""

    def _hint(self) -> str:
        return " (check the model id and the base URL)"


class ConflictError(ProviderError):
    """409: a conflicting request; retried."""

    retryable = True


class RateLimitError(ProviderError):
    """429: too many requests or tokens; retried after the server's ``retry_after``."""

    retryable = True


class ServerError(ProviderError):
    """5xx (and 408): the provider failed; retried."""

    retryable = True


class OverloadedError(ServerError):
    """The provider is overloaded (Anthropic 529, or an ``overloaded`` error type)."""


# ---------------------------------------------------------------- responses and streams


class ResponseError(MsgfluxError):
    """The provider answered, but the answer cannot be turned into what was asked.

    ``raw`` keeps the text the model produced. For a structured answer that was asked
    for more than once, ``raw_answers`` keeps every answer, first to last, and
    ``metadata`` the response metadata (usage and cost summed over the attempts,
    ``structured_mode``, ``attempts``); ``metadata`` is ``None`` when the failure came
    before any answer was read.
    """

    metadata: Any = None

    def __init__(self, message: str, *, raw: str | None = None) -> None:
        super().__init__(message)
        self.raw = raw
        self.raw_answers: list[str] = [raw] if raw is not None else []


class StructuredOutputError(ResponseError):
    """The output does not decode or validate against ``generation_schema``."""


class OutputTruncatedError(StructuredOutputError):
    """A structured call stopped at the token limit (``finish_reason == "length"``)."""


class OutputTruncatedWarning(UserWarning):
    """A text answer stopped at a token limit the call did not set.

    The limit was the provider's or the embedded engine's default (512 tokens for
    ``llamacpp`` models), so the answer is probably cut mid-sentence. Pass
    ``max_tokens`` to choose the limit; a call that does is never warned.
    """


class RefusalError(StructuredOutputError):
    """The provider refused to answer a structured call (generation_schema or typed_parser).

    ``refusal`` is the refusal's text (the model's words, or what blocked the
    answer); ``raw`` everything the model produced, refusal included. A
    structured answer cannot be made from a refusal: read it, or rephrase.
    """

    def __init__(self, refusal: str, *, raw: str | None = None) -> None:
        shown = refusal if len(refusal) <= 500 else refusal[:500] + "..."
        super().__init__(
            f"The model refused to give the structured answer: {shown!r}. The refusal is on "
            ".refusal; rephrase the request, or handle the refusal instead of a result.",
            raw=raw,
        )
        self.refusal = refusal


class ToolCallArgumentsError(ResponseError):
    """A tool call's ``arguments`` are not a JSON object; ``tool_name`` says which call."""

    def __init__(self, message: str, *, raw: str | None = None, tool_name: str | None = None,
                 call_id: str | None = None) -> None:
        super().__init__(message, raw=raw)
        self.tool_name = tool_name
        self.call_id = call_id


class ToolExecutionError(MsgfluxError):
    """A tool function raised during ``run_tools`` with ``tool_errors="raise"``.

    ``__cause__`` is the function's own exception; ``tool_name``, ``call_id`` and
    ``arguments`` say which call; ``messages`` holds the turns the loop had added
    before it (ChatML dicts: assistant tool-call turns and tool results).
    """

    def __init__(self, message: str, *, tool_name: str, call_id: str, arguments: Any,
                 messages: list[dict[str, Any]]) -> None:
        super().__init__(message)
        self.tool_name = tool_name
        self.call_id = call_id
        self.arguments = arguments
        self.messages = messages


class ToolLoopLimitError(MsgfluxError):
    """``run_tools`` made ``max_steps`` calls and the model still asked for tools.

    ``messages``: the turns the loop added (ChatML dicts: assistant tool-call turns
    and tool results), to append to the conversation and go on;
    ``metadata``: usage and cost summed over the steps, ``steps``, ``tool_calls``.
    """

    def __init__(self, message: str, *, messages: list[dict[str, Any]], metadata: Any) -> None:
        super().__init__(message)
        self.messages = messages
        self.metadata = metadata


class TypedParserError(ResponseError):
    """A typed parser (e.g. ``typed_xml``) could not decode the output."""


class StreamError(MsgfluxError):
    """A stream broke before its natural end.

    What had arrived stays available: ``partial_text``, ``partial_reasoning``
    and ``partial_tool_calls`` (a list of ``{"id", "name", "arguments"}`` with
    the raw argument text so far). ``__cause__`` is the underlying error.
    """

    def __init__(self, message: str, *, partial_text: str = "", partial_reasoning: str = "",
                 partial_tool_calls: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.partial_text = partial_text
        self.partial_reasoning = partial_reasoning
        self.partial_tool_calls = partial_tool_calls or []


class StreamUsageError(MsgfluxError, RuntimeError):
    """A stream was iterated in a way that cannot work (e.g. blocking on its own loop)."""


class ModelGatewayError(MsgfluxError):
    """Every model of a gateway failed; ``errors`` lists ``(model, exception)`` in order."""

    def __init__(self, message: str, errors: list[tuple[str, BaseException]]) -> None:
        super().__init__(message)
        self.errors = errors


def _redact(error: BaseException, secret: str | None) -> BaseException:
    """Mask ``secret`` (an API key a provider quoted back) in ``error``'s texts, in place."""
    if not secret or len(secret) < 8:  # shorter is no real key, and masking would garble
        return error
    # The key as a server may quote it back: raw, JSON-escaped (``\\/`` for ``/``,
    # ``\\u002b`` for ``+``) or percent-encoded in a URL.
    from urllib.parse import quote

    forms = {secret, secret.replace("/", "\\/"), quote(secret, safe="")}
    forms |= {f.replace("+", "\\u002b") for f in tuple(forms)}

    def mask(text: str) -> str:
        for form in forms:
            if form in text:
                text = text.replace(form, "[REDACTED]")
        return text

    error.args = tuple(mask(a) if isinstance(a, str) else a for a in error.args)
    for attr in ("message", "body", "raw"):
        value = getattr(error, attr, None)
        if isinstance(value, str):
            setattr(error, attr, mask(value))
    return error
