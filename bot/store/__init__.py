"""Where qa-bot keeps things: the article store (`Store`, implemented by `SQLiteStore`), its schema migrations,
and the Slack app's state tables in the same SQLite file."""

from bot.store.base import Store, StoredOutcome
from bot.store.sqlite import SQLiteStore

__all__ = ["Store", "StoredOutcome", "SQLiteStore"]
