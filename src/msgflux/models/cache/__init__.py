"""Response caches: in memory (LRU), SQLite on disk, Redis / Valkey on a server.

A model chooses one with ``cache=``::

    enable_cache=True, cache_size=128     the in-memory LRU (also cache="memory")
    cache="sqlite:///answers.db"          a file, shared by processes (relative path;
                                          sqlite:////abs/path.db is absolute)
    cache="redis://localhost:6379/0"      a server, shared by machines (rediss:// for TLS;
                                          valkey:// is accepted too)
    cache=SQLiteCache(path, ttl=...)      any CacheBackend object

``cache_ttl=`` (seconds) bounds how long entries built from a URL live. See
:mod:`msgflux.models.cache.base` for the key and what is stored.
"""

from __future__ import annotations

from typing import Any

from msgflux.exceptions import InvalidParameterError
from msgflux.models.cache.base import (
    CACHE_FORMAT,
    CacheBackend,
    cache_key,
    decode_entry,
    encode_entry,
)
from msgflux.models.cache.memory import MemoryCache

__all__ = [
    "CACHE_FORMAT",
    "CacheBackend",
    "MemoryCache",
    "RedisCache",
    "SQLiteCache",
    "cache_key",
    "check_cache_spec",
    "decode_entry",
    "encode_entry",
    "open_cache",
]

_SCHEMES = ("memory", "sqlite", "redis", "rediss", "valkey", "valkeys", "unix")
_HOW = ("cache must be 'memory', 'sqlite:///path.db', 'redis://host:6379/0' or a "
        "CacheBackend object (get, set, cache_info, cache_clear)")


def __getattr__(name: str) -> Any:  # the backends that import more load on first use
    if name == "SQLiteCache":
        from msgflux.models.cache.sqlite import SQLiteCache

        return SQLiteCache
    if name == "RedisCache":
        from msgflux.models.cache.redis import RedisCache

        return RedisCache
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def check_cache_spec(spec: Any) -> None:
    """Refuse a ``cache=`` value that names no backend (before anything is opened)."""
    if spec is None or isinstance(spec, CacheBackend):
        return
    if not isinstance(spec, str):
        raise InvalidParameterError(f"{_HOW}, got {type(spec).__name__}")
    scheme = spec.partition(":")[0].lower()
    if spec != "memory" and (scheme not in _SCHEMES or "://" not in spec):
        raise InvalidParameterError(f"{_HOW}, got {spec!r}")
    if scheme == "sqlite" and not spec[len("sqlite:///"):]:
        raise InvalidParameterError(
            f"a SQLite cache needs a file: 'sqlite:///answers.db' (relative) or "
            f"'sqlite:////abs/path/answers.db', got {spec!r}"
        )


def open_cache(spec: Any, size: int = 128, ttl: float | None = None) -> CacheBackend:
    """The backend ``spec`` names (see the module docstring)."""
    check_cache_spec(spec)
    if not isinstance(spec, str):
        return spec
    scheme = spec.partition(":")[0].lower()
    try:
        if scheme == "memory":
            return MemoryCache(size, ttl)
        if scheme == "sqlite":
            import sqlite3

            from msgflux.models.cache.sqlite import SQLiteCache

            path = spec[len("sqlite:///"):]
            try:
                return SQLiteCache(path, ttl)
            except sqlite3.Error as e:
                raise InvalidParameterError(
                    f"cannot open the SQLite cache {path!r}: {e}. Point cache= at a writable "
                    "file of msgflux's (it is created if missing)."
                ) from None
        from msgflux.models.cache.redis import RedisCache

        if scheme.startswith("valkey"):
            spec = "redis" + spec[len("valkey"):]
        return RedisCache(spec, ttl)
    except ValueError as e:
        if isinstance(e, InvalidParameterError):
            raise
        raise InvalidParameterError(str(e)) from None
