"""The `qa-bot` command line: a thin shell over the library (parse options, call one function, print)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from bot import messages
from bot.errors import QABotError
from bot.logs import configure_logging
from bot.records import Answer
from bot.settings import Settings, load_settings

__all__ = ["cli", "main", "format_answer"]

db_option = click.option("--db", "db_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
                         help="SQLite database file (default: QABOT_DB_PATH, else ./qa-bot.db).")


def _settings(**overrides: object) -> Settings:
    try:
        return load_settings(**overrides)
    except QABotError as exc:
        raise click.ClickException(str(exc)) from exc


def _percent(score: float) -> str:
    return f"{score:.0%}"


def format_answer(answer: Answer) -> str:
    """Plain-text rendering of an answer (or of "no confident answer") for the terminal."""
    if not answer.is_answered or answer.citation is None:
        return messages.render("no_answer", question=answer.question,
                               searched=", ".join(answer.searched) or "no article matched the question's words")
    cite = answer.citation
    alternatives = "".join("\n" + messages.render("alternative", answer=alt.text, title=alt.citation.article.title,
                                                  confidence=_percent(alt.score))
                           for alt in answer.alternatives if alt.citation)
    return messages.render("answer", answer=answer.text, sentence=cite.sentence, title=cite.article.title,
                           source=cite.article.url or cite.article.source,
                           date=f", {cite.article.published_at}" if cite.article.published_at else "",
                           confidence=_percent(answer.score), alternatives=alternatives)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", count=True, help="Log more (-v info, -vv debug) to stderr.")
@click.version_option(package_name="qa-bot")
def cli(verbose: int) -> None:
    """Answer questions from stored articles, with the exact sentence and source.

    Example: qa-bot ingest examples/articles/ && qa-bot ask "Who founded the Lakeside Robotics Club?"
    """
    configure_logging(["WARNING", "INFO", "DEBUG"][min(verbose, 2)])


@cli.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@db_option
def ingest(paths: tuple[Path, ...], db_path: Path | None) -> None:
    """Add article files or folders (.txt .md .html .json .jsonl) to the database.

    Re-ingesting unchanged content changes nothing; a changed article with the same url or path is updated.
    Bad files are reported and skipped; the exit status is 1 if any failed.

    Example: qa-bot ingest examples/articles/ notes/extra.md
    """
    from bot.ingest import ingest_paths
    from bot.store import Store

    settings = _settings(db_path=db_path)
    try:
        report = ingest_paths(Store(settings.db_path), paths, progress=sys.stderr.isatty())
    except QABotError as exc:
        raise click.ClickException(str(exc)) from exc
    for failure in report.failures:
        click.echo(messages.render("ingest_failure", path=failure.path, reason=failure.reason), err=True)
    click.echo(messages.render("ingest_report", db_path=settings.db_path, added=report.added,
                               updated=report.updated, unchanged=report.unchanged, failed=report.failed))
    if report.failed:
        sys.exit(1)


@cli.command()
@click.argument("question", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per question.")
@db_option
def ask(question: str | None, as_json: bool, db_path: Path | None) -> None:
    """Answer a question from the stored articles. Without QUESTION, answer each line of stdin.

    Example: qa-bot ask "Who is the CEO of Rosoboronexport?"
    """
    from bot.service import build_service
    from bot.store import Store

    settings = _settings(db_path=db_path)
    questions = [question] if question is not None else [line for line in sys.stdin.read().splitlines()]
    questions = [q.strip() for q in questions if q.strip()]
    if not questions:
        raise click.UsageError("Give a question, or one question per line on stdin.")
    try:
        store = Store(settings.db_path)
        if store.article_count() == 0:
            raise click.ClickException(messages.render("not_indexed", db_path=settings.db_path))
        service = build_service(settings, store=store)
        service.warm_up()
        for q in questions:
            answer = service.answer(q)
            click.echo(json.dumps(answer.to_dict(), ensure_ascii=False) if as_json else format_answer(answer))
    except QABotError as exc:
        raise click.ClickException(str(exc)) from exc


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="qa-bot")
