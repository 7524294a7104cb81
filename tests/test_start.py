"""A friendly start: Slack is checked before the model loads and failures are one line; unknown QABOT_* variables
are named; the cheap commands never import torch or transformers."""

from __future__ import annotations

import json
import logging
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from bot.cli import cli
from bot.settings import unknown_variables
from tests.fakes.slack_api import FakeSlackAPI

ROOT = Path(__file__).resolve().parents[1]
HEAVY = {"torch", "transformers"}


@pytest.fixture
def slack_env(monkeypatch, tmp_path):
    """Slack credentials set, and a reader model that does not exist: loading it would fail with a reader error."""
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-test")
    monkeypatch.setenv("SLACK_SIGNING_SECRET", "secret")
    monkeypatch.setenv("QABOT_READER_MODEL", str(tmp_path / "no-model"))
    monkeypatch.setenv("QABOT_DB_PATH", str(tmp_path / "qa.db"))


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_serve_that_cannot_reach_slack_says_so_in_one_line_before_loading_the_model(slack_env, monkeypatch):
    url = f"http://127.0.0.1:{closed_port()}/api/"
    monkeypatch.setenv("QABOT_SLACK_API_URL", url)
    result = CliRunner().invoke(cli, ["serve"])
    assert result.exit_code == 1
    assert re.fullmatch(
        rf"Error: Cannot reach Slack at {re.escape(url)}auth\.test: .*Connection refused.*\. "
        r"Check the network and QABOT_SLACK_API_URL\.\n",
        result.stderr,
    ), result.stderr


def test_serve_with_a_rejected_token_says_so_before_loading_the_model(slack_env, monkeypatch):
    with FakeSlackAPI() as fake:
        fake.fail("auth.test", "invalid_auth")
        monkeypatch.setenv("QABOT_SLACK_API_URL", fake.base_url)
        result = CliRunner().invoke(cli, ["serve"])
    assert (result.exit_code, result.stderr) == (
        1,
        f"Error: Slack rejected SLACK_BOT_TOKEN at {fake.base_url}auth.test: invalid_auth. Copy the Bot User OAuth "
        "Token (xoxb-…) from the Slack app's OAuth & Permissions page.\n",
    )


def test_serve_checks_slack_first_then_loads_the_model(slack_env, monkeypatch, tmp_path):
    with FakeSlackAPI() as fake:
        monkeypatch.setenv("QABOT_SLACK_API_URL", fake.base_url)
        result = CliRunner().invoke(cli, ["serve"])
        assert [name for name, _ in fake.calls] == ["auth.test"]
    assert result.exit_code == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.splitlines()[-1] == (
        f"Error: Reader model directory {tmp_path / 'no-model'} does not exist. Set QABOT_READER_MODEL to a folder "
        "holding config.json, the weights and tokenizer files."
    )


def test_serve_with_an_unreachable_or_wrong_database_url_says_so_in_one_line(slack_env, monkeypatch, postgres_url):
    missing = postgres_url.rsplit("/", 1)[0] + "/qa_bot_no_such_database"
    expected = {
        "postgresql://qa:s3cret@127.0.0.1:1/qa": "Error: Cannot connect to PostgreSQL at 127.0.0.1:1 (database qa): ",
        missing: "Error: Cannot connect to PostgreSQL at 127.0.0.1:5432 (database qa_bot_no_such_database): ",
    }
    with FakeSlackAPI() as fake:
        monkeypatch.setenv("QABOT_SLACK_API_URL", fake.base_url)
        for url, start in expected.items():
            monkeypatch.setenv("QABOT_DATABASE_URL", url)
            result = CliRunner().invoke(cli, ["serve"])
            assert (result.exit_code, result.stdout) == (1, ""), url
            errors = [line for line in result.stderr.splitlines() if "Error" in line]  # the rest: INFO log lines
            assert errors == [result.stderr.splitlines()[-1]] and errors[0].startswith(start), result.stderr
            assert "s3cret" not in result.stderr and "Traceback" not in result.stderr
    assert errors[0].endswith('database "qa_bot_no_such_database" does not exist. Check QABOT_DATABASE_URL or --db.')


def test_creating_the_app_logs_no_bolt_warning(monkeypatch, tmp_path, caplog, service):
    from slack_sdk import WebClient

    from bot.settings import Settings
    from bot.slack.app import create_app
    from bot.slack.jobs import JobRunner

    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-test")  # Bolt reads it, and would warn that `client` wins
    jobs = JobRunner()
    with FakeSlackAPI() as fake, caplog.at_level(logging.WARNING):
        settings = Settings(db_path=tmp_path / "qa.db", slack_signing_secret="secret", slack_api_url=fake.base_url)
        create_app(settings, service, client=WebClient(token="xoxb-test", base_url=fake.base_url), jobs=jobs)
        jobs.stop(timeout_s=10)
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []


def test_unknown_variables_are_named_with_the_closest_known_one():
    assert unknown_variables(
        {"QABOT_TOPK": "3", "QABOT_READER_DTYP": "int8", "QABOT_ZZZ": "1", "QABOT_TOP_K": "3", "PATH": "/bin"}
    ) == {"QABOT_READER_DTYP": "QABOT_READER_DTYPE", "QABOT_TOPK": "QABOT_TOP_K", "QABOT_ZZZ": None}


def test_an_unknown_variable_is_one_warning_on_the_command_line(monkeypatch, articles_dir):
    monkeypatch.setenv("QABOT_TOPK", "3")
    result = CliRunner().invoke(cli, ["ingest", "--db", "qa.db", str(articles_dir)])
    assert result.exit_code == 0
    warnings = [line for line in result.stderr.splitlines() if "WARNING" in line]
    assert len(warnings) == 1
    assert warnings[0].endswith("Unknown setting ignored: QABOT_TOPK (did you mean QABOT_TOP_K?)")


def modules_after_cli(*args: str, cwd: Path) -> set[str]:
    """The modules a fresh `qa-bot ARGS` process held when it finished."""
    script = (
        "import atexit, json, sys\n"
        "atexit.register(lambda: print('MODULES=' + json.dumps(sorted(sys.modules)), file=sys.stderr))\n"
        "from bot.cli import main\n"
        f"sys.argv = ['qa-bot', *{list(args)!r}]\n"
        "main()\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)},
    )
    line = next(line for line in result.stderr.splitlines() if line.startswith("MODULES="))
    return set(json.loads(line.removeprefix("MODULES=")))


@pytest.mark.parametrize(
    "args",
    [["--help"], ["ingest", "--help"], ["ask", "--help"], ["db", "upgrade"], ["articles", "--help"]],
    ids=" ".join,
)
def test_cheap_commands_never_import_torch_or_transformers(args, tmp_path):
    assert modules_after_cli(*args, cwd=tmp_path) & HEAVY == set()


def test_ingest_never_imports_torch_or_transformers(tmp_path, articles_dir):
    loaded = modules_after_cli("ingest", "--db", str(tmp_path / "qa.db"), str(articles_dir), cwd=tmp_path)
    assert "bot.core.ingest" in loaded
    assert loaded & HEAVY == set()


def test_articles_commands_never_import_torch_or_transformers(tmp_path, articles_dir):
    db = str(tmp_path / "qa.db")
    modules_after_cli("ingest", "--db", db, str(articles_dir), cwd=tmp_path)
    for args in (["list"], ["list", "--json"], ["show", "1"], ["stats"], ["delete", "1", "--yes"]):
        loaded = modules_after_cli("--db", db, "articles", *args, cwd=tmp_path)
        assert "bot.store.library" in loaded
        assert loaded & HEAVY == set(), args
