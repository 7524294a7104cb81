"""Opening the SQLite file the same way everywhere: private file modes and a writer that waits for the lock."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

__all__ = ["connect", "BUSY_TIMEOUT_S", "FILE_MODE", "is_disk_full"]

# A second writer (another `qa-bot ingest`, the server's Slack tables) waits this long for the write lock instead
# of failing at once with "database is locked".
BUSY_TIMEOUT_S = 10.0
# The file holds Slack user ids and their questions: owner only. SQLite creates -wal, -shm and -journal files with
# the database file's own mode, so they are private too.
FILE_MODE = 0o600


def connect(path: str | Path, *, busy_timeout_s: float = BUSY_TIMEOUT_S) -> sqlite3.Connection:
    """A connection to the database file, created 0600 when missing, with `busy_timeout` set; shareable between
    threads (callers serialise its use with their own lock).

        conn = connect("qa.db")  # PRAGMA busy_timeout is 10000
    """
    path = str(path)
    if path != ":memory:" and not path.startswith("file:"):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        try:  # O_EXCL: an existing file keeps the mode its owner gave it
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE))
        except FileExistsError:
            pass
    conn = sqlite3.connect(path, check_same_thread=False, timeout=busy_timeout_s)
    conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000):d}")
    return conn


def is_disk_full(exc: BaseException) -> bool:
    """Whether a SQLite error means there is no room: a full disk, or the file's `max_page_count` reached."""
    return getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL
