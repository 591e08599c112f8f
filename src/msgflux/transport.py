"""The transport seam: what carries a dialect's bytes to a provider and back.

A chat model sends through a :class:`Transport` (blocking calls) and an
:class:`AsyncTransport` (``acall``). The defaults, :class:`HTTPTransport` and
:class:`AsyncHTTPTransport`, are msgflux's own HTTP/1.1 clients; hand a model any
other object with the same methods::

    model = mf.Model.chat_completion("openai/gpt-4o", transport=my_transport)

or an httpx client, which :class:`HTTPXTransport` / :class:`AsyncHTTPXTransport`
wrap (``http_client=httpx.Client(...)`` does that for you).

Every transport keeps the same contract (see :mod:`msgflux._transport.base`):
one attempt per call, the per-phase :class:`Timeouts`, no redirects, typed
errors, any status returned, and a stream's body as :class:`SSEEvent` values.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from msgflux._transport.base import AsyncResponseStream, AsyncTransport, ResponseStream, Transport
from msgflux._transport.types import HttpRequest, HttpResponse, SSEEvent, Timeouts, Timings

if TYPE_CHECKING:
    from msgflux._transport.async_client import AsyncHTTPTransport
    from msgflux._transport.httpx_backend import AsyncHTTPXTransport, HTTPXTransport
    from msgflux._transport.sse import SSEDecoder
    from msgflux._transport.sync_client import HTTPTransport

__all__ = [
    "AsyncHTTPTransport",
    "AsyncHTTPXTransport",
    "AsyncResponseStream",
    "AsyncTransport",
    "HTTPTransport",
    "HTTPXTransport",
    "HttpRequest",
    "HttpResponse",
    "ResponseStream",
    "SSEDecoder",
    "SSEEvent",
    "Timeouts",
    "Timings",
    "Transport",
]

# The clients load sockets, ssl and asyncio: only when asked for.
_LAZY = {
    "HTTPTransport": "msgflux._transport.sync_client",
    "AsyncHTTPTransport": "msgflux._transport.async_client",
    "HTTPXTransport": "msgflux._transport.httpx_backend",  # imports httpx: only when asked
    "AsyncHTTPXTransport": "msgflux._transport.httpx_backend",
    "SSEDecoder": "msgflux._transport.sse",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
