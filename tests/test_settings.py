"""Settings: QABOT_* variables and .env are read, Slack names are kept, a bad value is one clear ConfigError line."""

from __future__ import annotations

from pathlib import Path

import pytest

import bot.settings
from bot.errors import ConfigError
from bot.settings import Settings, load_settings


@pytest.fixture
def no_shipped_model(monkeypatch):
    monkeypatch.setattr(bot.settings, "shipped_reader_dir", lambda: None)


def test_defaults(no_shipped_model):
    settings = Settings()
    assert (
        settings.db_path,
        settings.reader_model,
        settings.top_k,
        settings.answer_threshold,
        settings.max_length,
        settings.doc_stride,
        settings.max_answer_tokens,
        settings.reader_dtype,
        settings.admin_user_ids,
    ) == (Path("qa-bot.db"), None, 5, 0.45, 384, 128, 30, "float32", [])


def test_environment_variables_are_read(monkeypatch):
    monkeypatch.setenv("QABOT_DB_PATH", "/data/articles.db")
    monkeypatch.setenv("QABOT_TOP_K", "7")
    monkeypatch.setenv("QABOT_READER_MODEL", "/models/reader")
    monkeypatch.setenv("QABOT_ADMIN_USER_IDS", "U123, U456,,")
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-secret-value")
    settings = load_settings()
    assert (settings.db_path, settings.top_k, settings.reader_model, settings.admin_user_ids) == (
        Path("/data/articles.db"),
        7,
        "/models/reader",
        ["U123", "U456"],
    )
    assert settings.slack_bot_token.get_secret_value() == "xoxb-secret-value"
    assert "xoxb-secret-value" not in repr(settings)


def test_dotenv_file_in_the_working_directory_is_read(tmp_path):
    (tmp_path / ".env").write_text("QABOT_TOP_K=9\nSLACK_SIGNING_SECRET=shh\n", encoding="utf-8")
    settings = load_settings()
    assert (settings.top_k, settings.slack_signing_secret.get_secret_value()) == (9, "shh")


def test_explicit_overrides_win_and_none_means_not_given(monkeypatch):
    monkeypatch.setenv("QABOT_DB_PATH", "from-env.db")
    assert load_settings(db_path=Path("from-cli.db")).db_path == Path("from-cli.db")
    assert load_settings(db_path=None).db_path == Path("from-env.db")


@pytest.mark.parametrize(
    "name, value, message",
    [
        ("QABOT_TOP_K", "0", "Invalid setting QABOT_TOP_K: Input should be greater than 0 (got '0')."),
        (
            "QABOT_TOP_K",
            "many",
            "Invalid setting QABOT_TOP_K: Input should be a valid integer, unable to parse string as "
            "an integer (got 'many').",
        ),
        (
            "QABOT_ANSWER_THRESHOLD",
            "1.5",
            "Invalid setting QABOT_ANSWER_THRESHOLD: Input should be less than or equal to 1 (got '1.5').",
        ),
        (
            "QABOT_READER_DTYPE",
            "fp16",
            "Invalid setting QABOT_READER_DTYPE: String should match pattern '^(float32|bfloat16|int8)$' (got 'fp16').",
        ),
        (
            "QABOT_MAX_LENGTH",
            "256",
            "Invalid setting QABOT_DOC_STRIDE: must be under half of QABOT_MAX_LENGTH (256) (got 128).",
        ),
    ],
)
def test_invalid_setting_is_one_clear_line(monkeypatch, name, value, message):
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert str(caught.value) == message


def test_doc_stride_under_half_of_max_length_is_accepted(monkeypatch):
    monkeypatch.setenv("QABOT_MAX_LENGTH", "256")
    monkeypatch.setenv("QABOT_DOC_STRIDE", "64")
    assert (load_settings().max_length, load_settings().doc_stride) == (256, 64)


def test_api_url_override_gets_a_trailing_slash():
    assert Settings(slack_api_url="http://127.0.0.1:8888/api").slack_api_url == "http://127.0.0.1:8888/api/"


def test_no_settings_are_read_at_import():
    assert not [name for name, value in vars(bot.settings).items() if isinstance(value, Settings)]
