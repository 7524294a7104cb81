"""The Slack app's state on both engines (`SlackState` in a SQLite file, `PostgresSlackState` in PostgreSQL): each
behaviour runs once per engine, several connections standing in for several processes. PostgreSQL runs are
skipped, with the reason, where no server answers."""

from __future__ import annotations

import dataclasses
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from queue import Queue

import pytest
from click.testing import CliRunner

from bot.cli import cli
from bot.core.insights import question_terms
from bot.core.records import Article
from bot.store import SQLiteStore, open_state
from bot.store.retention import DAY_S, RetentionSweeper
from bot.store.state_base import AskedQuestion, RateDecision, ReplyLink, StoredAnswer, ThreadContext
from tests.conftest import SLACK_TABLES, state_rows


def _answer(
    answer_id: str, question: str = "Who founded Acme?", *, article_id: int | None = 7, **asked
) -> StoredAnswer:
    return StoredAnswer(
        id=answer_id,
        question=question,
        answer="Ada Park" if article_id else None,
        article_id=article_id,
        score=0.91,
        text="*Ada Park*",
        blocks=[{"type": "section", "block_id": "answer", "text": {"type": "mrkdwn", "text": "*Ada Park*"}}],
        collections=("general", "legal"),
        asked=AskedQuestion(
            outcome=asked.pop("outcome", "confident"),
            cited=(article_id,) if article_id else (),
            terms=question_terms(question),
            **asked,
        ),
    )


# Deliveries ---------------------------------------------------------------------------------------------------


def test_a_delivery_is_first_seen_once_even_by_a_second_instance(new_state):
    assert new_state().first_sighting("Ev1", now=100.0) is True
    state = new_state()
    assert [state.first_sighting("Ev1", now=101.0), state.first_sighting("Ev2", now=102.0)] == [False, True]
    assert state.recent_event_ids(10) == ["Ev2", "Ev1"]


def test_a_delivery_claimed_by_many_connections_at_once_is_claimed_by_exactly_one(new_state):
    states = [new_state() for _ in range(4)]  # four processes, two threads each
    start = threading.Barrier(8)

    def claim(state) -> bool:
        start.wait()
        return state.first_sighting("Ev-retried")

    with ThreadPoolExecutor(8) as pool:
        claimed = list(pool.map(claim, states * 2))
    assert sorted(claimed) == [False] * 7 + [True]


def test_deliveries_older_than_a_day_are_forgotten_when_a_new_one_comes(new_state):
    state = new_state()
    state.first_sighting("Ev-old", now=0.0)
    state.first_sighting("Ev-new", now=2 * DAY_S)
    assert state.recent_event_ids(10) == ["Ev-new"]


# Rate limits --------------------------------------------------------------------------------------------------


def test_rate_limit_is_per_user_over_a_sliding_minute(new_state):
    state = new_state()
    decisions = [state.allow_question("U1", per_minute=2, now=t) for t in (0.0, 10.0, 20.0)]
    assert decisions == [RateDecision(True), RateDecision(True), RateDecision(False, 40)]
    assert state.allow_question("U2", per_minute=2, now=20.0) == RateDecision(True)
    assert state.allow_question("U1", per_minute=2, now=60.5) == RateDecision(True)  # the first one expired
    assert state.allow_question("U1", per_minute=2, now=61.0) == RateDecision(False, 9)  # 10.0 and 60.5 count


def test_rate_limit_counts_the_questions_of_every_process_at_once(new_state):
    states = [new_state() for _ in range(3)]  # three replicas, ten threads asking as one user
    start = threading.Barrier(30)
    now = time.time()

    def ask(index: int) -> bool:
        start.wait()
        return states[index % 3].allow_question("U1", per_minute=10, now=now + index / 1000).allowed

    with ThreadPoolExecutor(30) as pool:
        allowed = list(pool.map(ask, range(30)))
    assert allowed.count(True) == 10
    assert new_state().allow_question("U1", per_minute=10, now=now + 1).allowed is False
    assert new_state().allow_question("U2", per_minute=10, now=now + 1).allowed is True


# Answers, replies, threads ------------------------------------------------------------------------------------


def test_an_answer_is_kept_whole_and_saving_its_id_again_replaces_it(new_state):
    state = new_state()
    answer = _answer("a1", channel="C0001", team="T0001", user="U0001", searched=frozenset({"legal", "general"}))
    state.save_answer(answer)
    assert new_state().get_answer("a1") == dataclasses.replace(answer, asked=None)
    assert state.get_answer("unknown") is None
    [row] = state_rows(state, 'select outcome, searched, channel, team, "user", terms from slack_answers')
    assert row == {
        "outcome": "confident",
        "searched": "general,legal",
        "channel": "C0001",
        "team": "T0001",
        "user": "U0001",
        "terms": "acme found",
    }
    state.save_answer(dataclasses.replace(answer, answer="Sam Lee"))
    assert state.get_answer("a1").answer == "Sam Lee"  # type: ignore[union-attr]
    assert len(state_rows(state, "select id from slack_answers")) == 1


def test_reply_links_move_and_give_a_thread_its_earlier_questions(new_state):
    state = new_state()
    state.save_answer(_answer("a1", "Who founded Acme?", article_id=1))
    state.save_answer(_answer("a2", "When was that?", article_id=2))
    first = ReplyLink("C0001", "100.000100", "100.000200", "100.000100", "a1")
    state.link_reply(first)
    state.link_reply(ReplyLink("C0001", "100.000500", "100.000600", "100.000100", "a2"))
    other = new_state()
    assert other.reply_to("C0001", "100.000100") == first
    assert other.answer_id_of_reply("C0001", "100.000600") == "a2"
    assert other.thread_context("C0001", "100.000100") == ThreadContext(
        ("Who founded Acme?", "When was that?"), frozenset({1, 2})
    )
    assert other.thread_context("C0001", "100.000100", before_ts="100.000500") == ThreadContext(
        ("Who founded Acme?",), frozenset({1})
    )
    assert other.thread_context("C0001", "999.000100") == ThreadContext()  # a thread the bot never answered
    state.link_reply(dataclasses.replace(first, reply_ts="100.000900", answer_id="a2"))  # an edit, answered anew
    assert other.reply_to("C0001", "100.000100") == ReplyLink("C0001", "100.000100", "100.000900", "100.000100", "a2")
    state.forget_reply("C0001", "100.000500")
    assert (other.reply_to("C0001", "100.000500"), other.answer_id_of_reply("C0001", "100.000600")) == (None, None)


def test_feedback_is_stored_with_the_question_answer_and_article_it_was_about(new_state):
    state = new_state()
    state.save_answer(_answer("a1"))
    returned = state.record_feedback(answer_id="a1", user="U0002", vote="up", channel="C0001", message_ts="1.2")
    state.record_feedback(answer_id=None, user="U0003", vote="down", channel=None, message_ts=None)
    stored = new_state().feedback()
    keys = ("answer_id", "user", "vote", "question", "answer", "article_id", "channel", "message_ts", "clicked_at")
    assert [{key: row[key] for key in keys} for row in stored] == [
        returned,
        {**dict.fromkeys(keys), "user": "U0003", "vote": "down", "clicked_at": stored[1]["clicked_at"]},
    ]
    assert (returned["question"], returned["answer"], returned["article_id"]) == ("Who founded Acme?", "Ada Park", 7)


# Retention ----------------------------------------------------------------------------------------------------


def test_forgetting_old_questions_takes_their_reply_links_and_feedback_along(new_state):
    state = new_state()
    state.save_answer(_answer("old", asked_at=1_000.0))
    state.save_answer(_answer("new", asked_at=time.time()))
    for answer_id, ts in (("old", "1.000100"), ("new", "2.000100")):
        state.link_reply(ReplyLink("C0001", ts, ts + "1", ts, answer_id))
        state.record_feedback(answer_id=answer_id, user="U0002", vote="down", channel="C0001", message_ts=ts)
    assert state.forget_questions(before=time.time() - DAY_S) == 1
    assert (state.get_answer("old"), state.reply_to("C0001", "1.000100")) == (None, None)
    assert state.get_answer("new") is not None and state.reply_to("C0001", "2.000100") is not None
    assert [row["answer_id"] for row in state.feedback()] == ["new"]
    assert state.forget_questions(before=time.time() - DAY_S) == 0


def test_the_serve_sweeper_deletes_old_questions_wherever_the_state_is(new_state):
    state = new_state()
    state.save_answer(_answer("old", asked_at=time.time() - 40 * DAY_S))
    state.save_answer(_answer("recent", asked_at=time.time() - 5 * DAY_S))
    swept: Queue[int] = Queue()
    sweeper = RetentionSweeper(state.location, retention_days=10, on_sweep=swept.put).start()
    try:
        deleted = swept.get(timeout=10)
    finally:
        sweeper.stop(timeout_s=5)
    assert (deleted, [row["id"] for row in state_rows(state, "select id from slack_answers")]) == (1, ["recent"])


def test_the_sweeper_outlives_a_database_it_cannot_open(caplog):
    swept: Queue[int] = Queue()
    sweeper = RetentionSweeper(
        "postgresql://postgres@127.0.0.1:1/qa", retention_days=10, interval_s=0.05, on_sweep=swept.put
    ).start()
    try:
        assert [swept.get(timeout=20), swept.get(timeout=20)] == [0, 0]  # tried again, thread still alive
    finally:
        sweeper.stop(timeout_s=5)
    assert "question retention sweep failed" in caplog.text


# The admins' report: one report, whichever engine holds the questions ------------------------------------------

NOW = time.time()


def _ask_and_vote(state, general: int, legal: int) -> None:
    """The questions of tests/test_insights.py: near-duplicate gaps, a legal question, one before the period."""
    asked = [
        ("a1", "Who founded Acme?", "confident", general, {"general"}, 1),
        ("a2", "When was Acme founded?", "unsure", general, {"general"}, 1),
        ("a3", "Who runs Globex?", "none", None, {"general"}, 1),
        ("a4", "Who runs the Globex bank?", "none", None, {"general"}, 2),
        ("a5", "When does the merger close?", "confident", legal, {"general", "legal"}, 1),
        ("a6", "Is the merger secret?", "none", None, {"general", "legal"}, 1),
        ("a7", "Who runs Globex?", "none", None, {"general"}, 30),
    ]
    for answer_id, question, outcome, article_id, searched, days_ago in asked:
        state.save_answer(
            _answer(
                answer_id,
                question,
                article_id=article_id,
                outcome=outcome,
                searched=frozenset(searched),
                channel="C0001",
                asked_at=NOW - days_ago * DAY_S,
            )
        )
    for answer_id, vote in (("a1", "down"), ("a2", "up"), ("a5", "down")):
        state.record_feedback(answer_id=answer_id, user="U0002", vote=vote, channel="C0001", message_ts="1.2")


@pytest.fixture
def both_reports(tmp_path, postgres_url):
    """The same articles and questions in a SQLite file and in PostgreSQL: (sqlite state, postgres state)."""
    from bot.store.postgres import PostgresStore

    lite_store, pg_store = SQLiteStore(tmp_path / "qa.db"), PostgresStore(postgres_url)
    pg_store.conn.execute(
        "truncate articles, sentences, passages, passage_terms, passage_postings restart identity cascade;"
        f"update corpus_stats set passages = 0, tokens = 0; truncate {SLACK_TABLES} restart identity"
    )
    states = []
    for store in (lite_store, pg_store):
        general = store.add_article(Article(title="Acme history", body="Acme was founded in 1901.", source="a.txt"))
        legal = store.add_article(
            Article(title="Merger memo", body="The merger closes in May.", source="m.txt", collection="legal")
        )
        store.close()
        state = open_state(store.url if store is pg_store else tmp_path / "qa.db")
        _ask_and_vote(state, general.article_id, legal.article_id)
        states.append(state)
    yield states
    for state in states:
        state.close()


def test_both_engines_give_the_same_report_for_the_same_questions(both_reports):
    lite, pg = both_reports
    report = lite.report(days=7, now=NOW)
    assert pg.report(days=7, now=NOW) == report
    assert (report.questions, report.outcomes) == (6, {"confident": 2, "unsure": 1, "none": 3})
    assert [(row.title, row.cited) for row in report.cited] == [("Acme history", 2), ("Merger memo", 1)]
    assert [(row.title, row.up, row.down) for row in report.votes] == [("Acme history", 1, 1), ("Merger memo", 0, 1)]
    assert [(gap.terms, gap.questions) for gap in report.gaps][0] == (("globex", "run"), 2)
    scoped = lite.report(days=7, now=NOW, collections=frozenset({"general"}), top_gaps=1)
    assert pg.report(days=7, now=NOW, collections=frozenset({"general"}), top_gaps=1) == scoped
    assert (scoped.questions, len(scoped.gaps), [row.title for row in scoped.cited]) == (4, 1, ["Acme history"])


def test_cli_report_reads_postgresql_and_forgets_its_old_questions(both_reports, postgres_url, monkeypatch):
    _, pg = both_reports
    monkeypatch.setenv("QABOT_QUESTION_RETENTION_DAYS", "10")
    result = CliRunner().invoke(cli, ["report", "--db", postgres_url, "--days", "60"])
    assert result.exit_code == 0, result.output
    assert "6 questions asked: 2 answered (33%), 1 hedged (17%), 3 not answered (50%)." in result.stdout
    assert sorted(row["id"] for row in pg.query("select id from slack_answers")) == [f"a{n}" for n in range(1, 7)]


# Schema -------------------------------------------------------------------------------------------------------


def test_a_postgresql_library_of_schema_version_1_gains_the_slack_tables_and_keeps_its_articles(make_postgres_db):
    import bot.store.pg_migrations as pg_migrations
    from bot.store.pg_state import PostgresSlackState
    from bot.store.postgres import PostgresStore

    url = make_postgres_db()
    old = PostgresStore(url)
    old.add_article(Article(title="Acme history", body="Acme was founded in 1901.", source="a.txt"))
    # back to what the first PostgreSQL release made: version 1, without the later tables
    old.conn.execute(
        f"drop table passage_postings, feed_entries, feeds, {SLACK_TABLES}; update schema_version set version = 1"
    )
    old.close()
    state = PostgresSlackState(url)
    assert state.first_sighting("Ev1") is True
    assert state.query("select version from schema_version") == [{"version": pg_migrations.latest_pg_version()}]
    assert state.query("select title from articles") == [{"title": "Acme history"}]
    state.close()


def test_after_the_server_drops_its_connection_the_state_reconnects_on_the_next_call(postgres_url):
    from bot.errors import StoreError
    from bot.store.pg_state import PostgresSlackState

    state, admin = PostgresSlackState(postgres_url), PostgresSlackState(postgres_url)
    pid = state.query("select pg_backend_pid() as pid")[0]["pid"]
    admin.query("select pg_terminate_backend(%s)", [pid])  # a restart or failover, as the bot sees it
    with pytest.raises(StoreError, match="Could not record a Slack delivery in postgresql://"):
        state.first_sighting("Ev-during")
    assert state.first_sighting("Ev-after") is True
    assert state.query("select pg_backend_pid() as pid")[0]["pid"] != pid
    state.close()
    admin.close()
