"""Connecting to PostgreSQL the same way everywhere, and one connection a process's threads share that outlives the
server dropping it (a restart, a failover, an operator's `pg_terminate_backend`).

Every connection has a statement timeout, so a stuck query (a table locked by a forgotten psql session, a runaway
plan) ends in a one-line error instead of holding a Slack worker forever. A lost connection is replaced on the
next call; a read that finds it lost is run once more on the new one, so the question being answered still gets
its answer. Writes are not repeated: whether the server committed before the connection went is unknown.

    session = PgSession("postgresql://qa@db.internal/qa", label="postgresql://qa@db.internal:5432/qa")
    count = session.read(lambda conn: conn.execute("select count(*) as n from articles").fetchone())
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import DictRow, dict_row

from bot.errors import StoreError

__all__ = [
    "CONNECT_TIMEOUT_S",
    "STATEMENT_TIMEOUT_S",
    "PgSession",
    "connect_pg",
    "describe_url",
    "one_line",
    "store_errors",
]

logger = logging.getLogger(__name__)

T = TypeVar("T")

CONNECT_TIMEOUT_S = 5
# The longest one statement may run before the server cancels it ("canceling statement due to statement
# timeout"). A search takes milliseconds and storing one article well under a second, so this only ever ends a
# query that is stuck (waiting on a lock, a runaway plan), which would otherwise hold a Slack worker for good.
# Schema migrations lift it for their own transaction (bot.store.pg_migrations): an index over a large library
# may take longer, and a second opener waits there for the first one's migration.
STATEMENT_TIMEOUT_S = 30


def one_line(exc: BaseException) -> str:
    """A database error as one line: the server's own message when it sent one (without the SQL context psycopg
    adds: `LINE 2: create table ...`), else psycopg's (a connection that failed), its lines joined."""
    said = getattr(getattr(exc, "diag", None), "message_primary", None)
    return said or " ".join(str(exc).split())


@contextmanager
def store_errors(doing: str, label: str) -> Iterator[None]:
    """A psycopg error inside the block becomes a one-line `StoreError` saying what was being done, and where:
    `Could not read an answer in postgresql://qa@db.internal:5432/qa: ...`."""
    try:
        yield
    except psycopg.Error as exc:
        raise StoreError(f"Could not {doing} in {label}: {one_line(exc)}") from exc


def describe_url(url: str) -> str:
    """A database URL without its password, for messages and logs: `postgresql://user@host:port/dbname`."""
    try:
        parts = conninfo_to_dict(url)
    except psycopg.Error:
        return "postgresql://(malformed URL)"
    user = f"{parts['user']}@" if parts.get("user") else ""
    return (
        f"postgresql://{user}{parts.get('host') or 'localhost'}:{parts.get('port') or 5432}/{parts.get('dbname') or ''}"
    )


def connect_pg(url: str, *, timeout_s: int = CONNECT_TIMEOUT_S) -> psycopg.Connection[DictRow]:
    """An autocommit connection (writes use explicit transactions) whose statements time out after
    `STATEMENT_TIMEOUT_S`, or a one-line `StoreError` naming the host.

    :raises StoreError: when the URL is malformed or the server cannot be reached or refuses us.
    """
    try:
        parts = conninfo_to_dict(url)
    except psycopg.Error as exc:
        raise StoreError(f"Bad QABOT_DATABASE_URL {describe_url(url)}: {one_line(exc)}.") from exc
    host = f"{parts.get('host') or 'localhost'}:{parts.get('port') or 5432}"
    try:
        conn = psycopg.connect(url, autocommit=True, connect_timeout=timeout_s, row_factory=dict_row)
        # a SET rather than the `options` startup parameter, which PgBouncer refuses
        conn.execute(f"set statement_timeout = {STATEMENT_TIMEOUT_S * 1000:d}")
    except psycopg.Error as exc:
        raise StoreError(
            f"Cannot connect to PostgreSQL at {host} (database {parts.get('dbname') or '?'}): {one_line(exc)}. "
            "Check QABOT_DATABASE_URL or --db."
        ) from exc
    return conn


class PgSession:
    """One connection shared by the threads of a process, each use under `lock`, replaced when the server
    dropped it. `PostgresStore` (the library) and `PostgresSlackState` (the Slack tables) each hold one.

        session = PgSession(url, label=describe_url(url))
        with session.connection() as conn, conn.transaction():
            conn.execute("update feeds set failures = 0")

    :param url: a `postgresql://` URL.
    :param label: what logs name (never the password).
    :raises StoreError: when the server cannot be reached (one line naming the host).
    """

    def __init__(self, url: str, *, label: str) -> None:
        self.url, self.label = url, label
        self.lock = threading.RLock()
        self.conn: psycopg.Connection[DictRow] = connect_pg(url)

    def _is_lost(self) -> bool:
        return self.conn.closed or self.conn.broken

    def _reconnect(self) -> None:
        logger.warning("postgresql connection lost, reconnecting db=%s", self.label)
        self.conn.close()
        self.conn = connect_pg(self.url)

    @contextmanager
    def connection(self, *, reconnect: bool = True) -> Iterator[psycopg.Connection[DictRow]]:
        """The connection, under the lock; first replaced when the server dropped it (unless `reconnect` is
        False: inside a transaction that spans calls, a new connection would silently leave it)."""
        with self.lock:
            if reconnect and self._is_lost():
                self._reconnect()
            yield self.conn

    def read(self, run: Callable[[psycopg.Connection[DictRow]], T]) -> T:
        """`run(conn)` under the lock; when the connection turns out lost on the way, it is replaced and `run` is
        called once more, on the new one. Only for reads, and writes keyed so that a second run changes nothing
        (a job's insert): they are safe to repeat.

        :raises psycopg.Error: what `run` raised, or what the second try raised.
        """
        with self.connection() as conn:
            try:
                return run(conn)
            except psycopg.OperationalError:
                if not self._is_lost():  # a timeout, a cancel: the connection is fine, the query was not
                    raise
            self._reconnect()
            return run(self.conn)

    def close(self) -> None:
        self.conn.close()
