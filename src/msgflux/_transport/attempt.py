"""One request attempt's time limits and failure mapping, shared by both clients.

Clocks are passed in (``time.monotonic()`` for the sync client, ``loop.time()``
for the async one), so this stays free of I/O.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from msgflux._transport.errors import (
    connection_broken,
    limit_exceeded,
    protocol_error,
    timeout_error,
)
from msgflux._transport.http11 import IncompleteResponseError, LimitExceededError, ProtocolError
from msgflux._transport.types import NON_STREAM_TOTAL, UNSET, Timeouts, Timings

if TYPE_CHECKING:
    from msgflux._transport.urls import Target
    from msgflux.exceptions import MsgfluxError

__all__ = ["INF", "Attempt"]

INF = float("inf")


class Attempt:
    """Deadline bookkeeping, phase times and error building for one attempt.

    ``connected`` and ``head`` are clock readings the client stamps when the
    connection is ready and when the response head has arrived (``None`` until
    then, and ``connected`` stays ``None`` on a reused connection).
    """

    __slots__ = ("connected", "deadline", "head", "started", "stream", "target", "timeouts",
                 "total", "where")

    def __init__(self, timeouts: Timeouts, target: Target, where: str, now: float,
                 stream: bool = False) -> None:
        total = timeouts.total
        if total is UNSET:  # the default for this kind of call (see Timeouts)
            total = None if stream else NON_STREAM_TOTAL
        self.total = total
        self.stream = stream
        self.deadline = now + total if total is not None else INF
        self.timeouts = timeouts
        self.target = target
        self.where = where
        self.started = now
        self.connected: float | None = None
        self.head: float | None = None

    def timings(self) -> Timings:
        """The phases stamped so far, in seconds from the start."""
        start = self.started
        connected, head = self.connected, self.head
        return Timings(None if connected is None else connected - start,
                       None if head is None else head - start)

    def limit(self, kind: str) -> float | None:
        t = self.timeouts
        if kind == "idle":
            return t.idle
        if kind == "first_byte":
            return t.first_byte
        if kind == "connect":
            return t.connect
        return self.total

    def budget(self, kind: str, now: float) -> tuple[float | None, str]:
        """How long the next blocking step may take, and which timeout bounds it.

        Raises the total timeout when the deadline already passed.
        """
        limit = getattr(self.timeouts, kind)  # (never "total" here)
        if self.deadline == INF:
            return limit, kind
        remaining = self.deadline - now
        if remaining <= 0:
            raise self.timeout("total")
        if limit is None or remaining < limit:
            return remaining, "total"
        return limit, kind

    def timeout(self, kind: str) -> MsgfluxError:
        value = self.limit(kind)
        return timeout_error(kind, value or 0.0, self.where, self.target.safe_url)

    def broken(self, exc: BaseException | None, received: bool) -> MsgfluxError:
        """The error for a failure after the request was (being) sent."""
        url = self.target.safe_url
        if isinstance(exc, IncompleteResponseError):
            return connection_broken(self.where, str(exc), received=exc.received, url=url)
        if isinstance(exc, LimitExceededError):
            return limit_exceeded(self.where, str(exc), url)
        if isinstance(exc, ProtocolError):
            return protocol_error(self.where, str(exc), url)
        return connection_broken(self.where, exc, received=received, url=url)
