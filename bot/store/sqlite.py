"""The article store in one SQLite file (sqlite-utils): articles, sentences, passages and an FTS5 index."""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import sqlite_utils

from bot.core.records import Article, ArticleRef, Passage, Sentence
from bot.core.text import split_sentences
from bot.errors import DiskFullError, StoreError
from bot.store.base import StoredOutcome
from bot.store.connect import connect, is_disk_full
from bot.store.migrations import migrate
from bot.store.parts import PASSAGE_MAX_WORDS, article_row, content_hash, page_groups, unchanged_outcome, with_pages

__all__ = ["SQLiteStore", "content_hash", "PASSAGE_MAX_WORDS", "BULK_ARTICLES"]

logger = logging.getLogger(__name__)

# Articles per transaction inside `Store.bulk()`: one commit per article costs more than storing it.
BULK_ARTICLES = 500
# bm25() column weights for passages_fts(title, text): the body counts most, the title helps pick the article.
_BM25_WEIGHTS = "0.5, 1.0"


class SQLiteStore:
    """Articles and their passages in SQLite, searchable with BM25 through FTS5 (the `Store` of qa-bot).

        store = SQLiteStore("qa.db")
        store.add_article(Article(title="...", body="...", source="notes.txt"))
        passages = store.search('"ceo" OR "rosoboronexport"', limit=5)

    One connection is shared by the threads of a server; `lock` serialises its use (SQLite writes are serial anyway).

    :param path: database file; created with its schema when missing, upgraded to the latest schema version when
        older (`bot.store.migrations`). `":memory:"` works for experiments.
    :raises StoreError: when the file cannot be opened or upgraded.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self.lock = threading.RLock()
        try:
            self.db = sqlite_utils.Database(connect(self.path))  # 0600, busy_timeout: a second ingest waits
            if self.path != ":memory:":
                self.db.enable_wal()
                # With WAL, NORMAL never corrupts the file; a power cut may only undo the last commits.
                self.db.execute("PRAGMA synchronous=NORMAL")
            # 64 MB of page cache (SQLite's default is 2 MB): the FTS index of a large store stays in memory.
            self.db.execute("PRAGMA cache_size=-65536")
            self._bulk_every = 0
            self._bulk_pending = 0
            migrate(self.db, path=self.path)  # create or upgrade the schema (bot.store.migrations)
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(
                f"Cannot open the database {self.path}: {exc}. Check the path (QABOT_DB_PATH or --db)."
            ) from exc

    # Writing -------------------------------------------------------------------------------------------------

    def add_article(self, article: Article) -> StoredOutcome:
        """Store one article with its sentences and passages in a single transaction.

        Identical content already stored (from any source) is left alone; an article whose url (or, without url,
        whose source) is already stored is updated in place.
        """
        digest = content_hash(article)
        key = article.identity
        with self.lock:
            try:
                outcome = self._add_article(article, digest, key)
            except StoreError as exc:
                if self._bulk_every and not self.db.conn.in_transaction:
                    lost, self._bulk_pending = self._bulk_pending, 0
                    self.db.execute("BEGIN IMMEDIATE")
                    raise type(exc)(
                        f"{exc} SQLite also undid the {lost} article(s) stored before it in this batch; "
                        f"ingest the same files again to store them."
                    ) from exc
                raise
            if self._bulk_every:
                self._bulk_pending += 1
                if self._bulk_pending >= self._bulk_every:
                    self.db.execute("COMMIT")
                    self.db.execute("BEGIN IMMEDIATE")
                    self._bulk_pending = 0
            return outcome

    @contextmanager
    def bulk(self, every: int = BULK_ARTICLES) -> Iterator[SQLiteStore]:
        """Commit `add_article` calls in groups of `every` articles instead of one by one: several times faster
        for an archive. Each article stays all-or-nothing, and what was stored is committed even when the block
        ends with an error or Ctrl-C.

            with store.bulk():
                for article in articles:
                    store.add_article(article)
        """
        if every <= 0:
            raise ValueError(f"every must be positive, got {every}")
        with self.lock:
            nested = bool(self._bulk_every)
            if not nested:
                self._bulk_every, self._bulk_pending = every, 0
                if not self.db.conn.in_transaction:
                    # IMMEDIATE: take the write lock now (waiting busy_timeout for another writer). A deferred
                    # BEGIN would read first and then fail at once with "database is locked" when another
                    # writer committed in between (SQLite cannot upgrade a stale read snapshot).
                    self.db.execute("BEGIN IMMEDIATE")
        if nested:  # already inside a bulk block: join it
            yield self
            return
        try:
            yield self
        finally:
            with self.lock:
                self._bulk_every = 0
                if self.db.conn.in_transaction:
                    try:
                        self.db.execute("COMMIT")
                    except sqlite3.Error as exc:
                        self.db.conn.rollback()
                        error = DiskFullError if is_disk_full(exc) else StoreError
                        raise error(f"Could not commit the last articles to {self.path}: {exc}") from exc

    @contextmanager
    def _write_transaction(self) -> Iterator[None]:
        """One write transaction that holds the write lock from its first statement (BEGIN IMMEDIATE, waiting
        busy_timeout for another writer); inside a bulk block, a savepoint of the block's transaction.

        A deferred BEGIN would read the schema first and then fail at once with "database is locked" whenever
        another connection (the Slack tables, a second ingest) committed in between."""
        if self.db.conn.in_transaction:
            with self.db.atomic():
                yield
            return
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            if self.db.conn.in_transaction:
                self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    def _add_article(self, article: Article, digest: str, key: str) -> StoredOutcome:
        try:
            with self._write_transaction():
                outcome = self._store_article(article, digest, key)
        except sqlite3.Error as exc:
            error = DiskFullError if is_disk_full(exc) else StoreError
            raise error(f"Could not store {article.source!r} in {self.path}: {exc}") from exc
        return outcome

    def _store_article(self, article: Article, digest: str, key: str) -> StoredOutcome:
        existing = next(self.db.query("select id, content_hash from articles where key = ?", [key]), None)
        # Unchanged: same content under this key or, for a new key, anywhere (a moved file). An article edited
        # to equal another one is still updated, so its old text cannot linger.
        if existing is None:
            same = next(self.db.query("select id from articles where content_hash = ? limit 1", [digest]), None)
        else:
            same = existing if existing["content_hash"] == digest else None
        if same:
            return self._moved_if_needed(same["id"], article)
        sentences = with_pages(split_sentences(article.body), article.page_starts)
        row = article_row(article, key=key, digest=digest)
        moved_from = None
        if existing:
            moved_from = self._collection_of(existing["id"])
            article_id = existing["id"]
            self.db.execute("delete from passages where article_id = ?", [article_id])
            self.db.execute("delete from sentences where article_id = ?", [article_id])
            self.db.table("articles").update(article_id, row)
        else:
            article_id = self.db.table("articles").insert(row).last_pk
        self._insert_parts(article_id, article, sentences)
        return StoredOutcome(
            "updated" if existing else "added",
            article_id,
            article.title,
            moved_from=moved_from if moved_from != article.collection else None,
            collection=article.collection,
        )

    def _collection_of(self, article_id: int) -> str:
        return self.db.execute("select collection from articles where id = ?", [article_id]).fetchone()[0]

    def _moved_if_needed(self, article_id: int, article: Article) -> StoredOutcome:
        """Unchanged content: left alone, except that ingesting it under another collection moves it there."""
        before = self._collection_of(article_id)
        if before != article.collection:
            self.db.execute("update articles set collection = ? where id = ?", [article.collection, article_id])
        return unchanged_outcome(article_id, article, before)

    def _insert_parts(self, article_id: int, article: Article, sentences: list[Sentence]) -> None:
        self.db.table("sentences").insert_all(
            (
                {
                    "article_id": article_id,
                    "idx": s.index,
                    "char_start": s.char_start,
                    "char_end": s.char_end,
                    "text": s.text,
                    "page": s.page,
                }
                for s in sentences
            ),
            batch_size=500,
        )
        passages = []
        for idx, (first, last) in enumerate(page_groups(sentences)):
            start, end = sentences[first].char_start, sentences[last].char_end
            passages.append(
                {
                    "article_id": article_id,
                    "idx": idx,
                    "char_start": start,
                    "char_end": end,
                    "title": article.title,
                    "text": article.body[start:end],
                }
            )
        self.db.table("passages").insert_all(passages, batch_size=500)

    def delete_articles(self, article_ids: Iterable[int]) -> int:
        """Delete articles with their sentences, passages and search rows, all in one transaction.

        :returns: how many articles were deleted.
        :raises StoreError: when SQLite fails; then nothing is deleted.
        """
        ids = sorted(set(article_ids))
        deleted = 0
        try:
            with self.lock, self._write_transaction():
                for article_id in ids:
                    # passages_fts rows go with their passages (the FTS triggers)
                    self.db.execute("delete from passages where article_id = ?", [article_id])
                    self.db.execute("delete from sentences where article_id = ?", [article_id])
                    deleted += self.db.execute("delete from articles where id = ?", [article_id]).rowcount
        except sqlite3.Error as exc:
            raise StoreError(f"Could not delete articles {ids} from {self.path}: {exc}. Nothing was deleted.") from exc
        return deleted

    # Reading -------------------------------------------------------------------------------------------------

    def search_sql(self, expressions: int = 1, *, collections: int | None = None) -> str:
        """The BM25 search query; takes `:query` (an FTS5 MATCH expression) and `:limit`.

        For several expressions it takes `:query`, `:query_1`, `:query_2`...: each ranks its own best `limit`
        passages, and a passage that several of them find keeps its best score. With `collections=n` it also takes
        `:collection_0` ... `:collection_{n-1}` and ranks only passages of articles in those collections: the
        filter is inside each ranking, so a passage of another collection is never among the results (nor does
        it push an allowed one out of the `limit`).
        """
        # Rank inside FTS5 first and join only the `limit` winners: joining every match before sorting costs
        # 2.5x more at 100k articles (BENCHMARKS.md).
        names = ["query"] + [f"query_{i}" for i in range(1, expressions)]
        if collections is None:
            ranked = [
                f"select rowid, bm25(passages_fts, {_BM25_WEIGHTS}) as rank from passages_fts\n"
                f"  where passages_fts match :{name} order by rank limit :limit\n"
                for name in names
            ]
        else:
            # The matches in rank order first, then the collection test on each in that order until `limit` pass:
            # a scope holding most articles looks up a few passages instead of every match (+6 ms -> +0.7 ms at
            # 100k articles, BENCHMARKS.md). `limit -1` keeps SQLite from flattening the ranking into the outer
            # query, which would test every match before sorting; a subquery with a LIMIT keeps its ORDER BY.
            allowed = ", ".join(f":collection_{i}" for i in range(collections)) or "null"
            ranked = [
                "select rowid, rank from (\n"
                f"    select rowid, bm25(passages_fts, {_BM25_WEIGHTS}) as rank from passages_fts\n"
                f"    where passages_fts match :{name} order by rank limit -1\n"
                "  ) as f\n"
                "  where exists (select 1 from passages sp join articles sa on sa.id = sp.article_id\n"
                f"    where sp.id = f.rowid and sa.collection in ({allowed})) limit :limit\n"
                for name in names
            ]
        if len(ranked) == 1:
            hits = f"  {ranked[0]}"
        else:  # the best `limit` of each expression, a passage found twice with its best score
            merged = "  union all\n".join(f"  select * from (\n  {sql}  )\n" for sql in ranked)
            hits = f"  select rowid, min(rank) as rank from (\n{merged}  ) group by rowid order by rank limit :limit\n"
        return (
            "select p.id, p.article_id, p.char_start, p.char_end, p.text, a.title, a.source, a.url, a.published_at,\n"
            "  a.author, a.collection, hits.rank\n"
            "from (\n"
            f"{hits}"
            ") as hits\n"
            "join passages p on p.id = hits.rowid\n"
            "join articles a on a.id = p.article_id\n"
            "order by hits.rank"
        )

    def search(
        self, fts_query: str | Sequence[str], *, limit: int, collections: Collection[str] | None = None
    ) -> list[Passage]:
        """Passages matching an FTS5 expression, best BM25 first. Quote user text first (see `retrieve`).

        With `collections`, only passages of articles in those collections (none for an empty set); without,
        every article's.

        Given several expressions, the best passages any of them finds; a passage found by several keeps its best
        score. BM25 sums over the phrases of each expression, so this only makes sense when every expression
        gives its own passages their right score (see `Retriever`).
        """
        expressions = [e for e in ([fts_query] if isinstance(fts_query, str) else fts_query) if e]
        if not expressions:
            return []
        params: dict[str, object] = {"limit": limit, "query": expressions[0]}
        params.update({f"query_{i}": e for i, e in enumerate(expressions[1:], start=1)})
        allowed = sorted(collections) if collections is not None else None
        if allowed is not None:
            params.update({f"collection_{i}": name for i, name in enumerate(allowed)})
        sql = self.search_sql(len(expressions), collections=None if allowed is None else len(allowed))
        try:
            with self.lock:
                rows = list(self.db.query(sql, params))
        except sqlite3.OperationalError as exc:
            raise StoreError(f"Search failed for {' | '.join(expressions)!r}: {exc}") from exc
        return [
            Passage(
                id=row["id"],
                article=ArticleRef(
                    row["article_id"],
                    row["title"],
                    row["source"],
                    row["url"],
                    row["published_at"],
                    row["author"],
                    row["collection"],
                ),
                char_start=row["char_start"],
                char_end=row["char_end"],
                text=row["text"],
                bm25=row["rank"],
            )
            for row in rows
        ]

    def passage_counts(self, terms: Iterable[str], *, up_to: int) -> dict[str, int]:
        """How many passages contain each term, as FTS5 tokenizes it (porter stems), counted up to `up_to + 1`.

        Counting stops there, so a word found in half the passages costs no more to look up than one found in
        `up_to`; `up_to + 1` means "more than `up_to`".
        """
        terms = list(terms)
        sql = "select count(*) from (select 1 from passages_fts where passages_fts match ? limit ?)"
        counts = {}
        try:
            with self.lock:
                for term in terms:
                    phrase = '"' + term.replace('"', '""') + '"'  # a quoted FTS5 string: any text is safe
                    counts[term] = self.db.execute(sql, [phrase, up_to + 1]).fetchone()[0]
        except sqlite3.OperationalError as exc:
            raise StoreError(f"Counting passages failed for {terms!r}: {exc}") from exc
        return counts

    def sentences_covering(self, article_id: int, char_start: int, char_end: int) -> list[Sentence]:
        """The sentences of an article that overlap body[char_start:char_end], in order."""
        with self.lock:
            rows = list(
                self.db.query(
                    "select idx, char_start, char_end, text, page from sentences where article_id = ? "
                    "and char_end > ? and char_start < ? order by char_start",
                    [article_id, char_start, max(char_end, char_start + 1)],
                )
            )
        return [Sentence(r["idx"], r["char_start"], r["char_end"], r["text"], r["page"]) for r in rows]

    def article_body(self, article_id: int) -> str:
        with self.lock:
            row = next(self.db.query("select body from articles where id = ?", [article_id]), None)
        if row is None:
            raise StoreError(f"No article with id {article_id} in {self.path}.")
        return row["body"]

    def article_count(self) -> int:
        with self.lock:
            return self.db.table("articles").count

    def collection_names(self) -> list[str]:
        """The collections stored articles belong to, sorted (read from the collection index)."""
        with self.lock:
            return [row[0] for row in self.db.execute("select distinct collection from articles order by 1")]

    def close(self) -> None:
        self.db.close()
