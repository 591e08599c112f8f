"""See what chat calls do: standard logging, hooks, OpenTelemetry.

Logging needs nothing but the standard library's configuration::

    import logging
    logging.basicConfig(level=logging.DEBUG)   # msgflux logs under "msgflux.*"

Hooks receive typed events (:mod:`msgflux.observe.events`), from every model::

    @mf.observe.add_hook
    def on_event(event):
        if isinstance(event, mf.observe.ResponseReceived):
            metrics.add(event.usage, event.cost)

or from one model: ``mf.Model.chat_completion(..., hooks=[on_event])``.
OpenTelemetry (extra ``otel``): ``mf.observe.otel.instrument()``.
"""

from msgflux.observe._observation import add_hook, configure, remove_hook
from msgflux.observe.events import (
    AttemptFinished,
    CallFailed,
    Event,
    GatewayFallback,
    RequestStarted,
    ResponseReceived,
    RetryScheduled,
)

__all__ = [
    "AttemptFinished",
    "CallFailed",
    "Event",
    "GatewayFallback",
    "RequestStarted",
    "ResponseReceived",
    "RetryScheduled",
    "add_hook",
    "configure",
    "remove_hook",
]


def __getattr__(name: str) -> object:
    if name == "otel":  # imports nothing of OpenTelemetry until instrument() is called
        import importlib

        return importlib.import_module("msgflux.observe.otel")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
