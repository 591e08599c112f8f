"""Turning I/O failures into msgflux errors with messages that say what to do.

Shared by the sync and async clients so both speak alike. Messages name the
peer as ``host:port`` and never include request headers or URL queries.
"""

from __future__ import annotations

import sys

from msgflux.exceptions import (
    APIConnectionError,
    APITimeoutError,
    ConnectTimeoutError,
    FirstByteTimeoutError,
    IdleTimeoutError,
    TotalTimeoutError,
    TransportError,
)

__all__ = [
    "connect_failed",
    "connection_broken",
    "limit_exceeded",
    "protocol_error",
    "size_text",
    "timeout_error",
    "too_large",
]

_TIMEOUTS: dict[str, tuple[type[APITimeoutError], str]] = {
    "connect": (ConnectTimeoutError, "connecting to {where} (TCP and TLS)"),
    "first_byte": (FirstByteTimeoutError, "waiting for {where} to start its response"),
    "idle": (IdleTimeoutError, "{where} sent nothing mid-response"),
    "total": (TotalTimeoutError, "the request to {where} did not finish"),
}


def timeout_error(kind: str, value: float, where: str, url: str | None = None) -> APITimeoutError:
    """The typed error for timeout ``kind`` (connect, first_byte, idle, total)."""
    cls, what = _TIMEOUTS[kind]
    return cls(
        f"{kind} timeout: {what.format(where=where)} for {value:g} s; "
        f"raise it with the model's timeout= argument ({kind}=...) if the server is just slow",
        url=url,
    )


def connect_failed(where: str, exc: BaseException, url: str | None = None) -> TransportError:
    """Could not open a connection (DNS, refused, unreachable, TLS)."""
    import ssl  # only reached on failure; ssl is loaded anyway for https

    if isinstance(exc, ssl.SSLCertVerificationError):
        err = APIConnectionError(
            f"TLS certificate verification failed for {where}: {exc.verify_message}; "
            "behind an intercepting proxy point SSL_CERT_FILE at its CA bundle",
            url=url,
        )
        err.retryable = False  # the same certificate will fail the same way
        return err
    refused = _refused_tls(where, exc, url)
    if refused is not None:
        return refused
    reason = _reason(exc)
    return APIConnectionError(f"could not connect to {where}: {reason}", url=url)


# TLS alerts by which a server refuses the client's certificate (or its absence). In
# TLS 1.3 they arrive after the handshake, with the first read.
_CLIENT_CERT_ALERTS = ("CERTIFICATE_REQUIRED", "BAD_CERTIFICATE", "UNKNOWN_CA",
                       "CERTIFICATE_UNKNOWN", "HANDSHAKE_FAILURE")


def _refused_tls(where: str, exc: object, url: str | None) -> APIConnectionError | None:
    ssl = sys.modules.get("ssl")  # not loaded: no TLS connection, nothing to look for
    if ssl is not None and isinstance(exc, ssl.SSLEOFError):
        # The server ended TLS without a word: often a refused (or missing) client
        # certificate whose alert was lost, but not surely, so it stays retryable.
        return APIConnectionError(
            f"{where} ended the TLS connection abruptly before answering ({exc}); if it "
            "requires a client certificate (mTLS), pass cert='client.pem' or "
            "cert=(certfile, keyfile)", url=url)
    reason = getattr(exc, "reason", None)
    if not isinstance(reason, str) or "ALERT" not in reason or not any(
            alert in reason for alert in _CLIENT_CERT_ALERTS):
        return None
    err = APIConnectionError(
        f"{where} refused the TLS connection ({reason}): the server requires a client "
        "certificate it trusts (mTLS); pass cert='client.pem' or cert=(certfile, keyfile)",
        url=url,
    )
    err.retryable = False  # the same certificate (or none) will fail the same way
    return err


def connection_broken(
    where: str, exc: BaseException | str | None, *, received: bool, url: str | None = None
) -> APIConnectionError:
    """The connection failed or closed after the request was sent."""
    refused = _refused_tls(where, exc, url)
    if refused is not None:
        return refused
    if exc is None:
        reason = "the server closed the connection"
    elif isinstance(exc, str):
        reason = exc
    else:
        reason = _reason(exc)
    if received:
        msg = f"connection to {where} broke before the response was complete: {reason}"
    else:
        msg = f"connection to {where} closed before a response arrived: {reason}"
    return APIConnectionError(msg, url=url)


def protocol_error(where: str, detail: str, url: str | None = None) -> TransportError:
    """The server broke HTTP/1.1 framing (not retried: it would do it again)."""
    return TransportError(f"invalid HTTP response from {where}: {detail}", url=url)


def limit_exceeded(where: str, detail: str, url: str | None = None) -> TransportError:
    """The response broke one of our size limits (not retried: it would again)."""
    return TransportError(f"response from {where} refused: {detail}", url=url)


def too_large(what: str, limit: int) -> str:
    """The detail of a size-limit error: what, the limit, and the knob that sets it."""
    return (f"{what} larger than max_response_bytes ({size_text(limit)}); raise the "
            "model's max_response_bytes= if the answer is really that large")


def size_text(n: int) -> str:
    """``64 MiB`` for whole mebibytes, else a byte count."""
    return f"{n >> 20} MiB" if n >= 1 << 20 and n % (1 << 20) == 0 else f"{n} bytes"


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused (is the server running and the port right?)"
    if isinstance(exc, ConnectionResetError):
        return "connection reset by peer"
    if isinstance(exc, BrokenPipeError):
        return "broken pipe (the server closed the connection)"
    text = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return text
