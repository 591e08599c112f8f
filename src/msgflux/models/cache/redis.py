"""The Redis / Valkey cache: shared by processes and machines.

Keys are ``<prefix><32-byte digest>``; values expire on the server (``SET ...
PX``) when a ``ttl`` is set, and the server's own ``maxmemory`` policy decides
what to drop when it is full. The client is ``redis`` (extra ``redis``) or, when
only that is installed, its fork ``valkey``: both speak the same protocol to both
servers. A failing server makes a miss, never a failed call.
"""

from __future__ import annotations

from typing import Any

from msgflux.exceptions import MissingDependencyError
from msgflux.models.cache.base import CACHE_FORMAT, Counts, encode_entry, warn
from msgflux.models.cache.memory import check_ttl
from msgflux.models.request import Completion

__all__ = ["RedisCache"]

DEFAULT_PREFIX = f"msgflux:cache:v{CACHE_FORMAT}:"
_SCAN_BATCH = 1000


def _client_class() -> Any:
    try:
        from redis import Redis
    except ImportError:
        try:
            from valkey import Valkey as Redis
        except ImportError:
            raise MissingDependencyError(
                "A redis:// cache needs a Redis client: pip install 'msgflux[redis]'"
            ) from None
    return Redis


class RedisCache:
    """Answers on a Redis or Valkey server at ``url`` (``redis://host:6379/0``,
    ``rediss://`` for TLS, ``unix:///path.sock``), each kept ``ttl`` seconds.

    ``client``: an existing ``redis.Redis`` / ``valkey.Valkey`` instead of a URL.
    ``prefix``: the key namespace (entries of another format version never match).
    """

    blocking = True
    maxsize = None

    def __init__(self, url: str | None = None, ttl: float | None = None, *,
                 client: Any = None, prefix: str = DEFAULT_PREFIX,
                 timeout: float = 5.0) -> None:
        if (url is None) == (client is None):
            raise ValueError("RedisCache needs a url or a client (one of them)")
        self.ttl = check_ttl(ttl)
        self._ttl_ms = int(self.ttl * 1000) if self.ttl is not None else None
        self.prefix = prefix.encode()
        self._counts = Counts()
        if client is None:
            client = _client_class().from_url(url, socket_timeout=timeout,
                                              socket_connect_timeout=timeout)
        self._client = client

    def __bool__(self) -> bool:
        return True

    def get(self, key: bytes) -> Completion | None:
        value = None
        try:
            value = self._client.get(self.prefix + key)
        except Exception as e:  # the client's own errors: connection, timeout, protocol
            warn("msgflux cache: Redis GET failed (%s); treated as a miss",
                        type(e).__name__)
        return self._counts.decode(value)

    def set(self, key: bytes, value: Completion) -> None:
        try:
            self._client.set(self.prefix + key, encode_entry(value), px=self._ttl_ms)
        except Exception as e:
            warn("msgflux cache: Redis SET failed (%s); answer not cached",
                        type(e).__name__)

    def _keys(self) -> Any:
        return self._client.scan_iter(match=self.prefix + b"*", count=_SCAN_BATCH)

    def cache_info(self) -> dict[str, Any]:
        """Counts of this process; ``currsize`` counts the prefix's keys on the server."""
        return {"hits": self._counts.hits, "misses": self._counts.misses, "maxsize": None,
                "currsize": sum(1 for _ in self._keys())}

    def cache_clear(self) -> None:
        """Delete every key under the prefix (for everyone sharing it); reset the counts."""
        batch: list[bytes] = []
        for key in self._keys():
            batch.append(key)
            if len(batch) >= _SCAN_BATCH:
                self._client.delete(*batch)
                batch = []
        if batch:
            self._client.delete(*batch)
        self._counts.reset()

    def close(self) -> None:
        self._client.close()

    def __repr__(self) -> str:  # the URL may hold a password: never shown
        return f"RedisCache(prefix={self.prefix.decode()!r})"
