"""What a chat call reports while it runs: typed, frozen events.

Every event names its call (``call_id``, unique in the process), the provider
and the model asked for, and whether the call streams. The order of one call::

    RequestStarted
    AttemptFinished (failed) → RetryScheduled → ...      one pair per retry
    AttemptFinished (answered)
    ResponseReceived  or  CallFailed                      a stream: when it ends or breaks

A gateway adds :class:`GatewayFallback` when it moves from one model to the
next. Message content (``messages``, ``output``) is filled in only when the
caller opted in with ``msgflux.observe.configure(capture_content=True)``;
events never carry an API key or a request header.
"""

from __future__ import annotations

from typing import Any

import msgspec

from msgflux.models.request import Message, Usage

__all__ = [
    "AttemptFinished",
    "CallFailed",
    "Event",
    "GatewayFallback",
    "RequestStarted",
    "ResponseReceived",
    "RetryScheduled",
]


class Event(msgspec.Struct, frozen=True, kw_only=True):
    """What every event carries."""

    call_id: int
    provider: str
    model: str
    stream: bool = False


class RequestStarted(Event, frozen=True, kw_only=True):
    """The call is about to send its first attempt.

    ``endpoint``: method and URL path (``"POST /v1/chat/completions"``; no query,
    no host); ``server``: ``host:port``; ``max_attempts``: 1 + the retries allowed.
    """

    endpoint: str
    server: str
    max_attempts: int
    messages: tuple[Message, ...] | None = None


class AttemptFinished(Event, frozen=True, kw_only=True):
    """One HTTP attempt ended. Times are seconds from the attempt's start; ``connect``
    is ``None`` on a reused connection, ``first_byte`` when the transport did not
    measure it; for a stream, ``total`` runs to the stream's end.

    ``status`` is ``None`` when no response came (a connection failure, a timeout);
    ``error`` names the error class of a failed attempt; ``usage`` is set on the
    attempt that answered, when the provider reported it.
    """

    attempt: int
    max_attempts: int
    status: int | None
    connect: float | None = None
    first_byte: float | None = None
    total: float
    error: str | None = None
    usage: Usage | None = None


class RetryScheduled(Event, frozen=True, kw_only=True):
    """A failed attempt will be retried after ``delay`` seconds.

    ``retry`` of ``max_retries`` (1-based); ``reason``: the error class;
    ``retry_after``: the server's hint, when it gave one.
    """

    retry: int
    max_retries: int
    delay: float
    reason: str
    status: int | None = None
    retry_after: float | None = None


class ResponseReceived(Event, frozen=True, kw_only=True):
    """The call answered (a stream: it ended properly).

    ``usage`` and ``cost`` (USD, ``None`` when unknown) are the whole call's,
    summed over its attempts; ``duration`` runs from the call's start to its end.
    """

    attempts: int
    duration: float
    usage: Usage | None = None
    cost: float | None = None
    finish_reason: str | None = None
    response_model: str | None = None
    response_id: str | None = None
    output: Any = None


class CallFailed(Event, frozen=True, kw_only=True):
    """The call raised ``error``. ``broken``: a stream that failed after part of its
    answer reached the caller (``error`` is then a StreamError with the partial
    answer)."""

    error: BaseException
    error_type: str
    attempts: int
    duration: float
    broken: bool = False


class GatewayFallback(Event, frozen=True, kw_only=True):
    """A gateway's model failed with ``error`` (``provider``/``model`` name it) and the
    gateway moves on to ``next_model`` (``"provider/model"``), or gives up (``None``)."""

    error: BaseException
    error_type: str
    next_model: str | None = None


for _event in (Event, RequestStarted, AttemptFinished, RetryScheduled, ResponseReceived,
               CallFailed, GatewayFallback):
    _event.__module__ = "msgflux.observe"
