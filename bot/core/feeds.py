"""Polling RSS/Atom feeds into the library: `qa-bot feeds poll` (one pass, for cron) and `FeedPoller` (`serve`).

Our fetcher downloads the feed (private-address check, deadline, size cap, conditional GET) and feedparser only
parses the bytes. Each new entry's link is fetched like an `/ingest` link and stored in the feed's collection. An
entry already stored (from another feed, a file or `/ingest`) is recorded, not fetched or stored again, and keeps
its source and collection. A failing feed is retried with backoff and never stops the others. The feed tables
live beside the library, in the SQLite file or in PostgreSQL (`bot.store.feeds`).

    report = poll_feed(store, FeedStore(store), feed, limits=FeedLimits(allow_private=False))
    print(report.added, report.failures)
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from bot.core.records import Article
from bot.errors import DiskFullError, FetchError, IngestError, StoreError
from bot.sources.feed import FeedEntry, parse_feed
from bot.sources.fetch import ACCEPT_FEEDS, fetch_article, fetch_page
from bot.sources.files import IngestFailure
from bot.store.base import Store
from bot.store.feeds import FeedRow, FeedStore, SeenEntry

__all__ = ["FeedLimits", "FeedPollReport", "FeedPoller", "poll_feed", "poll_feeds", "is_due"]

logger = logging.getLogger(__name__)

MAX_BACKOFF_S = 24 * 3600.0
DUE_SLACK_S = 60.0  # a cron job a few seconds early still polls a feed whose retry time is about now
FETCH_THREADS = 4  # entry pages wait on the network; storing stays on the polling thread


@dataclass(frozen=True)
class FeedLimits:
    """The limits of one poll: the page limits of `/ingest`, the entries and time per feed, the backoff unit."""

    timeout_s: float = 10.0
    max_bytes: int = 5_000_000
    allow_private: bool = False
    max_entries: int = 50
    budget_s: float = 120.0
    interval_s: float = 1800.0

    def __post_init__(self) -> None:
        if self.max_entries <= 0:
            raise ValueError(f"max_entries must be positive, got {self.max_entries}")
        if self.budget_s <= 0:
            raise ValueError(f"budget_s must be positive, got {self.budget_s}")


@dataclass
class FeedPollReport:
    """What one poll of one feed did. `status`: polled, not_modified (304: one request), failed or waiting
    (backing off after failures). `deferred`: new entries left for a later poll (entry cap or time budget)."""

    url: str
    status: str = "polled"
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    known: int = 0
    deferred: int = 0
    failures: list[IngestFailure] = field(default_factory=list)
    error: str | None = None
    out_of_time: bool = False

    @property
    def failed(self) -> bool:
        return self.status == "failed" or bool(self.failures)


def is_due(feed: FeedRow, *, now: float) -> bool:
    """Whether a feed may be polled now: never failed, or its backoff has run out."""
    return feed.retry_at is None or feed.retry_at <= now + DUE_SLACK_S


def backoff_s(failures: int, *, interval_s: float) -> float:
    """Seconds to wait after `failures` failures in a row: the next regular poll, then 1, 3, 7… intervals more.

    >>> [backoff_s(n, interval_s=60) for n in (1, 2, 3, 4)]
    [0.0, 60.0, 180.0, 420.0]
    """
    return float(min(interval_s * (2 ** (failures - 1) - 1), MAX_BACKOFF_S))


def _source(feed: FeedRow) -> str:
    return feed.title or urlsplit(feed.url).hostname or feed.url


def poll_feed(store: Store, feeds: FeedStore, feed: FeedRow, *, limits: FeedLimits) -> FeedPollReport:
    """Poll one feed within `limits.budget_s`: fetch it (conditionally), store at most `limits.max_entries` new
    or changed entries, record the rest for later. Never raises for a bad feed or page: see the report.

    :raises DiskFullError: when the disk is full (every later write would fail the same way).
    """
    report = FeedPollReport(feed.url)
    ends = time.monotonic() + limits.budget_s
    try:
        page = fetch_page(
            feed.url,
            timeout_s=min(limits.timeout_s, limits.budget_s),
            max_bytes=limits.max_bytes,
            allow_private=limits.allow_private,
            etag=feed.etag,
            last_modified=feed.last_modified,
            accept=ACCEPT_FEEDS,
        )
        if page.not_modified:
            feeds.record_success(feed.id, title=None, etag=page.etag, last_modified=page.last_modified)
            report.status = "not_modified"
            logger.info("feed not modified url=%s", feed.url)
            return report
        parsed = parse_feed(page.body, url=page.url, content_type=page.content_type)
        title = feed.title or parsed.title
        todo = _new_or_changed(feeds, feed, parsed.entries, report)
        report.deferred = max(len(todo) - limits.max_entries, 0)
        _fetch_and_store(
            store, feeds, dataclasses.replace(feed, title=title), todo[: limits.max_entries], limits, ends, report
        )
        feeds.record_success(feed.id, title=parsed.title, etag=page.etag, last_modified=page.last_modified)
    except DiskFullError:
        raise
    except (FetchError, IngestError, StoreError) as exc:
        report.status, report.error = "failed", str(exc)
        failures = feed.failures + 1
        retry_at = time.time() + backoff_s(failures, interval_s=limits.interval_s)
        try:
            feeds.record_failure(feed.id, error=str(exc), retry_at=retry_at)
        except StoreError:
            logger.exception("could not record the failure of feed url=%s", feed.url)
        # INFO, like ingest failures: the CLI prints every failure already; serve logs at INFO
        logger.info("feed failed url=%s failures=%d reason=%s", feed.url, failures, exc)
        return report
    logger.info(
        "feed polled url=%s added=%d updated=%d unchanged=%d known=%d deferred=%d failed=%d",
        feed.url,
        report.added,
        report.updated,
        report.unchanged,
        report.known,
        report.deferred,
        len(report.failures),
    )
    return report


def _new_or_changed(
    feeds: FeedStore, feed: FeedRow, entries: list[FeedEntry], report: FeedPollReport
) -> list[FeedEntry]:
    """Entries to fetch: never seen by this feed and not stored already, or seen and changed since. An entry
    stored already (another feed, a file, /ingest) is recorded for this feed and counted as known.

    What the feed has seen and what is stored already are read in a few queries for the whole feed, not a few per
    entry: a feed of 10,000 entries is otherwise 30,000 round trips to a PostgreSQL server."""
    seen = feeds.seen_entries(feed.id)
    stored = feeds.stored_articles([(entry.link, entry.key) for entry in entries if entry.key not in seen])
    recorded: dict[str, int] = {}  # link -> article, of the entries recorded below (as stored_article would see)
    todo = []
    for entry in entries:
        earlier = seen.get(entry.key)
        if earlier is not None:
            if earlier.fingerprint != entry.fingerprint and earlier.article_id is not None:
                todo.append(entry)  # changed: fetched again, updated in place (same url)
            continue
        article_id = stored.get((entry.link, entry.key)) or recorded.get(entry.link)
        if article_id is not None:
            feeds.record_entry(
                feed.id, key=entry.key, link=entry.link, fingerprint=entry.fingerprint, article_id=article_id
            )
            seen[entry.key], recorded[entry.link] = SeenEntry(entry.fingerprint, article_id), article_id
            report.known += 1
            continue
        todo.append(entry)
    return todo


def _fetch_entry(entry: FeedEntry, limits: FeedLimits, ends: float) -> Article | None:
    """The entry's page as an article, or None when the poll's time budget is spent before it starts."""
    left = ends - time.monotonic()
    if left <= 0.05:
        return None
    return fetch_article(
        entry.link,
        timeout_s=min(limits.timeout_s, left),
        max_bytes=limits.max_bytes,
        allow_private=limits.allow_private,
    )


def _fetch_and_store(
    store: Store,
    feeds: FeedStore,
    feed: FeedRow,
    entries: list[FeedEntry],
    limits: FeedLimits,
    ends: float,
    report: FeedPollReport,
) -> None:
    if not entries:
        return
    with ThreadPoolExecutor(max_workers=FETCH_THREADS, thread_name_prefix="qa-bot-feed") as pool:
        pending: dict[Future, FeedEntry] = {pool.submit(_fetch_entry, e, limits, ends): e for e in entries}
        while pending:
            done, _ = wait(pending, timeout=max(ends - time.monotonic(), 0) + 1.0, return_when=FIRST_COMPLETED)
            if not done:  # the budget is spent and the fetches still running have their own deadline past it
                break
            for future in done:
                entry = pending.pop(future)
                _store_entry(store, feeds, feed, entry, future, report)
        for future in pending:
            future.cancel()
        report.deferred += len(pending)
        if pending:
            report.out_of_time = True


def _store_entry(
    store: Store, feeds: FeedStore, feed: FeedRow, entry: FeedEntry, future: Future, report: FeedPollReport
) -> None:
    try:
        article = future.result()
    except (FetchError, IngestError) as exc:
        report.failures.append(IngestFailure(entry.link, str(exc)))
        return
    if article is None:  # out of time before it started: left for the next poll
        report.deferred += 1
        report.out_of_time = True
        return
    article = dataclasses.replace(
        article,
        source=_source(feed),
        published_at=entry.published_at or article.published_at,
        collection=feed.collection,
    )
    if article.url and article.url != entry.link:  # redirected to a page stored already (a canonical url)
        known = feeds.stored_article(link=article.url, key=entry.key)
        seen = feeds.seen(feed.id, entry.key)
        if known is not None and seen is None:
            feeds.record_entry(feed.id, key=entry.key, link=entry.link, fingerprint=entry.fingerprint, article_id=known)
            report.known += 1
            return
    try:
        outcome = store.add_article(article)
    except DiskFullError:
        raise
    except StoreError as exc:
        report.failures.append(IngestFailure(entry.link, str(exc)))
        return
    setattr(report, outcome.status, getattr(report, outcome.status) + 1)
    feeds.record_entry(
        feed.id, key=entry.key, link=entry.link, fingerprint=entry.fingerprint, article_id=outcome.article_id
    )


def poll_feeds(
    store: Store,
    *,
    limits: FeedLimits,
    force: bool = False,
    progress: bool = False,
    on_report: Callable[[FeedPollReport], None] | None = None,
) -> list[FeedPollReport]:
    """Poll every subscribed feed once, one after another; a failing feed is reported and the rest still polled.

    :param force: also poll feeds that are backing off after failures.
    :param on_report: called with each feed's report as soon as it is done (the CLI prints as it goes).
    """
    from tqdm import tqdm

    feeds = FeedStore(store)
    reports = []
    now = time.time()
    for feed in tqdm(feeds.feeds(), desc="polling feeds", unit="feed", disable=not progress, leave=False):
        if not force and not is_due(feed, now=now):
            report = FeedPollReport(feed.url, status="waiting", error=feed.last_error)
        else:
            report = poll_feed(store, feeds, feed, limits=limits)
        reports.append(report)
        if on_report is not None:
            on_report(report)
    return reports


class FeedPoller:
    """`qa-bot serve`'s background thread: polls every feed, then waits `limits.interval_s`, until stopped.

        poller = FeedPoller(lambda: open_store("qa.db"), limits=FeedLimits(interval_s=1800)).start()
        ...
        poller.stop()

    :param open_store: opens the poller's own connection (in its thread), so polling never holds the answering
        store's lock for long.
    :param turn: entered around each pass; yields whether this process may poll now. Replicas sharing a
        PostgreSQL database pass `bot.store.pg_locks.advisory_turn`, so one polls and the others skip the round
        instead of fetching every feed again. Default: always this process's turn.
    :param on_pass: called with the reports after every pass, `[]` for a skipped one (tests wait on it).
    """

    def __init__(
        self,
        open_store: Callable[[], Store],
        *,
        limits: FeedLimits,
        turn: Callable[[], AbstractContextManager[bool]] | None = None,
        on_pass: Callable[[list[FeedPollReport]], None] | None = None,
    ) -> None:
        self.open_store, self.limits, self.on_pass = open_store, limits, on_pass
        self.turn = turn or (lambda: nullcontext(True))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="qa-bot-feeds", daemon=True)

    def start(self) -> FeedPoller:
        self._thread.start()
        return self

    def stop(self, timeout_s: float | None = None) -> None:
        self._stop.set()
        self._thread.join(timeout_s)

    def _run(self) -> None:
        store: Store | None = None
        try:
            while not self._stop.is_set():
                reports: list[FeedPollReport] = []
                try:
                    store = store or self.open_store()  # a database down at start is tried again next round
                    with self.turn() as mine:
                        if mine:
                            reports = poll_feeds(store, limits=self.limits)
                        else:
                            logger.info("feed poll skipped: another replica is polling")
                except Exception:  # a bug, a full disk or an unreachable database must not end the thread
                    logger.exception("feed poll pass failed")
                if self.on_pass is not None:
                    self.on_pass(reports)
                self._stop.wait(self.limits.interval_s)
        finally:
            if store is not None:
                store.close()
