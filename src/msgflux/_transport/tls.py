"""TLS contexts for the default clients: which CAs are trusted, and client certificates.

Verification is always on. ``verify=True`` trusts the system's CA bundle, the one
OpenSSL is configured with (``SSL_CERT_FILE``/``SSL_CERT_DIR`` when set and
``trust_env`` allows); a machine without one (python.org builds on macOS, slim
containers) falls back to certifi's Mozilla bundle. ``verify="/path/ca.pem"``
(or a directory of hashed certificates) trusts those CAs instead;
``verify=<ssl.SSLContext>`` is used as given (``truststore.SSLContext`` for the
operating system's own store). ``cert`` adds a client certificate (mTLS).

Building a context loads a CA bundle (milliseconds): the default one is built
once, on the first ``https://`` connection, and shared (contexts are safe to use
from many threads and event loops).
"""

from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING, Any

from msgflux.exceptions import InvalidParameterError

if TYPE_CHECKING:
    import ssl

__all__ = ["check_tls_options", "client_context", "default_ssl_context", "trust_store"]

_lock = threading.Lock()
_defaults: dict[bool, ssl.SSLContext] = {}


def default_ssl_context(trust_env: bool = True) -> ssl.SSLContext:
    """Verified TLS (certificate and host name) against :func:`trust_store`, HTTP/1.1 via ALPN."""
    ctx = _defaults.get(trust_env)
    if ctx is None:
        with _lock:
            ctx = _defaults.get(trust_env)
            if ctx is None:
                ctx = _defaults[trust_env] = client_context(True, None, trust_env)
    return ctx


def trust_store(trust_env: bool = True) -> tuple[str | None, str | None]:
    """``(cafile, capath)`` of the CAs ``verify=True`` trusts: the system's, else certifi's."""
    import ssl

    paths = ssl.get_default_verify_paths()
    if trust_env:  # cafile/capath already honour SSL_CERT_FILE/SSL_CERT_DIR (None if missing)
        cafile, capath = paths.cafile, paths.capath
    else:
        cafile = paths.openssl_cafile if os.path.isfile(paths.openssl_cafile) else None
        capath = paths.openssl_capath if os.path.isdir(paths.openssl_capath) else None
    if capath is not None and not os.listdir(capath):
        capath = None  # an empty certs/ directory trusts nothing
    if cafile is None and capath is None:
        try:
            import certifi
        except ImportError:  # pragma: no cover - certifi is a dependency
            return None, None
        return certifi.where(), None
    return cafile, capath


def check_tls_options(verify: Any, cert: Any) -> None:
    """Refuse unusable ``verify``/``cert`` values before any connection."""
    if verify is True and cert is None:
        return  # the default: nothing to check (and no ssl import for http:// calls)
    import ssl

    if verify is False:
        raise InvalidParameterError(
            "verify=False is not supported: TLS certificates are always verified. To trust a "
            "private CA or a self-signed server, pass its certificate: verify='/path/ca.pem'"
        )
    if not (verify is True or isinstance(verify, (str, os.PathLike, ssl.SSLContext))):
        raise InvalidParameterError(
            f"verify must be True, a CA bundle path or an ssl.SSLContext, got {verify!r}"
        )
    if isinstance(verify, (str, os.PathLike)) and not os.path.exists(verify):
        raise InvalidParameterError(f"verify={os.fspath(verify)!r}: no such CA bundle file")
    if cert is None:
        return
    if isinstance(verify, ssl.SSLContext):
        raise InvalidParameterError(
            "cert= cannot be combined with verify=<SSLContext>: load the client certificate "
            "into your context (context.load_cert_chain(...))"
        )
    files = (cert,) if isinstance(cert, (str, os.PathLike)) else cert
    if not (isinstance(files, tuple) and 1 <= len(files) <= 3) or not all(
            isinstance(f, (str, os.PathLike)) for f in files[:2]):
        raise InvalidParameterError(
            "cert must be a PEM path holding certificate and key, or a tuple "
            "(certfile, keyfile[, password])"
        )
    for f in files[:2]:
        if not os.path.isfile(f):
            raise InvalidParameterError(f"cert: no such file {os.fspath(f)!r}")


def client_context(verify: Any, cert: Any, trust_env: bool) -> ssl.SSLContext:
    """The context for checked ``verify``/``cert`` options (see the module docstring)."""
    import ssl

    if isinstance(verify, ssl.SSLContext):
        return verify
    try:
        if verify is True:
            cafile, capath = trust_store(trust_env)
        elif os.path.isdir(verify):
            cafile, capath = None, os.fspath(verify)
        else:
            cafile, capath = os.fspath(verify), None
        ctx = ssl.create_default_context(cafile=cafile, capath=capath)
        if cert is not None:
            files = (cert,) if isinstance(cert, (str, os.PathLike)) else cert
            ctx.load_cert_chain(*files)
    except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
        what = "the client certificate (cert=)" if cert is not None else "the CA bundle"
        raise InvalidParameterError(f"could not load {what}: {exc}") from None
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx
