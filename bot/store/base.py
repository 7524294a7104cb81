"""What the answering core needs from an article store, as a protocol: `SQLiteStore` (one file) and
`PostgresStore` (a shared server) implement it.

Code that only reads and writes articles takes a `Store`; code that needs SQLite itself (benchmarks, migrations)
takes a `SQLiteStore`.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Literal, Protocol

from bot.core.records import Article, Passage, Sentence

__all__ = ["Store", "StoredOutcome"]


@dataclass(frozen=True)
class StoredOutcome:
    """What storing one article did: `added`, `updated` (same url/source, new content) or `unchanged`."""

    status: Literal["added", "updated", "unchanged"]
    article_id: int
    title: str
    moved_from: str | None = None  # the collection it was in, when storing it moved it to another one
    collection: str = "general"


class Store(Protocol):
    """An article store: add articles, search their passages with an FTS5 expression, cite their sentences.

    store: Store = SQLiteStore("qa.db")
    store.add_article(Article(title="Riverton bridge", body="...", source="notes.txt"))
    passages = store.search('"bridge"', limit=5)
    """

    path: str

    def add_article(self, article: Article) -> StoredOutcome:
        """Store one article; identical content is `unchanged`, a known url or source is `updated`."""
        ...

    def bulk(self, every: int = ...) -> AbstractContextManager[Store]:
        """Commit `add_article` calls in groups instead of one by one."""
        ...

    def delete_articles(self, article_ids: Iterable[int]) -> int:
        """Delete articles with their sentences, passages and search rows in one transaction; how many went."""
        ...

    def search(
        self, fts_query: str | Sequence[str], *, limit: int, collections: Collection[str] | None = None
    ) -> list[Passage]:
        """Passages matching FTS5 expressions, best BM25 first; only from `collections` when given."""
        ...

    def passage_counts(self, terms: Iterable[str], *, up_to: int) -> dict[str, int]:
        """How many passages hold each term, counted up to `up_to + 1`."""
        ...

    def sentences_covering(self, article_id: int, char_start: int, char_end: int) -> list[Sentence]:
        """The sentences of an article that overlap `body[char_start:char_end]`, in order."""
        ...

    def article_body(self, article_id: int) -> str:
        """The whole body of one article."""
        ...

    def article_count(self) -> int:
        """How many articles are stored."""
        ...

    def collection_names(self) -> list[str]:
        """The collections stored articles belong to, sorted."""
        ...

    def close(self) -> None:
        """Release the database."""
        ...
