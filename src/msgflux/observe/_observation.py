"""One call's observation: the facts are produced here once, and fanned out to
standard logging, the hooks and OpenTelemetry.

Cost when nobody listens: :func:`begin` returns ``None`` after a few lookups
(no hooks, no OpenTelemetry, and ``logging`` either never imported — then
nothing can have been configured — or logger ``msgflux.call`` off at INFO, at
WARNING for a stream), and the call then runs exactly as it would without this
module. The decision is
made once per call; nothing here runs per stream chunk.

Logging (logger ``msgflux.call``; msgflux adds no handlers): DEBUG for each
attempt and for the answer, INFO for each retry, WARNING for a stream that
broke after part of its answer reached the caller. Each record carries its
event as ``record.msgflux_event``. Messages never hold a key, and hold message
content only after ``configure(capture_content=True)``.
"""

from __future__ import annotations

import itertools
import sys
import threading
from collections.abc import Callable
from time import perf_counter
from typing import TYPE_CHECKING, Any, Protocol

from msgflux.observe.events import (
    AttemptFinished,
    CallFailed,
    Event,
    GatewayFallback,
    RequestStarted,
    ResponseReceived,
    RetryScheduled,
)

if TYPE_CHECKING:
    from msgflux._transport.types import HttpRequest, Timings
    from msgflux.exceptions import MsgfluxError
    from msgflux.models.request import ChatRequest, Usage

__all__ = ["Hook", "Observation", "add_hook", "begin", "configure", "fallback",
           "remove_hook"]

Hook = Callable[[Event], object]

DEBUG, INFO, WARNING = 10, 20, 30  # logging's levels, without importing logging


class Sink(Protocol):
    """A listener that keeps per-call state on the observation (OpenTelemetry)."""

    def on_event(self, obs: Observation, event: Event) -> None: ...


class _Registry:
    """What listens to every call. Tuples replaced whole, so readers need no lock."""

    __slots__ = ("capture_content", "hooks", "lock", "sinks")

    def __init__(self) -> None:
        self.hooks: tuple[Hook, ...] = ()
        self.sinks: tuple[Sink, ...] = ()
        self.capture_content = False
        self.lock = threading.Lock()

    def changed(self) -> None:
        global _listening
        _listening = bool(self.hooks or self.sinks)


_registry = _Registry()
_listening = False  # any global hook or sink: read once per call, so a plain global
_ids = itertools.count(1)
_loggers: dict[str, Any] = {}


def _logger(name: str = "msgflux.call") -> Any:
    """The logger, or ``None`` while ``logging`` was never imported (nothing configured)."""
    logger = _loggers.get(name)
    if logger is None:
        logging = sys.modules.get("logging")
        if logging is None:
            return None
        logger = _loggers[name] = logging.getLogger(name)
    return logger


# ---------------------------------------------------------------- public registry


def add_hook(hook: Hook) -> Hook:
    """Call ``hook(event)`` for every event of every call (all models). Returns the hook,
    so it works as a decorator. A hook runs in the calling thread (on the event loop
    for ``acall``): keep it quick. One that raises is reported (a WARNING on logger
    ``msgflux.observe``) and the call goes on."""
    check_hook(hook)
    with _registry.lock:
        if hook not in _registry.hooks:
            _registry.hooks = (*_registry.hooks, hook)
            _registry.changed()
    return hook


def remove_hook(hook: Hook) -> None:
    """Stop calling a hook added with :func:`add_hook` (no error if it was not added)."""
    with _registry.lock:
        _registry.hooks = tuple(h for h in _registry.hooks if h is not hook)
        _registry.changed()


def check_hook(hook: Any) -> None:
    from msgflux.exceptions import InvalidParameterError

    if not callable(hook):
        raise InvalidParameterError(f"a hook must be callable with one event, got {hook!r}")
    import inspect

    if inspect.iscoroutinefunction(hook) or inspect.iscoroutinefunction(
            getattr(hook, "__call__", None)):  # noqa: B004 (an object's async __call__)
        raise InvalidParameterError(
            f"hook {hook!r} is a coroutine function; hooks are called synchronously (on "
            "the event loop for acall): pass a plain function, and schedule async work "
            "from it with asyncio.get_running_loop().create_task(...) if you need to"
        )


def configure(*, capture_content: bool | None = None) -> None:
    """Process-wide observation settings.

    ``capture_content``: put message content in events (``RequestStarted.messages``,
    ``ResponseReceived.output``), DEBUG records and OpenTelemetry spans. Off by
    default: prompts and answers often hold personal data.
    """
    if capture_content is not None:
        if not isinstance(capture_content, bool):
            from msgflux.exceptions import InvalidParameterError

            raise InvalidParameterError(
                f"capture_content must be True or False, got {capture_content!r}")
        _registry.capture_content = capture_content


def add_sink(sink: Sink) -> None:
    with _registry.lock:
        _registry.sinks = (*_registry.sinks, sink)
        _registry.changed()


def remove_sink(sink: Sink) -> None:
    with _registry.lock:
        _registry.sinks = tuple(s for s in _registry.sinks if s is not sink)
        _registry.changed()


# ---------------------------------------------------------------- one call


def begin(provider: str, model: str, request: ChatRequest, max_retries: int,
          hooks: tuple[Hook, ...]) -> Observation | None:
    """An observation for a call about to run, or ``None`` when nobody listens."""
    logger = _loggers.get("msgflux.call")
    if logger is None and "logging" in sys.modules:  # (no frame while logging is absent)
        logger = _logger()
    if not (hooks or _listening) and (
            logger is None
            # A stream may break mid-way, a WARNING: streams are observed while WARNING
            # records are wanted (an observation per stream costs nothing per chunk).
            or not logger.isEnabledFor(WARNING if request.stream else INFO)):
        return None
    return Observation(provider, model, request, max_retries, _registry.hooks + hooks,
                       _registry.sinks, logger)


class Observation:
    """The events of one call, produced from the few places that know the facts."""

    __slots__ = ("_attempt_start", "_failed", "_open", "_sent", "attempts", "call_id",
                 "capture", "hooks", "logger", "max_retries", "model", "otel", "output",
                 "provider", "request", "sinks", "started", "status", "timings")

    def __init__(self, provider: str, model: str, request: ChatRequest, max_retries: int,
                 hooks: tuple[Hook, ...], sinks: tuple[Sink, ...], logger: Any) -> None:
        self.call_id = next(_ids)
        self.provider = provider
        self.model = model
        self.request = request
        self.max_retries = max_retries
        self.hooks = hooks
        self.sinks = sinks
        self.logger = logger
        self.capture = _registry.capture_content
        self.started = perf_counter()
        self.attempts = 0
        self.status: int | None = None
        self.timings: Timings | None = None
        self.otel: Any = None  # a sink's per-call state (the OpenTelemetry span)
        self.output: Any = None  # the answer, for a sink that records content
        self._attempt_start = 0.0
        self._sent = False
        self._open = False  # an attempt started and not reported yet
        self._failed = False

    # -------------------------------------------------------------- fan-out

    def emit(self, event: Event, level: int | None = None, message: str = "",
             *args: Any) -> None:
        """Fan ``event`` out; it is logged at ``level`` (not at all when ``None``)."""
        logger = self.logger
        if level is not None and logger is not None and logger.isEnabledFor(level):
            logger.log(level, message, *args, extra={"msgflux_event": event})
        for sink in self.sinks:
            _safely(sink.on_event, self, event)
        for hook in self.hooks:
            _safely(hook, event)

    def _heard(self, level: int | None) -> bool:
        """Whether an event logged at ``level`` reaches anybody: when not, it is not
        built (a stream is observed for its WARNING only, when nobody else listens)."""
        if self.sinks or self.hooks:
            return True
        logger = self.logger
        return level is not None and logger is not None and logger.isEnabledFor(level)

    def _base(self) -> dict[str, Any]:
        return {"call_id": self.call_id, "provider": self.provider, "model": self.model,
                "stream": self.request.stream}

    @property
    def max_attempts(self) -> int:
        return self.max_retries + 1

    # -------------------------------------------------------------- attempts

    def sending(self, http: HttpRequest) -> None:
        """An attempt is about to send ``http``; the first one starts the call."""
        if not self._sent:
            self._sent = True
            if not self._heard(DEBUG if self.capture else None):
                return
            from urllib.parse import urlsplit

            url = urlsplit(http.url)  # the path only: a query may hold a key
            messages = self.request.messages if self.capture else None
            event = RequestStarted(**self._base(), endpoint=f"{http.method} {url.path}",
                                   server=url.netloc.rpartition("@")[2],
                                   max_attempts=self.max_attempts, messages=messages)
            if messages is None:
                self.emit(event)
            else:
                self.emit(event, DEBUG, "%s/%s %s: sending %s", self.provider, self.model,
                          event.endpoint, messages)

    def attempt(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """``fn`` (one blocking attempt) wrapped to time it and report its failure."""

        def attempt(*args: Any) -> Any:
            self._start_attempt()
            try:
                return fn(*args)
            except BaseException as error:
                self._attempt_failed(error)
                raise

        return attempt

    def aattempt(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """:meth:`attempt` for a coroutine function."""

        async def attempt(*args: Any) -> Any:
            self._start_attempt()
            try:
                return await fn(*args)
            except BaseException as error:
                self._attempt_failed(error)
                raise

        return attempt

    def responded(self, status: int, timings: Timings | None) -> None:
        """The current attempt got a response head (its status and phase times)."""
        self.status = status
        self.timings = timings

    def _start_attempt(self) -> None:
        self._open = True
        self.attempts += 1
        self.status = None
        self.timings = None
        self._attempt_start = perf_counter()

    def _attempt_failed(self, error: BaseException) -> None:
        status = self.status if self.status is not None else getattr(error, "status", None)
        self._attempt(status, type(error).__name__, None)

    def _attempt(self, status: int | None, error: str | None, usage: Usage | None) -> None:
        self._open = False
        if not self._heard(DEBUG):
            return
        timings = self.timings
        total = perf_counter() - self._attempt_start
        event = AttemptFinished(
            **self._base(), attempt=self.attempts, max_attempts=self.max_attempts,
            status=status, connect=timings.connect if timings is not None else None,
            first_byte=timings.first_byte if timings is not None else None, total=total,
            error=error, usage=usage)
        self.emit(event, DEBUG, "%s/%s attempt %d/%d: %s in %.1f ms (connect %s, first byte "
                  "%s)%s", self.provider, self.model, event.attempt, event.max_attempts,
                  status if error is None else f"{error} (status {status})", total * 1e3,
                  _ms(event.connect), _ms(event.first_byte), _tokens(usage))

    def retried(self, retry: int, error: MsgfluxError, delay: float) -> None:
        """``RetryState.on_retry``: a failed attempt will be retried."""
        event = RetryScheduled(**self._base(), retry=retry, max_retries=self.max_retries,
                               delay=delay, reason=type(error).__name__,
                               status=getattr(error, "status", None),
                               retry_after=error.retry_after)
        self.emit(event, INFO, "%s/%s: %s%s; retry %d of %d in %.2f s", self.provider,
                  self.model, event.reason,
                  f" (status {event.status})" if event.status is not None else "",
                  retry, self.max_retries, delay)

    # -------------------------------------------------------------- the end

    def answered(self, meta: Any, usage: Usage | None, last: Usage | None,
                 response_id: str | None, output: Any) -> None:
        """The call answered: its last attempt's record (``last``: that attempt's
        tokens), then the answer's (``usage``: the whole call's, as in ``meta``)."""
        self._attempt(self.status, None, last)
        self.output = output
        if not self._heard(DEBUG):
            return
        event = ResponseReceived(
            **self._base(), attempts=meta.get("attempts", self.attempts),
            duration=perf_counter() - self.started, usage=usage,
            cost=meta.get("cost"), finish_reason=meta.get("finish_reason"),
            response_model=meta.get("model"), response_id=response_id,
            output=output if self.capture else None)
        self.emit(event, DEBUG, "%s/%s answered in %.1f ms after %d attempt(s): finish %s%s, "
                  "cost %s%s", self.provider, self.model, event.duration * 1e3,
                  event.attempts, event.finish_reason, _tokens(event.usage),
                  "unknown" if event.cost is None else f"${event.cost:.6f}",
                  f"; output {output!r}" if self.capture else "")

    def failed(self, error: BaseException, broken: bool = False) -> None:
        """The call raised ``error`` (reported once)."""
        if self._failed:
            return
        self._failed = True
        if self._open:  # an answer that broke, or could not be read
            self._attempt(self.status, type(error).__name__, None)
        event = CallFailed(**self._base(), error=error, error_type=type(error).__name__,
                           attempts=self.attempts, duration=perf_counter() - self.started,
                           broken=broken)
        if broken:
            self.emit(event, WARNING, "%s/%s: the stream broke after part of the answer "
                      "reached the caller: %s: %s", self.provider, self.model,
                      event.error_type, error)
        else:
            self.emit(event, DEBUG, "%s/%s failed after %d attempt(s): %s: %s",
                      self.provider, self.model, event.attempts, event.error_type, error)


def fallback(model: Any, error: BaseException, next_model: str | None) -> None:
    """A gateway moves on from ``model`` (reported to the global hooks, the model's own
    hooks, and logger ``msgflux.gateway`` at WARNING; the model's span already ended
    with its error)."""
    hooks = _registry.hooks + tuple(getattr(model, "hooks", ()))
    logger = _logger("msgflux.gateway")
    log = logger is not None and logger.isEnabledFor(WARNING)
    if not (hooks or log):
        return
    event = GatewayFallback(call_id=next(_ids), provider=model.provider, model=model.model_id,
                            error=error, error_type=type(error).__name__,
                            next_model=next_model)
    if log:
        logger.warning("gateway: %s/%s failed (%s: %s); %s", model.provider, model.model_id,
                       event.error_type, error,
                       f"falling back to {next_model}" if next_model else "no model left",
                       extra={"msgflux_event": event})
    for hook in hooks:
        _safely(hook, event)


def _safely(fn: Callable[..., object], *args: Any) -> None:
    """Run a listener; one that raises is reported and the call goes on."""
    try:
        fn(*args)
    except Exception:
        import logging  # a report that must not be lost: imported if it was not yet

        logging.getLogger("msgflux.observe").warning(
            "msgflux: the observation hook %r raised; the call goes on", fn, exc_info=True)


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1e3:.1f} ms"


def _tokens(usage: Usage | None) -> str:
    if usage is None:
        return ""
    return f", tokens {usage.prompt_tokens} in / {usage.completion_tokens} out"
