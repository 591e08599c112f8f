"""What both default clients are built from: their options and the shared state.

:class:`ClientBase` holds the options both the blocking and the asyncio client
take (TLS, proxy, pool sizes) and what is built from them once (the router),
so the two I/O layers differ only in how they do I/O.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from msgflux._transport.routing import Router
from msgflux._transport.tls import default_ssl_context

if TYPE_CHECKING:
    import ssl

__all__ = ["ClientBase"]


class ClientBase:
    """Options of the default clients.

    ``ssl_context``: TLS settings (default: system CAs, verification on).
    ``proxy``/``trust_env``: see :class:`~msgflux._transport.routing.Router`.
    ``max_idle_per_host``: idle connections kept per route (a per-client default).
    ``idle_expiry``: idle connections older than this (seconds) are not reused.
    """

    default_max_idle = 32

    def __init__(
        self,
        *,
        ssl_context: ssl.SSLContext | None = None,
        proxy: str | None = None,
        trust_env: bool = True,
        max_idle_per_host: int | None = None,
        idle_expiry: float = 30.0,
    ) -> None:
        self._ssl_context = ssl_context
        self._router = Router(proxy, trust_env)
        self._max_idle = (max_idle_per_host if max_idle_per_host is not None
                          else self.default_max_idle)
        self._idle_expiry = idle_expiry
        self._lock = threading.Lock()
        self._generation = 0

    def _tls_context(self) -> ssl.SSLContext:
        return self._ssl_context or default_ssl_context()
