"""The in-memory cache: a true LRU, thread-safe, with hit statistics."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from typing import Any

from msgflux.models.cache.base import Counts, encode_entry
from msgflux.models.request import Completion

__all__ = ["MemoryCache"]


def check_ttl(ttl: Any) -> float | None:
    if ttl is None:
        return None
    if isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or not ttl > 0:
        raise ValueError(f"cache_ttl must be a positive number of seconds or None, got {ttl!r}")
    return float(ttl)


class MemoryCache:
    """Least-recently-used cache of ``maxsize`` answers, each kept ``ttl`` seconds
    (``None``: until evicted). Values are stored encoded, as in every backend.

    Always truthy (even when empty), so ``if model._response_cache:`` tells
    whether caching is on.
    """

    blocking = False

    def __init__(self, maxsize: int = 128, ttl: float | None = None) -> None:
        if not isinstance(maxsize, int) or isinstance(maxsize, bool) or maxsize < 1:
            raise ValueError(f"cache_size must be a positive int, got {maxsize!r}")
        self.maxsize = maxsize
        self.ttl = check_ttl(ttl)
        self._counts = Counts()
        self._data: OrderedDict[bytes, tuple[float | None, bytes]] = OrderedDict()
        self._lock = threading.Lock()

    def __bool__(self) -> bool:
        return True

    def __len__(self) -> int:
        return len(self._data)

    def get(self, key: bytes) -> Completion | None:
        with self._lock:
            item = self._data.get(key)
            if item is not None:
                expires = item[0]
                if expires is not None and time.monotonic() >= expires:
                    del self._data[key]
                    item = None
                else:
                    self._data.move_to_end(key)
            return self._counts.decode(item[1] if item is not None else None)

    def set(self, key: bytes, value: Completion) -> None:
        data = encode_entry(value)
        expires = time.monotonic() + self.ttl if self.ttl is not None else None
        with self._lock:
            self._data[key] = (expires, data)
            self._data.move_to_end(key)
            while len(self._data) > self.maxsize:
                self._data.popitem(last=False)

    def cache_info(self) -> dict[str, int]:
        with self._lock:
            return {"hits": self._counts.hits, "misses": self._counts.misses,
                    "maxsize": self.maxsize, "currsize": len(self._data)}

    def cache_clear(self) -> None:
        """Drop every entry and reset the statistics."""
        with self._lock:
            self._data.clear()
            self._counts.reset()

    def __repr__(self) -> str:
        info = self.cache_info()
        return (f"MemoryCache(hits={info['hits']}, misses={info['misses']}, "
                f"maxsize={info['maxsize']}, currsize={info['currsize']})")
