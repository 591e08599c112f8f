"""Counting a prompt's tokens before sending it.

:func:`count` / :func:`acount` ask the provider's own counting endpoint when its
dialect has one (:class:`~msgflux.models.dialects.base.TokenCounter`: Anthropic's
``count_tokens``, Gemini's ``countTokens``, a llama.cpp server's chat template and
tokenizer) and otherwise estimate. An estimate says so: ``TokenCount.exact`` is
False. A counting endpoint the server lacks (404) falls back to the estimate too.

The estimate counts characters: about four a token in English (the rule of thumb
OpenAI, Anthropic and Google give), plus a few tokens of framing per message and
what tools and a schema add. :func:`lower_bound` is the low estimate the
pre-call context-window check uses: it must never refuse a prompt that fits.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import msgspec

from msgflux.exceptions import NotFoundError
from msgflux.models.request import ChatRequest, ImagePart, TextPart

if TYPE_CHECKING:
    from collections.abc import Generator

    from msgflux._transport.types import HttpRequest

__all__ = ["TokenCount", "acount", "count", "estimate", "lower_bound"]

_CHARS_PER_TOKEN = 4
_PER_MESSAGE = 4  # role markers and separators of a chat template
_PER_IMAGE = 256  # a mid-size image on current models; an estimate is only that


class TokenCount(msgspec.Struct, frozen=True):
    """A prompt's size in tokens. ``exact``: counted by the provider (``source`` names
    how); False for msgflux's estimate (``source == "estimate"``)."""

    tokens: int
    exact: bool
    source: str

    def __int__(self) -> int:
        return self.tokens


def _tally(request: ChatRequest) -> tuple[int, int]:
    """(characters of text, images) in the messages."""
    chars = 0
    images = 0
    for message in request.messages:
        content = message.content
        if isinstance(content, str):
            chars += len(content)
        elif content:
            for part in content:
                if isinstance(part, TextPart):
                    chars += len(part.text)
                elif isinstance(part, ImagePart):
                    images += 1
        for call in message.tool_calls:
            chars += len(call.name) + len(call.arguments)
    if request.prefill:
        chars += len(request.prefill)
    return chars, images


def lower_bound(request: ChatRequest) -> tuple[int, bool]:
    """``(tokens, has images)``: a prompt size the real one is not below (text only, at
    six characters a token), for the check before a call."""
    chars, images = _tally(request)
    return chars // 6, images > 0


def estimate(request: ChatRequest) -> int:
    """The prompt's tokens, estimated from its characters (see the module docstring)."""
    chars, images = _tally(request)
    encode = msgspec.json.encode
    for tool in request.tools:
        chars += len(tool.name) + len(tool.description or "")
        chars += len(encode(tool.parameters)) if tool.parameters else 0
    if request.output is not None:
        chars += len(encode(request.output.schema))
    framing = _PER_MESSAGE * len(request.messages)
    return -(-chars // _CHARS_PER_TOKEN) + framing + _PER_IMAGE * images


# ---------------------------------------------------------------- drivers


def _exchange(call: Any) -> tuple[Generator[HttpRequest, bytes, int] | None, str]:
    wiring = call.wiring
    counter = getattr(wiring.dialect, "count_tokens", None)
    if counter is None:
        return None, "estimate"
    return counter(call.request, wiring.endpoint), f"{wiring.provider} token count"


def count(call: Any) -> TokenCount:
    """Count a prepared call's prompt (blocking); retried like a call."""
    from msgflux._transport.retry import call_with_retries

    exchange, source = _exchange(call)
    if exchange is None:
        return TokenCount(estimate(call.request), False, "estimate")
    wiring = call.wiring

    def send(http: HttpRequest) -> bytes:
        response = wiring.transport().send(http, call.timeouts)
        if not 200 <= response.status < 300:
            raise wiring.error(response.status, response.headers, response.body)
        return response.body

    try:
        http = next(exchange)
        while True:
            body = call_with_retries(lambda: send(http), call.policy)  # noqa: B023
            http = exchange.send(body)
    except StopIteration as done:
        return TokenCount(done.value, True, source)
    except NotFoundError:  # a compatible server without the counting endpoint
        return TokenCount(estimate(call.request), False, "estimate")


async def acount(call: Any) -> TokenCount:
    """:func:`count` on the running event loop."""
    from msgflux._transport.retry import acall_with_retries

    wiring = call.wiring
    if not wiring.endpoint_ready:
        await wiring.aendpoint()
    exchange, source = _exchange(call)
    if exchange is None:
        return TokenCount(estimate(call.request), False, "estimate")

    async def send(http: HttpRequest) -> bytes:
        response = await wiring.async_transport().send(http, call.timeouts)
        if not 200 <= response.status < 300:
            raise wiring.error(response.status, response.headers, response.body)
        return response.body

    try:
        http = next(exchange)
        while True:
            body = await acall_with_retries(lambda: send(http), call.policy)  # noqa: B023
            http = exchange.send(body)
    except StopIteration as done:
        return TokenCount(done.value, True, source)
    except NotFoundError:
        return TokenCount(estimate(call.request), False, "estimate")
