"""The shared default TLS context, built on first use.

``ssl.create_default_context()`` loads the system CA bundle (honouring
``SSL_CERT_FILE``/``SSL_CERT_DIR``), which costs milliseconds: build it once,
only when the first ``https://`` connection is made, and share it (contexts
are safe to use from many threads and event loops).
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import ssl

__all__ = ["default_ssl_context"]

_lock = threading.Lock()
_context: ssl.SSLContext | None = None


def default_ssl_context() -> ssl.SSLContext:
    """Verified TLS (certificate and host name), HTTP/1.1 via ALPN."""
    global _context
    if _context is None:
        with _lock:
            if _context is None:
                import ssl

                ctx = ssl.create_default_context()
                ctx.set_alpn_protocols(["http/1.1"])
                _context = ctx
    return _context
