"""Where qa-bot keeps things: the article store (`Store`, implemented by `SQLiteStore` and `PostgresStore`), the
Slack app's state (`SlackStateStore`, implemented by `SlackState` and `PostgresSlackState`) and their schema
migrations. `open_store` and `open_state` are the one place each engine is chosen, from the same location."""

from __future__ import annotations

from pathlib import Path

from bot.store.base import Store, StoredOutcome
from bot.store.sqlite import SQLiteStore
from bot.store.state_base import SlackStateStore

__all__ = ["SlackStateStore", "Store", "StoredOutcome", "SQLiteStore", "is_postgres_url", "open_state", "open_store"]


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


def open_state(location: str | Path) -> SlackStateStore:
    """The Slack app's state beside the article library at `location`: in PostgreSQL for a `postgresql://` URL
    (shared by every replica), else in the SQLite file. `serve`, `report` and the retention sweep open it here.

        state = open_state(settings.database)  # QABOT_DATABASE_URL, else QABOT_DB_PATH

    :raises StoreError: when the database cannot be reached or opened (one line naming the host or the file).
    """
    if is_postgres_url(location):
        from bot.store.pg_state import PostgresSlackState

        return PostgresSlackState(str(location))
    from bot.store.state import SlackState

    return SlackState(str(location).removeprefix("sqlite:///"))
