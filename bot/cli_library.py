"""`qa-bot articles ...`: see and manage the stored articles (list, show, delete, stats), a shell over
`bot.store.library`. Cheap: never imports torch or transformers."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import TYPE_CHECKING

import click

from bot.cli_common import db_option, settings_for
from bot.core import messages
from bot.errors import QABotError

__all__ = ["articles"]

if TYPE_CHECKING:
    from bot.store.library import Library

LIST_COLUMNS = ("id", "title", "source", "url", "published_at", "added", "passages")


@contextmanager
def _library(db_path: str | None) -> Iterator[tuple[Library, str]]:
    """The library of the database the options name, and what messages call it; a missing SQLite file is an error,
    never created empty."""
    from bot.store import open_store
    from bot.store.library import Library

    settings = settings_for(db_path=db_path)
    if settings.database_url is None and not settings.db_path.exists():
        raise click.ClickException(messages.render("not_indexed", db_path=settings.db_path))
    try:
        store = open_store(settings.database)  # PostgreSQL with a postgresql:// URL
    except QABotError as exc:
        raise click.ClickException(str(exc)) from exc
    try:
        yield Library(store), settings.database_label
    except QABotError as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        store.close()


def stdin_is_terminal() -> bool:
    """Whether a person can answer a confirmation prompt (tests replace this)."""
    return sys.stdin.isatty()


def _size(n_bytes: int) -> str:
    if n_bytes < 1024:
        return f"{n_bytes} bytes"
    size = n_bytes / 1024
    for unit in ("KB", "MB"):
        if size < 1024:
            return f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GB"


@click.group()
def articles() -> None:
    """See and manage the stored articles: list, show, delete, stats.

    Example: qa-bot articles list --since 2024-05-01 --source examples/
    """


@articles.command("list")
@click.option(
    "--since",
    type=click.DateTime(formats=["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S"]),
    default=None,
    help="Only articles added on or after this date (YYYY-MM-DD, UTC) or time.",
)
@click.option("--source", default=None, help="Only articles whose source contains this text (any case).")
@click.option("--collection", default=None, help="Only articles of this collection.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON array of objects instead of tab-separated rows.")
@db_option
def list_command(
    since: datetime | None, source: str | None, collection: str | None, as_json: bool, db_path: str | None
) -> None:
    """List the stored articles, oldest first: id, title, source, url, published_at, added, passages.

    Rows are tab-separated under a header line (`cut -f1,2` works), printed as they are read.

    Example: qa-bot articles list --since 2024-05-01 --json
    """
    with _library(db_path) as (library, path):
        rows = library.articles(since=since.isoformat() if since else None, source=source, collection=collection)
        count = 0
        if as_json:
            for count, row in enumerate(rows, start=1):
                click.echo(("[" if count == 1 else ",") + json.dumps(row.to_dict(), ensure_ascii=False))
            click.echo("[]" if count == 0 else "]")
        else:
            for count, row in enumerate(rows, start=1):
                if count == 1:
                    click.echo("\t".join(LIST_COLUMNS))
                values = row.to_dict()
                click.echo("\t".join(_cell(values[name]) for name in LIST_COLUMNS))
        if count == 0:
            click.echo(messages.render("articles_none", db_path=path), err=True)


def _cell(value: object) -> str:
    return "-" if value is None else " ".join(str(value).split())  # one line, no stray tabs


@articles.command("show")
@click.argument("ref")
@db_option
def show_command(ref: str, db_path: str | None) -> None:
    """Show one article (by id or url): its metadata, passage count and opening lines.

    Example: qa-bot articles show 12
    """
    with _library(db_path) as (library, path):
        row = library.find(ref)
        if row is None:
            raise click.ClickException(messages.render("articles_unknown", ref=ref, db_path=path))
        values = {name: "-" if value is None else value for name, value in row.to_dict().items()}
        opening = " ".join(library.opening(row.id))
        click.echo(messages.render("articles_show", opening=opening, **values))


@articles.command("delete")
@click.argument("refs", nargs=-1, required=True)
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@db_option
def delete_command(refs: tuple[str, ...], yes: bool, db_path: str | None) -> None:
    """Delete articles (by id or url) with their sentences, passages and search rows, in one transaction.

    On a terminal it asks first, unless --yes. If any id or url is unknown, nothing is deleted and the exit
    status is 1.

    Example: qa-bot articles delete 12 https://news.example.org/old-story --yes
    """
    with _library(db_path) as (library, path):
        found = {ref: library.find(ref) for ref in refs}
        unknown = [ref for ref, row in found.items() if row is None]
        if unknown:
            for ref in unknown:
                click.echo(messages.render("articles_unknown", ref=ref, db_path=path), err=True)
            sys.exit(1)
        rows = list({row.id: row for row in found.values() if row is not None}.values())
        titles = "; ".join(f"#{row.id} {row.title}" for row in rows)
        if not yes and stdin_is_terminal():
            click.confirm(
                messages.render("articles_delete_confirm", count=len(rows), db_path=path, titles=titles), abort=True
            )
        deleted = library.delete(row.id for row in rows)
        click.echo(messages.render("articles_deleted", count=deleted, db_path=path, titles=titles))


@articles.command("stats")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@db_option
def stats_command(as_json: bool, db_path: str | None) -> None:
    """Count the library: articles, passages, sentences, database size, last ingest and feeds.

    Example: qa-bot articles stats --json
    """
    with _library(db_path) as (library, path):
        stats = library.stats()
    if as_json:
        click.echo(json.dumps({"db_path": path, **stats.to_dict()}))
        return
    values = stats.to_dict()
    values["last_ingest"] = values["last_ingest"] or "never"
    click.echo(messages.render("articles_stats", db_path=path, size=_size(stats.db_bytes), **values))
