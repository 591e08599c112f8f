"""Undoing ``Content-Encoding: gzip``/``deflate`` incrementally.

We ask for ``identity`` on streams and ``gzip, deflate`` otherwise. Anything
else (``br``, ``zstd``) was never offered, so it is a protocol error. Output is
capped (``limit``): a small compressed body can inflate a thousandfold, so
zlib is never asked for more than the bytes still allowed.
"""

from __future__ import annotations

import zlib

from msgflux._transport.errors import too_large

__all__ = ["DecompressedTooLargeError", "DecompressionError", "Decompressor",
           "new_decompressor"]


class DecompressionError(ValueError):
    """Compressed body bytes are corrupt, truncated or in an unknown coding."""


class DecompressedTooLargeError(DecompressionError):
    """The body inflates past the limit (a compression bomb, or a huge answer)."""


class Decompressor:
    """Incremental decoder; ``decompress`` per chunk, ``flush`` at end of body."""

    __slots__ = ("_deflate", "_limit", "_obj", "_room", "_started")

    def __init__(self, wbits: int, deflate: bool, limit: int | None = None) -> None:
        self._obj = zlib.decompressobj(wbits)
        self._deflate = deflate
        self._started = False
        self._limit = limit
        self._room = limit

    def decompress(self, data: bytes) -> bytes:
        room = self._room
        try:
            if room is None:
                out = self._obj.decompress(data)
            else:
                # One byte more than allowed tells "too large" from "exactly the limit".
                out = self._obj.decompress(data, room + 1)
                if len(out) > room:
                    raise DecompressedTooLargeError(
                        too_large("decompressed body", self._limit or 0))
                self._room = room - len(out)
        except zlib.error as exc:
            if self._deflate and not self._started:
                # "deflate" is meant to be zlib-wrapped, but some servers send
                # it raw; the first chunk tells.
                self._obj = zlib.decompressobj(-zlib.MAX_WBITS)
                self._deflate = False
                return self.decompress(data)
            raise DecompressionError(f"corrupt compressed body: {exc}") from None
        self._started = True
        return out

    def flush(self) -> bytes:
        if not self._started:
            return b""  # empty body
        tail = self._obj.flush()
        if not self._obj.eof:
            raise DecompressionError("compressed body ended before its end marker (truncated)")
        return tail


def new_decompressor(encoding: str, limit: int | None = None) -> Decompressor | None:
    """A decoder for a ``Content-Encoding`` value (``None`` for identity) whose
    output stops at ``limit`` bytes."""
    coding = encoding.strip().lower()
    if coding in ("", "identity"):
        return None
    if coding in ("gzip", "x-gzip"):
        return Decompressor(16 + zlib.MAX_WBITS, deflate=False, limit=limit)
    if coding == "deflate":
        return Decompressor(zlib.MAX_WBITS, deflate=True, limit=limit)
    raise DecompressionError(
        f"unsupported Content-Encoding {encoding!r} (we asked for gzip or identity)"
    )
