"""The article library as a user manages it: list, show, delete and count the stored articles, in either engine.

The answering core needs none of this, so it is not part of the `Store` protocol. The queries are written once
for both engines (`bot.store.tables`); deleting is the store's own `delete_articles` (PostgreSQL also keeps its
BM25 statistics).

    library = Library(open_store("qa.db"))  # or a postgresql:// URL
    for row in library.articles(since="2024-05-01"):
        print(row.id, row.title)
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass

from bot.store.base import Store
from bot.store.tables import tables_of

__all__ = ["ArticleRow", "Library", "LibraryStats"]


@dataclass(frozen=True)
class ArticleRow:
    """One stored article as `articles list` shows it; `added` is when it was last ingested (UTC, ISO 8601)."""

    id: int
    title: str
    source: str
    url: str | None
    published_at: str | None
    author: str | None
    added: str | None
    passages: int
    collection: str = "general"

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class LibraryStats:
    """The size of the library: counts, the database's size on disk (a SQLite file with its WAL, or the whole
    PostgreSQL database) and the last ingestion."""

    articles: int
    passages: int
    sentences: int
    db_bytes: int
    last_ingest: str | None
    feeds: int

    def to_dict(self) -> dict:
        return asdict(self)


_ROW_SQL = (
    "select a.id, a.title, a.source, a.url, a.published_at, a.author, a.ingested_at as added,\n"
    "  (select count(*) from passages p where p.article_id = a.id) as passages, a.collection\n"
    "from articles a"
)


class Library:
    """List, look up, delete and count the articles of one store, SQLite or PostgreSQL.

    :param store: the open store; its lock is held for each query or write.
    """

    def __init__(self, store: Store) -> None:
        self.store = store
        self.tables = tables_of(store)

    def articles_sql(
        self,
        *,
        since: str | None = None,
        source: str | None = None,
        text: str | None = None,
        collection: str | None = None,
        limit: int | None = None,
    ) -> tuple[str, list[object]]:
        """The `articles` query and its parameters: oldest id first, a per-article passage count (no GROUP BY
        over every passage, so the first row comes at once even for 100k articles)."""
        where: list[str] = []
        params: list[object] = []
        if text:
            where.append(
                self.tables.contains("lower(a.title || ' ' || a.source || ' ' || coalesce(a.url, ''))", "lower(?)")
            )
            params.append(text)
        if since:
            where.append("a.ingested_at >= ?")
            params.append(since)
        if source:
            where.append(self.tables.contains("lower(a.source)", "lower(?)"))
            params.append(source)
        if collection:
            where.append("a.collection = ?")
            params.append(collection)
        sql = _ROW_SQL + (" where " + " and ".join(where) if where else "") + " order by a.id"
        if limit is not None:
            sql += " limit ?"
            params.append(limit)
        return sql, params

    def articles(
        self,
        *,
        since: str | None = None,
        source: str | None = None,
        text: str | None = None,
        collection: str | None = None,
        limit: int | None = None,
    ) -> Iterator[ArticleRow]:
        """Stored articles, oldest id first, one at a time (streamed from the database: read them all, or pass
        `limit`, since the store's lock is held until the last).

        :param since: only articles added (ingested) on or after this date or timestamp (ISO 8601, UTC).
        :param source: only articles whose source contains this text (any case).
        :param text: only articles whose title, source or url contains this text (any case; `/qa-admin list`).
        :param collection: only articles of this collection.
        :param limit: at most this many.
        """
        sql, params = self.articles_sql(since=since, source=source, text=text, collection=collection, limit=limit)
        for row in self.tables.stream(sql, params, doing="list the articles"):
            yield ArticleRow(**row)

    def find(self, ref: str) -> ArticleRow | None:
        """The article with this id, else with this url, else with this source (a file path); None when none."""
        is_id = ref.isascii() and ref.isdigit() and len(ref) <= 18  # a 64-bit integer, else it is no id
        lookups: list[tuple[str, object]] = [("a.id = ?", int(ref))] if is_id else []
        lookups += [("a.url = ?", ref), ("a.source = ?", ref)]
        for clause, value in lookups:
            rows = self.tables.rows(
                f"{_ROW_SQL} where {clause} order by a.id limit 1", [value], doing="look up an article"
            )
            if rows:
                return ArticleRow(**rows[0])
        return None

    def opening(self, article_id: int, *, sentences: int = 3) -> list[str]:
        """The first sentences of an article, as stored."""
        rows = self.tables.rows(
            "select text from sentences where article_id = ? order by idx limit ?",
            [article_id, sentences],
            doing="read an article's sentences",
        )
        return [row["text"] for row in rows]

    def delete(self, article_ids: Iterable[int]) -> int:
        """Delete articles with their sentences, passages and search rows, all in one transaction.

        :returns: how many articles were deleted.
        :raises StoreError: when the database fails; then nothing is deleted.
        """
        return self.store.delete_articles(article_ids)

    def stats(self) -> LibraryStats:
        """Counts of articles, passages and sentences, the size on disk, the last ingestion and the feeds."""
        [row] = self.tables.rows(
            "select (select count(*) from articles) as articles, (select count(*) from passages) as passages,\n"
            "  (select count(*) from sentences) as sentences, (select max(ingested_at) from articles) as last_ingest,\n"
            "  (select count(*) from feeds) as feeds",
            doing="count the library",
        )
        return LibraryStats(db_bytes=self.tables.size_bytes(), **row)
