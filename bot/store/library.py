"""The article library as a user manages it: list, show, delete and count the stored articles.

The answering core needs none of this, so it is not part of the `Store` protocol; it works on a `SQLiteStore`.

    library = Library(SQLiteStore("qa.db"))
    for row in library.articles(since="2024-05-01"):
        print(row.id, row.title)
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from bot.errors import StoreError
from bot.store.sqlite import SQLiteStore

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
    """The size of the library: counts, the database file's size (with its WAL) and the last ingestion."""

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
    """List, look up, delete and count the articles of one store.

    :param store: the open store; its lock is held for each query or write.
    """

    def __init__(self, store: SQLiteStore) -> None:
        self.store = store
        self.db = store.db

    def articles_sql(
        self,
        *,
        since: str | None = None,
        source: str | None = None,
        text: str | None = None,
        collection: str | None = None,
    ) -> tuple[str, list[object]]:
        """The `articles` query and its parameters: oldest id first, a per-article passage count (no GROUP BY
        over every passage, so the first row comes at once even for 100k articles)."""
        where: list[str] = []
        params: list[object] = []
        if text:
            where.append("instr(lower(a.title || ' ' || a.source || ' ' || coalesce(a.url, '')), lower(?)) > 0")
            params.append(text)
        if since:
            where.append("a.ingested_at >= ?")
            params.append(since)
        if source:
            where.append("instr(lower(a.source), lower(?)) > 0")
            params.append(source)
        if collection:
            where.append("a.collection = ?")
            params.append(collection)
        sql = _ROW_SQL + (" where " + " and ".join(where) if where else "") + " order by a.id"
        return sql, params

    def articles(
        self,
        *,
        since: str | None = None,
        source: str | None = None,
        text: str | None = None,
        collection: str | None = None,
    ) -> Iterator[ArticleRow]:
        """Stored articles, oldest id first, one at a time (streamed from SQLite).

        :param since: only articles added (ingested) on or after this date or timestamp (ISO 8601, UTC).
        :param source: only articles whose source contains this text (any case).
        :param text: only articles whose title, source or url contains this text (any case; `/qa-admin list`).
        :param collection: only articles of this collection.
        """
        sql, params = self.articles_sql(since=since, source=source, text=text, collection=collection)
        try:
            for row in self.db.query(sql, params):
                yield ArticleRow(**row)
        except sqlite3.Error as exc:
            raise StoreError(f"Could not list the articles of {self.store.path}: {exc}") from exc

    def find(self, ref: str) -> ArticleRow | None:
        """The article with this id, else with this url, else with this source (a file path); None when none."""
        clauses = (["a.id = ?"] if ref.isdigit() else []) + ["a.url = ?", "a.source = ?"]
        with self.store.lock:
            for clause in clauses:
                row = next(self.db.query(f"{_ROW_SQL} where {clause} order by a.id limit 1", [ref]), None)
                if row:
                    return ArticleRow(**row)
        return None

    def opening(self, article_id: int, *, sentences: int = 3) -> list[str]:
        """The first sentences of an article, as stored."""
        with self.store.lock:
            rows = self.db.query(
                "select text from sentences where article_id = ? order by idx limit ?", [article_id, sentences]
            )
            return [row["text"] for row in rows]

    def delete(self, article_ids: Iterable[int]) -> int:
        """Delete articles with their sentences, passages and search rows, all in one transaction.

        :returns: how many articles were deleted.
        :raises StoreError: when SQLite fails; then nothing is deleted.
        """
        ids = sorted(set(article_ids))
        deleted = 0
        try:
            with self.store.lock, self.db.conn:  # one transaction: commits at the end, rolls back on error
                for article_id in ids:
                    # passages_fts rows go with their passages (the FTS triggers)
                    self.db.execute("delete from passages where article_id = ?", [article_id])
                    self.db.execute("delete from sentences where article_id = ?", [article_id])
                    deleted += self.db.execute("delete from articles where id = ?", [article_id]).rowcount
        except sqlite3.Error as exc:
            raise StoreError(
                f"Could not delete articles {ids} from {self.store.path}: {exc}. Nothing was deleted."
            ) from exc
        return deleted

    def stats(self) -> LibraryStats:
        """Counts of articles, passages and sentences, the file size, the last ingestion and the feeds."""

        def count(sql: str):
            return self.db.execute(sql).fetchone()[0]

        with self.store.lock:
            feeds = count("select count(*) from feeds") if self.db.table("feeds").exists() else 0
            last = count("select max(ingested_at) from articles")
            articles = count("select count(*) from articles")
            passages = count("select count(*) from passages")
            sentences = count("select count(*) from sentences")
        return LibraryStats(
            articles=articles,
            passages=passages,
            sentences=sentences,
            db_bytes=self._file_bytes(),
            last_ingest=last,
            feeds=feeds,
        )

    def _file_bytes(self) -> int:
        if self.store.path == ":memory:":
            return 0
        path = Path(self.store.path)
        return sum(p.stat().st_size for p in (path, path.with_name(path.name + "-wal")) if p.exists())
