"""Several `qa-bot serve` replicas sharing one PostgreSQL database: two real apps on their own loopback HTTP
servers, each with its own connections, one fake Slack Web API. What a user must not notice is that there are
two: a retried event is answered once, the rate limit counts questions wherever they land, a follow-up reaches
the thread's earlier questions, /qa-report counts every replica's questions, /healthz says when the database is
gone, and feeds are polled by one replica at a time. Skipped, with the reason, where no PostgreSQL server answers."""

# ruff: noqa: F811  (the fixtures of test_slack_app, imported by name, are test arguments here)
from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from queue import Queue

import pytest

from bot.core.feeds import FeedLimits, FeedPoller
from bot.slack.server import check_health
from bot.store.feeds import FeedStore
from bot.store.pg_locks import FEED_POLL_LOCK, advisory_turn
from bot.store.postgres import PostgresStore
from tests.test_slack_app import (  # noqa: F401
    Slack,
    _block,
    _channel_message,
    fake_slack,
    make_slack,
)


@pytest.fixture
def replicas(make_slack) -> tuple[Slack, Slack]:
    """Two apps on the run's PostgreSQL database (library and Slack state), like two `serve` behind one balancer."""
    first = make_slack(engine="postgres")
    return first, make_slack(engine="postgres", fresh=False)


def _retry(headers_retry: str = "1") -> dict:
    return {"X-Slack-Retry-Num": headers_retry, "X-Slack-Retry-Reason": "http_timeout"}


def test_a_retry_that_reaches_the_other_replica_is_acknowledged_and_not_answered_again(replicas):
    first, second = replicas
    assert first.event("event_app_mention_channel.json")[0] == 200
    first.work.wait_idle()
    status, headers, _ = second.event("event_app_mention_channel.json", headers=_retry())
    second.event("event_message_im.json")  # the sentinel: once the second replica answered it, it was done
    first.fake.wait_for("chat.postMessage", 2)
    second.work.wait_idle()
    assert (status, headers.get("X-Slack-No-Retry")) == (200, "1")
    assert [body["channel"] for body in first.fake.bodies("chat.postMessage")] == ["C0001", "D0001"]


def test_the_same_event_delivered_to_both_replicas_at_once_is_answered_once(replicas):
    first, second = replicas
    with ThreadPoolExecutor(2) as pool:
        statuses = list(pool.map(lambda app: app.event("event_app_mention_channel.json")[0], replicas))
    first.fake.wait_for("chat.postMessage")
    first.work.wait_idle()
    second.work.wait_idle()
    assert (statuses, len(first.fake.bodies("chat.postMessage"))) == ([200, 200], 1)


def test_the_rate_limit_counts_questions_asked_through_either_replica(make_slack):
    first = make_slack(engine="postgres", rate_limit_per_minute=1)
    second = make_slack(engine="postgres", fresh=False, rate_limit_per_minute=1)
    first.event("event_message_im.json")
    first.fake.wait_for("chat.postMessage")

    def second_question(payload):
        payload["event_id"], payload["event"]["ts"] = "Ev0000000099", "1700000150.000700"

    second.event("event_message_im.json", edit=second_question)
    [notice] = second.fake.wait_for("chat.postEphemeral")
    assert notice["text"].startswith("You have asked 1 questions in the last minute")
    assert len(second.fake.bodies("chat.postMessage")) == 1


def test_a_follow_up_reaching_the_other_replica_is_asked_with_the_threads_earlier_question(replicas):
    first, second = replicas
    first.reader.answers = second.reader.answers = {"Mikheev": 0.9, "Moscow": 0.9}
    first.event("event_app_mention_channel.json")
    first.work.wait_idle()
    first.reader.answers = second.reader.answers = {"Moscow": 0.9}  # either replica's workers may answer it
    follow_up = _channel_message(
        "Where is it based?", ts="1700000005.000100", thread_ts="1700000000.000100", event_id="Ev0000000101"
    )
    second.event("event_app_mention_channel.json", edit=follow_up)
    _, reply = second.fake.wait_for("chat.postMessage", 2)
    second.work.wait_idle()
    assert (reply["thread_ts"], _block(reply, "answer")["text"]["text"]) == (
        "1700000000.000100",
        "*Moscow*\n>The agency is based in *Moscow*.",
    )
    assert first.state.thread_context("C0001", "1700000000.000100").questions == (
        "Who is the CEO of Rosoboronexport?",
        "Where is it based?",
    )


def test_qa_report_on_one_replica_counts_the_questions_answered_by_the_other(replicas):
    first, second = replicas
    first.event("event_app_mention_channel.json")
    first.fake.wait_for("chat.postMessage")
    first.work.wait_idle()
    second.command("slash_ingest.form.txt", command="/qa-report", text="", channel_id="D0ADMIN", trigger_id="r1")
    [report] = second.fake.wait_for("response_url")
    assert "1 questions asked: 1 answered (100%), 0 hedged (0%), 0 not answered (0%)." in json.dumps(
        report, ensure_ascii=False
    )


# /healthz -----------------------------------------------------------------------------------------------------


def test_healthz_reads_postgresql_and_answers_503_with_the_reason_once_the_database_is_gone(
    make_slack, make_postgres_db
):
    url = make_postgres_db()
    slack = make_slack(engine="postgres", database_url=url)
    status, _, body = slack.get("/healthz")
    assert (status, json.loads(body)) == (200, {"ok": True, "database": "ok"})
    make_postgres_db.drop(url)
    status, _, body = slack.get("/healthz")
    details = json.loads(body)
    name = url.rsplit("/", 1)[1]
    assert (status, details["ok"], details["database"]) == (503, False, "unavailable")
    assert details["reason"].startswith(f"Cannot connect to PostgreSQL at 127.0.0.1:5432 (database {name}): ")
    assert f'database "{name}" does not exist' in details["reason"] and "\n" not in details["reason"]


def test_health_of_a_database_without_qa_bot_tables_says_which_read_failed(make_postgres_db):
    url = make_postgres_db()  # never opened by qa-bot: no schema
    healthy, details = check_health(url, min_free_mb=100)
    assert (healthy, details["database"]) == (False, "unavailable")
    reason = f'PostgreSQL at {url} did not answer a read: relation "articles" does not exist'
    assert details["reason"] == reason


def test_health_of_a_postgresql_server_that_does_not_answer_names_the_host_not_the_password():
    healthy, details = check_health("postgresql://qa:s3cret@127.0.0.1:1/qa", min_free_mb=100)
    assert (healthy, details["database"]) == (False, "unavailable")
    assert details["reason"].startswith("Cannot connect to PostgreSQL at 127.0.0.1:1 (database qa): ")
    assert "s3cret" not in json.dumps(details)


# Feeds: one replica polls each round ------------------------------------------------------------------------


def test_advisory_turns_go_to_one_session_at_a_time(postgres_url):
    with advisory_turn(postgres_url, FEED_POLL_LOCK) as first:
        with advisory_turn(postgres_url, FEED_POLL_LOCK) as second:
            assert (first, second) == (True, False)
    with advisory_turn(postgres_url, FEED_POLL_LOCK) as later:
        assert later is True  # released when the first block ended


@pytest.fixture
def feed_server():
    """A loopback RSS feed with no entries; `hits` counts the requests for it."""
    hits: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            hits.append(self.path)
            body = b'<?xml version="1.0"?><rss version="2.0"><channel><title>Town News</title></channel></rss>'
            self.send_response(200)
            self.send_header("Content-Type", "application/rss+xml")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/rss.xml", hits
    server.shutdown()
    server.server_close()


def test_a_replica_skips_the_feed_round_another_replica_is_polling(postgres_url, feed_server):
    url, hits = feed_server
    store = PostgresStore(postgres_url)  # the feeds are in the shared database too
    store.conn.execute("truncate feeds, feed_entries")
    FeedStore(store).add(url, title=None)
    store.close()
    passes: Queue[list] = Queue()
    with advisory_turn(postgres_url, FEED_POLL_LOCK) as other_replica_polls:
        assert other_replica_polls
        poller = FeedPoller(
            lambda: PostgresStore(postgres_url),
            limits=FeedLimits(allow_private=True, interval_s=0.2),
            turn=lambda: advisory_turn(postgres_url, FEED_POLL_LOCK),
            on_pass=passes.put,
        ).start()
        try:
            skipped = passes.get(timeout=20)
            requests_while_skipped = len(hits)
        except BaseException:
            poller.stop(timeout_s=5)
            raise
    try:
        polled = passes.get(timeout=20)  # the other replica's round is over: this one's turn
    finally:
        poller.stop(timeout_s=5)
    assert (skipped, requests_while_skipped) == ([], 0)
    assert [(report.url, report.status) for report in polled] == [(url, "polled")] and hits[0] == "/rss.xml"
