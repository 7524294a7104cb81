"""What every `qa-bot` command shares: the `--db` option and reading the settings with command-line overrides."""

from __future__ import annotations

from pathlib import Path

import click

from bot.errors import QABotError
from bot.settings import Settings, load_settings

__all__ = ["db_option", "settings_for"]

db_option = click.option(
    "--db",
    "db_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="SQLite database file (default: QABOT_DB_PATH, else ./qa-bot.db).",
)


def settings_for(**overrides: object) -> Settings:
    """The settings with the command's options applied; an invalid one becomes a one-line `ClickException`."""
    # `qa-bot --db x.db ask ...`: a subcommand without its own --db takes the one given before it.
    if "db_path" in overrides and overrides["db_path"] is None:
        context = click.get_current_context(silent=True)
        overrides["db_path"] = context.find_root().params.get("db_path") if context else None
    try:
        return load_settings(**overrides)
    except QABotError as exc:
        raise click.ClickException(str(exc)) from exc
