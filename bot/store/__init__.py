"""Where qa-bot keeps things: the article store (`Store`, implemented by `SQLiteStore` and `PostgresStore`), their
schema migrations, and the Slack app's state tables in the SQLite file."""

from __future__ import annotations

from pathlib import Path

from bot.store.base import Store, StoredOutcome
from bot.store.sqlite import SQLiteStore

__all__ = ["Store", "StoredOutcome", "SQLiteStore", "is_postgres_url", "open_store"]


def is_postgres_url(location: str | Path) -> bool:
    """Whether a `--db` value or `QABOT_DATABASE_URL` names a PostgreSQL database."""
    return str(location).startswith(("postgresql://", "postgres://"))


def open_store(location: str | Path) -> Store:
    """The article store at `location`: a `postgresql://` URL opens a `PostgresStore`, `sqlite:///path` or a plain
    path a `SQLiteStore`. The one place that chooses the engine (`build_service`, the CLI).

        store = open_store(settings.database)  # QABOT_DATABASE_URL, else QABOT_DB_PATH

    :raises StoreError: when the database cannot be reached or opened (one line naming the host or the file).
    """
    if is_postgres_url(location):
        from bot.store.postgres import PostgresStore  # psycopg only when PostgreSQL is asked for

        return PostgresStore(str(location))
    return SQLiteStore(str(location).removeprefix("sqlite:///"))
