"""scripts/attack.py stays runnable: its pieces, run in a tiny version against the in-process Slack app (same WSGI
app and waitress server as `serve`), in a few seconds. The full attack run is never part of the test suite."""

# ruff: noqa: F811  (the fixtures of test_slack_app, imported by name, are test arguments here)
from __future__ import annotations

import logging
import time

import pytest

from bot.logs import FORMAT, OneLineFormatter
from tests.scripts import load_script
from tests.test_slack_app import make_slack  # noqa: F401

attack = load_script("attack.py")


@pytest.fixture(autouse=True)
def stays_quick():
    """Each test here is a tiny version of one figure: well under 10 s, or the script has grown into the suite."""
    start = time.monotonic()
    yield
    assert time.monotonic() - start < 10


@pytest.fixture
def fake_slack():
    """The script's timed fake replaces test_slack_app's plain one (make_slack asks for it by this name)."""
    with attack.TimedFakeSlack() as fake:
        yield fake


@pytest.fixture
def bot_port(make_slack, monkeypatch) -> int:
    monkeypatch.setattr(attack, "SECRET", "test-signing-secret")  # test_slack_app's signing secret
    return int(make_slack().url.rsplit(":", 1)[1])


@pytest.fixture
def log_file(tmp_path):
    """The records of the app at INFO, formatted as `serve` writes them, in a file the script can measure."""
    path = tmp_path / "logs" / "qa-bot.log"
    path.parent.mkdir()
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(OneLineFormatter(FORMAT))
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield path
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
        handler.close()


def test_unsigned_bodies_are_refused_and_the_log_stays_small(bot_port, log_file):
    before = attack.log_bytes(log_file)
    statuses = [attack.post_unsigned(bot_port, 2 * 1024 * 1024), attack.post_unsigned(bot_port, 300_000)]
    grown = attack.log_bytes(log_file) - before
    assert statuses == [413, 401]
    assert grown < 1024 and "FORGED" not in log_file.read_text(encoding="utf-8")


def test_a_signed_mention_is_acked_and_its_reply_is_timed_by_the_fake(bot_port, fake_slack):
    body, ts = attack.mention("Who signed the memo?")
    status, ack_s = attack.post_signed(bot_port, body, "application/json")
    stamp = fake_slack.wait_stamp("chat.postMessage", lambda b: b.get("thread_ts") == ts, timeout_s=5)
    assert (status, ack_s < 5, stamp is not None) == (200, True, True)


def test_the_bot_is_pointed_at_loopback_only_and_outside_settings_are_dropped(tmp_path, monkeypatch):
    monkeypatch.setenv("QABOT_SLACK_API_URL", "https://slack.com/api/")
    monkeypatch.setenv("SLACK_APP_TOKEN", "xapp-from-outside")
    with attack.TimedFakeSlack() as fake:
        bot = attack.Bot(tmp_path, fake)
    assert bot.env["QABOT_SLACK_API_URL"].startswith("http://127.0.0.1:")
    assert "SLACK_APP_TOKEN" not in bot.env and bot.env["QABOT_FETCH_TIMEOUT_S"] == "3.0"


def test_the_table_marks_a_missed_target():
    table = attack.render_table(
        [attack.Figure("ack", "< 1 s", "0.2 s", True), attack.Figure("log", "< 10 KB", "1 MB", False)]
    )
    assert table.splitlines()[2:] == ["| ack | < 1 s | 0.2 s | pass |", "| log | < 10 KB | 1 MB | FAIL |"]


def test_a_long_question_has_the_asked_number_of_words():
    text = attack.long_question(700)
    assert (len(text.split()), text.startswith(attack.QUESTION)) == (700, True)
