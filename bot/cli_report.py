"""`qa-bot report`: what people asked, what the bot could not answer and which articles helped, a shell over
`bot.core.insights`. Never imports torch or transformers."""

from __future__ import annotations

import json
import time
from pathlib import Path

import click

from bot.cli_common import db_option, settings_for
from bot.core import messages
from bot.errors import QABotError

__all__ = ["report"]

DAY_S = 86400.0


@click.command()
@click.option("--days", default=7, show_default=True, type=click.IntRange(min=1), help="Report on the last N days.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of Markdown.")
@click.option(
    "--html",
    "html_path",
    default=None,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write a one-page HTML report, with a chart of daily questions by outcome, to this file.",
)
@db_option
def report(days: int, as_json: bool, html_path: Path | None, db_path: Path | None) -> None:
    """Show what people asked in Slack: questions asked, the shares answered / hedged / not answered, 👍/👎 by
    article, the most-cited articles, and the knowledge gaps (unanswered and 👎 questions grouped by their
    content words, most frequent first), so you know what to ingest next.

    Questions older than QABOT_QUESTION_RETENTION_DAYS are deleted first, with their answers and feedback.

    Example: qa-bot report --days 30
    """
    from bot.core.insights import render_html, render_markdown
    from bot.store import open_state

    settings = settings_for(db_path=db_path)
    if settings.database_url is None and not Path(settings.db_path).exists():
        raise click.ClickException(messages.render("report_no_database", db_path=settings.db_path))
    try:
        state = open_state(settings.database)  # PostgreSQL with a postgresql:// URL, as serve
        try:
            now = time.time()
            state.forget_questions(before=now - settings.question_retention_days * DAY_S)
            result = state.report(days=days, now=now)
        finally:
            state.close()
        if html_path is not None:
            html_path.write_text(render_html(result), encoding="utf-8")
    except (QABotError, OSError) as exc:
        raise click.ClickException(str(exc)) from exc
    if as_json:
        click.echo(json.dumps(result.to_dict(), ensure_ascii=False))
    else:
        click.echo(render_markdown(result))
