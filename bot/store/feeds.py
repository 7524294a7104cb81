"""Subscribed feeds and the entries seen in them (tables `feeds` and `feed_entries`, schema version 4).

feeds = FeedStore(SQLiteStore("qa.db"))
feeds.add("https://news.example.org/rss.xml", title="Example News")
for feed in feeds.feeds():
    print(feed.url, feed.failures)
"""

from __future__ import annotations

import sqlite3
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

from bot.errors import StoreError
from bot.store.sqlite import SQLiteStore

__all__ = ["FeedRow", "FeedStore", "SeenEntry"]


@dataclass(frozen=True)
class FeedRow:
    """One subscribed feed, with its validators for conditional GET and its failures (for backoff)."""

    id: int
    url: str
    title: str | None
    etag: str | None
    last_modified: str | None
    added_at: str | None
    last_polled_at: str | None
    last_error: str | None
    failures: int
    retry_at: float | None
    entries: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class SeenEntry:
    fingerprint: str | None
    article_id: int | None


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


_FEED_SQL = "select f.*, (select count(*) from feed_entries e where e.feed_id = f.id) as entries from feeds f"


class FeedStore:
    """Read and write the feed tables of one store; every call takes the store's lock and is its own transaction.

    :param store: the open store (its connection and lock).
    """

    def __init__(self, store: SQLiteStore) -> None:
        self.store, self.db = store, store.db

    def _write(self, sql: str, params: list[object]) -> int:
        try:
            with self.store.lock, self.db.conn:
                return self.db.execute(sql, params).rowcount
        except sqlite3.Error as exc:
            raise StoreError(f"Could not update the feeds in {self.store.path}: {exc}") from exc

    def feeds(self) -> list[FeedRow]:
        """Every subscribed feed, in the order they were added."""
        with self.store.lock:
            return [FeedRow(**row) for row in self.db.query(_FEED_SQL + " order by f.id")]

    def get(self, url: str) -> FeedRow | None:
        with self.store.lock:
            row = next(self.db.query(_FEED_SQL + " where f.url = ?", [url]), None)
        return FeedRow(**row) if row else None

    def add(self, url: str, *, title: str | None) -> bool:
        """Subscribe to a feed; False when it is already subscribed (nothing changes then)."""
        return bool(
            self._write(
                "insert or ignore into feeds (url, title, added_at, failures) values (?, ?, ?, 0)", [url, title, _now()]
            )
        )

    def remove(self, url: str) -> bool:
        """Unsubscribe; the articles it brought stay in the library. False when there is no such feed."""
        feed = self.get(url)
        if feed is None:
            return False
        try:
            with self.store.lock, self.db.conn:
                self.db.execute("delete from feed_entries where feed_id = ?", [feed.id])
                self.db.execute("delete from feeds where id = ?", [feed.id])
        except sqlite3.Error as exc:
            raise StoreError(f"Could not remove the feed {url} from {self.store.path}: {exc}") from exc
        return True

    def seen(self, feed_id: int, key: str) -> SeenEntry | None:
        """What this feed recorded for an entry key, or None for an entry it has never seen."""
        with self.store.lock:
            row = next(
                self.db.query(
                    "select fingerprint, article_id from feed_entries where feed_id = ? and entry_key = ?",
                    [feed_id, key],
                ),
                None,
            )
        return SeenEntry(**row) if row else None

    def stored_article(self, *, link: str, key: str) -> int | None:
        """The id of an article already stored for this entry: one whose url is the link (a file, /ingest, any
        feed), or one another feed recorded under the same entry id or link."""
        with self.store.lock:
            row = next(self.db.query("select id from articles where url = ? limit 1", [link]), None)
            if row is None:
                row = next(
                    self.db.query(
                        "select a.id from feed_entries e join articles a on a.id = e.article_id "
                        "where e.entry_key = ? or e.link = ? limit 1",
                        [key, link],
                    ),
                    None,
                )
        return row["id"] if row else None

    def record_entry(self, feed_id: int, *, key: str, link: str, fingerprint: str, article_id: int | None) -> None:
        self._write(
            "insert or replace into feed_entries (feed_id, entry_key, link, fingerprint, article_id, seen_at) "
            "values (?, ?, ?, ?, ?, ?)",
            [feed_id, key, link, fingerprint, article_id, _now()],
        )

    def record_success(self, feed_id: int, *, title: str | None, etag: str | None, last_modified: str | None) -> None:
        self._write(
            "update feeds set title = coalesce(?, title), etag = ?, last_modified = ?, last_polled_at = ?, "
            "last_error = null, failures = 0, retry_at = null where id = ?",
            [title, etag, last_modified, _now(), feed_id],
        )

    def record_failure(self, feed_id: int, *, error: str, retry_at: float) -> None:
        self._write(
            "update feeds set last_polled_at = ?, last_error = ?, failures = failures + 1, retry_at = ? where id = ?",
            [_now(), error, retry_at, feed_id],
        )
