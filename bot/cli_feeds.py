"""`qa-bot feeds ...`: subscribe to RSS/Atom feeds and poll them into the library, a shell over `bot.core.feeds`.
Never imports torch or transformers."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import click

from bot.cli_common import collection_name, db_option, settings_for
from bot.core import messages
from bot.errors import QABotError
from bot.settings import Settings

if TYPE_CHECKING:
    from bot.store.base import Store

__all__ = ["feeds"]

LIST_COLUMNS = ("id", "url", "title", "collection", "entries", "last_polled_at", "failures", "last_error")


@contextmanager
def _store(db_path: Path | None) -> Iterator[tuple[Store, Settings]]:
    """The library the options name, whose feed tables live beside it: the SQLite file (created when missing) or
    the PostgreSQL database of a postgresql:// URL."""
    from bot.store import open_store

    settings = settings_for(db_path=db_path)
    try:
        store = open_store(settings.database)
    except QABotError as exc:
        raise click.ClickException(str(exc)) from exc
    try:
        yield store, settings
    except QABotError as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        store.close()


@click.group()
def feeds() -> None:
    """Subscribe to RSS/Atom feeds and poll them into the library: add, list, remove, poll.

    Example: qa-bot feeds add https://news.example.org/rss.xml && qa-bot feeds poll
    """


@feeds.command("add")
@click.argument("url")
@click.option(
    "--collection",
    default="general",
    show_default=True,
    callback=collection_name,
    help="Collection the feed's entries go into (who may read them: QABOT_ACCESS_FILE); a feed already subscribed "
    "under another collection is moved, with its stored articles.",
)
@db_option
def add_command(url: str, collection: str, db_path: Path | None) -> None:
    """Subscribe to a feed: it is fetched once (same checks as /ingest) and must be RSS or Atom. Its entries go
    into --collection; adding a subscribed feed with another collection moves it there.

    Example: qa-bot feeds add --collection legal https://news.example.org/rss.xml
    """
    from bot.sources.feed import parse_feed
    from bot.sources.fetch import ACCEPT_FEEDS, check_url, fetch_page
    from bot.store.feeds import FeedStore

    with _store(db_path) as (store, settings):
        url = check_url(url)
        page = fetch_page(
            url,
            timeout_s=settings.fetch_timeout_s,
            max_bytes=settings.fetch_max_bytes,
            allow_private=settings.fetch_allow_private,
            accept=ACCEPT_FEEDS,
        )
        parsed = parse_feed(page.body, url=url, content_type=page.content_type)
        done = FeedStore(store).add(url, title=parsed.title, collection=collection)
    if done.added:
        click.echo(messages.render("feeds_added", url=url, title=parsed.title or url, collection=collection))
    elif done.moved_from is not None:
        click.echo(
            messages.render(
                "feeds_moved", url=url, before=done.moved_from, after=collection, articles=done.articles_moved
            )
        )
    else:
        click.echo(messages.render("feeds_already", url=url, collection=collection))


@feeds.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON array of objects.")
@db_option
def list_command(as_json: bool, db_path: Path | None) -> None:
    """List the subscribed feeds: url, title, collection, entries seen, last poll, failures in a row, last error.

    Example: qa-bot feeds list --json
    """
    from bot.store.feeds import FeedStore

    with _store(db_path) as (store, settings):
        rows = FeedStore(store).feeds()
    if as_json:
        click.echo(json.dumps([row.to_dict() for row in rows], ensure_ascii=False))
        return
    if not rows:
        click.echo(messages.render("feeds_none", db_path=settings.database_label), err=True)
        return
    click.echo("\t".join(LIST_COLUMNS))
    for row in rows:
        values = row.to_dict()
        click.echo("\t".join("-" if values[n] is None else " ".join(str(values[n]).split()) for n in LIST_COLUMNS))


@feeds.command("remove")
@click.argument("url")
@db_option
def remove_command(url: str, db_path: Path | None) -> None:
    """Unsubscribe from a feed; the articles it brought stay (remove them with `qa-bot articles delete`).

    Example: qa-bot feeds remove https://news.example.org/rss.xml
    """
    from bot.store.feeds import FeedStore

    with _store(db_path) as (store, settings):
        if not FeedStore(store).remove(url.strip()):
            click.echo(messages.render("feeds_unknown", url=url, db_path=settings.database_label), err=True)
            sys.exit(1)
    click.echo(messages.render("feeds_removed", url=url))


@feeds.command("poll")
@click.option("--all", "force", is_flag=True, help="Also poll feeds that are backing off after failures.")
@db_option
def poll_command(force: bool, db_path: Path | None) -> None:
    """Poll every subscribed feed once (for cron): store new and changed entries, one line per feed.

    An unchanged feed costs one request (ETag / Last-Modified). At most QABOT_FEED_MAX_ENTRIES new entries per
    feed per poll, within QABOT_FEED_POLL_BUDGET_S seconds; the rest waits for the next poll. A failing feed is
    reported and retried later with backoff. Exit status 1 when a feed or an entry failed.

    Example: qa-bot feeds poll
    """
    from bot.core.feeds import FeedPollReport, poll_feeds

    def show(report: FeedPollReport) -> None:
        if report.status == "failed":
            click.echo(messages.render("feed_failed", url=report.url, reason=report.error), err=True)
            return
        if report.status == "waiting":
            click.echo(messages.render("feed_waiting", url=report.url, reason=report.error or "-"), err=True)
            return
        if report.status == "not_modified":
            click.echo(messages.render("feed_not_modified", url=report.url))
            return
        for failure in report.failures:
            click.echo(messages.render("ingest_failure", path=failure.path, reason=failure.reason), err=True)
        if report.out_of_time:
            click.echo(messages.render("feed_out_of_time", url=report.url, budget_s=f"{limits.budget_s:g}"), err=True)
        click.echo(
            messages.render(
                "feed_report",
                url=report.url,
                added=report.added,
                updated=report.updated,
                unchanged=report.unchanged,
                known=report.known,
                deferred=report.deferred,
                failed=len(report.failures),
            )
        )

    with _store(db_path) as (store, settings):
        limits = settings.feed_limits()
        reports = poll_feeds(
            store,
            limits=limits,
            force=force,
            progress=sys.stderr.isatty(),
            on_report=show,
        )
    if not reports:
        click.echo(messages.render("feeds_none", db_path=settings.database_label), err=True)
    if any(report.failed for report in reports):
        sys.exit(1)
