"""SQL written once for both engines, run on the connection of a store: the feed tables (`bot.store.feeds`) and
the library commands (`bot.store.library`) need nothing either engine lacks, so each is one class, not a copy per
engine.

Their SQL is what SQLite and PostgreSQL both speak (`insert ... on conflict`, `coalesce`, subqueries) with `?`
placeholders. `Tables` runs it under the store's lock and turns the engine's errors into one-line `StoreError`s;
the few things that differ (a substring test, the size on disk) are methods of it. `SQLiteTables` is here,
`PostgresTables` in `bot.store.pg_tables` (psycopg is imported only for PostgreSQL).

    tables = tables_of(store)
    with tables.transaction("update the feeds") as tx:
        tx.run("update feeds set failures = 0 where id = ?", [feed_id])
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Protocol

from bot.errors import StoreError
from bot.store.base import Store
from bot.store.sqlite import SQLiteStore

__all__ = ["SQLiteTables", "Tables", "Transaction", "tables_of"]


class Transaction(Protocol):
    """Statements inside one transaction of `Tables.transaction`."""

    def run(self, sql: str, params: Sequence[object] = ()) -> int:
        """Run one statement; how many rows it changed."""
        ...

    def one(self, sql: str, params: Sequence[object] = ()) -> dict | None:
        """The first row of a query, or None."""
        ...


class Tables(Protocol):
    """Engine-neutral SQL (`?` placeholders) on one store's connection, under its lock.

    :param doing: what a failure message says was being done ("Could not {doing} in {label}: ...").
    """

    label: str  # what messages name: the file, or the URL without its password

    def rows(self, sql: str, params: Sequence[object] = (), *, doing: str) -> list[dict]:
        """Every row of a query."""
        ...

    def stream(self, sql: str, params: Sequence[object] = (), *, doing: str) -> Iterator[dict]:
        """The rows of a query as they are read (the first comes at once, even of 100k); holds the lock until the
        last, so read them all."""
        ...

    def transaction(self, doing: str) -> AbstractContextManager[Transaction]:
        """One transaction: committed at the end of the block, rolled back on an error."""
        ...

    def contains(self, text: str, part: str) -> str:
        """SQL that is true when the SQL expression `text` holds `part` (both lower-cased by the caller)."""
        ...

    def size_bytes(self) -> int:
        """The database's size on disk."""
        ...


def tables_of(store: Store) -> Tables:
    """The `Tables` of an open store, whichever its engine.

    :raises TypeError: for a store of neither engine.
    """
    if isinstance(store, SQLiteStore):
        return SQLiteTables(store)
    from bot.store.pg_tables import PostgresTables
    from bot.store.postgres import PostgresStore

    if isinstance(store, PostgresStore):
        return PostgresTables(store)
    raise TypeError(f"no SQL tables for a {type(store).__name__}")


class _SQLiteTransaction:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def run(self, sql: str, params: Sequence[object] = ()) -> int:
        return self.conn.execute(sql, list(params)).rowcount

    def one(self, sql: str, params: Sequence[object] = ()) -> dict | None:
        cursor = self.conn.execute(sql, list(params))
        row = cursor.fetchone()
        return None if row is None else dict(zip([column[0] for column in cursor.description], row, strict=True))


class SQLiteTables:
    """`Tables` on a `SQLiteStore`'s file."""

    def __init__(self, store: SQLiteStore) -> None:
        self.store, self.label = store, store.path

    def _error(self, doing: str, exc: sqlite3.Error) -> StoreError:
        return StoreError(f"Could not {doing} in {self.label}: {exc}")

    def rows(self, sql: str, params: Sequence[object] = (), *, doing: str) -> list[dict]:
        try:
            with self.store.lock:
                return list(self.store.db.query(sql, list(params)))
        except sqlite3.Error as exc:
            raise self._error(doing, exc) from exc

    def stream(self, sql: str, params: Sequence[object] = (), *, doing: str) -> Iterator[dict]:
        try:
            with self.store.lock:
                yield from self.store.db.query(sql, list(params))
        except sqlite3.Error as exc:
            raise self._error(doing, exc) from exc

    @contextmanager
    def transaction(self, doing: str) -> Iterator[Transaction]:
        try:
            with self.store.lock, self.store.db.conn:
                yield _SQLiteTransaction(self.store.db.conn)
        except sqlite3.Error as exc:
            raise self._error(doing, exc) from exc

    def contains(self, text: str, part: str) -> str:
        return f"instr({text}, {part}) > 0"

    def size_bytes(self) -> int:
        """The file with its write-ahead log."""
        if self.store.path == ":memory:":
            return 0
        path = Path(self.store.path)
        return sum(p.stat().st_size for p in (path, path.with_name(path.name + "-wal")) if p.exists())
