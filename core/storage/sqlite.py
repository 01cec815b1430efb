"""What every store of the history database shares: ids, timestamps, opening, and one locked read/write path.

``SqliteStore`` is the base of ``core.history.store.HistoryStore`` and ``core.kb.rows.KnowledgeRows``: it is handed
its connection (or opens one at a path), applies the pragmas and numbered migrations of ``core.storage.migrations``,
and maps every failure the same way: sqlite3 errors become a StorageError naming the file and the fix, text
that cannot be stored (a lone surrogate from undecodable input bytes) an InputError. Every call holds one
lock and every write commits at once (``BEGIN IMMEDIATE``, so the busy timeout applies to the write lock).
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Self

from sqlite_utils import Database

from core.errors import InputError, StorageError
from core.storage.migrations import database_path, migrate, storage_error

BUSY_TIMEOUT_S = 5.0

_clock_lock = threading.Lock()
_last_id = (0, 0)
_last_stamp = datetime.min.replace(tzinfo=UTC)


def new_id() -> str:
    """A 25-hex-digit id: 13 digits of ms timestamp, 12 random; strictly increasing within the process."""
    global _last_id
    with _clock_lock:
        ms, rand = time.time_ns() // 1_000_000, int.from_bytes(os.urandom(6), "big")
        last_ms, last_rand = _last_id
        if ms <= last_ms:  # same millisecond, or the clock went back: count up from the last id
            ms, rand = last_ms, last_rand + 1
        _last_id = (ms, rand)
    return f"{ms:013x}{rand:012x}"


def now() -> str:
    """The current UTC time as ISO-8601 with microseconds; strictly increasing within the process."""
    global _last_stamp
    with _clock_lock:
        stamp = datetime.now(UTC)
        if stamp <= _last_stamp:
            stamp = _last_stamp + timedelta(microseconds=1)
        _last_stamp = stamp
    return stamp.isoformat(timespec="microseconds")


class SqliteStore:
    """One connection to the history database, shared between threads behind one lock."""

    def __init__(self, db: Database) -> None:
        """Use the handed-in ``db``, applying pragmas and migrations now; StorageError if that fails.

        Prefer ``open(path)``; a connection shared between threads must have been made with
        ``check_same_thread=False``.
        """
        self.db = db
        self.path = database_path(db)
        self._lock = threading.RLock()
        try:
            db.execute("PRAGMA foreign_keys = ON")
            db.enable_wal()
            db.execute("PRAGMA synchronous = NORMAL")  # safe with WAL; a commit no longer waits on fsync
            migrate(db)
        except sqlite3.Error as exc:
            raise storage_error(exc, self.path) from exc

    @classmethod
    def open(cls, path: Path, *, timeout: float = BUSY_TIMEOUT_S) -> Self:
        """Open (creating it and its folder if missing) the history database at ``path``.

        Waits up to ``timeout`` seconds for a lock held by another process. Raises StorageError naming
        the path and the fix when the file is read-only, locked, corrupt or from a newer Inkstone; an
        existing file that fails to open is left exactly as it was.
        """
        path = Path(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(
                f"Cannot create the folder {path.parent} for the history database ({exc}): check "
                "permissions, or point INKSTONE_HOME at a writable folder."
            ) from exc
        if path.exists() and not path.is_file():
            raise StorageError(
                f"History database {path} is not a file: move it aside or choose another home."
            )
        conn = None
        try:
            conn = sqlite3.connect(str(path), timeout=timeout, check_same_thread=False)
            return cls(Database(conn, execute_plugins=False))
        except sqlite3.Error as exc:
            if conn is not None:
                conn.close()
            raise storage_error(exc, str(path)) from exc
        except StorageError:
            if conn is not None:
                conn.close()
            raise

    def close(self) -> None:
        """Close the connection (also when it was handed in)."""
        with self._lock:
            self.db.close()

    @contextmanager
    def _read(self) -> Iterator[Database]:
        """The database under the lock; sqlite3 errors become StorageError, unstorable text InputError."""
        with self._lock:
            try:
                yield self.db
            except sqlite3.Error as exc:
                raise storage_error(exc, self.path) from exc
            except UnicodeEncodeError as exc:  # a lone surrogate (undecodable input bytes) cannot be stored
                raise InputError(
                    f"Text with bytes that are not valid UTF-8 ({exc.object[exc.start:exc.end]!a}) cannot be stored or "
                    "searched: send it again as UTF-8 text."
                ) from None

    @contextmanager
    def _write(self) -> Iterator[Database]:
        """One transaction under the lock: committed when the block ends, rolled back if it raises."""
        # BEGIN IMMEDIATE takes the write lock up front, so the busy timeout applies to it (a deferred
        # transaction that reads first could fail at once when it upgrades to writing).
        with self._read() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
                db.execute("COMMIT")
            except BaseException:
                db.rollback()
                raise
