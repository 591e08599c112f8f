"""HTTP proxies from the environment, the way curl reads them; sans-I/O.

``https_proxy``/``HTTPS_PROXY`` serve ``https://`` URLs through a CONNECT
tunnel; ``http_proxy``/``HTTP_PROXY`` serve ``http://`` URLs in absolute form;
``all_proxy``/``ALL_PROXY`` is the fallback for both. The lower-case name wins
when both are set. ``no_proxy``/``NO_PROXY`` lists hosts to reach directly:
``*`` (everything), host names (a name also covers its subdomains, a leading
dot is optional), IP addresses and CIDR blocks, each optionally with
``:port``. Loopback (``localhost`` and loopback IP addresses, parsed: a name
such as ``127.attacker.example`` is no address) is always direct. Running as a
CGI script (``REQUEST_METHOD`` set), ``HTTP_PROXY`` is ignored: a client's
``Proxy:`` request header arrives there ("httpoxy"), as urllib and httpx do.

Proxy URLs are ``http://`` or ``https://`` (TLS to the proxy itself).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import NamedTuple

from msgflux._transport.errors import protocol_error
from msgflux._transport.urls import Origin
from msgflux.exceptions import APIConnectionError, InvalidParameterError

__all__ = [
    "Proxy",
    "is_loopback",
    "Route",
    "TunnelHandshake",
    "connect_request",
    "parse_connect_response",
    "proxy_from_env",
    "proxy_from_url",
    "route_for",
]


class Proxy(NamedTuple):
    """A proxy to go through; ``auth`` is a ready ``Proxy-Authorization`` value."""

    origin: Origin
    auth: str | None

    def __repr__(self) -> str:  # never show credentials
        return f"Proxy({self.origin.where})"


def proxy_from_env(origin: Origin, env: Mapping[str, str] | None = None) -> Proxy | None:
    """The proxy the environment asks for to reach ``origin``, or ``None`` for direct."""
    env = os.environ if env is None else env
    if is_loopback(origin.host):
        return None
    if origin.scheme == "https":
        names: tuple[str, ...] = ("https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY")
    elif "REQUEST_METHOD" in env:  # CGI: HTTP_PROXY may come from the client (httpoxy)
        names = ("http_proxy", "all_proxy", "ALL_PROXY")
    else:
        names = ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY")
    url = _first(env, names)
    if not url:
        return None
    no_proxy = _first(env, ("no_proxy", "NO_PROXY"))
    if no_proxy and _bypass(origin, no_proxy):
        return None
    return proxy_from_url(url)


def proxy_from_url(url: str) -> Proxy:
    """Parse ``[http[s]://][user:password@]host[:port]`` (the port defaults to 1080 like
    curl for ``http://``, 443 for ``https://``)."""
    scheme, sep, rest = url.strip().partition("://")
    if not sep:
        scheme, rest = "http", url.strip()
    scheme = scheme.lower()
    if scheme not in ("http", "https"):
        raise InvalidParameterError(
            f"unsupported proxy scheme {scheme!r}: msgflux supports http:// and https:// "
            "proxies (for SOCKS, pass an httpx client: http_client=httpx.Client(proxy=...))"
        )
    authority = rest.split("/", 1)[0]
    auth = None
    if "@" in authority:
        from base64 import b64encode
        from urllib.parse import unquote

        userinfo, _, authority = authority.rpartition("@")
        user, _, password = userinfo.partition(":")
        token = f"{unquote(user)}:{unquote(password)}".encode()
        auth = "Basic " + b64encode(token).decode("ascii")
    if authority.startswith("["):
        host, _, tail = authority[1:].partition("]")
        port_text = tail[1:] if tail.startswith(":") else ""
    else:
        host, _, port_text = authority.partition(":")
    if not host or (port_text and not (port_text.isascii() and port_text.isdigit())):
        raise InvalidParameterError("invalid proxy URL (expected http://host:port)")
    default = 443 if scheme == "https" else 1080
    return Proxy(Origin(scheme, host.lower(), int(port_text) if port_text else default), auth)


def connect_request(target: Origin, auth: str | None) -> bytes:
    """The CONNECT request opening a tunnel to ``target``."""
    where = target.where
    auth_line = f"Proxy-Authorization: {auth}\r\n" if auth else ""
    return f"CONNECT {where} HTTP/1.1\r\nHost: {where}\r\n{auth_line}\r\n".encode("latin-1")


def parse_connect_response(buf: bytes) -> tuple[int, str, int] | None:
    """``(status, reason, header_length)`` once the head has arrived, else ``None``.

    A 2xx answer has no body (RFC 9110 section 9.3.6), so what follows the head
    is already the tunnel; a non-2xx answer's body is not needed.
    """
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return None
    line = buf[: buf.find(b"\r\n")].decode("latin-1")
    parts = line.split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        return (0, line[:80], end + 4)
    return (int(parts[1]), parts[2] if len(parts) > 2 else "", end + 4)


_MAX_PROXY_HEAD = 65536


class TunnelHandshake:
    """Opening a CONNECT tunnel through a proxy, sans-I/O, for both clients.

    Send :attr:`request`, then :meth:`feed` what the proxy answers (``b""`` when
    it closed) until it returns True: the tunnel is open. Failures raise the
    typed error (a refusal is retryable when the proxy says its upstream is down).
    """

    __slots__ = ("_buf", "request", "route", "url")

    def __init__(self, route: Route, url: str) -> None:
        assert route.tunnel is not None
        self.route = route
        self.url = url
        self.request = connect_request(route.tunnel, route.proxy_auth)
        self._buf = b""

    def feed(self, data: bytes) -> bool:
        where = self.route.where
        if not data:
            raise APIConnectionError(
                f"proxy closed the connection while opening a tunnel to {where}", url=self.url
            )
        buf = self._buf = self._buf + data
        head = parse_connect_response(buf)
        if head is None:
            if len(buf) > _MAX_PROXY_HEAD:
                raise protocol_error(where, "proxy response head too large")
            return False
        status, reason, used = head
        if not 200 <= status < 300:
            err = APIConnectionError(
                f"proxy refused to open a tunnel to {where}: {status} {reason}".rstrip(),
                url=self.url,
            )
            err.retryable = status in (502, 503, 504)
            raise err
        if used != len(buf):
            raise protocol_error(where, "proxy sent data before the TLS handshake")
        return True


def _first(env: Mapping[str, str], names: tuple[str, ...]) -> str | None:
    for name in names:
        value = env.get(name)
        if value is not None:
            return value.strip()
    return None


def is_loopback(host: str) -> bool:
    """``localhost`` or a loopback IP address (parsed, never matched by prefix)."""
    if host == "localhost":
        return True
    if ":" in host:
        import ipaddress

        try:
            return ipaddress.IPv6Address(host).is_loopback
        except ValueError:
            return False
    parts = host.split(".")
    return (len(parts) == 4 and parts[0] == "127"
            and all(p.isascii() and p.isdigit() and int(p) < 256 for p in parts))


def _bypass(origin: Origin, no_proxy: str) -> bool:
    host = origin.host
    for raw in no_proxy.replace(" ", ",").split(","):
        entry = raw.strip().lower()
        if not entry:
            continue
        if entry == "*":
            return True
        entry, port = _split_entry_port(entry)
        if port is not None and port != origin.port:
            continue
        if "/" in entry:
            if _in_cidr(host, entry):
                return True
            continue
        entry = entry.lstrip(".").strip("[]")
        if host == entry or host.endswith("." + entry):
            return True
    return False


def _split_entry_port(entry: str) -> tuple[str, int | None]:
    if entry.startswith("["):  # [v6]:port
        host, _, tail = entry[1:].partition("]")
        return host, int(tail[1:]) if tail[1:].isdigit() else None
    if entry.count(":") == 1:
        host, _, port = entry.partition(":")
        if port.isdigit():
            return host, int(port)
    return entry, None


def _in_cidr(host: str, block: str) -> bool:
    import ipaddress

    try:
        return ipaddress.ip_address(host) in ipaddress.ip_network(block, strict=False)
    except ValueError:
        return False


class Route(NamedTuple):
    """How to reach an origin: the TCP peer, TLS, tunnel and pool key."""

    key: tuple  # connection-pool key
    host: str  # TCP peer (the proxy when there is one)
    port: int
    tls_host: str | None  # server name for TLS to the origin; None for plain http
    tunnel: Origin | None  # CONNECT target, when tunnelling through a proxy
    proxy_auth: str | None  # Proxy-Authorization value
    absolute: bool  # plain http through a proxy: absolute-form target
    where: str  # for messages: "host:port[ via proxy host:port]"
    proxy_tls_host: str | None = None  # an https:// proxy: TLS to it first, this name

    def __repr__(self) -> str:
        return f"Route({self.where})"


def route_for(origin: Origin, proxy: Proxy | None) -> Route:
    """The route to ``origin``, directly or through ``proxy``."""
    tls_host = origin.host if origin.scheme == "https" else None
    if proxy is None:
        return Route(origin, origin.host, origin.port, tls_host, None, None, False, origin.where)
    p = proxy.origin
    where = f"{origin.where} via proxy {p.scheme}://{p.where}"
    proxy_tls = p.host if p.scheme == "https" else None
    if origin.scheme == "https":
        # Tunnelled connections carry one origin's TLS session: pool per origin.
        key = (origin, p, proxy.auth)
        return Route(key, p.host, p.port, tls_host, origin, proxy.auth, False, where, proxy_tls)
    # Plain-http requests can share connections to the proxy whatever the origin.
    return Route(("proxy", p, proxy.auth), p.host, p.port, None, None, proxy.auth, True, where,
                 proxy_tls)
