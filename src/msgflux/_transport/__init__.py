"""The only package of msgflux that does network I/O.

Modules (each one concept): ``types`` (wire values), ``urls`` (URL split),
``http11`` (HTTP/1.1 framing, sans-I/O), ``decompress`` (Content-Encoding),
``sse`` (event-stream framing, sans-I/O), ``proxy`` and ``routing`` (proxies,
routes, request heads), ``tls`` (trusted CAs, client certificates),
``settings`` (the clients' options, fork handling), ``attempt`` and
``errors`` (deadlines, typed failures), ``sync_client`` and ``async_client``
(the I/O), ``httpx_backend`` (the same contract over a caller's httpx client),
``retry`` (the retry driver and the call's time budget).

Names are re-exported lazily: importing this package (or ``.types``) loads no
socket, ssl or asyncio code.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from msgflux._transport.types import HttpRequest, HttpResponse, SSEEvent, Timeouts

if TYPE_CHECKING:
    from msgflux._transport.async_client import AsyncHTTPTransport, AsyncStreamResponse
    from msgflux._transport.retry import (
        RETRYABLE_STATUS,
        RetryPolicy,
        acall_with_retries,
        call_with_retries,
        retry_after_from_headers,
    )
    from msgflux._transport.sse import SSEDecoder
    from msgflux._transport.sync_client import HTTPTransport, SyncStreamResponse

__all__ = [
    "RETRYABLE_STATUS",
    "AsyncStreamResponse",
    "AsyncHTTPTransport",
    "HttpRequest",
    "HttpResponse",
    "RetryPolicy",
    "SSEDecoder",
    "SSEEvent",
    "SyncStreamResponse",
    "HTTPTransport",
    "Timeouts",
    "acall_with_retries",
    "call_with_retries",
    "retry_after_from_headers",
]

_LAZY = {
    "AsyncStreamResponse": "async_client",
    "AsyncHTTPTransport": "async_client",
    "SyncStreamResponse": "sync_client",
    "HTTPTransport": "sync_client",
    "SSEDecoder": "sse",
    "RETRYABLE_STATUS": "retry",
    "RetryPolicy": "retry",
    "acall_with_retries": "retry",
    "call_with_retries": "retry",
    "retry_after_from_headers": "retry",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
