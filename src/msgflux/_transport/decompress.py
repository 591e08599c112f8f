"""Undoing ``Content-Encoding: gzip``/``deflate`` incrementally.

We ask for ``identity`` on streams and ``gzip, deflate`` otherwise; this
covers both what we ask for and servers that compress anyway. Anything else
(``br``, ``zstd``) was never offered, so it is a protocol error.
"""

from __future__ import annotations

import zlib

__all__ = ["Decompressor", "DecompressionError", "new_decompressor"]


class DecompressionError(ValueError):
    """Compressed body bytes are corrupt, truncated or in an unknown coding."""


class Decompressor:
    """Incremental decoder; ``decompress`` per chunk, ``flush`` at end of body."""

    __slots__ = ("_deflate", "_obj", "_started")

    def __init__(self, wbits: int, deflate: bool) -> None:
        self._obj = zlib.decompressobj(wbits)
        self._deflate = deflate
        self._started = False

    def decompress(self, data: bytes) -> bytes:
        try:
            out = self._obj.decompress(data)
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


def new_decompressor(encoding: str) -> Decompressor | None:
    """A decoder for a ``Content-Encoding`` value; ``None`` for identity."""
    coding = encoding.strip().lower()
    if coding in ("", "identity"):
        return None
    if coding in ("gzip", "x-gzip"):
        return Decompressor(16 + zlib.MAX_WBITS, deflate=False)
    if coding == "deflate":
        return Decompressor(zlib.MAX_WBITS, deflate=True)
    raise DecompressionError(
        f"unsupported Content-Encoding {encoding!r} (we asked for gzip or identity)"
    )
