"""What every store cuts an article into, whatever the engine: its content hash, its sentences with their pages,
and its passages (runs of sentences that never span two pages)."""

from __future__ import annotations

import bisect
import dataclasses
import hashlib
import logging
from datetime import UTC, datetime

from bot.core.records import Article, Sentence
from bot.core.text import group_passages
from bot.store.base import StoredOutcome

__all__ = ["PASSAGE_MAX_WORDS", "article_row", "content_hash", "page_groups", "unchanged_outcome", "with_pages"]

PASSAGE_MAX_WORDS = 80


logger = logging.getLogger(__name__)


def unchanged_outcome(article_id: int, article: Article, before: str) -> StoredOutcome:
    """What storing unchanged content did: nothing, or moved it from collection `before` (both stores say it so)."""
    moved = before != article.collection
    if moved:
        logger.info("article moved article_id=%d from=%s to=%s", article_id, before, article.collection)
    return StoredOutcome(
        "unchanged", article_id, article.title, moved_from=before if moved else None, collection=article.collection
    )


def article_row(article: Article, *, key: str, digest: str) -> dict:
    """The `articles` row of an article as both stores write it (the time it was stored included)."""
    return {
        "key": key,
        "title": article.title,
        "body": article.body,
        "source": article.source,
        "url": article.url,
        "published_at": article.published_at,
        "author": article.author,
        "content_hash": digest,
        "ingested_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "collection": article.collection,
    }


def content_hash(article: Article) -> str:
    """Fingerprint of what a reader would see; re-ingesting the same content is a no-op."""
    digest = hashlib.sha256()
    parts = [article.title, article.body, article.url or "", article.published_at or ""]
    if article.author:  # only when known, so the fingerprints of articles stored before authors stay the same
        parts.append(f"author:{article.author}")
    for part in parts:
        digest.update(part.encode("utf-8"))
        digest.update(b"\x00")
    return digest.hexdigest()


def with_pages(sentences: list[Sentence], page_starts: tuple[int, ...]) -> list[Sentence]:
    """Each sentence with the page it starts on, for a paged document; unchanged otherwise."""
    if not page_starts:
        return sentences
    return [dataclasses.replace(s, page=bisect.bisect_right(page_starts, s.char_start)) for s in sentences]


def page_groups(sentences: list[Sentence]) -> list[tuple[int, int]]:
    """`group_passages` within each page: a passage never spans two pages, so its citation has one page."""
    groups: list[tuple[int, int]] = []
    first = 0
    while first < len(sentences):
        last = first
        while last + 1 < len(sentences) and sentences[last + 1].page == sentences[first].page:
            last += 1
        run = sentences[first : last + 1]
        groups += [(first + a, first + b) for a, b in group_passages(run, max_words=PASSAGE_MAX_WORDS)]
        first = last + 1
    return groups
