"""Splitting request URLs into what HTTP/1.1 needs: origin, request target, Host header.

Pure and cached: a model sends most requests to one or two URLs, so the split
is done once per distinct URL, not once per request.
"""

from __future__ import annotations

from functools import lru_cache
from typing import NamedTuple

from msgflux.exceptions import InvalidParameterError

__all__ = ["Origin", "Target", "safe_url", "split_url", "without_userinfo"]

_DEFAULT_PORTS = {"http": 80, "https": 443}


class Origin(NamedTuple):
    """Where a connection goes; the connection-pool key."""

    scheme: str
    host: str  # lower-case, IPv6 without brackets
    port: int

    @property
    def where(self) -> str:
        """``host:port`` for messages (IPv6 in brackets)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


class Target(NamedTuple):
    """A split URL. ``safe_url`` drops the query (it may carry an API key)."""

    origin: Origin
    target: str  # origin-form request target: path plus query
    host_header: str
    safe_url: str


@lru_cache(maxsize=512)
def split_url(url: str) -> Target:
    """Split an absolute ``http(s)://`` URL; raise :class:`InvalidParameterError` if unusable."""
    scheme, sep, rest = url.partition("://")
    scheme = scheme.lower()
    if not sep or scheme not in _DEFAULT_PORTS:
        raise InvalidParameterError(
            f"unsupported URL {safe_url(url)!r}: expected an absolute http:// or https:// URL"
        )
    cut = len(rest)
    for ch in "/?#":
        i = rest.find(ch)
        if 0 <= i < cut:
            cut = i
    authority, target = rest[:cut], rest[cut:]
    if "@" in authority:
        raise InvalidParameterError(
            "credentials inside the URL are not supported: pass them as headers instead"
        )
    host, port = _split_authority(authority, url)
    default_port = _DEFAULT_PORTS[scheme]
    if port is None:
        port = default_port
    target = target.partition("#")[0]
    if not target.startswith("/"):
        target = "/" + target  # "http://h?q" -> "/?q"
    if not target.isascii() or any(c in target for c in " \t\r\n"):
        target = _quote_target(target)
    bracketed = f"[{host}]" if ":" in host else host
    host_header = bracketed if port == default_port else f"{bracketed}:{port}"
    path = target.partition("?")[0]
    return Target(
        Origin(scheme, host, port), target, host_header, f"{scheme}://{host_header}{path}"
    )


def _split_authority(authority: str, url: str) -> tuple[str, int | None]:
    port_text = ""
    if authority.startswith("["):  # IPv6 literal
        end = authority.find("]")
        if end < 0:
            raise InvalidParameterError(f"invalid IPv6 host in URL {safe_url(url)!r}")
        host, tail = authority[1:end], authority[end + 1 :]
        if tail:
            if not tail.startswith(":"):
                raise InvalidParameterError(f"invalid host in URL {safe_url(url)!r}")
            port_text = tail[1:]
    else:
        host, _, port_text = authority.partition(":")
    if not host:
        raise InvalidParameterError(f"URL {safe_url(url)!r} has no host")
    host = host.lower()
    if not host.isascii():
        host = _idna(host, url)
    if not port_text:
        return host, None
    # isdigit() alone accepts other scripts' digits ("١٢"), which int() reads.
    if not (port_text.isascii() and port_text.isdigit()) or not 0 < int(port_text) < 65536:
        raise InvalidParameterError(f"invalid port {port_text!r} in URL {safe_url(url)!r}")
    return host, int(port_text)


def _idna(host: str, url: str) -> str:
    """A non-ASCII host name as DNS and the Host header know it (``xn--`` labels)."""
    try:
        return host.encode("idna").decode("ascii")
    except UnicodeError:
        raise InvalidParameterError(f"invalid host name in URL {safe_url(url)!r}") from None


def _quote_target(target: str) -> str:
    # Rare: a space or non-ASCII character in a path (e.g. from a model id).
    from urllib.parse import quote

    return quote(target, safe="/?&=%:@!$'()*+,;[]~-._")


def safe_url(url: str) -> str:
    """The URL without query, fragment and userinfo, for messages."""
    url = url.partition("?")[0].partition("#")[0]
    scheme, sep, rest = url.partition("://")
    if sep and "@" in rest.partition("/")[0]:
        rest = rest.partition("@")[2]
    return f"{scheme}{sep}{rest}"


def without_userinfo(url: str) -> str:
    """``url`` with any ``user:password@`` removed (the rest unchanged)."""
    scheme, sep, rest = url.partition("://")
    authority, slash, tail = rest.partition("/")
    if "@" in authority:
        authority = authority.rpartition("@")[2]
    return f"{scheme}{sep}{authority}{slash}{tail}"
