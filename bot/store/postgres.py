"""The article store in PostgreSQL (psycopg 3): articles, sentences, passages, a GIN-indexed tsvector for finding
candidate passages, and the term statistics to rank them with the same BM25 as FTS5's `bm25()`.

FTS5 ranks with BM25 over its own statistics; `ts_rank` is no BM25 (no document frequencies), so this store keeps
them: `passage_terms` counts the passages holding each lexeme and `corpus_stats` the passages and their tokens,
both updated in the transaction that stores or deletes an article (inside `bulk()`, once per batch: see
`_TermCounts`), and `passage_postings` holds each passage's lexemes with their weighted frequencies. A search
scores with k1 = 1.2, b = 0.75, title weight 0.5 and text weight 1.0, as `SQLiteStore` does, from the postings
(`bot.store.pg_search`); a phrase of several words (rare: the retriever searches single words) is found through
the GIN index on the tsvectors and scored by its rarest word's statistics.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from typing import TypeVar

import psycopg
from psycopg.rows import DictRow

from bot.core.records import Article, ArticleRef, Passage, Sentence
from bot.core.text import split_sentences
from bot.errors import StoreError
from bot.store.base import StoredOutcome
from bot.store.fts import Node, parse_fts, phrases
from bot.store.parts import article_row, content_hash, page_groups, unchanged_outcome, with_pages
from bot.store.pg_connect import PgSession, connect_pg, describe_url, one_line, store_errors
from bot.store.pg_migrations import TS_CONFIG, migrate_pg
from bot.store.pg_search import (
    MAX_POSTINGS_TERMS,
    WEIGHTED_F_SQL,
    idf,
    postings_params,
    postings_sql,
    tsvector_sql,
)

__all__ = ["PostgresStore", "upgrade_pg", "BULK_ARTICLES"]

logger = logging.getLogger(__name__)

T = TypeVar("T")

BULK_ARTICLES = 500


def upgrade_pg(url: str) -> tuple[int, int]:
    """Bring a PostgreSQL database to the latest schema; returns (version before, version after).

        before, after = upgrade_pg("postgresql://postgres@127.0.0.1/qa")  # (0, 1) for an empty database

    :raises StoreError: when the server cannot be reached, or a migration fails.
    """
    conn = connect_pg(url)
    try:
        return migrate_pg(conn, label=describe_url(url))
    finally:
        conn.close()


@dataclass
class _TermCounts:
    """A change to the BM25 statistics: passages holding each lexeme, passages, and their tokens (negative when
    taken away).

    Inside `bulk()` the changes of a batch are added up and written once, before its commit. Written per article,
    a frequent lexeme's `passage_terms` row (and the one `corpus_stats` row) got a new version for every article,
    and in one long transaction PostgreSQL cannot prune them: each update walked the row's whole chain of dead
    versions, and ingestion slowed to 32 articles/s by 1,000 articles (BENCHMARKS.md, PostgreSQL).
    """

    df: Counter[str] = field(default_factory=Counter)
    passages: int = 0
    tokens: int = 0

    def add(self, other: _TermCounts, *, sign: int = 1) -> None:
        for lexeme, n in other.df.items():
            self.df[lexeme] += sign * n
        self.passages += sign * other.passages
        self.tokens += sign * other.tokens

    def __bool__(self) -> bool:
        return bool(self.passages or self.tokens or any(self.df.values()))


# One row per lexeme of the passages in `counted` (lexeme, df), then one row (null, passages, tokens); `counted`
# is a CTE the caller prepends: the passages just inserted, or an article's stored ones.
_COUNT_TERMS_SQL = """
select u.lexeme, count(*) as n, null::bigint as tokens from counted, unnest(counted.tsv) u group by u.lexeme
union all
select null, count(*), coalesce(sum(counted.n_tokens), 0) from counted
"""


def _term_counts(rows: Iterable[DictRow]) -> _TermCounts:
    counts = _TermCounts()
    for row in rows:
        if row["lexeme"] is None:
            counts.passages, counts.tokens = int(row["n"]), int(row["tokens"])
        else:
            counts.df[row["lexeme"]] = int(row["n"])
    return counts


class PostgresStore:
    """Articles and their passages in PostgreSQL, ranked with FTS5's BM25 (the `Store` of a shared library).

        store = PostgresStore("postgresql://qa@db.internal/qa")
        store.add_article(Article(title="...", body="...", source="notes.txt"))
        passages = store.search('"ceo" OR "rosoboronexport"', limit=5)

    One connection, serialised by `lock` between the threads of a server (`bot.store.pg_connect.PgSession`): a
    connection the server dropped is replaced, and a search that finds it dropped runs again on the new one.

    :param url: a `postgresql://` URL of an existing database; its schema is created or upgraded on open
        (`bot.store.pg_migrations`).
    :raises StoreError: when the server cannot be reached, or the schema cannot be upgraded.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.path = describe_url(url)  # what messages name; never the password
        self.session = PgSession(url, label=self.path)
        self.lock = self.session.lock
        self._bulk_every = 0
        self._bulk_pending = 0
        self._bulk_tx: AbstractContextManager[object] | None = None
        self._bulk_terms = _TermCounts()  # the statistics of the open batch, written before its commit
        self._bulk_postings = False  # whether the open batch has postings in the temporary table `bulk_postings`
        try:
            migrate_pg(self.conn, label=self.path)
        except BaseException:
            self.session.close()
            raise

    @property
    def conn(self) -> psycopg.Connection[DictRow]:
        """The current connection (a new one after the server dropped the last)."""
        return self.session.conn

    def _writing(self) -> AbstractContextManager[psycopg.Connection[DictRow]]:
        """The connection for a write, under the lock; replaced first when lost, except inside `bulk`, whose
        transaction a new connection would silently leave."""
        return self.session.connection(reconnect=self._bulk_tx is None)

    # Writing -------------------------------------------------------------------------------------------------

    def add_article(self, article: Article) -> StoredOutcome:
        """Store one article with its sentences and passages in a single transaction (a savepoint inside `bulk`).

        Identical content already stored (from any source) is left alone; an article whose url (or, without url,
        whose source) is already stored is updated in place.
        """
        with self._writing() as conn:
            try:
                with conn.transaction():
                    outcome, change = self._store_article(article, content_hash(article), article.identity)
                    if self._bulk_tx is None:
                        self._write_term_counts(change)
            except psycopg.Error as exc:
                raise StoreError(f"Could not store {article.source!r} in {self.path}: {one_line(exc)}") from exc
            if self._bulk_tx is not None:
                self._bulk_terms.add(change)  # only now: an article that failed left its savepoint undone
                self._bulk_pending += 1
                if self._bulk_pending >= self._bulk_every:
                    self._end_bulk_transaction()
                    self._begin_bulk_transaction()
            return outcome

    @contextmanager
    def bulk(self, every: int = BULK_ARTICLES) -> Iterator[PostgresStore]:
        """Commit `add_article` calls in groups of `every` articles; what was stored is committed even when the
        block ends with an error.

            with store.bulk():
                for article in articles:
                    store.add_article(article)
        """
        if every <= 0:
            raise ValueError(f"every must be positive, got {every}")
        with self._writing():
            if self._bulk_tx is not None:  # already inside a bulk block: join it
                yield self
                return
            self._bulk_every = every
            self._begin_bulk_transaction()
            try:
                yield self
            finally:
                self._end_bulk_transaction()

    def _begin_bulk_transaction(self) -> None:
        self._bulk_pending = 0
        # this connection's own, created outside the batch so a rollback keeps it (and again on a new connection)
        self.conn.execute(
            "create temporary table if not exists bulk_postings "
            "(lexeme text not null, passage_id bigint not null, f real not null, n_tokens integer not null)"
        )
        transaction = self.conn.transaction()
        transaction.__enter__()
        self._bulk_tx = transaction

    def _end_bulk_transaction(self) -> None:
        tx, self._bulk_tx = self._bulk_tx, None
        if tx is not None:
            try:
                self._write_bulk_batch()
            except psycopg.Error as exc:
                self._bulk_terms, self._bulk_postings = _TermCounts(), False
                tx.__exit__(type(exc), exc, exc.__traceback__)  # the batch is undone with its statistics
                raise StoreError(f"Could not commit the last articles to {self.path}: {one_line(exc)}") from exc
            try:
                tx.__exit__(None, None, None)
            except psycopg.Error as exc:
                raise StoreError(f"Could not commit the last articles to {self.path}: {one_line(exc)}") from exc

    def _write_bulk_batch(self) -> None:
        """Write what the open batch keeps aside, its postings and its statistics (before its commit, or before a
        search in the batch reads them)."""
        self._write_bulk_postings()
        if self._bulk_terms:
            pending, self._bulk_terms = self._bulk_terms, _TermCounts()
            self._write_term_counts(pending)

    def _write_bulk_postings(self) -> None:
        """Move the batch's postings into `passage_postings` in index order: each leaf page of the index is written
        once for the batch, instead of once for each article's posting on it (160 -> 190 articles/s into an
        empty database)."""
        if self._bulk_postings:
            self.conn.execute(
                "insert into passage_postings (lexeme, passage_id, f, n_tokens) "
                "select lexeme, passage_id, f, n_tokens from bulk_postings order by lexeme, passage_id"
            )
            self.conn.execute("truncate bulk_postings")
            self._bulk_postings = False

    def _store_article(self, article: Article, digest: str, key: str) -> tuple[StoredOutcome, _TermCounts]:
        """Store one article; returns what happened and how the BM25 statistics change (not yet written)."""
        existing = self.conn.execute("select id, content_hash from articles where key = %s", [key]).fetchone()
        if existing is None:
            same = self.conn.execute("select id from articles where content_hash = %s limit 1", [digest]).fetchone()
        else:
            same = existing if existing["content_hash"] == digest else None
        if same:
            return self._moved_if_needed(same["id"], article), _TermCounts()
        sentences = with_pages(split_sentences(article.body), article.page_starts)
        row = article_row(article, key=key, digest=digest)
        columns = ", ".join(row)
        values = ", ".join(f"%({name})s" for name in row)
        moved_from = None
        change = _TermCounts()
        if existing:
            article_id = existing["id"]
            moved_from = self._collection_of(article_id)
            change.add(self._stored_term_counts(article_id), sign=-1)
            self._write_bulk_postings()  # its postings may still wait in the batch
            self._delete_postings(article_id)
            self.conn.execute("delete from passages where article_id = %s", [article_id])
            self.conn.execute("delete from sentences where article_id = %s", [article_id])
            self.conn.execute(
                f"update articles set ({columns}) = ({values}) where id = %(id)s", {**row, "id": article_id}
            )
        else:
            inserted = self.conn.execute(f"insert into articles ({columns}) values ({values}) returning id", row)
            article_id = inserted.fetchone()["id"]  # type: ignore[index]  # insert ... returning: one row
        change.add(self._insert_parts(article_id, article, sentences))
        outcome = StoredOutcome(
            "updated" if existing else "added",
            article_id,
            article.title,
            moved_from=moved_from if moved_from != article.collection else None,
            collection=article.collection,
        )
        return outcome, change

    def _collection_of(self, article_id: int) -> str:
        row = self.conn.execute("select collection from articles where id = %s", [article_id]).fetchone()
        return row["collection"] if row else "general"

    def _moved_if_needed(self, article_id: int, article: Article) -> StoredOutcome:
        """Unchanged content: left alone, except that ingesting it under another collection moves it there."""
        before = self._collection_of(article_id)
        if before != article.collection:
            self.conn.execute("update articles set collection = %s where id = %s", [article.collection, article_id])
        return unchanged_outcome(article_id, article, before)

    def _insert_parts(self, article_id: int, article: Article, sentences: list[Sentence]) -> _TermCounts:
        """Insert an article's sentences, passages and postings (inside a batch, into `bulk_postings`); returns the
        passages' term counts."""
        postings = "bulk_postings" if self._bulk_tx is not None else "passage_postings"
        if self._bulk_tx is not None:
            self._bulk_postings = True
        with self.conn.cursor() as cursor:
            with cursor.copy("copy sentences (article_id, idx, char_start, char_end, text, page) from stdin") as copy:
                for s in sentences:
                    copy.write_row((article_id, s.index, s.char_start, s.char_end, s.text, s.page))
        spans = [(sentences[first].char_start, sentences[last].char_end) for first, last in page_groups(sentences)]
        rows = self.conn.execute(
            f"""
            with counted as (
            insert into passages (article_id, idx, char_start, char_end, title, text, tsv, n_tokens)
            select %(article_id)s, x.idx - 1, x.char_start, x.char_end, %(title)s, x.text, v.tsv,
              (select coalesce(sum(array_length(u.positions, 1)), 0) from unnest(v.tsv) u)
            from unnest(%(starts)s::int[], %(ends)s::int[], %(texts)s::text[])
              with ordinality as x(char_start, char_end, text, idx)
            cross join lateral (
              select setweight(to_tsvector('{TS_CONFIG}', %(title)s), 'A')
                || setweight(to_tsvector('{TS_CONFIG}', x.text), 'B') as tsv
            ) v
            returning id, tsv, n_tokens
            ),
            posted as (
            insert into {postings} (lexeme, passage_id, f, n_tokens)
            select u.lexeme, counted.id, {WEIGHTED_F_SQL}, counted.n_tokens from counted, unnest(counted.tsv) u
            ){_COUNT_TERMS_SQL}""",
            {
                "article_id": article_id,
                "title": article.title,
                "starts": [start for start, _ in spans],
                "ends": [end for _, end in spans],
                "texts": [article.body[start:end] for start, end in spans],
            },
        ).fetchall()
        return _term_counts(rows)

    def _stored_term_counts(self, article_id: int) -> _TermCounts:
        """The term counts of an article's stored passages (what deleting them takes from the statistics)."""
        rows = self.conn.execute(
            f"with counted as (select tsv, n_tokens from passages where article_id = %s){_COUNT_TERMS_SQL}",
            [article_id],
        ).fetchall()
        return _term_counts(rows)

    def _delete_postings(self, article_id: int) -> None:
        """Delete the postings of an article's passages (before the passages), found through their own index."""
        self.conn.execute(
            "delete from passage_postings pp using passages p cross join lateral unnest(p.tsv) u "
            "where p.article_id = %s and pp.lexeme = u.lexeme and pp.passage_id = p.id",
            [article_id],
        )

    def _write_term_counts(self, change: _TermCounts) -> None:
        """Apply a change to the BM25 statistics, lexemes in sorted order (two writers lock rows in one order)."""
        lexemes = sorted(lexeme for lexeme, n in change.df.items() if n)
        if lexemes:
            self.conn.execute(
                """
                insert into passage_terms (lexeme, df)
                select lexeme, df from unnest(%s::text[], %s::bigint[]) as t(lexeme, df) order by lexeme
                on conflict (lexeme) do update set df = passage_terms.df + excluded.df
                """,
                [lexemes, [change.df[lexeme] for lexeme in lexemes]],
            )
        if change.passages or change.tokens:
            self.conn.execute(
                "update corpus_stats set passages = passages + %s, tokens = tokens + %s",
                [change.passages, change.tokens],
            )

    def delete_articles(self, article_ids: Iterable[int]) -> int:
        """Delete articles with their sentences, passages and term statistics, in one transaction.

        :returns: how many articles were deleted.
        :raises StoreError: when the database fails; then nothing is deleted.
        """
        ids = sorted(set(article_ids))
        deleted = 0
        change = _TermCounts()
        try:
            with self._writing() as conn, conn.transaction():
                for article_id in ids:
                    change.add(self._stored_term_counts(article_id), sign=-1)
                    self._delete_postings(article_id)
                    deleted += conn.execute("delete from articles where id = %s", [article_id]).rowcount
                self._write_term_counts(change)
        except psycopg.Error as exc:
            raise StoreError(
                f"Could not delete articles {ids} from {self.path}: {one_line(exc)}. Nothing was deleted."
            ) from exc
        return deleted

    # Reading -------------------------------------------------------------------------------------------------

    def _lexemes(self, texts: Sequence[str]) -> dict[str, list[str]]:
        """The lexemes the index holds for each text (a phrase or a query term)."""
        rows = self.conn.execute(
            f"select t.text, array(select u.lexeme from unnest(to_tsvector('{TS_CONFIG}', t.text)) u) as lexemes "
            "from unnest(%s::text[]) as t(text)",
            [list(texts)],
        ).fetchall()
        return {row["text"]: list(row["lexemes"]) for row in rows}

    def _document_frequencies(self, lexemes: Iterable[str]) -> dict[str, int]:
        rows = self.conn.execute(
            "select lexeme, df from passage_terms where lexeme = any(%s)", [sorted(set(lexemes))]
        ).fetchall()
        return {row["lexeme"]: int(row["df"]) for row in rows}

    def search(
        self, fts_query: str | Sequence[str], *, limit: int, collections: Collection[str] | None = None
    ) -> list[Passage]:
        """Passages matching FTS5 expressions, best BM25 first (as `SQLiteStore.search`, the same scores).

        With `collections`, only passages of articles in those collections (none for an empty set). Given several
        expressions, the best `limit` passages of each, a passage found by several with its best score.

        :raises StoreError: for an expression outside the FTS5 subset qa-bot writes, or a database error.
        """
        expressions = [e for e in ([fts_query] if isinstance(fts_query, str) else fts_query) if e]
        if not expressions:
            return []
        try:
            trees = [parse_fts(expression) for expression in expressions]
        except ValueError as exc:
            raise StoreError(f"Search failed for {' | '.join(expressions)!r}: {exc}") from exc
        try:
            with self.lock:
                self._write_bulk_batch()  # a search inside a batch sees the batch's postings and statistics
                found = self.session.read(lambda conn: self._best_passages(conn, trees, limit, collections))
        except psycopg.Error as exc:
            raise StoreError(f"Search failed for {' | '.join(expressions)!r}: {one_line(exc)}") from exc
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
                bm25=rank,
            )
            for row, rank in found
        ]

    def _best_passages(
        self, conn: psycopg.Connection[DictRow], trees: list[Node], limit: int, collections: Collection[str] | None
    ) -> list[tuple[DictRow, float]]:
        """The `limit` best passages (with their article) and their BM25 rank, best (lowest) first; one read, so
        `PgSession.read` can run it again whole on a new connection."""
        stats = conn.execute("select passages, tokens from corpus_stats").fetchone()
        n_passages = int(stats["passages"]) if stats else 0
        if not stats or n_passages == 0:
            return []
        avgdl = max(int(stats["tokens"]) / n_passages, 1.0)
        lexemes = self._lexemes(sorted({text for tree in trees for text in phrases(tree)}))
        dfs = self._document_frequencies(lex for found in lexemes.values() for lex in found)
        if self._by_postings(lexemes):
            ranked = self._ranked_by_postings(trees, lexemes, dfs, n_passages, avgdl, limit, collections)
        else:
            ranked = [
                hit for tree in trees for hit in self._ranked(tree, lexemes, dfs, n_passages, avgdl, limit, collections)
            ]
        best: dict[int, float] = {}
        for passage_id, rank in ranked:
            best[passage_id] = min(rank, best.get(passage_id, rank))
        winners = sorted(best, key=lambda passage_id: (best[passage_id], passage_id))[:limit]
        rows = conn.execute(
            "select p.id, p.article_id, p.char_start, p.char_end, p.text, a.title, a.source, a.url,\n"
            "  a.published_at, a.author, a.collection\n"
            "from passages p join articles a on a.id = p.article_id where p.id = any(%s)",
            [winners],
        ).fetchall()
        by_id = {row["id"]: row for row in rows}
        return [(by_id[passage_id], best[passage_id]) for passage_id in winners if passage_id in by_id]

    @staticmethod
    def _by_postings(lexemes: dict[str, list[str]]) -> bool:
        """Whether the postings can rank these phrases: each is one word (or none), and not too many."""
        distinct = {lexeme for found in lexemes.values() for lexeme in found}
        return all(len(found) <= 1 for found in lexemes.values()) and len(distinct) <= MAX_POSTINGS_TERMS

    def _ranked_by_postings(
        self,
        trees: Sequence[Node],
        lexemes: dict[str, list[str]],
        dfs: dict[str, int],
        n_passages: int,
        avgdl: float,
        limit: int,
        collections: Collection[str] | None,
    ) -> list[tuple[int, float]]:
        """The best `limit` passages matching any of the expressions, each with its best BM25 (`postings_sql`)."""
        lexeme_of = {text: found[0] if found else None for text, found in lexemes.items()}
        built = postings_sql(trees, lexeme_of, dfs, n_passages, collections=collections is not None)
        if built is None:
            return []
        sql, params = built
        params.update(postings_params(avgdl), limit=limit)
        if collections is not None:
            params["collections"] = sorted(collections)
        return [(row["id"], float(row["rank"])) for row in self.conn.execute(sql, params).fetchall()]

    def _ranked(
        self,
        tree: Node,
        lexemes: dict[str, list[str]],
        dfs: dict[str, int],
        n_passages: int,
        avgdl: float,
        limit: int,
        collections: Collection[str] | None,
    ) -> list[tuple[int, float]]:
        q_lexeme: list[str] = []
        q_phrase: list[int] = []
        q_idf: list[float] = []
        for index, text in enumerate(phrases(tree)):  # a phrase twice in an expression counts twice, as in FTS5
            found = lexemes.get(text, [])
            if not found:
                continue
            phrase_idf = idf(min(dfs.get(lexeme, 0) for lexeme in found), n_passages)
            for lexeme in found:
                q_lexeme.append(lexeme)
                q_phrase.append(index)
                q_idf.append(phrase_idf)
        sql, phrase_params = tsvector_sql(tree, collections=collections is not None)
        params: dict[str, object] = {f"phrase_{i}": value for i, value in enumerate(phrase_params)}
        params.update(
            avgdl=avgdl,
            q_lexeme=q_lexeme,
            q_phrase=q_phrase,
            q_idf=q_idf,
            limit=limit,
            collections=sorted(collections) if collections is not None else None,
        )
        return [(row["id"], float(row["rank"])) for row in self.conn.execute(sql, params).fetchall()]

    def passage_counts(self, terms: Iterable[str], *, up_to: int) -> dict[str, int]:
        """How many passages contain each term, as the index stems it, counted up to `up_to + 1` (the stored
        document frequency for a one-word term; a GIN count that stops early for a phrase)."""
        terms = list(terms)
        if not terms:
            return {}

        def count(conn: psycopg.Connection[DictRow]) -> dict[str, int]:
            lexemes = self._lexemes(terms)
            dfs = self._document_frequencies(lex for found in lexemes.values() for lex in found)
            counts: dict[str, int] = {}
            for term in terms:
                found = lexemes.get(term, [])
                if not found:
                    counts[term] = 0
                elif len(found) == 1:
                    counts[term] = min(dfs.get(found[0], 0), up_to + 1)
                else:
                    row = conn.execute(
                        "select count(*) as n from (select 1 from passages "
                        f"where tsv @@ phraseto_tsquery('{TS_CONFIG}', %s) limit %s) hits",
                        [term, up_to + 1],
                    ).fetchone()
                    counts[term] = int(row["n"]) if row else 0
            return counts

        with self.lock:
            with store_errors(f"count the passages of {terms!r}", self.path):
                self._write_bulk_batch()  # inside a batch, count what the batch stored too
            return self._read(f"count the passages of {terms!r}", count)

    def sentences_covering(self, article_id: int, char_start: int, char_end: int) -> list[Sentence]:
        """The sentences of an article that overlap body[char_start:char_end], in order."""
        rows = self.query(
            "select idx, char_start, char_end, text, page from sentences where article_id = %s "
            "and char_end > %s and char_start < %s order by char_start",
            [article_id, char_start, max(char_end, char_start + 1)],
        )
        return [Sentence(r["idx"], r["char_start"], r["char_end"], r["text"], r["page"]) for r in rows]

    def article_body(self, article_id: int) -> str:
        rows = self.query("select body from articles where id = %s", [article_id])
        if not rows:
            raise StoreError(f"No article with id {article_id} in {self.path}.")
        return rows[0]["body"]

    def article_count(self) -> int:
        return int(self.query("select count(*) as n from articles")[0]["n"])

    def collection_names(self) -> list[str]:
        """The collections stored articles belong to, sorted."""
        return [row["collection"] for row in self.query("select distinct collection from articles order by 1")]

    def query(self, sql: str, params: Sequence[object] | dict[str, object] = ()) -> list[dict]:
        """Rows of any read query, as dicts (tests, an admin's look at the tables).

        :raises StoreError: when the database fails (a lost connection is replaced and the query run again first).
        """
        return self._read("read", lambda conn: list(conn.execute(sql, params).fetchall()))

    def _read(self, doing: str, run: Callable[[psycopg.Connection[DictRow]], T]) -> T:
        """`run(conn)` through the session (run again on a new connection when the server dropped the last); a
        database error becomes a one-line `StoreError` saying what was being done."""
        with store_errors(doing, self.path):
            return self.session.read(run)

    def close(self) -> None:
        self.session.close()
