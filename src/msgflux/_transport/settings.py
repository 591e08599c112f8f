"""What both default clients are built from: their options and the shared state.

:class:`ClientBase` holds the options both the blocking and the asyncio client
take (TLS, proxy, pool sizes, size limit) and what is built from them once (the
router, the TLS context), so the two I/O layers differ only in how they do I/O.
It also drops every client's pooled connections in a child after ``fork()``:
parent and child would otherwise read each other's answers from shared sockets.
"""

from __future__ import annotations

import os
import threading
import weakref
from typing import TYPE_CHECKING, Any

from msgflux._transport.http11 import DEFAULT_MAX_RESPONSE_BYTES
from msgflux._transport.routing import Router
from msgflux._transport.tls import check_tls_options, client_context, default_ssl_context
from msgflux.exceptions import InvalidParameterError

if TYPE_CHECKING:
    import ssl

__all__ = ["ClientBase", "check_client_options"]

_clients: weakref.WeakSet[ClientBase] = weakref.WeakSet()


class ClientBase:
    """Options of the default clients.

    ``verify``: ``True`` (the system's CAs, else certifi's), a CA bundle path, or
    an ``ssl.SSLContext`` used as given (``ssl_context`` is the same). ``cert``:
    a client certificate for mTLS, a PEM path or ``(certfile, keyfile[, password])``.
    ``proxy``/``trust_env``: see :class:`~msgflux._transport.routing.Router`;
    ``trust_env=False`` also ignores ``SSL_CERT_FILE``/``SSL_CERT_DIR``.
    ``max_idle_per_host``: idle connections kept per route (a per-client default).
    ``idle_expiry``: idle connections older than this (seconds) are not reused.
    ``max_response_bytes``: the most bytes of a whole body (after decompression),
    and of one server-sent event, accepted (64 MiB).
    """

    default_max_idle = 32

    def __init__(
        self,
        *,
        verify: Any = True,
        cert: Any = None,
        ssl_context: ssl.SSLContext | None = None,
        proxy: str | None = None,
        trust_env: bool = True,
        max_idle_per_host: int | None = None,
        idle_expiry: float = 30.0,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
    ) -> None:
        if ssl_context is not None:
            verify = ssl_context
        check_client_options({"verify": verify, "cert": cert, "trust_env": trust_env,
                              "max_response_bytes": max_response_bytes})
        self._verify = verify
        self._cert = cert
        self._trust_env = trust_env
        self._ssl_context: ssl.SSLContext | None = None
        self._router = Router(proxy, trust_env)
        self._max_idle = (max_idle_per_host if max_idle_per_host is not None
                          else self.default_max_idle)
        self._idle_expiry = idle_expiry
        self.max_response_bytes = max_response_bytes
        self._lock = threading.Lock()
        self._generation = 0
        _clients.add(self)

    def _tls_context(self) -> ssl.SSLContext:
        ctx = self._ssl_context
        if ctx is None:
            if self._verify is True and self._cert is None:
                ctx = default_ssl_context(self._trust_env)
            else:
                ctx = client_context(self._verify, self._cert, self._trust_env)
            self._ssl_context = ctx
        return ctx

    def _after_fork_in_child(self) -> None:
        """Forget the parent's connections (the lock too: another thread may have held it)."""
        self._lock = threading.Lock()
        self._generation += 1


def check_client_options(options: dict[str, Any]) -> None:
    """Refuse unusable client options (TLS, proxy, limits) before any connection."""
    check_tls_options(options.get("verify", True), options.get("cert"))
    trust_env = options.get("trust_env", True)
    if not isinstance(trust_env, bool):
        raise InvalidParameterError(f"trust_env must be True or False, got {trust_env!r}")
    proxy = options.get("proxy")
    if proxy is not None:
        if not isinstance(proxy, str):
            raise InvalidParameterError(f"proxy must be a URL string, got {type(proxy).__name__}")
        from msgflux._transport.proxy import proxy_from_url

        proxy_from_url(proxy)
    limit = options.get("max_response_bytes", DEFAULT_MAX_RESPONSE_BYTES)
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise InvalidParameterError(f"max_response_bytes must be an int >= 1, got {limit!r}")


def _after_fork_in_child() -> None:
    for client in list(_clients):
        client._after_fork_in_child()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
