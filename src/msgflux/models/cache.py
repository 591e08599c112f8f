"""Response cache: a true LRU, thread-safe, with hit statistics.

The key is a digest of everything that changes the answer (provider, base URL,
the whole neutral request — model, sampling, messages, schema, tools, tool
choice, prefill — and the output parser), never the API key. Values are stored
as given and each hit hands out an independent copy, so a caller editing a
cached answer (e.g. inserting tool results) cannot change the next hit.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

import msgspec

from msgflux.models.request import ChatRequest

__all__ = ["ResponseCache", "cache_key"]

_pack = msgspec.msgpack.Encoder(order="deterministic").encode


def cache_key(provider: str, base_url: str | None, request: ChatRequest, parser: str | None
              ) -> bytes:
    """A 32-byte digest of the request and where it goes."""
    import hashlib  # only with the cache on: keeps it off the import path

    h = hashlib.blake2b(digest_size=32)
    h.update(_pack((provider, base_url, parser)))
    h.update(_pack(request))
    return h.digest()


class ResponseCache:
    """Least-recently-used cache of ``maxsize`` responses.

    Always truthy (even when empty), so ``if model._response_cache:`` tells
    whether caching is on.
    """

    def __init__(self, maxsize: int = 128) -> None:
        if not isinstance(maxsize, int) or isinstance(maxsize, bool) or maxsize < 1:
            raise ValueError(f"cache_size must be a positive int, got {maxsize!r}")
        self.maxsize = maxsize
        self.hits = 0
        self.misses = 0
        self._data: OrderedDict[bytes, Any] = OrderedDict()
        self._lock = threading.Lock()

    def __bool__(self) -> bool:
        return True

    def __len__(self) -> int:
        return len(self._data)

    def get(self, key: bytes) -> Any | None:
        """The stored value (its owner copies it), or ``None``; counts a hit or a miss."""
        with self._lock:
            value = self._data.get(key)
            if value is None:
                self.misses += 1
                return None
            self._data.move_to_end(key)
            self.hits += 1
            return value

    def set(self, key: bytes, value: Any) -> None:
        with self._lock:
            self._data[key] = value
            self._data.move_to_end(key)
            while len(self._data) > self.maxsize:
                self._data.popitem(last=False)

    def cache_info(self) -> dict[str, int]:
        with self._lock:
            return {"hits": self.hits, "misses": self.misses, "maxsize": self.maxsize,
                    "currsize": len(self._data)}

    def cache_clear(self) -> None:
        """Drop every entry and reset the statistics."""
        with self._lock:
            self._data.clear()
            self.hits = 0
            self.misses = 0

    def __repr__(self) -> str:
        info = self.cache_info()
        return (f"ResponseCache(hits={info['hits']}, misses={info['misses']}, "
                f"maxsize={info['maxsize']}, currsize={info['currsize']})")
