"""The SQLite cache: one file on disk, shared by every process that opens it.

WAL journaling lets readers run beside one writer and writers queue on the
file's lock (``busy_timeout``), so many processes can share one cache. Each
process (a forked child too) opens its own connection; one connection serves
all threads of a process under a lock. ``maxsize`` is not enforced (a file
holds what the disk does): expired rows are skipped on read and pruned on
``set`` once in a while.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from typing import Any

from msgflux.models.cache.base import Counts, encode_entry, warn
from msgflux.models.cache.memory import check_ttl
from msgflux.models.request import Completion

__all__ = ["SQLiteCache", "connect"]

_SCHEMA = """CREATE TABLE IF NOT EXISTS msgflux_cache (
    key BLOB PRIMARY KEY, value BLOB NOT NULL, expires REAL) WITHOUT ROWID"""
_PRUNE_EVERY = 1000  # sets between two sweeps of expired rows


def connect(path: str, schema: str, timeout: float = 30.0) -> sqlite3.Connection:
    """A connection in WAL mode with ``schema`` created; shared with the checkpoint store.

    Switching a new file to WAL and creating tables take the write lock; several
    processes opening the same new file at once wait for each other (busy_timeout).
    """
    conn = sqlite3.connect(path, timeout=timeout, isolation_level=None,
                           check_same_thread=False)
    try:
        conn.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
        deadline = time.monotonic() + timeout
        while True:
            try:
                conn.execute("PRAGMA journal_mode = WAL")
                conn.executescript(schema)
                break
            except sqlite3.OperationalError as e:  # "database is locked" while another sets up
                if "locked" not in str(e) or time.monotonic() > deadline:
                    raise
                time.sleep(0.01)
        conn.execute("PRAGMA synchronous = NORMAL")  # WAL: durable at checkpoints, never torn
    except BaseException:
        conn.close()
        raise
    return conn


class SQLiteCache:
    """Answers in a SQLite file at ``path``, each kept ``ttl`` seconds (``None``: forever)."""

    blocking = False
    maxsize = None

    def __init__(self, path: str | os.PathLike[str], ttl: float | None = None) -> None:
        self.path = os.fspath(path)
        self.ttl = check_ttl(ttl)
        self._counts = Counts()
        self._lock = threading.Lock()
        self._sets = 0
        self._pid = os.getpid()
        self._conn = connect(self.path, _SCHEMA)

    def _connection(self) -> sqlite3.Connection:
        if self._pid != os.getpid():  # a forked child never uses its parent's connection
            self._conn = connect(self.path, _SCHEMA)
            self._pid = os.getpid()
        return self._conn

    def __bool__(self) -> bool:
        return True

    def get(self, key: bytes) -> Completion | None:
        value = None
        with self._lock:
            try:
                row = self._connection().execute(
                    "SELECT value FROM msgflux_cache WHERE key = ? "
                    "AND (expires IS NULL OR expires > ?)", (key, time.time())).fetchone()
                value = row[0] if row is not None else None
            except sqlite3.Error as e:
                warn("msgflux cache: reading %s failed (%s); treated as a miss",
                            self.path, e)
            return self._counts.decode(value)

    def set(self, key: bytes, value: Completion) -> None:
        data = encode_entry(value)
        now = time.time()
        expires = now + self.ttl if self.ttl is not None else None
        with self._lock:
            try:
                conn = self._connection()
                conn.execute("INSERT OR REPLACE INTO msgflux_cache VALUES (?, ?, ?)",
                             (key, data, expires))
                self._sets += 1
                if self._sets % _PRUNE_EVERY == 0:
                    conn.execute("DELETE FROM msgflux_cache WHERE expires <= ?", (now,))
            except sqlite3.Error as e:
                warn("msgflux cache: writing %s failed (%s); answer not cached",
                            self.path, e)

    def cache_info(self) -> dict[str, Any]:
        with self._lock:
            (size,) = self._connection().execute(
                "SELECT count(*) FROM msgflux_cache WHERE expires IS NULL OR expires > ?",
                (time.time(),)).fetchone()
            return {"hits": self._counts.hits, "misses": self._counts.misses,
                    "maxsize": None, "currsize": size, "path": self.path}

    def cache_clear(self) -> None:
        """Drop every entry (for every process sharing the file) and reset the statistics."""
        with self._lock:
            self._connection().execute("DELETE FROM msgflux_cache")
            self._counts.reset()

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __repr__(self) -> str:
        return f"SQLiteCache({self.path!r})"
