"""From an :class:`HttpRequest` to what a client writes and where: shared by both clients."""

from __future__ import annotations

from typing import NamedTuple

from msgflux._transport.http11 import encode_request
from msgflux._transport.proxy import Proxy, Route, proxy_from_env, proxy_from_url, route_for
from msgflux._transport.types import HttpRequest
from msgflux._transport.urls import Origin, Target, split_url

__all__ = ["Prepared", "Router"]


class Prepared(NamedTuple):
    target: Target
    route: Route
    head: bytes
    body: bytes | None


class Router:
    """Chooses routes (direct or via proxy) and encodes request heads.

    ``proxy``: one ``http://`` proxy URL for every non-loopback origin; when
    ``None`` and ``trust_env`` is true the environment decides (see
    :mod:`msgflux._transport.proxy`). Routes are cached per origin, so the
    environment is read once per origin and transport.
    """

    __slots__ = ("_proxy", "_routes", "_trust_env")

    def __init__(self, proxy: str | None = None, trust_env: bool = True) -> None:
        self._proxy: Proxy | None = proxy_from_url(proxy) if proxy else None
        self._trust_env = trust_env
        self._routes: dict[Origin, Route] = {}

    def route(self, origin: Origin) -> Route:
        route = self._routes.get(origin)
        if route is None:
            if self._proxy is not None:
                host = origin.host
                loopback = host in ("localhost", "::1") or host.startswith("127.")
                proxy = None if loopback else self._proxy
            elif self._trust_env:
                proxy = proxy_from_env(origin)
            else:
                proxy = None
            route = self._routes[origin] = route_for(origin, proxy)
        return route

    def prepare(self, req: HttpRequest) -> Prepared:
        target = split_url(req.url)
        route = self.route(target.origin)
        request_target = target.target
        extra: tuple[tuple[str, str], ...] = ()
        if route.absolute:
            request_target = f"http://{target.host_header}{request_target}"
            if route.proxy_auth:
                extra = (("Proxy-Authorization", route.proxy_auth),)
        # Streams ask for identity: a compressing server or proxy may buffer
        # tokens to fill its compression window.
        head = encode_request(
            req.method,
            request_target,
            target.host_header,
            req.headers,
            req.body,
            accept_encoding="identity" if req.stream else "gzip, deflate",
            extra=extra,
        )
        return Prepared(target, route, head, req.body)
