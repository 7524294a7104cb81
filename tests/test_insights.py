"""The admins' report over a real SQLite file: counts, shares, cited articles, 👍/👎, knowledge gaps, scoping to
what a channel may read, retention, and the `qa-bot report` command."""

from __future__ import annotations

import json
import time

import pytest
from click.testing import CliRunner

from bot.cli import cli
from bot.core.insights import build_report, group_gaps, question_terms, render_markdown
from bot.core.records import Article
from bot.store.sqlite import SQLiteStore
from bot.store.state import AskedQuestion, SlackState, StoredAnswer

NOW = 1_796_032_800.0  # 2026-11-30T10:00:00Z
DAY = 86400.0


def _ask(state, answer_id, question, outcome, *, cited=(), searched=None, days_ago=1.0, channel="C0001"):
    state.save_answer(
        StoredAnswer(
            id=answer_id,
            question=question,
            answer="x" if outcome == "confident" else None,
            article_id=cited[0] if cited else None,
            score=0.5,
            text="",
            blocks=[],
            asked=AskedQuestion(
                outcome=outcome,
                cited=tuple(cited),
                searched=searched,
                channel=channel,
                team="T0001",
                user="U0001",
                terms=question_terms(question),
                asked_at=NOW - days_ago * DAY,
            ),
        )
    )


def _vote(state, answer_id, vote, *, days_ago=1.0):
    state.record_feedback(answer_id=answer_id, user="U0002", vote=vote, channel="C0001", message_ts="1.2")
    clicked = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(NOW - days_ago * DAY))
    with state.db.conn:
        state.db.execute("update slack_feedback set clicked_at = ? where answer_id = ?", [clicked, answer_id])


@pytest.fixture
def db_path(tmp_path):
    path = tmp_path / "qa.db"
    store = SQLiteStore(path)
    general = store.add_article(Article(title="Acme history", body="Acme was founded in 1901.", source="a.txt"))
    legal = store.add_article(
        Article(title="Merger memo", body="The merger closes in May.", source="m.txt", collection="legal")
    )
    store.close()
    state = SlackState(path)
    _ask(state, "a1", "Who founded Acme?", "confident", cited=[general.article_id], searched=frozenset({"general"}))
    _ask(state, "a2", "When was Acme founded?", "unsure", cited=[general.article_id], searched=frozenset({"general"}))
    _ask(state, "a3", "Who runs Globex?", "none", searched=frozenset({"general"}))
    _ask(state, "a4", "Who runs the Globex bank?", "none", searched=frozenset({"general"}), days_ago=2)
    _ask(
        state,
        "a5",
        "When does the merger close?",
        "confident",
        cited=[legal.article_id],
        searched=frozenset({"general", "legal"}),
        channel="C0LEGAL1",
    )
    _ask(state, "a6", "Is the merger secret?", "none", searched=frozenset({"general", "legal"}), channel="C0LEGAL1")
    _ask(state, "a7", "Who runs Globex?", "none", searched=frozenset({"general"}), days_ago=30)  # before the period
    _vote(state, "a1", "down")
    _vote(state, "a2", "up")
    _vote(state, "a5", "down")
    state.close()
    return path, general.article_id, legal.article_id


def test_report_counts_outcomes_articles_votes_and_groups_gaps(db_path):
    path, general, legal = db_path
    state = SlackState(path)
    report = build_report(state.db, days=7, now=NOW).to_dict()
    state.close()
    assert (report["questions"], report["outcomes"]) == (6, {"confident": 2, "unsure": 1, "none": 3})
    assert report["shares"] == {"confident": 0.3333, "unsure": 0.1667, "none": 0.5}
    assert report["cited"] == [
        {"article_id": general, "title": "Acme history", "cited": 2, "up": 0, "down": 0},
        {"article_id": legal, "title": "Merger memo", "cited": 1, "up": 0, "down": 0},
    ]
    assert report["votes"] == [
        {"article_id": general, "title": "Acme history", "cited": 0, "up": 1, "down": 1},
        {"article_id": legal, "title": "Merger memo", "cited": 0, "up": 0, "down": 1},
    ]
    # "Who runs Globex?" and "Who runs the Globex bank?" are near-duplicates: one gap of two questions
    assert report["gaps"] == [
        {"terms": ["globex", "run"], "questions": 2, "unanswered": 2, "disliked": 0, "example": "Who runs Globex?"},
        {"terms": ["acme", "found"], "questions": 1, "unanswered": 0, "disliked": 1, "example": "Who founded Acme?"},
        {
            "terms": ["close", "merger"],
            "questions": 1,
            "unanswered": 0,
            "disliked": 1,
            "example": "When does the merger close?",
        },
        {
            "terms": ["merger", "secret"],
            "questions": 1,
            "unanswered": 1,
            "disliked": 0,
            "example": "Is the merger secret?",
        },
    ]
    assert [day["day"] for day in report["daily"]] == ["2026-11-28", "2026-11-29"]


def test_a_report_for_a_channel_leaves_out_every_question_that_read_another_collection(db_path):
    path, general, legal = db_path
    state = SlackState(path)
    report = build_report(state.db, days=7, now=NOW, collections=frozenset({"general"}))
    state.close()
    text = render_markdown(report, scope="#general") + json.dumps(report.to_dict())
    assert (report.questions, report.outcomes) == (4, {"confident": 1, "unsure": 1, "none": 2})
    assert [row.article_id for row in report.cited + report.votes] == [general, general]
    assert "merger" not in text.lower() and "Merger memo" not in text


def test_near_duplicate_gaps_merge_into_the_most_frequent():
    rows = [
        ("Who runs Globex?", "globex run", 1, 0, 3.0),
        ("Who runs Globex?", "globex run", 1, 0, 1.0),
        ("Who runs the Globex bank?", "bank globex run", 1, 0, 2.0),
        ("Where is Initech?", "initech", 0, 1, 4.0),
    ]
    assert [(g.terms, g.questions, g.example) for g in group_gaps(rows)] == [
        (("globex", "run"), 3, "Who runs Globex?"),
        (("initech",), 1, "Where is Initech?"),
    ]


def test_cli_report_prints_markdown_and_json_and_forgets_old_questions(db_path, monkeypatch):
    path, _, _ = db_path
    monkeypatch.setattr(time, "time", lambda: NOW)
    monkeypatch.setenv("QABOT_QUESTION_RETENTION_DAYS", "10")
    runner = CliRunner()
    text = runner.invoke(cli, ["report", "--db", str(path)])
    assert text.exit_code == 0, text.output
    assert text.stdout.splitlines()[:3] == [
        "# Questions and knowledge gaps, 2026-11-23 to 2026-11-30 (7 days)",
        "",
        "6 questions asked: 2 answered (33%), 1 hedged (17%), 3 not answered (50%).",
    ]
    assert "| 2 | 2 | 0 | globex run | Who runs Globex? |" in text.stdout
    as_json = runner.invoke(cli, ["report", "--db", str(path), "--days", "60", "--json"])
    assert json.loads(as_json.stdout)["questions"] == 6  # a7 (30 days old) went with the 10-day retention
    state = SlackState(path)
    assert [row["id"] for row in state.db.query("select id from slack_answers order by id")] == [
        "a1",
        "a2",
        "a3",
        "a4",
        "a5",
        "a6",
    ]
    state.close()


def test_cli_report_html_writes_one_page_with_an_inline_svg_chart(db_path, tmp_path, monkeypatch):
    path, _, _ = db_path
    monkeypatch.setattr(time, "time", lambda: NOW)
    page = tmp_path / "report.html"
    result = CliRunner().invoke(cli, ["report", "--db", str(path), "--html", str(page)])
    assert result.exit_code == 0, result.output
    html = page.read_text(encoding="utf-8")
    assert html.startswith("<!DOCTYPE html>") and html.rstrip().endswith("</html>")
    assert html.count("<svg") == 1 and "<script" not in html
    assert "<title>2026-11-29 not answered: 2</title>" in html  # a3 and a6: one bar segment per day and outcome


def test_cli_report_of_a_missing_database_is_one_error_line(tmp_path):
    result = CliRunner().invoke(cli, ["report", "--db", str(tmp_path / "none.db")])
    assert (result.exit_code, result.output) == (
        1,
        f"Error: No database at {tmp_path / 'none.db'}, so no questions to report on. Check --db or QABOT_DB_PATH.\n",
    )


def test_the_serve_sweeper_deletes_questions_past_retention_at_start(db_path, monkeypatch):
    from queue import Queue

    from bot.store.retention import RetentionSweeper

    path, _, _ = db_path
    monkeypatch.setattr(time, "time", lambda: NOW + 5 * DAY)
    swept: Queue[int] = Queue()
    sweeper = RetentionSweeper(path, retention_days=10, on_sweep=swept.put).start()
    try:
        deleted = swept.get(timeout=10)
    finally:
        sweeper.stop(timeout_s=5)
    assert deleted == 1  # a7, asked 35 days before; a1..a6 (6 and 7 days before) stay, with their feedback
    state = SlackState(path)
    remaining = [row["id"] for row in state.db.query("select id from slack_answers order by id")]
    assert (remaining, len(state.feedback())) == (["a1", "a2", "a3", "a4", "a5", "a6"], 3)
    state.close()
