"""Settings read from `QABOT_*` environment variables and a `.env` file; Slack credentials keep Slack's usual names."""

from __future__ import annotations

import difflib
import importlib.resources
import logging
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import urlsplit

from pydantic import AliasChoices, Field, SecretStr, ValidationError, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from bot.core.reader_config import DTYPES, ReaderConfig, doc_stride_fits
from bot.errors import ConfigError

if TYPE_CHECKING:
    from bot.core.feeds import FeedLimits

__all__ = ["Settings", "load_settings", "shipped_reader_dir", "unknown_variables"]

logger = logging.getLogger(__name__)

SHIPPED_READER_NAME = "minilm-squad-reader"


def shipped_reader_dir() -> Path | None:
    """The reader model that ships inside the `models` package, or None when this install has none."""
    try:
        # resolve(): in a checkout bot/models is a link to models/, and paths should name the real folder
        candidate = Path(str(importlib.resources.files("bot.models") / SHIPPED_READER_NAME)).resolve()
    except ModuleNotFoundError:
        return None
    return candidate if (candidate / "config.json").is_file() else None


def _default_reader_model() -> str | None:
    shipped = shipped_reader_dir()
    return str(shipped) if shipped else None


_READER_DEFAULTS = ReaderConfig(model="(defaults only)")


class Settings(BaseSettings):
    """Everything qa-bot can be configured with.

    Build one directly in code and tests, or read the environment with `load_settings()`:

        settings = Settings(db_path="qa.db", reader_model="models/minilm-squad-reader")
    """

    model_config = SettingsConfigDict(
        env_prefix="QABOT_", env_file=".env", env_file_encoding="utf-8", extra="ignore", populate_by_name=True
    )

    # Storage
    db_path: Path = Field(default=Path("qa-bot.db"), description="SQLite database holding articles and Slack state.")
    database_url: str | None = Field(
        default=None,
        description="postgresql://user@host/db puts the article library in PostgreSQL; sqlite:///path is the same "
        "as QABOT_DB_PATH=path. Wins over QABOT_DB_PATH; --db wins over both.",
    )

    # Answering
    reader_model: str | None = Field(
        default_factory=_default_reader_model,
        description="Local directory or Hugging Face id of an extractive QA model.",
    )
    top_k: int = Field(default=5, gt=0, le=50, description="How many passages the reader reads per question.")
    answer_threshold: float | None = Field(
        default=None,
        ge=0.0,
        le=1.0,
        description="Minimum calibrated confidence (0..1) for an answer (default: "
        "from the calibration, chosen for precision 0.9).",
    )
    hedge_threshold: float | None = Field(
        default=None,
        ge=0.0,
        le=1.0,
        description="Minimum confidence for an unsure, hedged reply (default: from "
        "the calibration, where precision is still 0.5).",
    )
    calibration_file: Path | None = Field(
        default=None, description="calibration.json for the reader (default: the one beside the reader model)."
    )
    max_question_chars: int = Field(default=1000, gt=0, description="Longer questions are cut, with a note.")
    max_query_terms: int = Field(default=32, gt=0, description="Search terms per question: its rarest words.")
    # Reader defaults are ReaderConfig's; the ranges below are what a setting may ask for.
    max_answer_tokens: int = Field(default=_READER_DEFAULTS.max_answer_tokens, gt=0, le=200)
    max_length: int = Field(
        default=_READER_DEFAULTS.max_length, ge=64, le=512, description="Reader input length in tokens."
    )
    doc_stride: int = Field(
        default=_READER_DEFAULTS.doc_stride,
        ge=16,
        le=256,
        description="Token overlap between windows of a long passage.",
    )
    reader_dtype: str = Field(default=_READER_DEFAULTS.dtype, pattern=f"^({'|'.join(DTYPES)})$")
    threads: int | None = Field(default=None, gt=0, description="Torch CPU threads (default: torch's own choice).")

    # Slack
    slack_bot_token: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("SLACK_BOT_TOKEN", "slack_bot_token")
    )
    slack_signing_secret: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("SLACK_SIGNING_SECRET", "slack_signing_secret")
    )
    slack_app_token: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("SLACK_APP_TOKEN", "slack_app_token")
    )
    slack_api_url: str | None = Field(default=None, description="Override of https://slack.com/api/ (tests, proxies).")
    admin_user_ids: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Slack users allowed to /ingest, comma-separated: U123, or T123:U123 with several workspaces.",
    )
    team_ids: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Slack workspaces (team ids) the bot serves, comma-separated (default: the bot token's own).",
    )
    access_file: Path | None = Field(
        default=None, description="YAML file saying which channels and DMs may read which collection."
    )
    rate_limit_per_minute: int = Field(default=10, gt=0, description="Questions one Slack user may ask per minute.")
    question_retention_days: int = Field(
        default=90,
        gt=0,
        description="Asked questions and their answers are kept this many days for the admins' report, then deleted.",
    )
    max_pending: int = Field(
        default=100, gt=0, description="Questions that may wait for the reader; past that the bot says it is busy."
    )
    job_lease_s: float = Field(
        default=60.0,
        gt=0,
        description="How long a worker holds a question without a heartbeat: after a crash, its questions wait this "
        "long before another worker answers them (seconds).",
    )
    min_free_mb: int = Field(
        default=100, ge=0, description="/healthz fails (503) when the database's disk has less free space (MB)."
    )
    fetch_timeout_s: float = Field(default=10.0, gt=0)
    fetch_max_bytes: int = Field(default=5_000_000, gt=0)
    fetch_allow_private: bool = Field(
        default=False, description="Let /ingest fetch from loopback and private-network hosts (an intranet wiki)."
    )
    feed_interval_minutes: float = Field(
        default=30.0, gt=0, description="qa-bot serve polls every subscribed feed this often (minutes)."
    )
    feed_max_entries: int = Field(default=50, gt=0, description="New entries stored per feed per poll, at most.")
    feed_poll_budget_s: float = Field(default=120.0, gt=0, description="Time one feed's poll may take in all.")

    log_level: str = Field(default="INFO", pattern="^(DEBUG|INFO|WARNING|ERROR)$")
    log_file: Path | None = Field(default=None, description="Also log to this file, rotated at 10 MB (5 kept).")

    @field_validator("admin_user_ids", "team_ids", mode="before")
    @classmethod
    def _split_comma_list(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("admin_user_ids")
    @classmethod
    def _user_refs(cls, value: list[str]) -> list[str]:
        from bot.core.access import parse_user_ref

        for entry in value:
            parse_user_ref(entry)  # ValueError names the entry and the two accepted forms
        return value

    @field_validator("team_ids")
    @classmethod
    def _team_ids(cls, value: list[str]) -> list[str]:
        for entry in value:
            if not re.match(r"^[TE][A-Z0-9]{2,}$", entry):
                raise ValueError(f"{entry!r} is not a Slack team id (T0123ABC)")
        return value

    @field_validator("doc_stride")
    @classmethod
    def _stride_under_half_window(cls, value: int, info: ValidationInfo) -> int:
        # The reader's windows of max_length tokens overlap by doc_stride; a larger overlap cannot make progress.
        max_length = info.data.get("max_length")
        if max_length is not None and not doc_stride_fits(value, max_length):
            raise ValueError(f"must be under half of QABOT_MAX_LENGTH ({max_length})")
        return value

    @field_validator("database_url")
    @classmethod
    def _database_scheme(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("postgresql://", "postgres://", "sqlite:///")):
            raise ValueError("must start with postgresql:// (PostgreSQL) or sqlite:/// (a SQLite file)")
        return value

    @model_validator(mode="after")
    def _sqlite_url_is_a_path(self) -> Settings:
        # sqlite:///x.db is QABOT_DB_PATH=x.db (sqlite:////abs/x.db for an absolute path): afterwards database_url
        # is only ever a PostgreSQL URL, and db_path always names the SQLite file.
        if self.database_url is not None and self.database_url.startswith("sqlite:///"):
            self.db_path = Path(self.database_url.removeprefix("sqlite:///"))
            self.database_url = None
        return self

    @property
    def database(self) -> str:
        """Where the article library is: the PostgreSQL URL, else the SQLite file (see `bot.store.open_store`)."""
        return self.database_url or str(self.db_path)

    @property
    def database_label(self) -> str:
        """The library's location as messages show it: a PostgreSQL URL without its password, or the file."""
        if self.database_url is None:
            return str(self.db_path)
        parts = urlsplit(self.database_url)
        netloc = parts.netloc.rsplit("@", 1)
        user = netloc[0].split(":", 1)[0] + "@" if len(netloc) == 2 else ""
        return f"{parts.scheme}://{user}{netloc[-1]}{parts.path}"

    @field_validator("slack_api_url")
    @classmethod
    def _trailing_slash(cls, value: str | None) -> str | None:
        # slack_sdk joins base_url and method with urljoin, which drops the last path segment without a slash.
        if value and not value.endswith("/"):
            return value + "/"
        return value

    def feed_limits(self) -> FeedLimits:
        """The limits of a feed poll: `/ingest`'s page limits plus the feed settings."""
        from bot.core.feeds import FeedLimits

        return FeedLimits(
            timeout_s=self.fetch_timeout_s,
            max_bytes=self.fetch_max_bytes,
            allow_private=self.fetch_allow_private,
            max_entries=self.feed_max_entries,
            budget_s=self.feed_poll_budget_s,
            interval_s=self.feed_interval_minutes * 60,
        )

    def reader_config(self) -> ReaderConfig:
        """The reader these settings describe.

        :raises ConfigError: when no reader model is configured (and none ships with this install).
        """
        if not self.reader_model:
            raise ConfigError(
                "No reader model configured, and this install has no shipped minilm-squad-reader. Set "
                "QABOT_READER_MODEL to a local extractive-QA model folder or a Hugging Face model id."
            )
        return ReaderConfig(
            model=self.reader_model,
            max_length=self.max_length,
            doc_stride=self.doc_stride,
            max_answer_tokens=self.max_answer_tokens,
            dtype=self.reader_dtype,
            threads=self.threads,
        )


def known_variables() -> list[str]:
    """The `QABOT_*` environment variables qa-bot reads."""
    return sorted(
        f"QABOT_{name.upper()}" for name, field in Settings.model_fields.items() if field.validation_alias is None
    )


def unknown_variables(environ: Mapping[str, str]) -> dict[str, str | None]:
    """`QABOT_*` names in `environ` that qa-bot does not read, each with the closest known name (or None).

    >>> unknown_variables({"QABOT_TOPK": "3", "QABOT_TOP_K": "3", "HOME": "/root"})
    {'QABOT_TOPK': 'QABOT_TOP_K'}
    """
    known = known_variables()
    suffixes = [name.removeprefix("QABOT_") for name in known]  # the shared prefix would make everything "close"
    unknown = {}
    for name in sorted(environ):
        if name.startswith("QABOT_") and name not in known:
            close = difflib.get_close_matches(name.removeprefix("QABOT_"), suffixes, n=1, cutoff=0.6)
            unknown[name] = f"QABOT_{close[0]}" if close else None
    return unknown


def _warn_about_unknown_variables(environ: Mapping[str, str]) -> None:
    unknown = unknown_variables(environ)
    if unknown:
        logger.warning(
            "Unknown setting%s ignored: %s",
            "s" if len(unknown) > 1 else "",
            "; ".join(f"{name} (did you mean {guess}?)" if guess else name for name, guess in unknown.items()),
        )


def load_settings(**overrides: object) -> Settings:
    """Read settings from the environment and `.env`; explicit overrides (from CLI options) win.

    A `QABOT_*` environment variable qa-bot does not know is reported in one warning naming the closest known one.

    :raises ConfigError: with one line naming the bad setting and what it should be.
    """
    _warn_about_unknown_variables(os.environ)
    clean: dict[str, Any] = {key: value for key, value in overrides.items() if value is not None}
    try:
        return Settings(**clean)
    except ValidationError as exc:
        first = exc.errors()[0]
        name = str(first["loc"][0]) if first["loc"] else "settings"
        env_name = name if name.isupper() else f"QABOT_{name.upper()}"
        message = first["msg"].removeprefix("Value error, ")  # pydantic's prefix for our own validators
        # a database URL may hold a password: never echoed
        got = "" if name == "database_url" else f" (got {first.get('input')!r})"
        raise ConfigError(f"Invalid setting {env_name}: {message}{got}.") from exc
