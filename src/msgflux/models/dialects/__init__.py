"""Dialects: one wire protocol each, written sans-I/O.

A dialect is a module exposing ``build_request(request, endpoint) -> HttpRequest``,
``parse_response(body, request) -> Completion``, ``stream_decoder(request)`` (an
object whose ``feed(event) -> Delta | None`` turns one SSE event into a Delta)
and ``parse_error(status, headers, body, provider) -> ProviderError``. No
sockets, clocks or globals: a dialect is tested with recorded bytes alone.
"""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["DIALECTS", "get_dialect"]

DIALECTS = ("openai", "anthropic", "google")


def get_dialect(name: str) -> ModuleType:
    """The dialect module called ``name``, imported on first use."""
    if name not in DIALECTS:
        raise ValueError(f"unknown dialect {name!r}; known: {', '.join(DIALECTS)}")
    return importlib.import_module(f"msgflux.models.dialects.{name}")
