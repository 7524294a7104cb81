"""The Slack app under hostile traffic and faults (issue 14): oversized and malformed bodies, a locked or full
database, a flood of questions, slow links and Slack's size limits. Same real parts as test_slack_app: waitress on
loopback, real SQLite files, requests signed as Slack signs them and the fake Slack Web API.
"""

# ruff: noqa: F811  (the fixtures of test_slack_app, imported by name, are test arguments here)
from __future__ import annotations

import io
import json
import logging
import os
import socket
import sqlite3
import stat
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from click.testing import CliRunner

from bot.cli import cli
from bot.core.ingest import ingest_paths
from bot.slack.dedupe import SeenDeliveries
from bot.slack.server import EVENTS_PATH, MAX_BODY_BYTES, check_health, create_wsgi_app
from bot.store import SQLiteStore
from bot.store.state import SlackState
from tests.conftest import state_rows
from tests.test_slack_app import (  # noqa: F401
    ARTICLES,
    SECRET,
    _eventually,
    fake_slack,
    make_slack,
    slack,
)

FIXTURES = Path(__file__).resolve().parent / "data" / "slack-fixtures"
SENTINEL = "event_message_im.json"  # a DM that is always answered: once it is, earlier requests were handled


def _raw_post(url: str, head: str, body: bytes = b"") -> bytes:
    """Send a hand-made HTTP request and return the whole response (urllib cannot send a lying Content-Length)."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(head.encode() + b"\r\n\r\n" + body)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


# Request bodies -----------------------------------------------------------------------------------------------


def test_a_body_over_1_mb_is_refused_with_413_before_it_is_read(slack, caplog):
    head = (
        f"POST {EVENTS_PATH} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {50 * MAX_BODY_BYTES}\r\nConnection: close"
    )
    with caplog.at_level(logging.DEBUG):
        response = _raw_post(slack.url, head, b"x" * 1000)  # the other 50 MB never come
    assert response.split(b"\r\n", 1)[0].split(b" ")[1] == b"413"


def test_the_app_refuses_a_declared_length_over_the_limit_without_reading_a_byte():
    seen = []
    wsgi = create_wsgi_app(_NeverCalled(), signing_secret=SECRET, max_body_bytes=1000)
    stream = io.BytesIO(b"z" * 5000)
    environ = {"REQUEST_METHOD": "POST", "PATH_INFO": EVENTS_PATH, "CONTENT_LENGTH": "5000", "wsgi.input": stream}
    body = b"".join(wsgi(environ, lambda status, headers: seen.append(status)))
    assert (seen, body, stream.tell()) == (["413 Content Too Large"], b"413 Content Too Large", 0)


def test_a_chunked_body_is_read_no_further_than_the_limit():
    class Stream(io.BytesIO):
        read_bytes = 0

        def read(self, size=-1):
            data = super().read(size)
            Stream.read_bytes += len(data)
            return data

    seen = []
    wsgi = create_wsgi_app(_NeverCalled(), signing_secret=SECRET, max_body_bytes=1000)
    environ = {"REQUEST_METHOD": "POST", "PATH_INFO": EVENTS_PATH, "wsgi.input": Stream(b"y" * 100_000)}
    body = b"".join(wsgi(environ, lambda status, headers: seen.append(status)))
    assert (seen, body, Stream.read_bytes) == (["413 Content Too Large"], b"413 Content Too Large", 1001)


class _NeverCalled:
    """Stands in for the Bolt app where the request must be refused before Bolt sees it."""

    def dispatch(self, request):  # pragma: no cover - failing here is the test failing
        raise AssertionError("Bolt was called")


@pytest.mark.parametrize(
    "content_type, body",
    [
        ("application/json", b'{"type": "event_callback", "event": '),  # cut off
        ("application/json", b"\xff\xfe not utf-8 \x00"),
        ("application/x-www-form-urlencoded", b"payload=%7Bnot-json"),
        ("text/plain", b"MARKER\nERROR bot.slack_app FORGED"),
    ],
)
def test_malformed_bodies_get_4xx_and_leave_no_traceback_or_body_in_the_log(slack, caplog, content_type, body):
    with caplog.at_level(logging.DEBUG):
        unsigned = slack.post(body, content_type, signature="v0=" + "0" * 64)[0]
        signed = slack.post(body, content_type)[0]
        slack.event(SENTINEL)
        slack.fake.wait_for("chat.postMessage")
    assert (unsigned, signed in (200, 400, 404)) == (401, True)
    assert [r for r in caplog.records if r.exc_info] == []
    logged = "\n".join(r.getMessage() for r in caplog.records if r.levelno >= logging.INFO)
    assert "FORGED" not in logged and "event_callback" not in logged and "not-json" not in logged


def test_unsigned_bodies_are_refused_without_their_body_or_headers_in_the_log(slack, caplog):
    with caplog.at_level(logging.DEBUG):
        for _ in range(3):
            status, _, _ = slack.post(
                b"SECRETBODY" * 50_000, "application/json", signature="v0=" + "1" * 64, headers={"X-Evil": "HEADERVAL"}
            )
            assert status == 401
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "SECRETBODY" not in logged and "HEADERVAL" not in logged
    assert sum("refused request status=401 reason=bad_signature" in r.getMessage() for r in caplog.records) == 3


# The database's lock ------------------------------------------------------------------------------------------


def _dm(number: int):
    """An edit for the DM fixture: another question message (its own event id and ts)."""

    def edit(payload: dict) -> None:
        payload["event_id"] = f"EvDM{number:04d}"
        payload["event"].update(ts=f"1700000200.{number:06d}", event_ts=f"1700000200.{number:06d}")

    return edit


def test_an_event_is_acked_at_once_while_another_writer_holds_the_lock_and_answered_after(slack):
    blocker = sqlite3.connect(slack.settings.db_path, timeout=0, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # what a long `qa-bot ingest` batch holds
    try:
        started = time.monotonic()
        status, _, _ = slack.event("event_app_mention_channel.json")
        ack_s = time.monotonic() - started
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    [reply] = slack.fake.wait_for("chat.postMessage", timeout_s=15)
    assert (status, ack_s < 1.0, "Mikheev" in reply["text"]) == (200, True, True)
    event_id = json.loads((FIXTURES / "event_app_mention_channel.json").read_text())["event_id"]
    # the question was recorded as a job once the lock was free, keyed by its event id (a retry finds it)
    slack.work.wait_idle()
    jobs = state_rows(SlackState(slack.settings.db_path), "select key, kind, state from slack_jobs")
    assert jobs == [{"key": event_id, "kind": "mention", "state": "done"}]


def test_a_retry_is_recognised_from_memory_and_after_a_restart(tmp_path):
    state = SlackState(tmp_path / "qa.db")
    seen = SeenDeliveries(state, max_ids=2)
    assert [seen.first_sighting(i) for i in ["E1", "E2", "E1", "E3", "E2"]] == [True, True, False, True, True]
    seen.flush(timeout_s=10)
    restarted = SeenDeliveries(SlackState(tmp_path / "qa.db"), max_ids=10)
    assert [restarted.first_sighting(i) for i in ["E1", "E2", "E3", "E4"]] == [False, False, False, True]


def test_a_second_ingest_waits_for_the_first_instead_of_failing(tmp_path):
    first, second = SQLiteStore(tmp_path / "qa.db"), SQLiteStore(tmp_path / "qa.db")
    (tmp_path / "in").mkdir()
    for number, article in enumerate(ARTICLES):
        (tmp_path / "in" / f"{number}.txt").write_text(f"{article.title}\n\n{article.body}\n", encoding="utf-8")
    reports = []
    with first.bulk():
        first.add_article(ARTICLES[0])  # holds the write lock until the block ends
        waiting = threading.Thread(target=lambda: reports.append(ingest_paths(second, [tmp_path / "in"])))
        waiting.start()
    waiting.join(timeout=20)
    [report] = reports
    assert (report.added, report.failures, second.article_count()) == (3, [], 4)


def test_database_files_are_private(tmp_path):
    store = SQLiteStore(tmp_path / "qa.db")
    store.add_article(ARTICLES[0])
    SlackState(tmp_path / "qa.db").first_sighting("Ev1")
    files = sorted(p.name for p in tmp_path.iterdir())
    modes = {name: stat.S_IMODE(os.stat(tmp_path / name).st_mode) for name in files}
    assert modes == {"qa.db": 0o600, "qa.db-shm": 0o600, "qa.db-wal": 0o600}


# A flood of questions, slow links -----------------------------------------------------------------------------


class _Gate:
    """Makes the stub reader wait until the test opens the gate."""

    def __init__(self, reader) -> None:
        self.open = threading.Event()
        self._run = reader.run
        reader.run = self.run

    def run(self, *args, **kwargs):
        assert self.open.wait(20), "the test never opened the gate"
        return self._run(*args, **kwargs)


def test_past_max_pending_questions_the_bot_says_it_is_busy_instead_of_queueing(make_slack):
    slack = make_slack(max_pending=2)
    gate = _Gate(slack.reader)
    try:
        slack.event(SENTINEL, edit=_dm(1))
        slack.event(SENTINEL, edit=_dm(2))
        slack.fake.wait_for("reactions.add", 2)  # both accepted: one reading, one waiting for the reader
        slack.event(SENTINEL, edit=_dm(3))
        [busy] = slack.fake.wait_for("chat.postMessage")
    finally:
        gate.open.set()
    answers = slack.fake.wait_for("chat.postMessage", 3)[1:]
    assert (busy["thread_ts"], busy["text"]) == (
        "1700000200.000003",
        "I'm busy answering other questions right now. Please try again in a minute.",
    )
    assert sorted((a["thread_ts"], "Mikheev" in a["text"]) for a in answers) == [
        ("1700000200.000001", True),
        ("1700000200.000002", True),
    ]


@pytest.fixture
def endless_page():
    """A web server that sends headers and a first piece of the page, then nothing until the test ends."""
    entered, release = threading.Semaphore(0), threading.Event()

    class Endless(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", "100000")
            self.end_headers()
            self.wfile.write(b"<html><body><p>The start of a very long page")
            self.wfile.flush()
            entered.release()
            release.wait(30)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Endless)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/slow.html", entered
    release.set()
    server.shutdown()
    server.server_close()


def test_slow_ingest_links_do_not_delay_answers(make_slack, endless_page):
    url, entered = endless_page
    slack = make_slack(fetch_timeout_s=30)
    for number in range(2):  # both fetch threads held
        slack.command("slash_ingest.form.txt", text=url, trigger_id=f"slow{number}")
    assert entered.acquire(timeout=10) and entered.acquire(timeout=10)
    started = time.monotonic()
    slack.event("event_app_mention_channel.json")
    [reply] = slack.fake.wait_for("chat.postMessage")
    assert ("Mikheev" in reply["text"], time.monotonic() - started < 3, slack.fake.bodies("response_url")) == (
        True,
        True,
        [],
    )


def test_a_replayed_slash_command_is_handled_once(slack):
    first = slack.command("slash_ask.form.txt")
    replay = slack.command("slash_ask.form.txt")  # same team, user and trigger_id
    slack.command("slash_ask.form.txt", trigger_id="another-trigger")  # the sentinel: answered
    answers = slack.fake.wait_for("response_url", 2)
    slack.work.wait_idle()
    assert (first[0], replay[0], len(slack.fake.bodies("response_url"))) == (200, 200, 2)
    assert all("Mikheev" in a["text"] for a in answers)


# Health and a full disk ---------------------------------------------------------------------------------------


def test_healthz_is_503_when_free_disk_space_is_below_the_minimum(make_slack):
    slack = make_slack(min_free_mb=10**12)
    status, _, body = slack.get("/healthz")
    assert (status, json.loads(body)["ok"], json.loads(body)["database"]) == (503, False, "ok")


def test_health_check_fails_when_the_database_does_not_answer(tmp_path):
    (tmp_path / "qa.db").write_bytes(b"not a database at all" * 100)
    assert check_health(tmp_path / "qa.db", min_free_mb=0)[0] is False
    assert check_health(tmp_path / "missing.db", min_free_mb=0)[0] is False


def _fill_up(db) -> None:
    """Let the file grow by only a few pages from now on: SQLite's stand-in for a full disk."""
    pages = db.execute("PRAGMA page_count").fetchone()[0]
    db.execute(f"PRAGMA max_page_count = {pages + 1}")


def test_a_failed_write_while_serving_becomes_the_apology(slack, caplog):
    _fill_up(slack.state.db)
    conn = slack.state.db.conn
    for insert in (  # fill every page left, the tables a question writes to included, a small row at a time
        "insert into slack_events (event_id, seen_at) values ('x' || ?, 0)",
        "insert into slack_requests (user, at) values ('x' || ?, 0)",
        "insert into slack_answers (id, question, score, text, blocks, created_at) "
        "values ('x' || ?, '', 0, '', '', '')",
    ):
        with pytest.raises(sqlite3.OperationalError, match="full"):
            for number in range(100_000):
                conn.execute(insert, [number])
                conn.commit()
        conn.rollback()
    slack.event("event_app_mention_channel.json")
    [reply] = slack.fake.wait_for("chat.postMessage")
    assert reply["text"].startswith("Sorry, something went wrong while answering (reference ")


def test_cli_ingest_on_a_full_disk_ends_with_the_summary_and_one_line_why(tmp_path, monkeypatch):
    import bot.store.sqlite as sqlite_module

    opened = sqlite_module.SQLiteStore.__init__

    def full_after_opening(self, path):
        opened(self, path)
        _fill_up(self.db)

    (tmp_path / "in").mkdir()
    for number in range(20):
        words = " ".join(f"word{number}x{i}" for i in range(400))
        (tmp_path / "in" / f"{number:02d}.txt").write_text(f"Title {number}\n\n{words}.\n", encoding="utf-8")
    monkeypatch.setattr(sqlite_module.SQLiteStore, "__init__", full_after_opening)
    result = CliRunner().invoke(cli, ["ingest", str(tmp_path / "in"), "--db", str(tmp_path / "qa.db")])
    assert (result.exit_code, result.exception.__class__) == (1, SystemExit)
    assert result.stdout.startswith(f"Ingested into {tmp_path / 'qa.db'}: ")
    [stopped] = [line for line in result.stderr.splitlines() if line.startswith("Stopped early:")]
    assert "database or disk is full" in stopped and "Traceback" not in result.output
