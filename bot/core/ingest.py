"""Ingestion: article files and folders, pasted text and fetched pages → articles in the store.

Reading files is `bot.sources`' job; this module stores what they give and counts the outcome. A bad input is
reported with its path and reason and skipped; everything else still goes in.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from bot.core.access import DEFAULT_COLLECTION
from bot.core.records import Article
from bot.errors import DiskFullError, IngestError, StoreError
from bot.sources.files import IngestFailure, IngestSkip, expand_paths, read_articles
from bot.store.base import Store, StoredOutcome

__all__ = ["IngestReport", "IngestFailure", "IngestSkip", "ingest_paths", "ingest_article"]

# More files than this get a progress bar (when the shell asks for one).
PROGRESS_MIN_FILES = 50

logger = logging.getLogger(__name__)


@dataclass
class IngestReport:
    """Counts of one ingestion run, with every failure and every file skipped on purpose."""

    added: int = 0
    updated: int = 0
    unchanged: int = 0
    failures: list[IngestFailure] = field(default_factory=list)
    skips: list[IngestSkip] = field(default_factory=list)
    outcomes: list[StoredOutcome] = field(default_factory=list)
    stopped: str | None = None  # why the run ended early (a full disk), else None

    @property
    def failed(self) -> int:
        return len(self.failures)

    @property
    def skipped(self) -> int:
        return len(self.skips)

    @property
    def moved(self) -> list[StoredOutcome]:
        """The articles this run moved from another collection."""
        return [outcome for outcome in self.outcomes if outcome.moved_from is not None]

    def record(self, outcome: StoredOutcome) -> None:
        setattr(self, outcome.status, getattr(self, outcome.status) + 1)
        self.outcomes.append(outcome)


def _database_files(store: Store) -> set[Path]:
    # The database (and its -wal/-shm/-journal files) may sit in a folder being ingested: it is not an article.
    db = Path(store.path).resolve()
    return {db, *(db.with_name(db.name + suffix) for suffix in ("-wal", "-shm", "-journal"))}


# Storing -----------------------------------------------------------------------------------------------------


def ingest_article(store: Store, article: Article) -> StoredOutcome:
    """Store one article (its own transaction); see `Store.add_article` for added/updated/unchanged."""
    return store.add_article(article)


def ingest_paths(
    store: Store, paths: Iterable[str | Path], *, progress: bool = False, collection: str = DEFAULT_COLLECTION
) -> IngestReport:
    """Ingest files and folders (recursively); report counts and every failure, never stop at a bad file.

    Hidden files and files of other types inside a folder are `skips`, not failures (see `expand_paths`).
    Every article goes into `collection`; one already stored in another collection is moved (`report.moved`).

    report = ingest_paths(SQLiteStore("qa.db"), ["examples/articles/"])
    print(report.added, report.failures)
    """
    from tqdm import tqdm

    report = IngestReport()
    items = list(expand_paths((Path(p) for p in paths), skip=_database_files(store)))
    try:
        with store.bulk():
            for item in tqdm(
                items,
                desc="ingesting",
                unit="file",
                disable=not progress or len(items) <= PROGRESS_MIN_FILES,
                leave=False,
            ):
                if isinstance(item, IngestSkip):
                    report.skips.append(item)
                    continue
                if isinstance(item, IngestFailure):
                    report.failures.append(item)
                    continue
                try:
                    for article in read_articles(item):
                        if isinstance(article, IngestFailure):
                            report.failures.append(article)
                        else:
                            article = dataclasses.replace(article, collection=collection)
                            report.record(ingest_article(store, article))
                except DiskFullError:
                    raise  # every later file would fail the same way
                except (IngestError, StoreError) as exc:
                    report.failures.append(IngestFailure(str(item), str(exc)))
    except DiskFullError as exc:
        report.stopped = str(exc)
        logger.warning("ingest stopped reason=%s", exc)
    for failure in report.failures:
        # INFO, not WARNING: the shells show every failure to the user already, so default output isn't doubled.
        logger.info("ingest skipped path=%s reason=%s", failure.path, failure.reason)
    logger.info(
        "ingested added=%d updated=%d unchanged=%d moved=%d skipped=%d failed=%d collection=%s",
        report.added,
        report.updated,
        report.unchanged,
        len(report.moved),
        report.skipped,
        report.failed,
        collection,
    )
    return report
