"""What every response cache shares: the key, the stored format, the backend protocol.

The key is a digest of everything that changes the answer (provider, base URL,
the whole neutral request — model, sampling, messages, schema, tools, tool
choice, prefill — the output parser, and the format version below), never the
API key. A streamed and a blocking call of the same request share one key: the
answer is the same, and a hit can be served either way.

What is stored is the neutral :class:`~msgflux.models.request.Completion` of the
answer, its text as the caller sees it (a prefilled prefix included), encoded
with MessagePack — never pickle, so a cache shared with other processes or
machines can hand out data but never code. Each hit is decoded and shaped anew
by the call that asked (text, structured output, tool calls), so a hit is
always an independent object. A value that does not decode (corrupt, foreign,
truncated) is a miss.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import msgspec

from msgflux.models.request import ChatRequest, Completion

__all__ = [
    "CACHE_FORMAT", "CacheBackend", "Counts", "cache_key", "decode_entry", "encode_entry", "warn",
]

#: Bump when what is stored or how the key is made changes: old entries become misses.
CACHE_FORMAT = 1

_pack = msgspec.msgpack.Encoder(order="deterministic").encode
_encode_entry = msgspec.msgpack.Encoder().encode
_decode_entry = msgspec.msgpack.Decoder(Completion).decode


def warn(message: str, *args: object) -> None:
    """Log a cache problem (logging loads only then: it stays off the import path)."""
    import logging

    logging.getLogger("msgflux.cache").warning(message, *args)


def cache_key(provider: str, base_url: str | None, request: ChatRequest, parser: str | None
              ) -> bytes:
    """A 32-byte digest of the request and where it goes."""
    import hashlib  # only with the cache on: keeps it off the import path

    if request.stream:
        request = msgspec.structs.replace(request, stream=False)
    h = hashlib.blake2b(digest_size=32)
    h.update(_pack((CACHE_FORMAT, provider, base_url, parser)))
    h.update(_pack(request))
    return h.digest()


def encode_entry(completion: Completion) -> bytes:
    return _encode_entry(completion)


def decode_entry(value: Any) -> Completion | None:
    """The stored answer, or ``None`` when ``value`` is not one (counted as a miss)."""
    if not isinstance(value, (bytes, bytearray, memoryview)):
        return None
    try:
        return _decode_entry(value)
    except (msgspec.DecodeError, msgspec.ValidationError):
        warn("msgflux cache: an entry did not decode as a cached answer; ignoring it")
        return None


@runtime_checkable
class CacheBackend(Protocol):
    """Where cached answers live, by 32-byte key.

    ``get`` returns the stored answer or ``None`` — a miss: absent, expired, a
    value that does not decode, or a store that failed (a cache never fails a
    call); ``set`` stores one (errors are logged, not raised). Backends keep
    values as :func:`encode_entry` bytes and read them with :func:`decode_entry`.
    ``cache_info()`` returns at least ``hits``, ``misses``, ``maxsize`` and
    ``currsize``; ``cache_clear()`` drops every entry and resets the counts.
    ``blocking`` is true when ``get``/``set`` wait on a network: an async call
    then runs them off the event loop. A backend is always truthy.
    """

    blocking: bool

    def get(self, key: bytes) -> Completion | None: ...

    def set(self, key: bytes, value: Completion) -> None: ...

    def cache_info(self) -> dict[str, Any]: ...

    def cache_clear(self) -> None: ...


class Counts:
    """Hit and miss counts of one cache object (this process's view)."""

    __slots__ = ("hits", "misses")

    def __init__(self) -> None:
        self.hits = 0
        self.misses = 0

    def decode(self, value: Any) -> Completion | None:
        """The stored answer of ``value`` (``None`` when absent), counted as a hit or a miss."""
        entry = decode_entry(value) if value is not None else None
        if entry is None:
            self.misses += 1
        else:
            self.hits += 1
        return entry

    def reset(self) -> None:
        self.hits = self.misses = 0
