"""Subscribed feeds and the entries seen in them (tables `feeds` and `feed_entries`: SQLite schema versions 6 and
8, PostgreSQL version 3), one class for both engines: the SQL is the same (`bot.store.tables`).

feeds = FeedStore(open_store("qa.db"))  # or a postgresql:// URL
feeds.add("https://news.example.org/rss.xml", title="Example News", collection="legal")
for feed in feeds.feeds():
    print(feed.url, feed.collection, feed.failures)
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

from bot.store.base import Store
from bot.store.tables import tables_of

__all__ = ["FeedRow", "FeedStore", "SeenEntry", "Subscription"]

logger = logging.getLogger(__name__)


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
    collection: str = "general"  # where its entries are stored (who may read them: bot.core.access)
    entries: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Subscription:
    """What `FeedStore.add` did: subscribed (`added`), nothing (already subscribed to that collection), or moved
    the feed from collection `moved_from`, with `articles_moved` of the articles its entries point to."""

    added: bool
    collection: str
    moved_from: str | None = None
    articles_moved: int = 0


@dataclass(frozen=True)
class SeenEntry:
    fingerprint: str | None
    article_id: int | None


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


# Values per `in (...)` list: far below SQLite's limit on parameters (32,766), and a short statement either way.
_CHUNK = 500

# The article stored for each of a list of urls, or of entry keys or links another feed recorded: `{marks}` is
# the list's placeholders, `value` the url, key or link found.
_ID_BY_URL_SQL = "select url as value, min(id) as id from articles where url in ({marks}) group by url"
_ID_BY_ENTRY_SQL = (
    "select e.{column} as value, min(a.id) as id from feed_entries e join articles a on a.id = e.article_id "
    "where e.{column} in ({{marks}}) group by e.{column}"
)

_FEED_SQL = "select f.*, (select count(*) from feed_entries e where e.feed_id = f.id) as entries from feeds f"


class FeedStore:
    """Read and write the feed tables of one store, SQLite or PostgreSQL; every call takes the store's lock and is
    its own transaction.

    :param store: the open store (its connection and lock).
    """

    def __init__(self, store: Store) -> None:
        self.store = store
        self.tables = tables_of(store)

    def _write(self, sql: str, params: list[object]) -> int:
        with self.tables.transaction("update the feeds") as tx:
            return tx.run(sql, params)

    def feeds(self) -> list[FeedRow]:
        """Every subscribed feed, in the order they were added."""
        return [FeedRow(**row) for row in self.tables.rows(_FEED_SQL + " order by f.id", doing="read the feeds")]

    def get(self, url: str) -> FeedRow | None:
        rows = self.tables.rows(_FEED_SQL + " where f.url = ?", [url], doing="read the feeds")
        return FeedRow(**rows[0]) if rows else None

    def add(self, url: str, *, title: str | None, collection: str = "general") -> Subscription:
        """Subscribe to a feed whose entries go into `collection`. A feed already subscribed under another
        collection moves there, with the articles its entries point to that are still in its old collection
        (so nothing it brought stays readable where the feed no longer belongs); one transaction.

            FeedStore(store).add(url, title="Counsel Notes", collection="legal").moved_from  # "general", or None

        :returns: what was done: added, moved (from which collection, with how many articles) or nothing.
        :raises StoreError: when the tables cannot be written.
        """
        with self.tables.transaction("update the feeds") as tx:
            inserted = tx.run(
                "insert into feeds (url, title, added_at, failures, collection) values (?, ?, ?, 0, ?) "
                "on conflict (url) do nothing",
                [url, title, _now(), collection],
            )
            if inserted:
                return Subscription(True, collection)
            feed = tx.one("select id, collection from feeds where url = ?", [url])
            assert feed is not None  # the insert met this very row
            before = feed["collection"]
            if before == collection:
                return Subscription(False, collection)
            tx.run("update feeds set collection = ? where id = ?", [collection, feed["id"]])
            moved = tx.run(
                "update articles set collection = ? where collection = ? and id in "
                "(select article_id from feed_entries where feed_id = ?)",
                [collection, before, feed["id"]],
            )
        logger.info("feed moved url=%s from=%s to=%s articles=%d", url, before, collection, moved)
        return Subscription(False, collection, moved_from=before, articles_moved=moved)

    def remove(self, url: str) -> bool:
        """Unsubscribe; the articles it brought stay in the library. False when there is no such feed."""
        feed = self.get(url)
        if feed is None:
            return False
        with self.tables.transaction(f"remove the feed {url}") as tx:
            tx.run("delete from feed_entries where feed_id = ?", [feed.id])
            tx.run("delete from feeds where id = ?", [feed.id])
        return True

    def seen(self, feed_id: int, key: str) -> SeenEntry | None:
        """What this feed recorded for an entry key, or None for an entry it has never seen."""
        rows = self.tables.rows(
            "select fingerprint, article_id from feed_entries where feed_id = ? and entry_key = ?",
            [feed_id, key],
            doing="read the feed entries",
        )
        return SeenEntry(**rows[0]) if rows else None

    def seen_entries(self, feed_id: int) -> dict[str, SeenEntry]:
        """What this feed recorded for each entry key it has seen (one query for a whole poll)."""
        rows = self.tables.rows(
            "select entry_key, fingerprint, article_id from feed_entries where feed_id = ?",
            [feed_id],
            doing="read the feed entries",
        )
        return {row["entry_key"]: SeenEntry(row["fingerprint"], row["article_id"]) for row in rows}

    def stored_article(self, *, link: str, key: str) -> int | None:
        """The id of an article already stored for this entry: one whose url is the link (a file, /ingest, any
        feed), or one another feed recorded under the same entry id or link."""
        return self.stored_articles([(link, key)]).get((link, key))

    def stored_articles(self, entries: Sequence[tuple[str, str]]) -> dict[tuple[str, str], int]:
        """`stored_article` for many (link, entry key) pairs at once, a few queries per `_CHUNK` of them; pairs
        with no stored article are left out."""
        links = sorted({link for link, _ in entries})
        by_url = self._ids_by(_ID_BY_URL_SQL, links)
        by_key = self._ids_by(_ID_BY_ENTRY_SQL.format(column="entry_key"), sorted({key for _, key in entries}))
        by_link = self._ids_by(_ID_BY_ENTRY_SQL.format(column="link"), links)
        found = {}
        for link, key in entries:
            article_id = by_url.get(link) or by_key.get(key) or by_link.get(link)
            if article_id is not None:
                found[(link, key)] = article_id
        return found

    def _ids_by(self, sql: str, values: list[str]) -> dict[str, int]:
        """{value: id} from `sql` (columns `value` and `id`) run for `values`, `_CHUNK` at a time in `in (...)`."""
        ids: dict[str, int] = {}
        for start in range(0, len(values), _CHUNK):
            chunk = values[start : start + _CHUNK]
            query = sql.format(marks=", ".join("?" * len(chunk)))
            ids.update((row["value"], row["id"]) for row in self.tables.rows(query, chunk, doing="read the articles"))
        return ids

    def record_entry(self, feed_id: int, *, key: str, link: str, fingerprint: str, article_id: int | None) -> None:
        self._write(
            "insert into feed_entries (feed_id, entry_key, link, fingerprint, article_id, seen_at) "
            "values (?, ?, ?, ?, ?, ?) on conflict (feed_id, entry_key) do update set link = excluded.link, "
            "fingerprint = excluded.fingerprint, article_id = excluded.article_id, seen_at = excluded.seen_at",
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
