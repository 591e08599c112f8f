"""The retry driver: generic, knows nothing of providers.

An attempt function raises a :class:`~msgflux.exceptions.MsgfluxError`; when
its ``retryable`` is true the driver waits and tries again, up to
``policy.max_retries`` more times. The wait is exponential backoff with full
jitter, or the server's ``retry_after`` (capped) when the error carries one.
Anything else propagates at once. Streams must only be retried before their
first event reached the caller: that is the caller's to ensure, by retrying
just the part that opens the stream.
"""

import random
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import TypeVar

import msgspec

from msgflux._transport.types import Timeouts
from msgflux.exceptions import MsgfluxError

__all__ = [
    "RETRYABLE_STATUS",
    "CallBudget",
    "RetryPolicy",
    "RetryState",
    "acall_with_retries",
    "call_with_retries",
    "retry_after_from_headers",
]

T = TypeVar("T")

#: Statuses worth another attempt (error mappers mark these errors retryable).
RETRYABLE_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504, 529})


class RetryPolicy(msgspec.Struct, frozen=True):
    """How many times to retry and how long to wait in between (seconds)."""

    max_retries: int = 2
    backoff_base: float = 0.5
    backoff_max: float = 8.0
    retry_after_max: float = 60.0

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait before retry number ``attempt`` (0-based).

        The server's ``retry_after`` wins, capped at ``retry_after_max``;
        otherwise full jitter: uniform in ``[0, min(backoff_max, base * 2**attempt)]``.
        """
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.retry_after_max)
        ceiling = min(self.backoff_max, self.backoff_base * 2.0 ** min(attempt, 62))
        return random.uniform(0.0, ceiling)


def retry_after_from_headers(
    headers: Mapping[str, str] | Iterable[tuple[str, str]] | None,
) -> float | None:
    """The server's retry hint in seconds, or ``None``.

    Reads ``retry-after-ms`` (milliseconds, used by OpenAI and Azure) first,
    then ``retry-after`` as delta-seconds or an HTTP date. Header names are
    matched case-insensitively; negative or unparsable values give ``None``
    (a date in the past gives ``0.0``).
    """
    if not headers:
        return None
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    ms = seconds = None
    for name, value in pairs:
        low = name.lower()
        if low == "retry-after-ms" and ms is None:
            ms = value
        elif low == "retry-after" and seconds is None:
            seconds = value
    if ms is not None:
        try:
            value_ms = float(ms)
        except ValueError:
            value_ms = -1.0
        if value_ms >= 0 and value_ms == value_ms:  # not NaN
            return value_ms / 1000.0
    if seconds is None:
        return None
    text = seconds.strip()
    try:
        value_s = float(text)
    except ValueError:
        return _from_http_date(text)
    return value_s if value_s >= 0 and value_s == value_s and value_s != float("inf") else None


def _from_http_date(text: str) -> float | None:
    from email.utils import parsedate_to_datetime

    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    if when.tzinfo is None:  # "-0000" dates: RFC 9110 dates are UTC
        from datetime import timezone

        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, when.timestamp() - time.time())


class CallBudget:
    """The time one call has in all, retries included (``Timeouts.budget()``).

    :meth:`timeouts` gives each attempt its limits: the first one the call's own,
    a retry what is left of the budget. So the worst case of a call is its
    budget, not the attempts times their limits. ``deadline`` is on
    ``time.monotonic()``. ``started``: the ``time.monotonic()`` at which the call
    began, when its first attempt already ran (a call makes its budget only once an
    attempt failed); the budget then counts from there.
    """

    __slots__ = ("budget", "deadline", "limits", "started", "stream")

    def __init__(self, limits: Timeouts, stream: bool, started: float | None = None) -> None:
        self.limits = limits
        self.stream = stream
        self.budget = limits.budget()
        begun = time.monotonic() if started is None else started
        self.deadline = begun + self.budget if self.budget is not None else None
        self.started = started is not None

    def timeouts(self) -> Timeouts:
        if not self.started or self.deadline is None:
            self.started = True
            return self.limits
        left = self.deadline - time.monotonic()
        if left <= 0:
            from msgflux.exceptions import TotalTimeoutError

            raise TotalTimeoutError(
                f"total timeout: the call used its {self.budget:g} s (retries included); "
                "raise it with the model's timeout= argument (total=...)"
            )
        return self.limits.within(left, self.stream)


class RetryState:
    """The retry decision for one call, sans-I/O: both drivers below only sleep.

    :meth:`after` takes the error of a failed attempt and returns how long to
    wait before the next one, or ``None`` when the error must propagate (not
    retryable, ``policy.max_retries`` used up, or the wait would pass the call's
    ``deadline``, on ``time.monotonic()``). ``on_retry(retry_number, error,
    delay)`` runs before each wait (logging, metrics).
    """

    __slots__ = ("deadline", "on_retry", "policy", "retries")

    def __init__(self, policy: RetryPolicy,
                 on_retry: Callable[[int, MsgfluxError, float], object] | None = None,
                 deadline: float | None = None) -> None:
        self.policy = policy
        self.on_retry = on_retry
        self.retries = 0
        self.deadline = deadline

    def after(self, error: MsgfluxError) -> float | None:
        if not error.retryable or self.retries >= self.policy.max_retries:
            return None
        wait = self.policy.delay(self.retries, error.retry_after)
        if self.deadline is not None and time.monotonic() + wait >= self.deadline:
            return None  # no time left for another attempt: the error stands
        self.retries += 1
        if self.on_retry is not None:
            self.on_retry(self.retries, error, wait)
        return wait


def call_with_retries(
    attempt_fn: Callable[[], T],
    policy: RetryPolicy | RetryState,
    sleep: Callable[[float], object] = time.sleep,
    on_retry: Callable[[int, MsgfluxError, float], object] | None = None,
    deadline: float | None = None,
    failed: MsgfluxError | None = None,
) -> T:
    """Call ``attempt_fn()``; retry retryable msgflux errors as :class:`RetryState` says.

    The last error propagates unchanged when retries (or the time to ``deadline``) run
    out. Pass a :class:`RetryState` instead of a policy to read ``retries`` afterwards.
    ``failed``: the error of a first attempt the caller made itself (a call that
    succeeds at once then makes no retry state); the driver starts from it.
    """
    state = policy if isinstance(policy, RetryState) else RetryState(policy, on_retry, deadline)
    if failed is not None:
        wait = _after_first(state, failed)
        if wait > 0:
            sleep(wait)
    while True:
        try:
            return attempt_fn()
        except MsgfluxError as exc:
            wait = state.after(exc)
            if wait is None:
                raise
        if wait > 0:
            sleep(wait)


def _after_first(state: RetryState, failed: MsgfluxError) -> float:
    """The wait after a first attempt the caller made; ``failed`` is raised when no
    retry follows it."""
    wait = state.after(failed)
    if wait is None:
        raise failed
    return wait


async def acall_with_retries(
    attempt_fn: Callable[[], Awaitable[T]],
    policy: RetryPolicy | RetryState,
    sleep: Callable[[float], Awaitable[object]] | None = None,
    on_retry: Callable[[int, MsgfluxError, float], object] | None = None,
    deadline: float | None = None,
    failed: MsgfluxError | None = None,
) -> T:
    """Async :func:`call_with_retries`; ``sleep`` defaults to ``asyncio.sleep``."""
    if sleep is None:
        import asyncio

        sleep = asyncio.sleep
    state = policy if isinstance(policy, RetryState) else RetryState(policy, on_retry, deadline)
    if failed is not None:
        wait = _after_first(state, failed)
        if wait > 0:
            await sleep(wait)
    while True:
        try:
            return await attempt_fn()
        except MsgfluxError as exc:
            wait = state.after(exc)
            if wait is None:
                raise
        if wait > 0:
            await sleep(wait)


# (No ``from __future__ import annotations`` here: msgspec resolves string
# annotations through ``__module__``, which no longer names this file.)
RetryPolicy.__module__ = "msgflux"  # public as mf.RetryPolicy
