"""Where a batch keeps its finished items: in memory, or a SQLite checkpoint file.

Each item is stored under its input index with a fingerprint of what was asked
(the request digest the response cache uses), whether it succeeded, and the
:class:`~msgflux.batch.items.BatchItem` as MessagePack — never pickle. A rerun
skips an index whose stored item succeeded for the same fingerprint; anything
else (missing, failed, or asked differently) is done again.

The file is written in WAL mode in transactions committed every
``COMMIT_EVERY`` seconds and when the run ends or is interrupted, so it is
consistent whatever kills the process: ``kill -9`` loses at most the last
fraction of a second of answers, never the file.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any

import msgspec

from msgflux.batch.items import BatchItem

__all__ = ["COMMIT_EVERY", "Checkpoint", "MemoryStore", "open_store"]

COMMIT_EVERY = 0.25  # seconds of answers a kill -9 may cost
_SCHEMA = """CREATE TABLE IF NOT EXISTS msgflux_batch (
    idx INTEGER PRIMARY KEY, fingerprint BLOB NOT NULL, ok INTEGER NOT NULL,
    item BLOB NOT NULL)"""
_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder(BatchItem).decode


class MemoryStore:
    """Items kept in this process (encoded, so they read the same as a checkpoint's)."""

    path = None

    def __init__(self) -> None:
        self._items: dict[int, tuple[bytes, bool, bytes]] = {}

    def done(self, index: int, fingerprint: bytes) -> bool:
        entry = self._items.get(index)
        return entry is not None and entry[1] and entry[0] == fingerprint

    def put(self, index: int, fingerprint: bytes, item: BatchItem) -> None:
        self._items[index] = (fingerprint, item.error is None, _encode(item))

    def __len__(self) -> int:
        return len(self._items)

    def get(self, index: int) -> BatchItem | None:
        entry = self._items.get(index)
        return _decode(entry[2]) if entry is not None else None

    def __iter__(self) -> Iterator[BatchItem]:
        for index in sorted(self._items):
            yield _decode(self._items[index][2])

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


class Checkpoint:
    """Items in a SQLite file at ``path`` (created if missing; shared with reruns)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        import sqlite3

        from msgflux.exceptions import InvalidParameterError

        self.path = os.fspath(path)
        self._conn: Any = None
        try:
            self._connection()
        except sqlite3.Error as e:
            raise InvalidParameterError(
                f"cannot open the checkpoint {self.path!r}: {e}. Give checkpoint= a writable "
                "file path (it is created if missing)."
            ) from None
        self._open = False  # a write transaction is open
        self._since = time.monotonic()

    def _connection(self) -> Any:
        """The connection, opened again for reads after :meth:`close`."""
        if self._conn is None:
            from msgflux.models.cache.sqlite import connect

            self._conn = connect(self.path, _SCHEMA)
        return self._conn

    def done(self, index: int, fingerprint: bytes) -> bool:
        row = self._connection().execute("SELECT fingerprint, ok FROM msgflux_batch WHERE idx = ?",
                                 (index,)).fetchone()
        return row is not None and bool(row[1]) and row[0] == fingerprint

    def put(self, index: int, fingerprint: bytes, item: BatchItem) -> None:
        conn = self._connection()
        if not self._open:
            conn.execute("BEGIN")
            self._open = True
        conn.execute("INSERT OR REPLACE INTO msgflux_batch VALUES (?, ?, ?, ?)",
                     (index, fingerprint, int(item.error is None), _encode(item)))
        if time.monotonic() - self._since >= COMMIT_EVERY:
            self.flush()

    def flush(self) -> None:
        """Commit what was put so far."""
        if self._open:
            self._conn.execute("COMMIT")
            self._open = False
        self._since = time.monotonic()

    def __len__(self) -> int:
        return self._connection().execute("SELECT count(*) FROM msgflux_batch").fetchone()[0]

    def get(self, index: int) -> BatchItem | None:
        row = self._connection().execute("SELECT item FROM msgflux_batch WHERE idx = ?",
                                 (index,)).fetchone()
        return _decode(row[0]) if row is not None else None

    def __iter__(self) -> Iterator[BatchItem]:
        """Every stored item in input order, read a page at a time (memory stays flat)."""
        last = -1
        while True:
            rows = self._connection().execute(
                "SELECT idx, item FROM msgflux_batch WHERE idx > ? ORDER BY idx LIMIT 1000",
                (last,)).fetchall()
            if not rows:
                return
            for idx, item in rows:
                last = idx
                yield _decode(item)

    def close(self) -> None:
        if self._conn is not None:
            self.flush()
            self._conn.close()
            self._conn = None


def open_store(checkpoint: Any) -> MemoryStore | Checkpoint:
    """``checkpoint=None``: in memory; a path: that SQLite file."""
    if checkpoint is None:
        return MemoryStore()
    if not isinstance(checkpoint, (str, os.PathLike)):
        from msgflux.exceptions import InvalidParameterError

        raise InvalidParameterError(
            f"checkpoint must be a file path such as 'run.db', got {type(checkpoint).__name__}"
        )
    return Checkpoint(checkpoint)
