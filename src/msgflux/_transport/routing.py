"""From an :class:`HttpRequest` to what a client writes and where: shared by both clients."""

from __future__ import annotations

import msgspec

from msgflux._transport.http11 import encode_head_prefix, finish_head
from msgflux._transport.proxy import (
    Proxy,
    Route,
    is_loopback,
    proxy_from_env,
    proxy_from_url,
    route_for,
)
from msgflux._transport.types import HttpRequest
from msgflux._transport.urls import Origin, Target, split_url

__all__ = ["Prepared", "Router"]


_COALESCE = 65536  # bodies up to this size are sent in the same write as the head
_MAX_CACHED = 256


class Prepared(msgspec.Struct, frozen=True, gc=False):
    """What to write: ``data`` (the head, plus the body when small), then ``tail``."""

    target: Target
    route: Route
    data: bytes
    tail: bytes | None


class Router:
    """Chooses routes (direct or via proxy) and encodes request heads.

    ``proxy``: one ``http://`` or ``https://`` proxy URL for every non-loopback origin; when
    ``None`` and ``trust_env`` is true the environment decides (see
    :mod:`msgflux._transport.proxy`). Routes are cached per origin, so the
    environment is read once per origin and transport. The body-independent
    part of each head is cached per (method, URL, headers, stream): a model
    repeats those on every call.
    """

    __slots__ = ("_heads", "_proxy", "_routes", "_trust_env")

    def __init__(self, proxy: str | None = None, trust_env: bool = True) -> None:
        self._proxy: Proxy | None = proxy_from_url(proxy) if proxy else None
        self._trust_env = trust_env
        self._routes: dict[Origin, Route] = {}
        self._heads: dict[tuple, tuple[Target, Route, bytes]] = {}

    def route(self, origin: Origin) -> Route:
        route = self._routes.get(origin)
        if route is None:
            if self._proxy is not None:
                proxy = None if is_loopback(origin.host) else self._proxy
            elif self._trust_env:
                proxy = proxy_from_env(origin)
            else:
                proxy = None
            route = self._routes[origin] = route_for(origin, proxy)
        return route

    def prepare(self, req: HttpRequest) -> Prepared:
        key = (req.method, req.url, req.headers, req.stream)
        cached = self._heads.get(key)
        if cached is None:
            cached = self._encode(req)
            if len(self._heads) >= _MAX_CACHED:
                self._heads.clear()  # many distinct requests: caching does not pay
            self._heads[key] = cached
        target, route, prefix = cached
        body = req.body
        head = finish_head(prefix, req.method, body)
        if body and len(body) > _COALESCE:
            return Prepared(target, route, head, body)
        return Prepared(target, route, head + body if body else head, None)

    def _encode(self, req: HttpRequest) -> tuple[Target, Route, bytes]:
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
        prefix = encode_head_prefix(
            req.method,
            request_target,
            target.host_header,
            req.headers,
            accept_encoding="identity" if req.stream else "gzip, deflate",
            extra=extra,
        )
        return target, route, prefix
