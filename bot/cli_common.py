"""What every `qa-bot` command shares: the `--db` option and reading the settings with command-line overrides."""

from __future__ import annotations

import click

from bot.errors import QABotError
from bot.settings import Settings, load_settings

__all__ = ["collection_name", "db_option", "settings_for"]

db_option = click.option(
    "--db",
    "db_path",
    default=None,
    help="SQLite database file, or a postgresql:// URL (default: QABOT_DATABASE_URL, else QABOT_DB_PATH, else "
    "./qa-bot.db).",
)


def settings_for(**overrides: object) -> Settings:
    """The settings with the command's options applied; an invalid one becomes a one-line `ClickException`."""
    # `qa-bot --db x.db ask ...`: a subcommand without its own --db takes the one given before it.
    if "db_path" in overrides and overrides["db_path"] is None:
        context = click.get_current_context(silent=True)
        overrides["db_path"] = context.find_root().params.get("db_path") if context else None
    # --db (a path or a URL) wins over QABOT_DATABASE_URL, which wins over QABOT_DB_PATH: given as a URL it
    # replaces both (a path becomes sqlite:///path, which the settings read back as db_path).
    db = overrides.pop("db_path", None)
    if db is not None:
        db = str(db)
        overrides["database_url"] = db if "://" in db else f"sqlite:///{db}"
    try:
        return load_settings(**overrides)
    except QABotError as exc:
        raise click.ClickException(str(exc)) from exc


def collection_name(ctx: click.Context, param: click.Parameter, value: str) -> str:
    """A `--collection` callback: the name when valid (`bot.core.access.check_collection_name`), else a usage error
    naming the rule."""
    from bot.core.access import check_collection_name

    try:
        return check_collection_name(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
