"""`Tables` (`bot.store.tables`) on a `PostgresStore`'s connection: the engine-neutral SQL of the feed tables and
the library commands, run through the store's `PgSession` (a read that finds the connection dropped runs again on
a new one)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import psycopg
from psycopg.rows import DictRow

from bot.store.pg_connect import store_errors
from bot.store.postgres import PostgresStore
from bot.store.tables import Transaction

__all__ = ["PostgresTables"]


_SIZE_SQL = (
    "select sum(pg_total_relation_size(c.oid)) as n from pg_class c join pg_namespace s on s.oid = c.relnamespace "
    "where c.relkind = 'r' and s.nspname = current_schema()"
)


def _placeholders(sql: str) -> str:
    """psycopg's `%s` for each `?` (the engine-neutral SQL holds no other `?` and no `%`)."""
    return sql.replace("?", "%s")


class _PgTransaction:
    def __init__(self, conn: psycopg.Connection[DictRow]) -> None:
        self.conn = conn

    def run(self, sql: str, params: Sequence[object] = ()) -> int:
        return self.conn.execute(_placeholders(sql), list(params)).rowcount

    def one(self, sql: str, params: Sequence[object] = ()) -> dict | None:
        return self.conn.execute(_placeholders(sql), list(params)).fetchone()


class PostgresTables:
    """`Tables` on a `PostgresStore`."""

    def __init__(self, store: PostgresStore) -> None:
        self.store, self.label = store, store.path
        self.session = store.session

    def rows(self, sql: str, params: Sequence[object] = (), *, doing: str) -> list[dict]:
        with store_errors(doing, self.label):
            return self.session.read(lambda conn: list(conn.execute(_placeholders(sql), list(params)).fetchall()))

    def stream(self, sql: str, params: Sequence[object] = (), *, doing: str) -> Iterator[dict]:
        """Through a server-side cursor, a batch of rows at a time (a cursor needs a transaction)."""
        with (
            store_errors(doing, self.label),
            self.session.connection() as conn,
            conn.transaction(),
            conn.cursor(name="qa_bot_rows") as cursor,
        ):
            cursor.execute(_placeholders(sql), list(params))
            yield from cursor

    @contextmanager
    def transaction(self, doing: str) -> Iterator[Transaction]:
        with store_errors(doing, self.label), self.session.connection() as conn, conn.transaction():
            yield _PgTransaction(conn)

    def contains(self, text: str, part: str) -> str:
        return f"strpos({text}, {part}) > 0"

    def size_bytes(self) -> int:
        """The tables of qa-bot's schema with their indexes: the library, the feeds and the Slack tables, what the
        SQLite file would hold (not the server's catalogs)."""
        [row] = self.rows(_SIZE_SQL, doing="measure the database")
        return int(row["n"] or 0)
